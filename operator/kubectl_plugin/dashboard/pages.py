"""The dashboard's HTML, built on the server from the objects the watch delivered.

Pure functions of :class:`~..resource.Promotion` objects, Events and ``now``; every
value from the API is escaped. A page has a static part (the heading, the
filters, the buttons) and a live part (``<div id="live">``) that the page's
script replaces with what the server pushes (:func:`list_live`,
:func:`promotion_live`), so keyboard focus on a button or a filter is never lost
to an update. The forms work without the script.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from promotion_operator.kubectl_plugin.dashboard import csrf
from promotion_operator.kubectl_plugin.dashboard.comparison_plot import (
    comparison_plot,
    is_comparison,
)
from promotion_operator.kubectl_plugin.dashboard.plot import band_of, by_template, fmt, number, plot
from promotion_operator.kubectl_plugin.dashboard.range_plot import range_plot
from promotion_operator.kubectl_plugin.dashboard.range_queries import Ranged
from promotion_operator.kubectl_plugin.render import age, history_run, human_duration
from promotion_operator.kubectl_plugin.resource import Promotion, parse_time

PHASES = (
    "Pending",
    "Validating",
    "AwaitingApproval",
    "Promoting",
    "Verifying",
    "Analyzing",
    "Paused",
    "Baking",
    "RollingBack",
    "Suspended",
    "Succeeded",
    "Failed",
    "RolledBack",
    "Aborted",
)
#: The buttons, in the order shown, with what each asks for.
ACTIONS = (
    ("approve", "Approve", "approve the run waiting for approval, as you"),
    ("resume", "Resume", "end a pause that waits for a person"),
    ("retry", "Retry", "start a new run of the same spec after a run ended"),
    ("abort", "Abort", "stop the run; what it wrote is rolled back"),
)
NONE = "-"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def promotion_path(namespace: str, name: str) -> str:
    return f"/promotions/{quote(namespace, safe='')}/{quote(name, safe='')}"


@dataclass(frozen=True)
class Filters:
    """The list's filters (empty: all)."""

    namespace: str = ""
    phase: str = ""

    def keep(self, promotion: Promotion) -> bool:
        return (not self.namespace or promotion.namespace == self.namespace) and (
            not self.phase or promotion.phase == self.phase
        )

    def query(self) -> str:
        pairs = {k: v for k, v in (("namespace", self.namespace), ("phase", self.phase)) if v}
        return f"?{urlencode(pairs)}" if pairs else ""


@dataclass(frozen=True)
class Scope:
    """What the watch covers: every namespace, or one (and why only one)."""

    namespace: str | None
    note: str = ""


def document(title: str, body: str, stream: str | None) -> str:
    """A whole page: the stylesheet and the live script are the server's own files
    (no CDN); ``stream`` is the Server-Sent Events URL of its live part."""
    stream_attr = f' data-stream="{_e(stream)}"' if stream else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · kubectl promotion dashboard</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/live.js" defer></script>'
        f'</head><body{stream_attr}><a class="skip" href="#content">Skip to content</a>'
        '<header><nav aria-label="Dashboard"><a href="/" class="home">ModelPromotions</a>'
        '<a href="/paths">PromotionPaths</a></nav></header>'
        f'<main id="content">{body}</main></body></html>\n'
    )


# --- the list -------------------------------------------------------------------


def list_page(
    promotions: Sequence[Promotion],
    now: datetime.datetime,
    filters: Filters,
    scope: Scope,
    error: str = "",
) -> str:
    namespaces = sorted({p.namespace for p in promotions} | {filters.namespace} - {""})
    body = (
        "<h1>ModelPromotions</h1>"
        f'<p class="scope">{_e(scope_text(scope))}</p>'
        '<form class="filters" method="get" action="/">'
        + _select("namespace", "Namespace", namespaces, filters.namespace, "all namespaces")
        + _select("phase", "Phase", PHASES, filters.phase, "all phases")
        + '<button type="submit">Filter</button></form>'
        + f'<div id="live" aria-live="polite">{list_live(promotions, now, filters, error)}</div>'
    )
    return document("ModelPromotions", body, f"/stream{filters.query()}")


