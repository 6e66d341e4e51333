"""PromotionPaths in the plugin: the view of a path (its stages side by side with their
freight) and the decision to promote a manual stage.

The plugin imports nothing of the operator, so the names it shares with it (the
promotion annotation, the phase a manual stage waits in) are spelled here; a unit
test checks that they are the core's.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.kubectl_plugin.render import age, human_duration
from promotion_operator.kubectl_plugin.resource import GROUP, ExitCode

PATH_PLURAL = "promotionpaths"
#: The annotation with which a person promotes a manual stage (its value: a freight ID).
PROMOTE_PREFIX = f"{GROUP}/promote-"
#: The stage phases a person's promotion applies to: soaked and waiting, or still soaking
#: (the promotion then takes effect when the soak ends).
PROMOTABLE = frozenset({"WaitingForPromotion", "Soaking"})


@dataclass(frozen=True)
class PromoteDecision:
    """What ``path promote`` does: the annotations to write (None: nothing), the message
    and the exit code."""

    annotations: Mapping[str, str] | None
    message: str
    exit_code: ExitCode


def decide_promote(path: Mapping[str, Any], stage: str) -> PromoteDecision:
    """Promote the freight that waits at ``stage`` of ``path``, if a person may now."""
    stages = {s.get("name"): s for s in (path.get("spec") or {}).get("stages") or ()}
    if stage not in stages:
        known = ", ".join(str(name) for name in stages) or "none"
        return PromoteDecision(
            None, f"no stage {stage!r} (the stages: {known})", ExitCode.NOT_FOUND
        )
    if (stages[stage].get("policy") or "auto") != "manual":
        return PromoteDecision(
            None, f"stage {stage} promotes by itself (policy auto)", ExitCode.ERROR
        )
    shown = {s.get("name"): s for s in (path.get("status") or {}).get("stages") or ()}
    current = shown.get(stage) or {}
    freight = str(current.get("freight") or "")
    phase = str(current.get("phase") or "")
    annotation = f"{PROMOTE_PREFIX}{stage}"
    if phase not in PROMOTABLE or not freight:
        return PromoteDecision(
            None,
            f"no freight waits at stage {stage} (it is {phase or 'not started'})",
            ExitCode.ERROR,
        )
    annotations = (path.get("metadata") or {}).get("annotations") or {}
    if annotations.get(annotation) == freight:
        return PromoteDecision(
            None, f"freight {freight} is already promoted to stage {stage}", ExitCode.SUCCEEDED
        )
    return PromoteDecision(
        {annotation: freight}, f"freight {freight} promoted to stage {stage}", ExitCode.SUCCEEDED
    )


@dataclass(frozen=True)
class StageView:
    """One stage as a person reads it: its spec's policy and soak, and its status."""

    name: str
    policy: str
    soak: str
    phase: str  # "" before the operator wrote the stage's status
    freight: str  # the one it waits for, runs, or ran last
    promoted: str  # the one its target carries
    since: str  # RFC 3339, when it entered the phase with that freight
    soak_until: str  # RFC 3339, while it soaks
    run: str  # the ModelPromotion of its latest run, in the path's namespace
    reason: str
    message: str


@dataclass(frozen=True)
class PathView:
    """A PromotionPath as a person reads it: its source, freight, stages and runs."""

    namespace: str
    name: str
    source: str  # namespace/name
    source_kind: str
    message: str
    freight: tuple[Mapping[str, Any], ...]  # newest first
    stages: tuple[StageView, ...]  # in the order freight moves through them
    history: tuple[Mapping[str, Any], ...]  # the latest runs, newest first

    @property
    def newest_freight(self) -> str:
        return str(self.freight[0].get("id") or "") if self.freight else ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _maps(value: Any) -> tuple[Mapping[str, Any], ...]:
    return tuple(v for v in value if isinstance(v, Mapping)) if isinstance(value, list) else ()


def path_view(path: Mapping[str, Any]) -> PathView:
    """The view of a PromotionPath object (a missing field reads as empty)."""
    metadata = path.get("metadata") or {}
    spec = path.get("spec") or {}
    status = path.get("status") or {}
    source = spec.get("source") or {}
    shown = {s.get("name"): s for s in _maps(status.get("stages"))}
    stages = []
    for stage in _maps(spec.get("stages")):
        current = shown.get(stage.get("name")) or {}
        stages.append(
            StageView(
                name=_text(stage.get("name")),
                policy=_text(stage.get("policy") or "auto"),
                soak=_text(stage.get("soak") or "0s"),
                phase=_text(current.get("phase")),
                freight=_text(current.get("freight")),
                promoted=_text(current.get("promoted")),
                since=_text(current.get("since")),
                soak_until=_text(current.get("soakUntil")),
                run=_text(current.get("run")),
                reason=_text(current.get("reason")),
                message=_text(current.get("message")),
            )
        )
    return PathView(
        namespace=_text(metadata.get("namespace")),
        name=_text(metadata.get("name")),
        source=f"{_text(source.get('namespace'))}/{_text(source.get('name'))}",
        source_kind=_text(source.get("kind") or "SeldonDeployment"),
        message=_text(status.get("message")),
        freight=_maps(status.get("freight")),
        stages=tuple(stages),
        history=_maps(status.get("history")),
    )


def render_path(path: Mapping[str, Any], now: datetime.datetime) -> str:
    """The path as a person reads it: its source and newest freight, then one line per
    stage (policy, soak, phase, the freight it works on and the one it carries)."""
    view = path_view(path)
    lines = [
        f"Name:       {view.namespace}/{view.name}",
        f"Source:     {view.source} ({view.source_kind})",
        f"Freight:    {', '.join(str(f.get('id')) for f in view.freight[:5]) or '-'}",
    ]
    if view.message:
        lines.append(f"Message:    {view.message}")
    rows = [("STAGE", "POLICY", "SOAK", "PHASE", "FREIGHT", "PROMOTED", "SINCE", "RUN")]
    for stage in view.stages:
        rows.append(
            (
                stage.name,
                stage.policy,
                stage.soak,
                stage.phase or "-",
                stage.freight or "-",
                stage.promoted or "-",
                age_of(stage.since, now),
                stage.run or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    messages = [f"  {s.name}: {s.message}" for s in view.stages if s.message]
    if messages:
        lines += ["", "Messages:", *messages]
    return "\n".join(lines)


def _moment(stamp: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def age_of(stamp: str, now: datetime.datetime) -> str:
    """How long ago the RFC 3339 ``stamp`` was, as kubectl's AGE (``-`` without one;
    the stamp itself when it cannot be read)."""
    if not stamp:
        return "-"
    moment = _moment(stamp)
    return age(moment, now) if moment is not None else stamp


def soak_left(stage: StageView, now: datetime.datetime) -> str:
    """How long the stage's soak still lasts (``""`` when it is not soaking to a time)."""
    until = _moment(stage.soak_until) if stage.soak_until else None
    if until is None:
        return ""
    return human_duration(max((until - now).total_seconds(), 0.0))
