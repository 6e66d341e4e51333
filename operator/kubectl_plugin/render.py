"""Text for people: tables as kubectl prints them, the ``get`` summary, ``watch`` lines.

Pure functions of a :class:`~.resource.Promotion` and the time ``now``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from promotion_operator.kubectl_plugin.resource import (
    ABORT_ANNOTATION,
    APPROVE_ANNOTATION,
    BAKING,
    RESUME_ANNOTATION,
    ExitCode,
    Promotion,
    format_time,
    parse_time,
)

# kubectl's tabwriter: cells padded by 3 spaces, at least 6 wide; the last one not padded.
_PADDING = 3
_MIN_WIDTH = 6
NONE = "-"


def human_duration(seconds: float) -> str:
    """A duration the way kubectl prints AGE (``k8s.io/apimachinery`` HumanDuration)."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 60 * 2:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def age(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    """How long ago ``moment`` was (``<unknown>`` without one), as kubectl's AGE."""
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns aligned as kubectl aligns them (no trailing spaces)."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [
        max(_MIN_WIDTH, max(len(line[i]) for line in lines) + _PADDING)
        for i in range(len(headers) - 1)
    ]
    out = []
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.append(("".join(cells) + line[-1]).rstrip())
    return "\n".join(out)


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


LIST_HEADERS = ("NAME", "SOURCE", "TARGET", "PHASE", "REASON", "WEIGHT", "AGE")
LIST_WIDE_HEADERS = ("STRATEGY", "RUN", "STEP", "APPROVED BY", "MESSAGE")


def list_table(
    promotions: Sequence[Promotion],
    now: datetime.datetime,
    all_namespaces: bool = False,
    wide: bool = False,
) -> str:
    """``list``: the columns of ``kubectl get mp`` (empty cells where it has none);
    ``-A`` adds NAMESPACE first, ``-o wide`` the strategy, run, canary step, approver
    and the Ready message."""
    headers = [*LIST_HEADERS, *(LIST_WIDE_HEADERS if wide else ())]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for p in sorted(promotions, key=lambda p: (p.namespace, p.name)):
        row = [
            p.name,
            p.source,
            p.target,
            p.phase,
            p.ready_reason,
            _number(p.canary_weight),
            age(p.created, now),
        ]
        if wide:
            approved = p.approved
            row += [
                p.strategy,
                p.run_label,
                _canary_step(p),
                approved[0] if approved else "",
                p.message,
            ]
        if all_namespaces:
            row.insert(0, p.namespace)
        rows.append(row)
    return table(headers, rows)


def _canary_step(p: Promotion) -> str:
    step = p.canary_step
    if step is None:
        return ""
    total = p.canary_steps
    return f"{step}/{total}" if total is not None else str(step)


def _join(values: Any) -> str:
    if not isinstance(values, list):
        return NONE
    return ",".join(str(v) for v in values) or NONE


