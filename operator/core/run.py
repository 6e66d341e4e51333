"""One promotion run's state, and its round trip through the resource's ``status``."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class Phase(enum.StrEnum):
    """Where a run is. ``RollingBack`` makes a half-done rollback resumable after a crash."""

    PENDING = "Pending"
    VALIDATING = "Validating"
    PROMOTING = "Promoting"
    VERIFYING = "Verifying"
    ROLLING_BACK = "RollingBack"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"


FINISHED = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK})


@dataclass(frozen=True)
class Failure:
    """A failure as the status and Events report it. The message holds no secret."""

    reason: str
    message: str
    http_status: int | None = None
    # How to handle it now; not recorded in status, so not part of its identity.
    retryable: bool = field(default=False, compare=False)
    retry_after: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PlannedChange:
    """What the run promotes (or, for a dry run, would promote)."""

    action: str  # "Create" or "Update"
    source_spec_hash: str
    images: tuple[str, ...] = ()
    model_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreviousTarget:
    """The target as it was before this run wrote it, for rollback."""

    existed: bool
    spec_hash: str | None = None
    deployment: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Run:
    """The state of the run for one generation of a ModelPromotion."""

    generation: int
    phase: Phase
    started_at: datetime.datetime
    phase_since: datetime.datetime
    source: str = ""
    target: str = ""
    attempts: int = 0
    finished_at: datetime.datetime | None = None
    plan: PlannedChange | None = None
    previous: PreviousTarget | None = None
    applied_generation: int | None = None
    applied_at: datetime.datetime | None = None
    last_error: Failure | None = None
    error_since: datetime.datetime | None = None
    outcome: Failure | None = None  # why a run failed or was rolled back
    conditions: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def moved_to(self, phase: Phase, now: datetime.datetime) -> Run:
        """This run in ``phase`` (a no-op for the phase clock if it is already there)."""
        if phase == self.phase:
            return self
        finished = now if phase in FINISHED else None
        # An error belongs to the phase that met it; moving on means it was overcome.
        return replace(
            self,
            phase=phase,
            phase_since=now,
            finished_at=finished,
            last_error=None,
            error_since=None,
        )


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, seconds precision, as Kubernetes writes times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    """The inverse of :func:`format_time` (None stays None)."""
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _failure_to_status(failure: Failure | None, since: datetime.datetime | None) -> Any:
    if failure is None:
        return None
    out: dict[str, Any] = {"reason": failure.reason, "message": failure.message}
    if failure.http_status is not None:
        out["httpStatus"] = failure.http_status
    if since is not None:
        out["since"] = format_time(since)
    return out


def _failure_from_status(data: Mapping[str, Any] | None) -> Failure | None:
    if not data:
        return None
    return Failure(data["reason"], data.get("message", ""), data.get("httpStatus"))


def to_status(run: Run) -> dict[str, Any]:
    """The run as the ``status`` of the resource (keys as the CRD declares them).

    Absent values are written as ``None`` so that a merge patch removes what a
    previous run left behind.
    """
    plan = run.plan
    previous = run.previous
    return {
        "phase": str(run.phase),
        "observedGeneration": run.generation,
        "source": run.source,
        "target": run.target,
        "attempts": run.attempts,
        "startedAt": format_time(run.started_at),
        "phaseSince": format_time(run.phase_since),
        "finishedAt": format_time(run.finished_at) if run.finished_at else None,
        "plan": None
        if plan is None
        else {
            "action": plan.action,
            "sourceSpecHash": plan.source_spec_hash,
            "images": list(plan.images),
            "modelUris": list(plan.model_uris),
        },
        "previous": None
        if previous is None
        else {
            "existed": previous.existed,
            "specHash": previous.spec_hash,
            "deployment": dict(previous.deployment) if previous.deployment else None,
        },
        "appliedGeneration": run.applied_generation,
        "appliedAt": format_time(run.applied_at) if run.applied_at else None,
        "lastError": _failure_to_status(run.last_error, run.error_since),
        "outcome": _failure_to_status(run.outcome, None),
        "conditions": [dict(c) for c in run.conditions],
    }


def from_status(status: Mapping[str, Any]) -> Run | None:
    """The run recorded in ``status``, or None if no run was recorded yet."""
    phase = status.get("phase")
    started = parse_time(status.get("startedAt"))
    generation = status.get("observedGeneration")
    if phase not in {p.value for p in Phase} or started is None or generation is None:
        return None
    plan = status.get("plan")
    previous = status.get("previous")
    last_error = status.get("lastError")
    return Run(
        generation=int(generation),
        phase=Phase(phase),
        started_at=started,
        phase_since=parse_time(status.get("phaseSince")) or started,
        source=status.get("source", ""),
        target=status.get("target", ""),
        attempts=int(status.get("attempts", 0)),
        finished_at=parse_time(status.get("finishedAt")),
        plan=None
        if not plan
        else PlannedChange(
            plan["action"],
            plan["sourceSpecHash"],
            tuple(plan.get("images") or ()),
            tuple(plan.get("modelUris") or ()),
        ),
        previous=None
        if not previous
        else PreviousTarget(
            bool(previous.get("existed")), previous.get("specHash"), previous.get("deployment")
        ),
        applied_generation=status.get("appliedGeneration"),
        applied_at=parse_time(status.get("appliedAt")),
        last_error=_failure_from_status(last_error),
        error_since=parse_time((last_error or {}).get("since")),
        outcome=_failure_from_status(status.get("outcome")),
        conditions=tuple(status.get("conditions") or ()),
    )
