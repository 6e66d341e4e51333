"""PromotionPaths in the plugin: the view of a path (its stages side by side with their
freight), the requests on a stage (promote a manual stage, hold one, release it), and
what ``path watch`` follows (:class:`FreightFollowed`).

The plugin imports nothing of the operator, so the names it shares with it (the
promotion and hold annotations, the phases) are spelled here; a unit test checks
that they are the core's.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.kubectl_plugin.render import age, human_duration
from promotion_operator.kubectl_plugin.resource import (
    GROUP,
    ExitCode,
    exit_code_for,
    format_time,
)

PATH_PLURAL = "promotionpaths"
#: The annotation with which a person promotes a manual stage (its value: a freight ID).
PROMOTE_PREFIX = f"{GROUP}/promote-"
#: The stage phases a person's promotion applies to: soaked and waiting, or still soaking
#: (the promotion then takes effect when the soak ends).
PROMOTABLE = frozenset({"WaitingForPromotion", "Soaking"})
#: The annotation with which a person holds a stage (its value: JSON, who, why, when).
HOLD_PREFIX = f"{GROUP}/hold-"


@dataclass(frozen=True)
class PathDecision:
    """What a request on a path's stage does: the annotations to write (None: nothing;
    a None value removes one), the message and the exit code."""

    annotations: Mapping[str, str | None] | None
    message: str
    exit_code: ExitCode

    @property
    def patch(self) -> Mapping[str, Any] | None:
        """The merge patch that writes the annotations (None: nothing to write)."""
        if self.annotations is None:
            return None
        return {"metadata": {"annotations": dict(self.annotations)}}


def _unknown_stage(path: Mapping[str, Any], stage: str) -> PathDecision | None:
    """The refusal of a stage the path does not have (None: it has it)."""
    names = [str(s.get("name")) for s in (path.get("spec") or {}).get("stages") or ()]
    if stage in names:
        return None
    known = ", ".join(names) or "none"
    return PathDecision(None, f"no stage {stage!r} (the stages: {known})", ExitCode.NOT_FOUND)


def decide_promote(path: Mapping[str, Any], stage: str) -> PathDecision:
    """Promote the freight that waits at ``stage`` of ``path``, if a person may now."""
    if (unknown := _unknown_stage(path, stage)) is not None:
        return unknown
    stages = {s.get("name"): s for s in (path.get("spec") or {}).get("stages") or ()}
    if (stages[stage].get("policy") or "auto") != "manual":
        return PathDecision(None, f"stage {stage} promotes by itself (policy auto)", ExitCode.ERROR)
    shown = {s.get("name"): s for s in (path.get("status") or {}).get("stages") or ()}
    current = shown.get(stage) or {}
    freight = str(current.get("freight") or "")
    phase = str(current.get("phase") or "")
    annotation = f"{PROMOTE_PREFIX}{stage}"
    if phase not in PROMOTABLE or not freight:
        return PathDecision(
            None,
            f"no freight waits at stage {stage} (it is {phase or 'not started'})",
            ExitCode.ERROR,
        )
    annotations = (path.get("metadata") or {}).get("annotations") or {}
    if annotations.get(annotation) == freight:
        return PathDecision(
            None, f"freight {freight} is already promoted to stage {stage}", ExitCode.SUCCEEDED
        )
    return PathDecision(
        {annotation: freight}, f"freight {freight} promoted to stage {stage}", ExitCode.SUCCEEDED
    )


def hold_value(by: str, reason: str, at: datetime.datetime) -> str:
    """The hold annotation's value: who holds, why, and since when, as JSON."""
    return json.dumps({"by": by, "reason": reason, "at": format_time(at)}, sort_keys=True)


def _hold(path: Mapping[str, Any], stage: str) -> str | None:
    annotations = (path.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(f"{HOLD_PREFIX}{stage}")
    return value if isinstance(value, str) else None


def described_hold(value: str) -> str:
    """A hold annotation's value for a person: ``alice (INC-42)``."""
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, Mapping):
        return f"({value})" if value else "(no reason given)"
    by = str(parsed.get("by") or "someone")
    reason = str(parsed.get("reason") or "")
    return f"{by} ({reason})" if reason else by


def decide_hold(path: Mapping[str, Any], stage: str, value: str) -> PathDecision:
    """Hold ``stage``: no new run starts there until it is released. A hold already
    there is kept as it is (its author and reason are not overwritten)."""
    if (unknown := _unknown_stage(path, stage)) is not None:
        return unknown
    held = _hold(path, stage)
    if held is not None:
        return PathDecision(
            None, f"stage {stage} is already held by {described_hold(held)}", ExitCode.SUCCEEDED
        )
    return PathDecision(
        {f"{HOLD_PREFIX}{stage}": value},
        f"stage {stage} held: no new run starts there until "
        f"kubectl promotion path release {(path.get('metadata') or {}).get('name')} {stage}",
        ExitCode.SUCCEEDED,
    )


