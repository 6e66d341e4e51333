"""What a person reads about a run: the Ready and Progressing conditions, and Events.

Conditions follow the Kubernetes API conventions (type, status, reason, message,
observedGeneration, lastTransitionTime); Events are posted on phase changes and
when a new kind of error is met, never on a pass that only waited.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from promotion_operator.core.run import Phase, Run, format_time

#: The Ready reason while a run works and has met no error, by phase.
WORKING_REASONS = {
    Phase.PENDING: "Pending",
    Phase.VALIDATING: "Validating",
    Phase.PROMOTING: "Promoting",
    Phase.VERIFYING: "WaitingForAvailable",
    Phase.ANALYZING: "Analyzing",
    Phase.PAUSED: "Paused",
    Phase.BAKING: "Baking",
    Phase.ROLLING_BACK: "RollingBack",
}
#: The Ready reason of a canary paused until a person resumes it.
AWAITING_RESUME = "AwaitingResume"
#: The Ready reason of a run waiting for a person to approve it.
AWAITING_APPROVAL = "AwaitingApproval"
AWAITING_WINDOW = "AwaitingWindow"
#: The Event that records a break-glass override of a promotion window or a freeze.
BREAK_GLASS = "BreakGlass"
#: Phases whose Event is a Warning: the promotion did not (or will not) land.
_WARNING_PHASES = frozenset({Phase.FAILED, Phase.ROLLED_BACK, Phase.ROLLING_BACK, Phase.ABORTED})


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the ModelPromotion."""

    type: str  # "Normal" or "Warning"
    reason: str
    message: str


def with_conditions(run: Run, message: str, *, dry_run: bool, now: datetime.datetime) -> Run:
    """``run`` with Ready and Progressing set from its phase, error and outcome."""
    ready, ready_reason, progressing, progressing_reason = _values(run, dry_run)
    at = format_time(now)
    conditions = set_condition(
        run.conditions,
        type_="Ready",
        status=ready,
        reason=ready_reason,
        message=message,
        generation=run.generation,
        now=at,
    )
    conditions = set_condition(
        conditions,
        type_="Progressing",
        status=progressing,
        reason=progressing_reason,
        message=message,
        generation=run.generation,
        now=at,
    )
    return replace(run, conditions=tuple(conditions))


def transition_events(before: Run, after: Run) -> tuple[Event, ...]:
    """The Events the move from ``before`` to ``after`` deserves: a phase change (or a
    canary's next step), a new error."""
    events: list[Event] = []
    stepped = (
        before.canary is not None
        and after.canary is not None
        and before.canary.step != after.canary.step
    )
    if after.phase != before.phase or stepped:
        ready = find_condition(after.conditions, "Ready") or {}
        kind = "Warning" if after.phase in _WARNING_PHASES else "Normal"
        reason = str(ready.get("reason") or after.phase)
        events.append(Event(kind, reason, str(ready.get("message", ""))))
    glass = after.break_glass
    if glass is not None and before.break_glass is None:
        events.append(
            Event(
                "Warning",
                BREAK_GLASS,
                f"{glass.by} overrode {glass.overrode} with a break-glass request: "
                "the first write goes ahead",
            )
        )
    error = after.last_error
    if error is not None and (
        before.last_error is None or before.last_error.reason != error.reason
    ):
        events.append(Event("Warning", error.reason, error.message))
    return tuple(events)


def ready_reason(conditions: Sequence[dict[str, Any]]) -> str:
    """The Ready condition's reason, or "" when there is none."""
    return str((find_condition(conditions, "Ready") or {}).get("reason", ""))


def ready_message(conditions: Sequence[dict[str, Any]]) -> str:
    """The Ready condition's message, or "" when there is none."""
    return str((find_condition(conditions, "Ready") or {}).get("message", ""))


def set_condition(
    conditions: Sequence[dict[str, Any]],
    *,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Conditions with ``type_`` set; ``lastTransitionTime`` moves only when status flips."""
    value = "True" if status else "False"
    previous = find_condition(conditions, type_)
    unchanged = previous is not None and previous.get("status") == value
    condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": previous.get("lastTransitionTime", now)
        if previous is not None and unchanged
        else now,
    }
    if previous is None:
        return [*(dict(c) for c in conditions), condition]
    return [condition if c is previous else dict(c) for c in conditions]


def find_condition(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    """The condition of ``type_``, if present."""
    return next((c for c in conditions if c.get("type") == type_), None)


def _values(run: Run, dry_run: bool) -> tuple[bool, str, bool, str]:
    """(Ready, its reason, Progressing, its reason) for ``run``."""
    if run.phase == Phase.AWAITING_APPROVAL:
        return False, AWAITING_APPROVAL, False, AWAITING_APPROVAL
    if run.phase == Phase.AWAITING_WINDOW:
        # Held by a PromotionPolicy: the reason is the policy's (Frozen, ...).
        held = (run.window.reason if run.window else None) or AWAITING_WINDOW
        return False, held, False, held
    if run.phase == Phase.PAUSED and run.canary is not None and run.canary.pause_until is None:
        # Waiting on a person, not on the system: not progressing by itself.
        return False, AWAITING_RESUME, False, AWAITING_RESUME
    if run.phase in WORKING_REASONS:
        if run.last_error is not None:
            return False, run.last_error.reason, True, "Retrying"
        reason = WORKING_REASONS[run.phase]
        return False, reason, True, reason
    if run.phase == Phase.SUSPENDED:
        return False, "Suspended", False, "Suspended"
    if run.phase == Phase.SUCCEEDED:
        reason = "DryRun" if dry_run else "Succeeded"
        return True, reason, False, reason
    reason = run.outcome.reason if run.outcome else "Failed"
    if run.phase == Phase.ROLLED_BACK:
        # Ready says what happened to the target; Progressing keeps why the run stopped.
        return False, "RolledBack", False, reason
    return False, reason, False, reason
