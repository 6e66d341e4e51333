"""The run's state machine: from what was observed to what to do and record.

One reconcile pass asks :func:`reads_for` what to read, reads it, calls
:func:`decide`, performs the action it returns (at most one write), feeds the
result to :func:`after_action`, records the run in ``status`` and comes back
after ``requeue_after`` seconds. Every transition that precedes a write is
recorded before the write happens, so a crash between the two is recovered by
re-reading the target: a target carrying this run's annotations is adopted,
never written a second time.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from promotion_operator.core.conditions import set_condition
from promotion_operator.core.planning import (
    PlanningError,
    PromotionRef,
    plan_promotion,
    spec_hash,
    strip_server_fields,
    written_by,
)
from promotion_operator.core.run import (
    FINISHED,
    Failure,
    Phase,
    PlannedChange,
    PreviousTarget,
    Run,
    format_time,
)
from promotion_operator.core.spec import PromotionSpec


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before the next pass.

    The wait equals the time already spent waiting (so the gaps double:
    0.5, 0.5, 1, 2, 4 s ...), clamped, and spread by jitter so runs that failed
    together do not retry together.
    """

    fraction: float = 1.0
    min_delay: float = 0.5
    max_delay: float = 60.0
    max_poll: float = 10.0


@dataclass(frozen=True)
class Context:
    """The inputs of one pass that are not observations."""

    spec: PromotionSpec
    promotion: PromotionRef
    now: datetime.datetime
    jitter: float = 0.5  # uniform in [0, 1): supplied by the caller to keep this pure
    policy: RetryPolicy = RetryPolicy()


@dataclass(frozen=True)
class Observed:
    """What the pass read from Seldon Deploy. ``None`` with no error means not found."""

    source: Mapping[str, Any] | None = None
    target: Mapping[str, Any] | None = None
    source_error: Failure | None = None
    target_error: Failure | None = None