def decide_release(path: Mapping[str, Any], stage: str) -> PathDecision:
    """Release ``stage``'s hold: it starts what waits there as it would have. A hold
    left on a stage the spec no longer has is released too."""
    held = _hold(path, stage)
    if held is None:
        if (unknown := _unknown_stage(path, stage)) is not None:
            return unknown
        return PathDecision(None, f"stage {stage} is not held", ExitCode.SUCCEEDED)
    return PathDecision(
        {f"{HOLD_PREFIX}{stage}": None},
        f"stage {stage} released (it was held by {described_hold(held)})",
        ExitCode.SUCCEEDED,
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


#: Stage phases that may still move without anyone changing the path: a Blocked stage
#: after one of them may yet get a freight its upstream carries.
_MAY_MOVE = frozenset({"Running", "Soaking", "WaitingForPromotion", "Held"})


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _stages(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    stages = status.get("stages")
    return [_mapping(s) for s in stages] if isinstance(stages, list) else []


def _newest(status: Mapping[str, Any]) -> str:
    freight = status.get("freight")
    if isinstance(freight, list) and freight:
        return str(_mapping(freight[0]).get("id") or "")
    return ""


def stages_line(status: Mapping[str, Any]) -> str:
    """The stages side by side: ``dev: Succeeded 3-abc | staging: Soaking 3-abc``, with
    a stage's reason in brackets where it says more than its phase."""
    shown = []
    for stage in _stages(status):
        text = f"{stage.get('name')}: {stage.get('phase') or '-'}"
        if stage.get("freight"):
            text += f" {stage['freight']}"
        reason = stage.get("reason")
        if reason and reason not in (stage.get("phase"), "Running"):
            text += f" [{reason}]"
        shown.append(text)
    return " | ".join(shown) or "no stages yet"


@dataclass(frozen=True)
class FreightFollowed:
    """What ``path watch`` follows: the newest freight, until it has reached the last
    stage (0), a stage failed with it (the run's exit code: 1, 2 or 3), or a stage is
    Blocked with nothing before it that may still move (7)."""

    def key(self, body: Mapping[str, Any]) -> tuple[Any, ...]:
        status = _mapping(body.get("status"))
        return (
            status.get("observedGeneration"),
            _newest(status),
            status.get("message"),
            tuple(
                (
                    s.get("name"),
                    s.get("phase"),
                    s.get("freight"),
                    s.get("promoted"),
                    s.get("reason"),
                )
                for s in _stages(status)
            ),
        )

    def line(self, body: Mapping[str, Any], now: datetime.datetime) -> str:
        status = _mapping(body.get("status"))
        if not _current(body):
            return f"{format_time(now)}  no status of this spec yet (waiting for the operator)"
        line = f"{format_time(now)}  freight {_newest(status) or '-'}  {stages_line(status)}"
        if status.get("message"):
            line += f"  ({status['message']})"
        return line

    def outcome(self, body: Mapping[str, Any]) -> tuple[ExitCode, str] | None:
        status = _mapping(body.get("status"))
        newest = _newest(status)
        stages = _stages(status)
        if not _current(body) or not newest or not stages:
            return None
        shown = _shown(body)
        last = stages[-1]
        if last.get("phase") == "Succeeded" and last.get("promoted") == newest:
            return ExitCode.SUCCEEDED, f"{shown}: freight {newest} reached stage {last.get('name')}"
        for index, stage in enumerate(stages):
            phase = stage.get("phase")
            if phase == "Failed" and stage.get("freight") == newest:
                reason = str(stage.get("reason") or "Failed")
                said = f"stage {stage.get('name')} did not promote freight {newest} ({reason})"
                return exit_code_for(reason) or ExitCode.FAILED, _said(shown, said, stage)
            if phase == "Blocked" and not any(s.get("phase") in _MAY_MOVE for s in stages[:index]):
                said = f"stage {stage.get('name')} is Blocked ({stage.get('reason') or 'Blocked'})"
                return ExitCode.BLOCKED, _said(shown, said, stage)
        return None

    def waiting_for(self) -> str:
        return "the newest freight to reach the last stage"

    def where(self, body: Mapping[str, Any] | None) -> str:
        if body is None or not _current(body):
            return "the operator has not written a status of this spec yet"
        status = _mapping(body.get("status"))
        return f"freight {_newest(status) or '-'}: {stages_line(status)}"


def _current(body: Mapping[str, Any]) -> bool:
    """Whether the status is of the spec as it is now."""
    observed = _mapping(body.get("status")).get("observedGeneration")
    generation = _mapping(body.get("metadata")).get("generation")
    if not isinstance(observed, int):
        return False
    return not isinstance(generation, int) or observed >= generation


def _said(shown: str, said: str, stage: Mapping[str, Any]) -> str:
    """The last line of ``path watch``: the path, what happened, and the stage's message."""
    message = stage.get("message")
    return f"{shown}: {said}: {message}" if message else f"{shown}: {said}"


def _shown(body: Mapping[str, Any]) -> str:
    metadata = _mapping(body.get("metadata"))
    return f"{metadata.get('namespace')}/{metadata.get('name')}"
