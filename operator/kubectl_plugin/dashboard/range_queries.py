"""What the dashboard asks Prometheus to draw under a template's measurements: the
template's query over the run's window, its placeholders filled in as the operator
fills them (:mod:`promotion_operator.placeholders`, shared with the core), and how
Prometheus's answer is read.

Pure: the queries from a :class:`~..resource.Promotion` and ``now``; the series from
the JSON of ``/api/v1/query_range``. The I/O is :mod:`.prometheus`'s.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promotion_operator.kubectl_plugin.dashboard.plot import by_template
from promotion_operator.kubectl_plugin.resource import Promotion, parse_time
from promotion_operator.placeholders import fill, query_values

#: At most this many points per series, whatever the window's length.
POINTS = 240
#: Series drawn per query at most (a query by label gives one per label value).
SERIES = 6
DEFAULT_INTERVAL = "30s"
MEASURED, CHAMPION, CHALLENGER = "measured", "champion", "challenger"


@dataclass(frozen=True)
class Window:
    """The run's span: from its start to its end (or now, while it runs)."""

    start: datetime.datetime
    end: datetime.datetime

    @property
    def step_seconds(self) -> float:
        return max(1.0, math.ceil((self.end - self.start).total_seconds() / POINTS))


@dataclass(frozen=True)
class RangeQuery:
    """One query of a template: whom it measures (a comparison has two) and its PromQL."""

    template: str
    side: str
    promql: str


@dataclass(frozen=True)
class Series:
    """One series Prometheus returned: whom it measures, its labels, its points."""

    side: str
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]  # (unix time, value)


def window_of(p: Promotion, now: datetime.datetime) -> Window | None:
    """The run's window (None before it started)."""
    started = parse_time(p.status.get("startedAt"))
    if started is None:
        return None
    finished = parse_time(p.status.get("finishedAt")) or now
    return Window(started, max(finished, started + datetime.timedelta(seconds=1)))


def range_queries(p: Promotion) -> list[RangeQuery]:
    """The queries of the templates this run measured, filled in as the operator
    filled them: the target's name and namespace, the canary's and the stable
    predictor's names the status recorded, the champion's and then the challenger's
    for a comparison."""
    templates = {
        str(t.get("name")): t
        for t in (p.spec.get("analysis") or {}).get("templates") or ()
        if isinstance(t, Mapping) and isinstance(t.get("query"), str)
    }
    source, target = p.spec.get("source") or {}, p.spec.get("target") or {}
    canary = p.canary
    canary_name = _text(canary.get("canaryPredictor")) or None
    stable_name = _text(canary.get("stablePredictor")) or None
    queries = []
    for name in by_template(p.measurements):
        template = templates.get(name)
        if template is None:
            continue

        def promql(predictor: str | None, template: Mapping[str, Any] = template) -> str:
            values = query_values(
                target=_text(target.get("name")) or _text(source.get("name")),
                namespace=_text(target.get("namespace")),
                interval=_text(template.get("interval")) or DEFAULT_INTERVAL,
                canary=canary_name,
                stable=stable_name,
                predictor=predictor,
            )
            return fill(str(template["query"]), values)

        if isinstance(template.get("compare"), Mapping):
            queries.append(RangeQuery(name, CHAMPION, promql(stable_name)))
            queries.append(RangeQuery(name, CHALLENGER, promql(canary_name)))
        else:
            queries.append(RangeQuery(name, MEASURED, promql(None)))
    return queries


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Ranged:
    """What Prometheus answered for one template over the window: its series (both
    sides' for a comparison), or why there are none."""

    window: Window
    series: tuple[Series, ...] = ()
    error: str = ""


class Unreadable(ValueError):
    """Prometheus's answer is not a range query's result."""


def series_of(side: str, answer: Any) -> list[Series]:
    """The series of a ``/api/v1/query_range`` answer (at most :data:`SERIES`), each
    point's value a finite number (NaN and infinities are left out)."""
    data = answer.get("data") if isinstance(answer, Mapping) else None
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, Mapping) else None
        raise Unreadable(f"Prometheus refused the query: {error or 'no success status'}")
    if not isinstance(data, Mapping) or data.get("resultType") != "matrix":
        raise Unreadable("Prometheus's answer is not a range (matrix) result")
    found = []
    for result in data.get("result") or ():
        if not isinstance(result, Mapping):
            continue
        metric = result.get("metric") or {}
        points = tuple(
            point for pair in result.get("values") or () if (point := _point(pair)) is not None
        )
        labels = {str(k): str(v) for k, v in metric.items()} if isinstance(metric, Mapping) else {}
        found.append(Series(side, labels, points))
    return found[:SERIES]


def _point(pair: Any) -> tuple[float, float] | None:
    if not isinstance(pair, Sequence) or len(pair) != 2:
        return None
    try:
        moment, value = float(pair[0]), float(pair[1])
    except (TypeError, ValueError):
        return None
    return (moment, value) if math.isfinite(value) else None
