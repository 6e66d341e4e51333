"""An analysis template's measurements as an SVG plot: one point per measurement
over time, the template's passing band behind them, failures drawn as crosses.

Pure: a string from the measurements (``status.canary.measurements[]`` or
``status.bake.measurements[]``). Presentation attributes only (no ``style``), so
the page's Content-Security-Policy needs no inline styles. The pieces (the time
axis, a panel's value axis, the band, the verdict marks) are shared with
:mod:`.comparison_plot`, which draws a comparison's two series and its score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from promotion_operator.kubectl_plugin.resource import parse_time

WIDTH = 640
HEIGHT = 220
# Room for the axis labels: left, right, top, bottom.
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 36
INNER_WIDTH = WIDTH - LEFT - RIGHT
PASSED, FAILED, INCONCLUSIVE, SAMPLED = "Passed", "Failed", "Inconclusive", "Sampled"
MUTED = "#57606a"


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


@dataclass(frozen=True)
class Band:
    """The template's passing values: ``low`` to ``high`` (None: unbounded)."""

    low: float | None
    high: float | None

    def text(self) -> str:
        low = fmt(self.low) if self.low is not None else "-inf"
        high = fmt(self.high) if self.high is not None else "+inf"
        return f"[{low}, {high}]"


def band_of(measurements: Sequence[Mapping[str, Any]]) -> Band | None:
    """The bounds the newest measurement recorded (the template's ``min``/``max``; a
    comparison's apply to its score)."""
    for measurement in reversed(measurements):
        low, high = number(measurement.get("min")), number(measurement.get("max"))
        if low is not None or high is not None:
            return Band(low, high)
    return None


def by_template(
    measurements: Sequence[Mapping[str, Any]],
) -> dict[str, list[Mapping[str, Any]]]:
    """The measurements grouped by template, in the order the templates first appear."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for measurement in measurements:
        template = measurement.get("template")
        groups.setdefault(template if isinstance(template, str) else "?", []).append(measurement)
    return groups


def fmt(value: float) -> str:
    return f"{value:.4g}"


class TimeAxis:
    """Where each measurement sits across the plot: by its time, or, without two
    distinct times (or with a time missing), spaced evenly."""

    def __init__(self, measurements: Sequence[Mapping[str, Any]]) -> None:
        self.times = [parse_time(m.get("at")) for m in measurements]
        self._stamps = [t.timestamp() for t in self.times if t is not None]
        self._by_time = len(self._stamps) == len(measurements) and len(set(self._stamps)) > 1
        self._first, self._last = (
            (min(self._stamps), max(self._stamps))
            if self._by_time
            else (0.0, float(max(len(measurements) - 1, 0)))
        )

    def x(self, index: int) -> float:
        position = self._stamps[index] if self._by_time else float(index)
        if self._last == self._first:
            return LEFT + INNER_WIDTH / 2
        return LEFT + (position - self._first) / (self._last - self._first) * INNER_WIDTH

    def labels(self, baseline: float) -> str:
        """The first and the last measurement's time under the plot, UTC."""
        last = len(self.times) - 1
        # The first label starts at the left edge, the last ends at the right one.
        anchors = {0: "middle"} if last == 0 else {0: "start", last: "end"} if last > 0 else {}
        return "".join(
            f'<text x="{self.x(i):.1f}" y="{baseline}" text-anchor="{anchor}" '
            f'font-size="11" fill="{MUTED}">{moment.strftime("%H:%M:%S")}</text>'
            for i, anchor in anchors.items()
            if (moment := self.times[i]) is not None
        )


@dataclass(frozen=True)
class Panel:
    """A plotting area: its place in the SVG and the values its height spans."""

    top: float
    height: float
    low: float
    high: float

    @classmethod
    def spanning(cls, top: float, height: float, values: Sequence[float]) -> Panel:
        """A panel for ``values`` with a tenth of their range to spare on each side."""
        low, high = min(values or [0.0]), max(values or [0.0])
        pad = (high - low) * 0.1 if high != low else abs(low) * 0.1 or 1.0
        return cls(top, height, low - pad, high + pad)

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def y(self, value: float) -> float:
        return self.top + (self.high - value) / (self.high - self.low) * self.height

    def frame(self, name: str) -> str:
        """The panel's outline and its highest and lowest values on the left."""
        return (
            f'<rect class="frame {name}" x="{LEFT}" y="{self.top}" width="{INNER_WIDTH}" '
            f'height="{self.height}" fill="none" stroke="{MUTED}"/>'
            + "".join(
                f'<text x="{LEFT - 6}" y="{self.y(v) + 4:.1f}" text-anchor="end" '
                f'font-size="11" fill="{MUTED}">{fmt(v)}</text>'
                for v in (self.high, self.low)
            )
        )

    def band(self, band: Band, what: str = "passing band") -> str:
        """The band behind the points, and a dashed line at each of its bounds."""
        top = self.y(band.high) if band.high is not None else self.top
        bottom = self.y(band.low) if band.low is not None else self.bottom
        parts = [
            f'<rect class="band" x="{LEFT}" y="{top:.1f}" width="{INNER_WIDTH}" '
            f'height="{max(bottom - top, 1):.1f}" fill="#2da44e" fill-opacity="0.15">'
            f"<title>{escape(what)} {escape(band.text())}</title></rect>"
        ]
        for bound, name in ((band.low, "min"), (band.high, "max")):
            if bound is not None:
                parts.append(
                    f'<line class="bound {name}" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                    f'y1="{self.y(bound):.1f}" y2="{self.y(bound):.1f}" stroke="#1a7f37" '
                    f'stroke-dasharray="4 3"/>'
                    f'<text x="{LEFT - 6}" y="{self.y(bound) + 4:.1f}" text-anchor="end" '
                    f'font-size="11" fill="#24292f">{name} {fmt(bound)}</text>'
                )
        return "".join(parts)