def _cell(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


HISTORY_HEADERS = (
    "RUN",
    "OUTCOME",
    "REASON",
    "STARTED",
    "FINISHED",
    "SOURCE GEN",
    "TARGET GEN",
    "IMAGES",
)
HISTORY_WIDE_HEADERS = ("MODEL URIS", "APPROVED BY", "SOURCE", "TARGET")


def history_run(entry: Mapping[str, Any]) -> str:
    """A history entry's run, ``generation.retry``."""
    return f"{_cell(entry.get('generation'))}.{entry.get('retry') or 0}"


def history_table(entries: Sequence[Mapping[str, Any]], wide: bool = False) -> str:
    """``history``: one row per finished run, in the order given (newest first);
    ``-`` where an entry has no value."""
    headers = [*HISTORY_HEADERS, *(HISTORY_WIDE_HEADERS if wide else ())]
    rows = []
    for entry in entries:
        row = [
            history_run(entry),
            _cell(entry.get("outcome")),
            _cell(entry.get("reason")),
            _cell(entry.get("startedAt")),
            _cell(entry.get("finishedAt")),
            _cell(entry.get("sourceGeneration")),
            _cell(entry.get("targetGeneration")),
            _join(entry.get("images")),
        ]
        if wide:
            row += [
                _join(entry.get("modelUris")),
                _cell(entry.get("approvedBy")),
                _cell(entry.get("source")),
                _cell(entry.get("target")),
            ]
        rows.append(row)
    return table(headers, rows)


MEASUREMENT_HEADERS = ("TEMPLATE", "RESULT", "VALUE", "MIN", "MAX", "AT")
# With a comparison among them: both values, and the score the band applies to.
COMPARISON_HEADERS = ("TEMPLATE", "RESULT", "CHALLENGER", "CHAMPION", "SCORE", "MIN", "MAX", "AT")


def measurements_table(measurements: Sequence[Mapping[str, Any]]) -> str:
    if any("champion" in m or "score" in m for m in measurements):
        return table(
            COMPARISON_HEADERS,
            [
                [
                    _cell(m.get(key))
                    for key in ("template", "result", "value", "champion", "score")
                    + ("min", "max", "at")
                ]
                for m in measurements
            ],
        )
    rows = [
        [
            _cell(m.get("template")),
            _cell(m.get("result")),
            _cell(m.get("value")),
            _cell(m.get("min")),
            _cell(m.get("max")),
            _cell(m.get("at")),
        ]
        for m in measurements
    ]
    return table(MEASUREMENT_HEADERS, rows)


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


_LABEL_WIDTH = 14
SUMMARY_MEASUREMENTS = 5
SUMMARY_HISTORY = 3


def summary(p: Promotion, now: datetime.datetime) -> str:
    """``get``: what a person asks first, on one screen."""
    lines: list[tuple[str, str]] = [
        ("Name", p.name),
        ("Namespace", p.namespace),
        ("Source", p.source),
        ("Target", p.target),
    ]
    strategy = p.strategy
    if p.canary_steps is not None:
        strategy += f" ({p.canary_steps} steps)"
    lines.append(("Strategy", strategy))
    options = [name for name in ("dryRun", "suspend") if p.spec.get(name) is True]
    rollback = p.spec.get("rollback")
    if isinstance(rollback, Mapping) and rollback.get("onFailure") is False:
        options.append("no rollback on failure")
    if options:
        lines.append(("Options", ", ".join(options)))
    lines.append(("Approval", _approval(p)))
    lines.append(("Age", age(p.created, now)))
    if p.observed_generation is None:
        lines.append(("Run", f"none yet (generation {p.generation} not picked up by the operator)"))
    else:
        run = f"{p.run_label} (generation {p.observed_generation}, retry {p.retry})"
        if not p.current:
            run += f"; generation {p.generation} has not started yet"
        lines.append(("Run", run))
        phase = p.phase or "<none>"
        if since := p.status.get("phaseSince"):
            phase += f" since {since}"
        lines.append(("Phase", phase))
        for kind in ("Ready", "Progressing"):
            condition = p.condition(kind)
            if condition is not None:
                lines.append((kind, f"{condition.status} {condition.reason}"))
        if p.message:
            lines.append(("Message", p.message))
        for label, key in (("Started", "startedAt"), ("Finished", "finishedAt")):
            if moment := p.status.get(key):
                lines.append((label, f"{moment} ({age(parse_time(moment), now)} ago)"))
        if p.canary:
            lines.append(("Canary", _canary(p)))
        if p.bake:
            lines.append(("Bake", _bake(p)))
        error_reason, error_message = p.last_error
        if error_reason:
            lines.append(("Last error", f"{error_reason}: {error_message}"))
        outcome_reason, outcome_message = p.outcome
        if outcome_reason:
            lines.append(("Outcome", f"{outcome_reason}: {outcome_message}"))
    requests = _requests(p)
    if requests:
        lines.append(("Requests", "; ".join(requests)))
    text = "\n".join(f"{label + ':':<{_LABEL_WIDTH}}{value}" for label, value in lines)
    measurements = p.measurements
    if measurements:
        shown = measurements[-SUMMARY_MEASUREMENTS:]
        text += f"\nMeasurements (last {len(shown)} of {len(measurements)}, oldest first):\n"
        text += _indent(measurements_table(shown))
    history = p.history
    if history:
        shown = history[:SUMMARY_HISTORY]
        text += f"\nHistory (last {len(shown)} of {len(history)}; kubectl promotion history):\n"
        text += _indent(history_table(shown))
    return text


def _approval(p: Promotion) -> str:
    text = "required" if p.approval_required else "not required"
    if p.approval_groups:
        text += f" (groups: {', '.join(p.approval_groups)})"
    if approved := p.approved:
        by, at = approved
        return f"{text}; approved by {by}" + (f" at {at}" if at else "")
    if p.phase == "AwaitingApproval":
        return f"{text}; waiting for it (kubectl promotion approve {p.name})"
    return text


def _canary(p: Promotion) -> str:
    parts = []
    if (step := p.canary_step) is not None:
        total = p.canary_steps
        parts.append(f"step {step}" + (f" of {total}" if total is not None else ""))
    if (weight := p.canary_weight) is not None:
        parts.append(f"weight {weight}%")
    if until := p.canary.get("pauseUntil"):
        parts.append(f"paused until {until}")
    elif p.phase == "Paused":
        parts.append(f"paused until resumed (kubectl promotion resume {p.name})")
    return ", ".join(parts) or "<none>"


def _bake(p: Promotion) -> str:
    """``baking until 2026-03-01T12:10:00Z (started ...); error-rate 2 taken``, and the
    alerts that fired."""
    started, ends = p.bake_window
    verb = "baking until" if p.phase == BAKING else "until"
    parts = [f"{verb} {ends or '?'}" + (f" (started {started})" if started else "")]
    parts += [f"{template} {taken} taken" for template, taken in p.bake_progress]
    if fired := p.bake_alerts:
        parts.append(f"alerts fired: {', '.join(fired)}")
    return "; ".join(parts)


def _requests(p: Promotion) -> list[str]:
    out = []
    if approver := p.request(APPROVE_ANNOTATION):
        out.append(f"approval by {approver} not handled yet")
    if at := p.request(ABORT_ANNOTATION):
        out.append(f"abort asked at {at} not handled yet")
    if token := p.pending_retry:
        out.append(f"retry {token} not handled yet")
    if p.request(RESUME_ANNOTATION):
        out.append("resume not handled yet")
    return out


def watch_line(p: Promotion, now: datetime.datetime) -> str:
    """One line per change seen by ``watch``."""
    if p.observed_generation is None:
        state = "no status yet (waiting for the operator)"
    else:
        state = f"run {p.run_label}  {p.phase or '<none>'}"
        if p.ready_reason and p.ready_reason != p.phase:
            state += f" ({p.ready_reason})"
        if p.canary:
            state += f"  canary {_canary(p)}"
        if p.bake and p.phase == BAKING:
            state += f"  bake until {p.bake_window[1] or '?'}"
        if not p.current:
            state += f"  [generation {p.generation} not started yet]"
        if p.message:
            state += f": {p.message}"
    if token := p.pending_retry:
        state += f"  [retry {token} requested, not started yet]"
    return f"{format_time(now)}  {state}"


_OUTCOME_WORDS = {
    ExitCode.SUCCEEDED: "succeeded",
    ExitCode.FAILED: "failed",
    ExitCode.ROLLED_BACK: "was rolled back",
    ExitCode.ABORTED: "was aborted",
}


def outcome_line(p: Promotion, code: ExitCode) -> str:
    """The last line of ``watch`` for a finished run."""
    reason = p.ready_reason
    if code == ExitCode.ROLLED_BACK or (code == ExitCode.ABORTED and p.phase != "Aborted"):
        reason = p.outcome[0] or reason
    words = _OUTCOME_WORDS.get(code, p.phase)
    return f"{p.namespace}/{p.name}: run {p.run_label} {words} ({p.phase}, {reason})"


def dump(body: Any, output: str) -> str:
    """``-o json`` (indented as kubectl does) or ``-o yaml``."""
    if output == "json":
        return json.dumps(body, indent=4)
    return yaml.safe_dump(body, default_flow_style=False, sort_keys=False).rstrip("\n")