@dataclass(frozen=True)
class Action:
    """One call to Seldon Deploy on the target (or a validation of it)."""

    kind: str  # "Validate", "Create", "Update", "Delete"
    deployment: Mapping[str, Any] | None
    message: str
    rollback: bool = False


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the ModelPromotion."""

    type: str  # "Normal" or "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class Step:
    """The outcome of a decision: the run to record, what to do, when to come back."""

    run: Run
    action: Action | None = None
    requeue_after: float | None = None  # None: nothing more until the spec changes
    events: tuple[Event, ...] = ()


def start_run(ctx: Context, recorded: Run | None, generation: int) -> Run:
    """The run for ``generation``: the recorded one, or a new one if the spec changed."""
    if recorded is not None and recorded.generation == generation:
        return recorded
    run = Run(
        generation=generation,
        phase=Phase.PENDING,
        started_at=ctx.now,
        phase_since=ctx.now,
        source=str(ctx.spec.source),
        target=str(ctx.spec.target),
        conditions=recorded.conditions if recorded else (),
    )
    return _conditions(ctx, run, f"promotion of {ctx.spec.source} to {ctx.spec.target} queued")


def is_settled(run: Run) -> bool:
    """Whether the run needs no more passes for its generation."""
    return run.phase in FINISHED or run.phase == Phase.SUSPENDED


def reads_for(phase: Phase) -> tuple[bool, bool]:
    """Which deployments a pass in ``phase`` reads: (source, target)."""
    if phase in (Phase.PENDING, Phase.VALIDATING, Phase.PROMOTING):
        return True, True
    if phase in (Phase.VERIFYING, Phase.ROLLING_BACK):
        return False, True
    return False, False


def decide(ctx: Context, run: Run, observed: Observed) -> Step:
    """The next step of ``run`` given what was just observed."""
    if is_settled(run):
        return Step(run)
    run = replace(run, attempts=run.attempts + 1)
    if run.phase == Phase.VERIFYING:
        return _verify(ctx, run, observed)
    if run.phase == Phase.ROLLING_BACK:
        return _roll_back(ctx, run, observed)
    return _before_write(ctx, run, observed)


def after_action(
    ctx: Context,
    run: Run,
    action: Action,
    result: Mapping[str, Any] | None,
    failure: Failure | None,
) -> Step:
    """The next step once ``action`` succeeded (``result``) or failed (``failure``)."""
    if failure is None:
        run = replace(run, last_error=None, error_since=None)
    if action.rollback:
        if failure is not None and not (action.kind == "Delete" and failure.http_status == 404):
            return _retry_or_fail(ctx, run, failure)
        return _finish(ctx, run, Phase.ROLLED_BACK, run.outcome, _rolled_back_message(ctx, run))
    if failure is not None:
        if action.kind == "Update" and failure.http_status == 404:
            # The target vanished since it was read; the next pass creates it.
            failure = replace(failure, retryable=True)
        return _retry_or_fail(ctx, run, failure)
    if action.kind == "Validate":
        return _validated(ctx, run)
    generation = ((result or {}).get("metadata") or {}).get("generation")
    run = replace(
        run,
        applied_generation=int(generation) if generation is not None else None,
        applied_at=ctx.now,
        last_error=None,
        error_since=None,
    )
    verb = "created" if action.kind == "Create" else "updated"
    return _step(
        ctx,
        run.moved_to(Phase.VERIFYING, ctx.now),
        f"{verb} {ctx.spec.target}; waiting for it to become Available",
        requeue_after=_delay(ctx, run.phase_since, poll=True),
    )


# --- phases ------------------------------------------------------------------


def _before_write(ctx: Context, run: Run, observed: Observed) -> Step:
    # Adoption comes first: once written, the source no longer matters to this run.
    target = observed.target
    if (
        run.phase == Phase.PROMOTING
        and observed.target_error is None
        and target is not None
        and _ours(ctx, target)
    ):
        # Our write landed, but the operator stopped before recording it.
        generation = (target.get("metadata") or {}).get("generation")
        run = replace(
            run,
            applied_generation=int(generation) if generation is not None else None,
            applied_at=run.applied_at or ctx.now,
        )
        return _step(
            ctx,
            run.moved_to(Phase.VERIFYING, ctx.now),
            f"found this run's write on {ctx.spec.target}; verifying it",
            requeue_after=0.0,
        )

    if observed.source_error is not None:
        return _retry_or_fail(ctx, run, observed.source_error)
    if observed.source is None:
        missing = Failure(
            "SourceNotFound",
            f"source deployment {ctx.spec.source} does not exist (yet)",
            http_status=404,
            retryable=True,
        )
        return _retry_or_fail(ctx, run, missing)
    if observed.target_error is not None:
        return _retry_or_fail(ctx, run, observed.target_error)

    try:
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
    except PlanningError as error:
        return _finish(ctx, run, Phase.FAILED, Failure("Invalid", str(error)))
    previous = _previous_of(target)
    change = PlannedChange(
        "Create" if target is None else "Update",
        plan.source_spec_hash,
        plan.images,
        plan.model_uris,
    )

    if (
        run.phase == Phase.PROMOTING
        and _same_target(run.previous, previous)
        and run.plan is not None
        and run.plan.source_spec_hash == plan.source_spec_hash
    ):
        write = Action(change.action, plan.deployment, _write_message(ctx))
        run = replace(run, plan=change)
        return _step(ctx, run, f"{change.action.lower()} of {ctx.spec.target} in flight", write)

    # Validate first; a target that changed since validation is validated again.
    run = replace(run, plan=change, previous=previous).moved_to(Phase.VALIDATING, ctx.now)
    validate = Action("Validate", plan.deployment, "")
    return _step(ctx, run, f"validating the promoted deployment for {ctx.spec.target}", validate)


def _validated(ctx: Context, run: Run) -> Step:
    assert run.plan is not None
    summary = f"{run.plan.action.lower()} {ctx.spec.target} from {ctx.spec.source}"
    if ctx.spec.dry_run:
        return _finish(ctx, run, Phase.SUCCEEDED, None, f"dry run: would {summary}; wrote nothing")
    if ctx.spec.suspend:
        message = f"suspended before the first write: would {summary}; set spec.suspend=false"
        return _step(ctx, run.moved_to(Phase.SUSPENDED, ctx.now), message)
    # Record the validated plan and the previous target before the write happens.
    return _step(ctx, run.moved_to(Phase.PROMOTING, ctx.now), f"validated; {summary}", None, 0.0)


def _verify(ctx: Context, run: Run, observed: Observed) -> Step:
    if observed.target_error is not None:
        return _retry_or_fail(ctx, run, observed.target_error)
    target = observed.target
    if target is None or not _ours(ctx, target):
        changed = Failure(
            "TargetChanged",
            f"{ctx.spec.target} was deleted or overwritten by someone else during verification",
        )
        return _finish(ctx, run, Phase.FAILED, changed)
    if run.applied_generation is None:
        # The write's answer had no generation; the first read after it (carrying
        # our annotations) tells which generation our spec is.
        generation = (target.get("metadata") or {}).get("generation")
        if generation is not None:
            run = replace(run, applied_generation=int(generation))
    status = target.get("status") or {}
    state = status.get("state")
    observed_generation = status.get("observedGeneration")
    current = run.applied_generation is None or (
        observed_generation is not None and int(observed_generation) >= run.applied_generation
    )
    if current and state == "Available":
        return _finish(
            ctx,
            run,
            Phase.SUCCEEDED,
            None,
            f"{ctx.spec.target} is Available with the promoted spec",
        )
    if current and state == "Failed":
        description = status.get("description") or "no description"
        return _target_failed(
            ctx, run, Failure("TargetFailed", f"{ctx.spec.target} went Failed: {description}")
        )
    if ctx.now >= _deadline(ctx, run):
        return _target_failed(ctx, run, _timed_out(ctx, state))
    if current:
        waiting = f"waiting for {ctx.spec.target} to become Available (state {state})"
    else:
        waiting = (
            f"waiting for {ctx.spec.target}'s status to observe generation "
            f"{run.applied_generation} (GitOps sync or rollout pending; status shows "
            f"{state or 'nothing'} for generation {observed_generation})"
        )
    run = replace(run, last_error=None, error_since=None)
    return _step(ctx, run, waiting, None, _delay(ctx, run.phase_since, poll=True))


def _roll_back(ctx: Context, run: Run, observed: Observed) -> Step:
    if observed.target_error is not None:
        return _retry_or_fail(ctx, run, observed.target_error)
    target = observed.target
    previous = run.previous or PreviousTarget(existed=False)
    message = f"rollback of {ctx.promotion}: {run.outcome.reason if run.outcome else 'failure'}"
    if previous.existed and previous.deployment is None:
        # Never delete what existed before; without its spec there is nothing to restore.
        lost = Failure("RollbackFailed", f"the previous spec of {ctx.spec.target} was not recorded")
        return _finish(ctx, run, Phase.FAILED, lost)
    if previous.existed and previous.deployment is not None:
        if (
            target is not None
            and not _ours(ctx, target)
            and _spec_hash(target) == previous.spec_hash
        ):
            return _finish(ctx, run, Phase.ROLLED_BACK, run.outcome, _rolled_back_message(ctx, run))
        kind = "Update" if target is not None else "Create"
        restore = Action(kind, previous.deployment, message, rollback=True)
        return _step(ctx, run, f"restoring the previous spec of {ctx.spec.target}", restore)
    if target is None:
        return _finish(ctx, run, Phase.ROLLED_BACK, run.outcome, _rolled_back_message(ctx, run))
    remove = Action("Delete", None, message, rollback=True)
    return _step(ctx, run, f"removing {ctx.spec.target}, which did not exist before", remove)


# --- failures and waiting ------------------------------------------------------


def _retry_or_fail(ctx: Context, run: Run, failure: Failure) -> Step:
    if failure.retryable and ctx.now < _deadline(ctx, run):
        since = (
            run.error_since if run.last_error and run.last_error.reason == failure.reason else None
        )
        run = replace(run, last_error=failure, error_since=since or ctx.now)
        delay = _delay(ctx, run.error_since or ctx.now, poll=False)
        if failure.retry_after is not None:
            delay = max(delay, failure.retry_after)
        return _step(ctx, run, f"retrying after {failure.reason}: {failure.message}", None, delay)
    if run.phase == Phase.VERIFYING:
        return _target_failed(ctx, run, _timed_out(ctx, None) if failure.retryable else failure)
    if run.phase == Phase.ROLLING_BACK:
        cause = run.outcome.reason if run.outcome else "a failure"
        rollback_failed = Failure(
            "RollbackFailed",
            f"could not roll back {ctx.spec.target} after {cause}: {failure.message}",
            failure.http_status,
        )
        return _finish(ctx, run, Phase.FAILED, rollback_failed)
    return _finish(ctx, run, Phase.FAILED, failure)


def _target_failed(ctx: Context, run: Run, failure: Failure) -> Step:
    if ctx.spec.rollback_on_failure:
        run = replace(run, outcome=failure, last_error=None, error_since=None)
        message = f"{failure.message}; rolling back"
        return _step(ctx, run.moved_to(Phase.ROLLING_BACK, ctx.now), message, None, 0.0)
    return _finish(ctx, run, Phase.FAILED, failure)


def _timed_out(ctx: Context, state: str | None) -> Failure:
    return Failure(
        "VerificationTimedOut",
        f"{ctx.spec.target} did not become Available with the promoted spec within "
        f"{ctx.spec.timeout_seconds:g}s (last state: {state or 'unknown'})",
    )


def _deadline(ctx: Context, run: Run) -> datetime.datetime:
    timeout = datetime.timedelta(seconds=ctx.spec.timeout_seconds)
    if run.phase == Phase.VERIFYING:
        return (run.applied_at or run.phase_since) + timeout
    if run.phase == Phase.ROLLING_BACK:
        return run.phase_since + timeout
    return run.started_at + timeout


def _delay(ctx: Context, since: datetime.datetime, *, poll: bool) -> float:
    policy = ctx.policy
    waited = max(0.0, (ctx.now - since).total_seconds())
    ceiling = policy.max_poll if poll else policy.max_delay
    nominal = min(ceiling, max(policy.min_delay, policy.fraction * waited))
    return round(min(ceiling, nominal * (0.75 + 0.5 * ctx.jitter)), 3)


# --- recording ----------------------------------------------------------------


def _finish(
    ctx: Context, run: Run, phase: Phase, outcome: Failure | None, message: str | None = None
) -> Step:
    run = replace(run, outcome=outcome, last_error=None, error_since=None)
    text = message or (outcome.message if outcome else phase.value)
    return _step(ctx, run.moved_to(phase, ctx.now), text)


def _step(
    ctx: Context,
    run: Run,
    message: str,
    action: Action | None = None,
    requeue_after: float | None = None,
) -> Step:
    return Step(_conditions(ctx, run, message), action, requeue_after)


def with_events(before: Run, step: Step) -> Step:
    """``step`` with the Events its transition deserves (phase changes, new errors)."""
    after = step.run
    events: list[Event] = []
    ready = next((c for c in after.conditions if c.get("type") == "Ready"), {})
    if after.phase != before.phase:
        warning = after.phase in (Phase.FAILED, Phase.ROLLED_BACK, Phase.ROLLING_BACK)
        reason = str(ready.get("reason") or after.phase)
        events.append(Event("Warning" if warning else "Normal", reason, ready.get("message", "")))
    error = after.last_error
    if error is not None and (
        before.last_error is None or before.last_error.reason != error.reason
    ):
        events.append(Event("Warning", error.reason, error.message))
    return replace(step, events=tuple(events))


def _conditions(ctx: Context, run: Run, message: str) -> Run:
    ready, ready_reason, progressing, progressing_reason = _condition_values(ctx, run)
    now = format_time(ctx.now)
    conditions = set_condition(
        run.conditions,
        type_="Ready",
        status=ready,
        reason=ready_reason,
        message=message,
        generation=run.generation,
        now=now,
    )
    conditions = set_condition(
        conditions,
        type_="Progressing",
        status=progressing,
        reason=progressing_reason,
        message=message,
        generation=run.generation,
        now=now,
    )
    return replace(run, conditions=tuple(conditions))


_WORKING_REASONS = {
    Phase.PENDING: "Pending",
    Phase.VALIDATING: "Validating",
    Phase.PROMOTING: "Promoting",
    Phase.VERIFYING: "WaitingForAvailable",
    Phase.ROLLING_BACK: "RollingBack",
}


def _condition_values(ctx: Context, run: Run) -> tuple[bool, str, bool, str]:
    if run.phase in _WORKING_REASONS:
        if run.last_error is not None:
            return False, run.last_error.reason, True, "Retrying"
        reason = _WORKING_REASONS[run.phase]
        return False, reason, True, reason
    if run.phase == Phase.SUSPENDED:
        return False, "Suspended", False, "Suspended"
    if run.phase == Phase.SUCCEEDED:
        reason = "DryRun" if ctx.spec.dry_run else "Succeeded"
        return True, reason, False, reason
    reason = run.outcome.reason if run.outcome else "Failed"
    if run.phase == Phase.ROLLED_BACK:
        # Ready says what happened to the target; Progressing keeps why the run stopped.
        return False, "RolledBack", False, reason
    return False, reason, False, reason


def _rolled_back_message(ctx: Context, run: Run) -> str:
    cause = run.outcome
    what = "restored its previous spec" if run.previous and run.previous.existed else "removed it"
    because = f"{cause.reason}: {cause.message}" if cause else "a failure"
    return f"rolled back {ctx.spec.target} ({what}) after {because}"


def _write_message(ctx: Context) -> str:
    if ctx.spec.gitops_message:
        return ctx.spec.gitops_message
    return (
        f"Promote {ctx.spec.source} to {ctx.spec.target} "
        f"(ModelPromotion {ctx.promotion}, generation {ctx.promotion.generation})"
    )


def _ours(ctx: Context, deployment: Mapping[str, Any]) -> bool:
    return written_by(deployment, ctx.promotion)


def _spec_hash(deployment: Mapping[str, Any]) -> str:
    return spec_hash(deployment.get("spec") or {})


def _previous_of(target: Mapping[str, Any] | None) -> PreviousTarget:
    if target is None:
        return PreviousTarget(existed=False)
    return PreviousTarget(True, _spec_hash(target), strip_server_fields(target))


def _same_target(recorded: PreviousTarget | None, now: PreviousTarget) -> bool:
    return (
        recorded is not None
        and recorded.existed == now.existed
        and recorded.spec_hash == now.spec_hash
    )