def trace(name: str, points: Sequence[tuple[float, float]], colour: str, dashes: str = "") -> str:
    """A line through ``points`` (nothing for fewer than two)."""
    if len(points) < 2:
        return ""
    coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dashed = f' stroke-dasharray="{dashes}"' if dashes else ""
    return (
        f'<polyline class="{name}" points="{coordinates}" fill="none" stroke="{colour}"{dashed}/>'
    )


def verdict_mark(
    measurement: Mapping[str, Any], value: float | None, px: float, panel: Panel
) -> str:
    """One measurement's verdict at ``value``: a circle when it passed, a cross when it
    failed, a hollow diamond on the axis when it was inconclusive (no value), a
    hollow square on the axis for a sample judged later. Shape, not colour alone,
    tells them apart."""
    result = str(measurement.get("result"))
    at = measurement.get("at") if isinstance(measurement.get("at"), str) else ""
    words = f"{at} {result}: " + (
        fmt(value) if value is not None else str(measurement.get("message") or "no value")
    )
    tip = f"<title>{escape(words)}</title>"
    kind = {PASSED: "passed", FAILED: "failed", SAMPLED: "sampled"}.get(result, "inconclusive")
    opening = f'<g class="point {kind}" data-at="{escape(str(at))}">'
    if kind == "sampled" and value is None:
        square = f'x="{px - 4:.1f}" y="{panel.bottom - 4:.1f}" width="8" height="8"'
        return f'{opening}{tip}<rect {square} fill="#ffffff" stroke="{MUTED}"/></g>'
    if value is None or kind == "inconclusive":
        py = panel.bottom if value is None else panel.y(value)
        d = f"M{px:.1f},{py - 5:.1f} l5,5 l-5,5 l-5,-5 z"
        return f'{opening}{tip}<path d="{d}" fill="#ffffff" stroke="{MUTED}"/></g>'
    py = panel.y(value)
    if kind == "failed":
        d = f"M{px - 5:.1f},{py - 5:.1f} l10,10 m0,-10 l-10,10"
        return f'{opening}{tip}<path d="{d}" stroke="#cf222e" stroke-width="3"/></g>'
    return f'{opening}{tip}<circle cx="{px:.1f}" cy="{py:.1f}" r="4.5" fill="#1a7f37"/></g>'


def svg_open(template: str, height: int, summary: str, kind: str) -> str:
    """The ``<svg>`` element and its accessible title."""
    title_id = f"plot-{escape(template)}-title"
    return (
        f'<svg class="plot {kind}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{title_id}" data-template="{escape(template)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{title_id}">{escape(summary)}</title>'
    )


def verdict_counts(measurements: Sequence[Mapping[str, Any]]) -> str:
    passed = sum(1 for m in measurements if m.get("result") == PASSED)
    failed = sum(1 for m in measurements if m.get("result") == FAILED)
    return f"{passed} passed, {failed} failed"


def plot(template: str, measurements: Sequence[Mapping[str, Any]]) -> str:
    """The SVG of one template's measurements (oldest first)."""
    band = band_of(measurements)
    values = [v for m in measurements if (v := number(m.get("value"))) is not None]
    bounds = [b for b in (band.low, band.high) if b is not None] if band else []
    panel = Panel.spanning(TOP, HEIGHT - TOP - BOTTOM, values + bounds)
    axis = TimeAxis(measurements)
    summary = (
        f"{len(measurements)} measurements of {template}: "
        + verdict_counts(measurements)
        + (f"; passing band {band.text()}" if band else "")
    )
    parts = [svg_open(template, HEIGHT, summary, "values"), panel.frame("values")]
    if band is not None:
        parts.append(panel.band(band))
    line = [
        (axis.x(i), panel.y(v))
        for i, m in enumerate(measurements)
        if (v := number(m.get("value"))) is not None
    ]
    parts.append(trace("trace", line, "#0969da"))
    parts += [
        verdict_mark(m, number(m.get("value")), axis.x(i), panel)
        for i, m in enumerate(measurements)
    ]
    parts.append(axis.labels(HEIGHT - 12))
    parts.append("</svg>")
    return "".join(parts)