def scope_text(scope: Scope) -> str:
    where = "every namespace" if scope.namespace is None else f"namespace {scope.namespace}"
    return f"Watching {where}." + (f" {scope.note}" if scope.note else "")


def _select(name: str, label: str, options: Iterable[str], chosen: str, everything: str) -> str:
    items = [f'<option value=""{" selected" if not chosen else ""}>{_e(everything)}</option>']
    items += [
        f'<option value="{_e(o)}"{" selected" if o == chosen else ""}>{_e(o)}</option>'
        for o in options
    ]
    return (
        f'<label for="filter-{name}">{_e(label)}</label>'
        f'<select id="filter-{name}" name="{name}">{"".join(items)}</select>'
    )


LIST_COLUMNS = (
    "Namespace",
    "Name",
    "Source",
    "Target",
    "Strategy",
    "Phase",
    "Reason",
    "Weight",
    "Age",
)


def list_live(
    promotions: Sequence[Promotion], now: datetime.datetime, filters: Filters, error: str = ""
) -> str:
    """The list's live part: the table of the promotions the filters keep."""
    shown = sorted((p for p in promotions if filters.keep(p)), key=lambda p: (p.namespace, p.name))
    alert = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    if not shown:
        return alert + '<p class="empty">No ModelPromotions to show.</p>'
    rows = []
    for p in shown:
        weight = p.canary_weight
        rows.append(
            f'<tr data-promotion="{_e(p.namespace)}/{_e(p.name)}">'
            f"<td>{_e(p.namespace)}</td>"
            f'<td><a href="{_e(promotion_path(p.namespace, p.name))}">{_e(p.name)}</a></td>'
            f"<td>{_e(p.source)}</td><td>{_e(p.target)}</td><td>{_e(p.strategy)}</td>"
            f'<td class="phase {_e(p.phase.lower())}">{_e(p.phase or NONE)}</td>'
            f"<td>{_e(p.ready_reason or NONE)}</td>"
            f'<td class="weight">{_e(f"{weight}%" if weight is not None else NONE)}</td>'
            f"<td>{_e(age(p.created, now))}</td></tr>"
        )
    head = "".join(f'<th scope="col">{c}</th>' for c in LIST_COLUMNS)
    return (
        alert + '<div class="scroll"><table class="promotions"><caption>ModelPromotions, '
        f"{len(shown)} shown</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


# --- one promotion --------------------------------------------------------------


@dataclass(frozen=True)
class Said:
    """What a button's request led to: the message, and whether it was refused."""

    message: str
    refused: bool


def promotion_page(
    p: Promotion,
    events: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
    token: str | None,
    said: Said | None = None,
    ranges: Mapping[str, Ranged] | None = None,
) -> str:
    """One promotion; ``token`` None (``--read-only``) shows no buttons; ``ranges``
    (``--prometheus-url``): each template's query over the run, by template."""
    ns, name = p.namespace, p.name
    path = promotion_path(ns, name)
    notice = said_notice(said)
    buttons = "" if token is None else _buttons(path, token)
    body = (
        f"<h1>{_e(ns)}/{_e(name)}</h1>{notice}{buttons}"
        f'<div id="live" aria-live="polite">{promotion_live(p, events, now, ranges)}</div>'
    )
    return document(f"{ns}/{name}", body, f"/stream{path}")


def said_notice(said: Said | None) -> str:
    """What a button's request led to, announced (an alert when refused)."""
    if said is None:
        return ""
    kind = "error" if said.refused else "done"
    role = "alert" if said.refused else "status"
    return f'<p class="{kind}" role="{role}">{_e(said.message)}</p>'


def _buttons(path: str, token: str) -> str:
    forms = "".join(
        f'<form method="post" action="{_e(path)}/{action}">'
        f'<input type="hidden" name="{csrf.FIELD}" value="{_e(token)}">'
        f'<button type="submit" name="action" value="{action}" title="{_e(why)}" '
        f'class="{action}">{label}</button></form>'
        for action, label, why in ACTIONS
    )
    return f'<section class="actions" aria-label="Operate the run">{forms}</section>'


def promotion_live(
    p: Promotion,
    events: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
    ranges: Mapping[str, Ranged] | None = None,
) -> str:
    """The promotion page's live part."""
    return "".join(
        (
            _overview(p, now),
            _timeline(p, events, now),
            _steps(p),
            _plots(p, ranges or {}),
            _approval(p),
            _history(p),
            _events(events, now),
        )
    )


def _dl(pairs: Iterable[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v or NONE)}</dd>" for k, v in pairs) + "</dl>"


def _overview(p: Promotion, now: datetime.datetime) -> str:
    weight = p.canary_weight
    outcome_reason, outcome_message = p.outcome
    pairs = [
        ("Source", p.source),
        ("Target", p.target),
        ("Strategy", p.strategy),
        ("Run", p.run_label),
        ("Phase", p.phase),
        ("Reason", p.ready_reason),
        ("Message", p.message),
        ("Weight", f"{weight}%" if weight is not None else ""),
        ("Age", age(p.created, now)),
    ]
    if outcome_reason:
        pairs.append(("Outcome", f"{outcome_reason}: {outcome_message}"))
    return (
        f'<section aria-labelledby="h-overview"><h2 id="h-overview">Overview</h2>'
        f'<div class="overview" data-phase="{_e(p.phase)}" '
        f'data-weight="{_e(weight if weight is not None else "")}">{_dl(pairs)}</div></section>'
    )


def _event_time(event: Mapping[str, Any]) -> datetime.datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if (moment := parse_time(event.get(key))) is not None:
            return moment
    metadata = event.get("metadata")
    return parse_time(metadata.get("creationTimestamp")) if isinstance(metadata, Mapping) else None


def _timeline(p: Promotion, events: Sequence[Mapping[str, Any]], now: datetime.datetime) -> str:
    """The run's steps in time: its start, the Events since, and its end, each with
    how long it lasted (until the next one, or until now)."""
    started = parse_time(p.status.get("startedAt"))
    finished = parse_time(p.status.get("finishedAt"))
    entries: list[tuple[datetime.datetime, str, str]] = []
    if started is not None:
        entries.append((started, "Started", f"run {p.run_label}"))
    for event in events:
        moment = _event_time(event)
        if moment is not None and (started is None or moment >= started):
            entries.append((moment, _text(event.get("reason")), _text(event.get("message"))))
    entries.sort(key=lambda e: e[0])
    if finished is not None:
        entries.append((finished, p.phase, "the run ended"))
    if not entries:
        return ""
    rows = []
    for index, (moment, what, message) in enumerate(entries):
        end = entries[index + 1][0] if index + 1 < len(entries) else (finished or now)
        lasted = human_duration((end - moment).total_seconds()) if end >= moment else NONE
        rows.append(
            f'<tr><td><time datetime="{_e(moment.isoformat())}">'
            f"{_e(moment.strftime('%H:%M:%S'))}</time></td><td>{_e(what)}</td>"
            f"<td>{_e(lasted)}</td><td>{_e(message)}</td></tr>"
        )
    return (
        '<section aria-labelledby="h-timeline"><h2 id="h-timeline">Timeline</h2>'
        '<div class="scroll"><table><thead><tr><th scope="col">At (UTC)</th>'
        '<th scope="col">What</th><th scope="col">For</th><th scope="col">Message</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _steps(p: Promotion) -> str:
    if p.strategy != "Canary":
        return ""
    plan = p.status.get("plan")
    planned = plan.get("steps") if isinstance(plan, Mapping) else None
    spec_steps = p.spec.get("canary")
    steps: list[str] = (
        [str(s) for s in planned]
        if isinstance(planned, list)
        else [
            ", ".join(f"{k} {v}" for k, v in s.items()) if isinstance(s, Mapping) else str(s)
            for s in (spec_steps.get("steps") or [] if isinstance(spec_steps, Mapping) else [])
        ]
    )
    if not steps:
        return ""
    current = p.canary_step if p.current else None
    items = []
    for index, step in enumerate(steps):
        mark = ' class="current" aria-current="step"' if index == current else ""
        label = " <strong>(current)</strong>" if index == current else ""
        items.append(f"<li{mark}>{_e(step)}{label}</li>")
    return (
        '<section aria-labelledby="h-steps"><h2 id="h-steps">Canary steps</h2>'
        f'<ol class="steps" start="0">{"".join(items)}</ol></section>'
    )


def statistic(compare: Mapping[str, Any]) -> str:
    """What a comparison's score is, in words (``spec.analysis.templates[].compare``)."""
    if "ratio" in compare:
        return "ratio"
    if "difference" in compare:
        return "difference"
    if "mannWhitney" in compare:
        return "Mann-Whitney p-value"
    distribution = compare.get("distribution")
    if isinstance(distribution, Mapping):
        return "PSI" if "maxPSI" in distribution else "chi-square p-value"
    return "score"


def _plots(p: Promotion, ranges: Mapping[str, Ranged]) -> str:
    groups = by_template(p.measurements)
    if not groups:
        return ""
    comparisons = p.comparisons
    figures = []
    for template, measurements in groups.items():
        under = _range(template, ranges.get(template))
        if template in comparisons or is_comparison(measurements):
            compare = comparisons.get(template, {})
            figures.append(_comparison(template, measurements, compare, under))
        else:
            figures.append(_measured(template, measurements, under))
    return (
        '<section aria-labelledby="h-analysis"><h2 id="h-analysis">Analysis</h2>'
        f"{''.join(figures)}</section>"
    )


def _figure(template: str, svg: str, what: str, heads: Sequence[str], rows: str, under: str) -> str:
    """A template's plot with its measurements' table beside it (under it, on a phone),
    and ``under`` them the query over the run, when Prometheus was asked."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in heads)
    return (
        f'<figure class="analysis" data-template="{_e(template)}">'
        f"<figcaption>{_e(template)}{_e(what)}</figcaption>"
        f'<div class="analysis-body">{svg}<div class="scroll"><table class="measurements">'
        f"<caption>The measurements of {_e(template)}, oldest first</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div></div>"
        f"{under}</figure>"
    )


def _range(template: str, ranged: Ranged | None) -> str:
    """The template's query over the run from Prometheus (nothing without the flag)."""
    if ranged is None:
        return ""
    note = f'<p class="note">{_e(ranged.error)}</p>' if ranged.error else ""
    drawn = range_plot(template, ranged.window, ranged.series) if ranged.series or not note else ""
    return (
        f'<div class="range" data-template="{_e(template)}"><h3>The query over the run, '
        f"from Prometheus</h3>{drawn}{note}</div>"
    )


def _measured(template: str, measurements: Sequence[Mapping[str, Any]], under: str) -> str:
    rows = "".join(
        f"<tr><td>{_at(m)}</td><td>{_e(m.get('result'))}</td>"
        f"<td>{_e(_value(m, 'value'))}</td><td>{_e(m.get('message', ''))}</td></tr>"
        for m in measurements
    )
    heads = ("At (UTC)", "Result", "Value", "Message")
    return _figure(template, plot(template, measurements), "", heads, rows, under)


def _comparison(
    template: str,
    measurements: Sequence[Mapping[str, Any]],
    compare: Mapping[str, Any],
    under: str,
) -> str:
    """Both values, the score and its band, and the verdict of each measurement."""
    named = statistic(compare)
    rows = "".join(
        f'<tr class="{_e(_text(m.get("result")).lower())}"><td>{_at(m)}</td>'
        f"<td>{_e(m.get('result'))}</td><td>{_e(_value(m, 'value'))}</td>"
        f"<td>{_e(_value(m, 'champion'))}</td><td>{_e(_value(m, 'score'))}</td>"
        f"<td>{_e(_band(m))}</td><td>{_e(m.get('message', ''))}</td></tr>"
        for m in measurements
    )
    heads = (
        "At (UTC)",
        "Verdict",
        "Challenger",
        "Champion",
        named[:1].upper() + named[1:],
        "Band",
        "Message",
    )
    return _figure(
        template,
        comparison_plot(template, measurements, named),
        f": challenger against champion, {named}",
        heads,
        rows,
        under,
    )


def _at(measurement: Mapping[str, Any]) -> str:
    """The measurement's time of day (UTC), the whole time in its ``datetime``."""
    moment = parse_time(measurement.get("at"))
    if moment is None:
        return _e(measurement.get("at") or NONE)
    return f'<time datetime="{_e(moment.isoformat())}">{moment.strftime("%H:%M:%S")}</time>'


def _value(measurement: Mapping[str, Any], key: str) -> str:
    """A recorded number to four significant digits (``-`` when absent)."""
    value = number(measurement.get(key))
    return fmt(value) if value is not None else NONE


def _band(measurement: Mapping[str, Any]) -> str:
    band = band_of([measurement])
    return band.text() if band is not None else NONE


def _approval(p: Promotion) -> str:
    if not p.approval_required:
        text = "not required"
    elif (approved := p.approved) is not None:
        text = f"approved by {approved[0]} at {approved[1]}"
    elif p.phase == "AwaitingApproval":
        text = "waiting for approval"
    else:
        text = "required"
    groups = ", ".join(p.approval_groups)
    if groups:
        text += f" (approvers: members of {groups})"
    return (
        '<section aria-labelledby="h-approval"><h2 id="h-approval">Approval</h2>'
        f'<p class="approval">{_e(text)}</p></section>'
    )


HISTORY_COLUMNS = ("Run", "Outcome", "Reason", "Started", "Finished", "Approved by")


def _history(p: Promotion) -> str:
    history = p.history
    if not history:
        return ""
    rows = "".join(
        f"<tr><td>{_e(history_run(h))}</td><td>{_e(h.get('outcome'))}</td>"
        f"<td>{_e(h.get('reason'))}</td><td>{_e(h.get('startedAt'))}</td>"
        f"<td>{_e(h.get('finishedAt'))}</td><td>{_e(h.get('approvedBy') or NONE)}</td></tr>"
        for h in history
    )
    head = "".join(f'<th scope="col">{c}</th>' for c in HISTORY_COLUMNS)
    return (
        '<section aria-labelledby="h-history"><h2 id="h-history">History</h2>'
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
        "</table></div></section>"
    )


def _events(events: Sequence[Mapping[str, Any]], now: datetime.datetime, limit: int = 20) -> str:
    if not events:
        return ""
    far = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    newest = sorted(events, key=lambda e: _event_time(e) or far, reverse=True)[:limit]
    rows = "".join(
        f'<tr class="{_e(_text(e.get("type")).lower())}"><td>{_e(e.get("type"))}</td>'
        f"<td>{_e(e.get('reason'))}</td><td>{_e(age(_event_time(e), now))}</td>"
        f"<td>{_e(e.get('count') or 1)}</td><td>{_e(e.get('message'))}</td></tr>"
        for e in newest
    )
    return (
        '<section aria-labelledby="h-events"><h2 id="h-events">Recent Events</h2>'
        '<div class="scroll"><table><thead><tr><th scope="col">Type</th>'
        '<th scope="col">Reason</th><th scope="col">Age</th><th scope="col">Count</th>'
        f'<th scope="col">Message</th></tr></thead><tbody>{rows}</tbody></table></div>'
        "</section>"
    )


def not_found_page(namespace: str, name: str, message: str) -> str:
    body = (
        f"<h1>{_e(namespace)}/{_e(name)}</h1>"
        f'<p class="error" role="alert">{_e(message)}</p><p><a href="/">All ModelPromotions</a></p>'
    )
    return document(f"{namespace}/{name}", body, None)


def error_fragment(message: str) -> str:
    return f'<p class="error" role="alert">{_e(message)}</p>'


def refused_page(message: str) -> str:
    return document("Refused", f"<h1>Refused</h1>{error_fragment(message)}", None)
