"""The run's state machine: from what was observed to what to do and record.

:func:`reconcile` is one pass, and the only entry point the shell needs: it reads
the recorded run from ``status``, asks :class:`Effects` for the deployments the
phase needs, decides, performs at most one action through :class:`Effects`,
and returns the status to record, the Events to post and when to come back.
The decisions themselves (:func:`decide`, :func:`after_action`) are plain
functions over plain data.

Every transition that precedes a write is recorded before the write happens, so
a crash between the two is recovered by re-reading the target: a target
carrying this run's annotations is adopted, never written a second time.
"""

from __future__ import annotations

import datetime
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from promotion_operator.core.canary import (
    canary_deployment,
    canary_name,
    check_steps,
    describe_steps,
    fill_query,
    final_deployment,
    left_by_another_run,
    serving_predictor,
    without_canary,
    written_step,
)
from promotion_operator.core.conditions import (
    Event,
    ready_message,
    ready_reason,
    set_condition,
    transition_events,
    with_conditions,
)
from promotion_operator.core.planning import (
    PlanningError,
    PromotionRef,
    plan_promotion,
    spec_hash,
    strip_server_fields,
    written_by,
)
from promotion_operator.core.requests import APPROVE_ANNOTATION, RESUME_ANNOTATION, Requests
from promotion_operator.core.run import (
    FINISHED,
    HISTORY_LENGTH,
    ActionKind,
    CanaryState,
    Failure,
    HistoryEntry,
    Measurement,
    Phase,
    PlannedChange,
    PreviousTarget,
    Run,
    TemplateProgress,
    UnreadableStatus,
    Verdict,
    format_time,
    from_status,
    to_status,
)
from promotion_operator.core.spec import PromotionSpec, Strategy

#: Ready reason of a resource whose recorded status cannot be read back.
STATUS_UNREADABLE = "StatusUnreadable"
#: Measurements of the current analysis step kept in status.
RECENT_MEASUREMENTS = 10
# A pause that waits for a person has no deadline.
_NEVER = datetime.timedelta(days=365 * 100)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before the next pass.

    The wait equals the time already spent waiting (so the gaps double:
    0.5, 0.5, 1, 2, 4 s ...), clamped, and spread by jitter so runs that failed
    together do not retry together. A server's Retry-After is honoured as a
    minimum up to ``max_delay``; no wait reaches past the run's deadline.
    """

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
    requests: Requests = field(default_factory=Requests)  # asked through annotations
    prometheus_configured: bool = False  # analysis steps can be measured


@dataclass(frozen=True)
class Observed:
    """What the pass read from Seldon Deploy. ``None`` with no error means not found."""

    source: Mapping[str, Any] | None = None
    target: Mapping[str, Any] | None = None
    source_error: Failure | None = None
    target_error: Failure | None = None
    readings: Mapping[str, Reading] = field(default_factory=dict)  # by analysis template


class Purpose(enum.Enum):
    """Why an action writes the target."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"  # restore (or remove) what the run replaced
    CLEANUP = "cleanup"  # remove a canary an earlier generation left behind


@dataclass(frozen=True)
class Action:
    """One call to Seldon Deploy on the target (or a validation of it)."""

    kind: ActionKind
    deployment: Mapping[str, Any] | None  # None only for DELETE
    message: str  # the GitOps commit message of a write
    purpose: Purpose = Purpose.PROMOTE

    @property
    def rollback(self) -> bool:
        """Whether the write undoes something (a rollback or a cleanup)."""
        return self.purpose is not Purpose.PROMOTE


@dataclass(frozen=True)
class Step:
    """The outcome of a decision: the run to record, what to do, when to come back."""

    run: Run
    action: Action | None = None
    requeue_after: float | None = None  # None: nothing more until the spec changes
    used: tuple[str, ...] = ()  # the requests this step acted on (by name)


class Reading(NamedTuple):
    """What Prometheus answered to one analysis query: a number, or a failure."""

    value: float | None = None
    failure: Failure | None = None


class Answer(NamedTuple):
    """What Seldon Deploy answered: a deployment (None: not found / no body), or a failure."""

    deployment: Mapping[str, Any] | None = None
    failure: Failure | None = None


class Effects(Protocol):
    """A pass's window on Seldon Deploy: the two deployments of the spec, and one action."""

    def read_source(self) -> Answer:
        """The source deployment (``Answer()`` if it does not exist)."""
        ...

    def read_target(self) -> Answer:
        """The target deployment (``Answer()`` if it does not exist)."""
        ...

    def perform(self, action: Action) -> Answer:
        """Carry out ``action`` on the target; the answer is the written deployment."""
        ...

    def query(self, promql: str) -> Reading:
        """The one number ``promql`` gives now (an analysis measurement)."""
        ...


@dataclass(frozen=True)
class PassResult:
    """What one pass wants recorded and done next."""

    run: Run | None  # the run after the pass; None when the status could not be read
    status: dict[str, Any] | None  # the status to record; None: nothing changed
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None  # None: nothing more until the spec changes
    message: str = ""  # the Ready condition's message
    started: bool = False  # this pass started a run (a new generation, or a retry)
    used: tuple[str, ...] = ()  # requests acted on (or stale): remove their annotations


def reconcile(ctx: Context, status: Mapping[str, Any], effects: Effects) -> PassResult:
    """One pass of the run for ``ctx.promotion``'s generation: observe, decide, act once."""
    try:
        recorded = from_status(status)
    except UnreadableStatus as unreadable:
        generation = status.get("observedGeneration")
        older = isinstance(generation, int) and generation < ctx.promotion.generation
        if not older:
            return _unreadable(ctx, status, unreadable)
        recorded = None  # a spec change starts afresh; the old run no longer matters
    run = start_run(ctx, recorded)
    started = run is not recorded
    notes: list[Event] = []
    stale: tuple[str, ...] = ()
    if started:
        # Requests made before this run began are not for it.
        stale = ctx.requests.present()
        ctx = replace(ctx, requests=Requests(retry=ctx.requests.retry))
    elif ctx.requests.retry is not None and ctx.requests.retry != run.last_retry:
        # A retry of a run that has not ended: say so once, and never act on it later.
        run = replace(run, last_retry=ctx.requests.retry)
        notes.append(
            Event(
                "Warning",
                "RetryIgnored",
                f"retry request ignored: the run is still {run.phase}; "
                "abort it first, or wait until it ends",
            )
        )
    if is_settled(run) and not _abort_suspended(ctx, run):
        # A finished run stays finished: re-applying the same spec does nothing.
        used: tuple[str, ...] = ()
        if ctx.requests.abort is not None:
            used = ("abort",)
            notes.append(
                Event(
                    "Normal",
                    "NothingToAbort",
                    f"abort request ignored: the run already ended ({run.phase})",
                )
            )
        changed = to_status(run) if run is not recorded else None
        message = ready_message(run.conditions)
        return PassResult(run, changed, tuple(notes), None, message, started, used)

    read_source, read_target = reads_for(run.phase)
    source = effects.read_source() if read_source else Answer()
    target = effects.read_target() if read_target else Answer()
    readings = {name: effects.query(promql) for name, promql in due_queries(ctx, run)}
    observed = Observed(
        source.deployment, target.deployment, source.failure, target.failure, readings
    )
    step = decide(ctx, run, observed)
    if step.action is not None:
        done = effects.perform(step.action)
        step = after_action(ctx, step.run, step.action, done.deployment, done.failure)
    return PassResult(
        step.run,
        to_status(step.run),
        (*notes, *transition_events(run, step.run)),
        step.requeue_after,
        ready_message(step.run.conditions),
        started=started,
        used=(*stale, *step.used),
    )


def _abort_suspended(ctx: Context, run: Run) -> bool:
    return ctx.requests.abort is not None and run.phase == Phase.SUSPENDED


def _unreadable(ctx: Context, status: Mapping[str, Any], error: UnreadableStatus) -> PassResult:
    # Acting on a half-understood run could write twice or roll back the wrong thing:
    # say what is wrong and look again later, so a repaired status resumes the run.
    message = (
        f"the recorded status cannot be read ({error}); repair it "
        "(kubectl edit --subresource=status) or change the spec to start a new run"
    )
    recorded = status.get("conditions")
    conditions: list[dict[str, Any]] = (
        [c for c in recorded if isinstance(c, dict)] if isinstance(recorded, list) else []
    )
    already = ready_reason(conditions) == STATUS_UNREADABLE
    now = format_time(ctx.now)
    for type_ in ("Ready", "Progressing"):
        conditions = set_condition(
            conditions,
            type_=type_,
            status=False,
            reason=STATUS_UNREADABLE,
            message=message,
            generation=ctx.promotion.generation,
            now=now,
        )
    events = () if already else (Event("Warning", STATUS_UNREADABLE, message),)
    return PassResult(
        None, {"conditions": conditions}, events, ctx.policy.max_delay, message, started=False
    )


def start_run(ctx: Context, recorded: Run | None) -> Run:
    """The run for this generation: the recorded one, or a new one if the spec changed
    or a new retry request came for a run that ended."""
    generation = ctx.promotion.generation
    token = ctx.requests.retry
    retry = 0
    if recorded is not None and recorded.generation == generation:
        if token is None or token == recorded.last_retry or recorded.phase not in FINISHED:
            return recorded
        retry = recorded.retry + 1
    run = Run(
        generation=generation,
        phase=Phase.PENDING,
        started_at=ctx.now,
        phase_since=ctx.now,
        source=str(ctx.spec.source),
        target=str(ctx.spec.target),
        retry=retry,
        # The token in place when a run starts is handled: it never starts another.
        last_retry=token if token is not None else (recorded.last_retry if recorded else None),
        history=recorded.history if recorded else (),
        conditions=recorded.conditions if recorded else (),
    )
    message = f"promotion of {ctx.spec.source} to {ctx.spec.target} queued"
    if retry:
        message = f"retry {retry} of the {recorded.phase if recorded else ''} run: {message}"
    return with_conditions(run, message, dry_run=ctx.spec.dry_run, now=ctx.now)


def is_settled(run: Run) -> bool:
    """Whether the run needs no more passes for its generation."""
    return run.phase in FINISHED or run.phase == Phase.SUSPENDED


def reads_for(phase: Phase) -> tuple[bool, bool]:
    """Which deployments a pass in ``phase`` reads: (source, target)."""
    if phase in (Phase.PENDING, Phase.VALIDATING, Phase.PROMOTING):
        return True, True
    # Waiting for a person reads nothing: the request is in the resource itself.
    if phase in (Phase.VERIFYING, Phase.ANALYZING, Phase.ROLLING_BACK):
        return False, True
    return False, False


def due_queries(ctx: Context, run: Run) -> list[tuple[str, str]]:
    """The analysis templates to measure in this pass, with their PromQL filled in."""
    if run.phase != Phase.ANALYZING or run.canary is None:
        return []
    canary = run.canary
    return [
        (
            progress.template,
            fill_query(
                ctx.spec.templates[progress.template],
                ctx.spec,
                canary=canary.canary_predictor,
                stable=canary.stable_predictor,
            ),
        )
        for progress in canary.analysis
        if progress.due_at <= ctx.now
        and progress.template in ctx.spec.templates
        and progress.taken < ctx.spec.templates[progress.template].count
    ]


def decide(ctx: Context, run: Run, observed: Observed) -> Step:
    """The next step of ``run`` given what was just observed."""
    if is_settled(run) and not _abort_suspended(ctx, run):
        return Step(run)
    run = replace(run, attempts=run.attempts + 1)
    if ctx.requests.abort is not None:
        step = _abort(ctx, run, observed)
        done = step.run.phase in FINISHED or step.run.phase == Phase.ROLLING_BACK
        return replace(step, used=("abort",)) if done else step
    if run.phase == Phase.AWAITING_APPROVAL:
        return _await_approval(ctx, run)
    if run.phase == Phase.VERIFYING:
        return _verify(ctx, run, observed)
    if run.phase == Phase.ROLLING_BACK:
        return _roll_back(ctx, run, observed)
    if run.phase == Phase.ANALYZING:
        return _analyze(ctx, run, observed)
    if run.phase == Phase.PAUSED:
        return _pause(ctx, run)
    if run.phase == Phase.PROMOTING and run.canary is not None:
        return _canary_write(ctx, run, observed)
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
    if action.purpose is Purpose.CLEANUP:
        if failure is not None:
            return _retry_or_fail(ctx, run, failure)
        message = f"removed the canary an earlier generation left on {ctx.spec.target}"
        return _step(ctx, run, message, None, 0.0)
    if action.purpose is Purpose.ROLLBACK:
        gone = (
            action.kind == ActionKind.DELETE and failure is not None and failure.http_status == 404
        )
        if failure is not None and not gone:
            return _retry_or_fail(ctx, run, failure)
        return _rolled_back(ctx, run)
    if failure is not None:
        if action.kind == ActionKind.UPDATE and failure.http_status == 404:
            # The target vanished since it was read; the next pass creates it.
            failure = replace(failure, retryable=True)
        return _retry_or_fail(ctx, run, failure)
    if action.kind == ActionKind.VALIDATE:
        return _validated(ctx, run)
    generation = ((result or {}).get("metadata") or {}).get("generation")
    run = replace(
        run,
        applied_generation=int(generation) if generation is not None else None,
        applied_at=ctx.now,
        last_error=None,
        error_since=None,
    )
    verb = "created" if action.kind == ActionKind.CREATE else "updated"
    what = ""
    if run.canary is not None:
        index = run.canary.step
        run = replace(run, canary=replace(run.canary, weight=_weight_of(ctx, index)))
        what = f" ({_step_name(ctx, index)})"
    return _step(
        ctx,
        run.moved_to(Phase.VERIFYING, ctx.now),
        f"{verb} {ctx.spec.target}{what}; waiting for it to become Available",
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
        return _adopt(ctx, run, target)
    unreadable = _unusable_reads(ctx, run, observed)
    if unreadable is not None:
        return unreadable
    assert observed.source is not None

    canary = ctx.spec.strategy == Strategy.CANARY
    if canary and target is None:
        missing = Failure(
            "Invalid",
            f"a canary needs an existing target to keep serving beside it; "
            f"{ctx.spec.target} does not exist (promote it once with strategy Replace)",
        )
        return _finish(ctx, run, Phase.FAILED, missing)
    if target is not None and left_by_another_run(target, ctx.promotion) and ctx.spec.dry_run:
        # A dry run writes nothing: it plans against the target as the cleanup would leave it.
        target = without_canary(target)
    elif target is not None and left_by_another_run(target, ctx.promotion):
        # A spec change during a canary: take the old canary out before anything else.
        cleanup = Action(
            ActionKind.UPDATE, without_canary(target), _write_message(ctx), Purpose.CLEANUP
        )
        message = f"removing the canary an earlier generation left on {ctx.spec.target}"
        return _step(ctx, run.moved_to(Phase.VALIDATING, ctx.now), message, cleanup)

    previous = _previous_of(target)
    try:
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
        if canary:
            check_steps(ctx.spec)
            assert previous.deployment is not None
            first = next((s.set_weight for s in ctx.spec.canary_steps if s.set_weight), 1)
            checked = canary_deployment(plan, previous.deployment, first, 0)
            stable = str(serving_predictor(previous.deployment, "the target").get("name"))
            steps = describe_steps(ctx.spec, stable, canary_name({"name": stable}))
        else:
            checked, steps = plan.deployment, ()
    except PlanningError as error:
        return _finish(ctx, run, Phase.FAILED, Failure("Invalid", str(error)))
    source_generation = (observed.source.get("metadata") or {}).get("generation")
    change = PlannedChange(
        ActionKind.CREATE if target is None else ActionKind.UPDATE,
        plan.source_spec_hash,
        plan.images,
        plan.model_uris,
        steps,
        int(source_generation) if isinstance(source_generation, int) else None,
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
    validate = Action(ActionKind.VALIDATE, checked, "")
    return _step(ctx, run, f"validating the promoted deployment for {ctx.spec.target}", validate)


def _unusable_reads(ctx: Context, run: Run, observed: Observed) -> Step | None:
    """A retry (or the end of the run) when a write cannot be planned from what was read."""
    if observed.source_error is not None:
        return _retry_or_fail(ctx, run, observed.source_error)
    if observed.source is None:
        missing = Failure(
            "SourceNotFound",
            f"source deployment {ctx.spec.source} does not exist",
            http_status=404,
            retryable=True,
        )
        return _retry_or_fail(ctx, run, missing)
    if observed.target_error is not None:
        return _retry_or_fail(ctx, run, observed.target_error)
    return None


def _validated(ctx: Context, run: Run) -> Step:
    assert run.plan is not None
    summary = f"{run.plan.action.lower()} {ctx.spec.target} from {ctx.spec.source}"
    canary = ctx.spec.strategy == Strategy.CANARY
    if canary:
        summary = f"run a canary of {ctx.spec.source} on {ctx.spec.target}"
        analysed = any(step.analysis for step in ctx.spec.canary_steps)
        if analysed and not ctx.prometheus_configured:
            unset = Failure(
                "InvalidSettings",
                "the canary has analysis steps but the operator has no Prometheus "
                "(set PROMETHEUS_URL in its settings)",
            )
            return _finish(ctx, run, Phase.FAILED, unset)
    if ctx.spec.dry_run:
        return _finish(ctx, run, Phase.SUCCEEDED, None, f"dry run: would {summary}; wrote nothing")
    if ctx.spec.suspend:
        message = f"suspended before the first write: would {summary}; set spec.suspend=false"
        return _step(ctx, run.moved_to(Phase.SUSPENDED, ctx.now), message)
    if ctx.spec.approval_required and run.approved_by is None:
        waiting = run.moved_to(Phase.AWAITING_APPROVAL, ctx.now)
        return _step(ctx, waiting, _approval_wanted(ctx), None, ctx.policy.max_poll)
    return _start_writing(ctx, run, f"validated; {summary}")


def _start_writing(ctx: Context, run: Run, done: str) -> Step:
    """After validation (and approval): record the plan, then write on the next pass."""
    if ctx.spec.strategy == Strategy.CANARY:
        assert run.previous is not None and run.previous.deployment is not None
        stable = str(serving_predictor(run.previous.deployment, "the target").get("name"))
        state = CanaryState(
            step=-1,
            step_started_at=ctx.now,
            canary_predictor=canary_name({"name": stable}),
            stable_predictor=stable,
        )
        return _enter_step(ctx, replace(run, canary=state), 0, done)
    # Record the validated plan and the previous target before the write happens.
    return _step(ctx, run.moved_to(Phase.PROMOTING, ctx.now), done, None, 0.0)


def _approval_wanted(ctx: Context) -> str:
    who = (
        f"a member of {', '.join(ctx.spec.approval_groups)}"
        if ctx.spec.approval_groups
        else "an approver"
    )
    return (
        f"validated; waiting for approval by {who}: kubectl promotion approve "
        f"{ctx.promotion.name} (sets {APPROVE_ANNOTATION} to the approver's user name)"
    )


def _await_approval(ctx: Context, run: Run) -> Step:
    approver = ctx.requests.approve
    if approver is None:
        return _step(ctx, run, _approval_wanted(ctx), None, ctx.policy.max_poll)
    # The API server's admission policy let only an allowed user set it, to their name.
    run = replace(run, approved_by=approver, approved_at=ctx.now)
    step = _start_writing(ctx, run, f"approved by {approver}")
    return replace(step, used=("approve",))


def _abort(ctx: Context, run: Run, observed: Observed) -> Step:
    """Stop before the next write; undo what was written, as a failure would."""
    if run.phase == Phase.ROLLING_BACK:
        return _roll_back(ctx, run, observed)  # already undoing it
    target = observed.target
    if run.phase == Phase.PROMOTING and observed.target_error is not None:
        # Whether the write landed cannot be told yet: look again before acting.
        return _retry_or_fail(ctx, run, observed.target_error)
    written = (
        run.phase in (Phase.VERIFYING, Phase.ANALYZING, Phase.PAUSED)
        or (run.canary is not None and run.canary.weight > 0)
        or (run.phase == Phase.PROMOTING and target is not None and _ours(ctx, target, run))
    )
    if written:
        aborted = Failure("Aborted", f"aborted on request after {ctx.spec.target} was written")
        return _target_failed(ctx, run, aborted)
    nothing = Failure("Aborted", "aborted on request before anything was written")
    return _finish(ctx, run, Phase.ABORTED, nothing)


def _verify(ctx: Context, run: Run, observed: Observed) -> Step:
    if observed.target_error is not None:
        return _retry_or_fail(ctx, run, observed.target_error)
    target = observed.target
    if target is None or not _ours(ctx, target, run):
        return _target_changed(ctx, run, "verification")
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
    canary_left = run.canary is not None and run.canary.step < len(ctx.spec.canary_steps)
    if current and state == "Available" and run.canary is not None and canary_left:
        return _enter_step(ctx, run, run.canary.step + 1, f"{ctx.spec.target} is Available")
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
            return _rolled_back(ctx, run)
        kind = ActionKind.UPDATE if target is not None else ActionKind.CREATE
        restore = Action(kind, previous.deployment, message, Purpose.ROLLBACK)
        return _step(ctx, run, f"restoring the previous spec of {ctx.spec.target}", restore)
    if target is None:
        return _rolled_back(ctx, run)
    remove = Action(ActionKind.DELETE, None, message, Purpose.ROLLBACK)
    return _step(ctx, run, f"removing {ctx.spec.target}, which did not exist before", remove)


# --- canary ---------------------------------------------------------------------


def _enter_step(ctx: Context, run: Run, index: int, done: str) -> Step:
    """Move the canary to step ``index`` (``len(steps)``: the final promotion)."""
    assert run.canary is not None
    steps = ctx.spec.canary_steps
    canary = replace(run.canary, step=index, step_started_at=ctx.now, pause_until=None, analysis=())
    run = replace(run, canary=canary, last_error=None, error_since=None)
    name = _step_name(ctx, index)
    if index >= len(steps) or steps[index].set_weight is not None:
        return _step(ctx, run.moved_to(Phase.PROMOTING, ctx.now), f"{done}; {name}", None, 0.0)
    step = steps[index]
    if step.analysis:
        progress = tuple(
            TemplateProgress(
                template,
                ctx.now + datetime.timedelta(seconds=ctx.spec.templates[template].interval_seconds),
            )
            for template in step.analysis
        )
        run = replace(run, canary=replace(canary, analysis=progress))
        first = min(p.due_at for p in progress)
        return _step(
            ctx,
            run.moved_to(Phase.ANALYZING, ctx.now),
            f"{done}; {name}",
            None,
            (first - ctx.now).total_seconds(),
        )
    if step.pause_seconds is not None:
        until = ctx.now + datetime.timedelta(seconds=step.pause_seconds)
        run = replace(run, canary=replace(canary, pause_until=until))
        message = f"{done}; {name} until {format_time(until)}"
        return _step(ctx, run.moved_to(Phase.PAUSED, ctx.now), message, None, step.pause_seconds)
    return _step(
        ctx, run.moved_to(Phase.PAUSED, ctx.now), f"{done}; {name}", None, ctx.policy.max_poll
    )


def _canary_write(ctx: Context, run: Run, observed: Observed) -> Step:
    """Write the current step's weight (or, after the last step, the promoted spec)."""
    canary, recorded, stable = run.canary, run.plan, run.previous
    assert canary is not None and recorded is not None and stable is not None
    assert stable.deployment is not None
    target = observed.target
    if observed.target_error is None and target is not None and _ours(ctx, target, run):
        # This step's write landed, but the operator stopped before recording it.
        # (applied_at belongs to the previous step's write: this one's clock starts now.)
        weight = _weight_of(ctx, canary.step)
        run = replace(run, applied_at=None, canary=replace(canary, weight=weight))
        return _adopt(ctx, run, target)
    unreadable = _unusable_reads(ctx, run, observed)
    if unreadable is not None:
        return unreadable
    assert observed.source is not None
    first_write = canary.weight == 0
    if first_write and not _same_target(run.previous, _previous_of(target)):
        # The target changed between validation and the first write: validate again.
        return _before_write(ctx, run.moved_to(Phase.VALIDATING, ctx.now), observed)
    if not first_write and (target is None or not written_by(target, ctx.promotion)):
        return _target_changed(ctx, run, "the canary")
    try:
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
    except PlanningError as error:
        return _retry_or_fail(ctx, run, Failure("Invalid", str(error)))
    if plan.source_spec_hash != recorded.source_spec_hash:
        if first_write:
            return _before_write(ctx, run.moved_to(Phase.VALIDATING, ctx.now), observed)
        changed = Failure(
            "SourceChanged",
            f"{ctx.spec.source} changed during the canary; what was measured is no longer "
            "what would be promoted (change the spec to start a new run)",
        )
        return _target_failed(ctx, run, changed)
    final = canary.step >= len(ctx.spec.canary_steps)
    try:
        deployment = (
            final_deployment(plan, canary.step)
            if final
            else canary_deployment(
                plan, stable.deployment, _weight_of(ctx, canary.step), canary.step
            )
        )
    except PlanningError as error:
        return _retry_or_fail(ctx, run, Failure("Invalid", str(error)))
    message = f"{_write_message(ctx)} ({_step_name(ctx, canary.step)})"
    write = Action(ActionKind.UPDATE, deployment, message)
    return _step(ctx, run, f"{_step_name(ctx, canary.step)} in flight", write)


def _analyze(ctx: Context, run: Run, observed: Observed) -> Step:
    canary = run.canary
    assert canary is not None
    if observed.target_error is not None:
        return _retry_or_fail(ctx, run, observed.target_error)
    if observed.target is None or not _ours(ctx, observed.target, run):
        return _target_changed(ctx, run, "the analysis")
    progress: list[TemplateProgress] = []
    measured: list[Measurement] = []
    inconclusive: Failure | None = None
    for current in canary.analysis:
        reading = observed.readings.get(current.template)
        template = ctx.spec.templates.get(current.template)
        if reading is None or template is None:
            progress.append(current)
            continue
        failure = reading.failure
        if failure is not None and not failure.retryable:
            refused = Failure(
                failure.reason, f"analysis template {template.name!r}: {failure.message}"
            )
            return _target_failed(ctx, run, refused)
        if failure is not None or reading.value is None:
            failure = failure or Failure("AnalysisInconclusive", "no value", retryable=True)
            inconclusive = inconclusive or failure
            progress.append(replace(current, inconclusive=current.inconclusive + 1))
            measured.append(
                Measurement(template.name, Verdict.INCONCLUSIVE, ctx.now, message=failure.message)
            )
            continue
        value = reading.value
        passed = (template.min is None or value >= template.min) and (
            template.max is None or value <= template.max
        )
        due = ctx.now + datetime.timedelta(seconds=template.interval_seconds)
        progress.append(
            replace(
                current,
                due_at=due,
                taken=current.taken + 1,
                failed=current.failed + (0 if passed else 1),
            )
        )
        verdict = Verdict.PASSED if passed else Verdict.FAILED
        measured.append(
            Measurement(template.name, verdict, ctx.now, value, template.min, template.max)
        )
    recent = (*canary.measurements, *measured)[-RECENT_MEASUREMENTS:]
    run = replace(run, canary=replace(canary, analysis=tuple(progress), measurements=recent))
    for current in progress:
        template = ctx.spec.templates[current.template]
        if current.failed > template.failure_limit:
            last = next(m for m in reversed(recent) if m.template == template.name)
            return _target_failed(
                ctx, run, _analysis_failed(template.name, last, current, template.failure_limit)
            )
    if all(p.taken >= ctx.spec.templates[p.template].count for p in progress):
        names = ", ".join(p.template for p in progress)
        return _enter_step(ctx, run, canary.step + 1, f"analysis {names} passed")
    if inconclusive is not None:
        return _inconclusive(ctx, run, inconclusive)
    if ctx.now >= _deadline(ctx, run):
        return _target_failed(ctx, run, _no_evidence(ctx, run, run.last_error))
    run = replace(run, last_error=None, error_since=None)
    pending = [p for p in progress if p.taken < ctx.spec.templates[p.template].count]
    wait = max(0.0, (min(p.due_at for p in pending) - ctx.now).total_seconds())
    return _step(ctx, run, _analysis_message(ctx, run), None, wait)


def _inconclusive(ctx: Context, run: Run, failure: Failure) -> Step:
    """Measure again with backoff; at the deadline, never promote on missing evidence."""
    canary = run.canary
    assert canary is not None
    if ctx.now >= _deadline(ctx, run):
        return _target_failed(ctx, run, _no_evidence(ctx, run, failure))
    same = run.last_error is not None and run.last_error.reason == failure.reason
    since = run.error_since if same and run.error_since else ctx.now
    run = replace(run, last_error=failure, error_since=since)
    delay = _delay(ctx, since, poll=False)
    if failure.retry_after is not None:
        delay = max(delay, min(failure.retry_after, ctx.policy.max_delay))
    retry_at = ctx.now + datetime.timedelta(seconds=delay)
    # Inconclusive templates are due again after the backoff, not after their interval.
    analysis = tuple(
        replace(p, due_at=retry_at) if p.due_at <= ctx.now else p for p in canary.analysis
    )
    run = replace(run, canary=replace(canary, analysis=analysis))
    wait = min((p.due_at - ctx.now).total_seconds() for p in analysis)
    message = f"inconclusive measurement, measuring again: {failure.reason}: {failure.message}"
    return _step(ctx, run, message, None, max(0.0, wait))


def _pause(ctx: Context, run: Run) -> Step:
    canary = run.canary
    assert canary is not None
    if canary.pause_until is not None:
        if ctx.now >= canary.pause_until:
            return _enter_step(ctx, run, canary.step + 1, "pause over")
        wait = (canary.pause_until - ctx.now).total_seconds()
        message = f"{_step_name(ctx, canary.step)} until {format_time(canary.pause_until)}"
        return _step(ctx, run, message, None, wait)
    if ctx.requests.resume is not None:
        step = _enter_step(ctx, run, canary.step + 1, "resumed")
        return replace(step, used=("resume",))
    message = (
        f"{_step_name(ctx, canary.step)}: waiting for a person to run "
        f"kubectl annotate mp {ctx.promotion.name} {RESUME_ANNOTATION}=true"
    )
    return _step(ctx, run, message, None, ctx.policy.max_poll)


def _analysis_failed(
    name: str, last: Measurement, progress: TemplateProgress, limit: int
) -> Failure:
    if last.max is not None and last.value is not None and last.value > last.max:
        bound = f"above its max {last.max:g}"
    else:
        bound = f"below its min {last.min:g}" if last.min is not None else "out of range"
    return Failure(
        "AnalysisFailed",
        f"analysis {name!r} measured {last.value:g}, {bound} ({progress.failed} of "
        f"{progress.taken} measurements failed, {limit} tolerated)",
    )


def _no_evidence(ctx: Context, run: Run, failure: Failure | None) -> Failure:
    last = f"; last: {failure.reason}: {failure.message}" if failure else ""
    return Failure(
        "AnalysisInconclusive",
        f"the analysis of {ctx.spec.target} got no conclusive measurements before its "
        f"deadline{last}",
    )


def _analysis_message(ctx: Context, run: Run) -> str:
    assert run.canary is not None
    done = ", ".join(
        f"{p.template} {p.taken}/{ctx.spec.templates[p.template].count}"
        f"{f' ({p.failed} failed)' if p.failed else ''}"
        for p in run.canary.analysis
    )
    return f"{_step_name(ctx, run.canary.step)}: {done}"


def _step_name(ctx: Context, index: int) -> str:
    steps = ctx.spec.canary_steps
    if index >= len(steps):
        return f"step {index + 1}/{len(steps) + 1}: promoting the canary to 100%"
    step = steps[index]
    if step.set_weight is not None:
        what = f"canary at {step.set_weight}%"
    elif step.analysis:
        what = f"analysis {', '.join(step.analysis)}"
    elif step.pause_seconds is not None:
        what = f"pause {step.pause_seconds:g}s"
    else:
        what = "pause until resumed"
    return f"step {index + 1}/{len(steps) + 1}: {what}"


def _weight_of(ctx: Context, index: int) -> int:
    """The canary's weight once step ``index``'s write (if any) landed; 100 when promoted."""
    steps = ctx.spec.canary_steps
    if index >= len(steps):
        return 100
    weight = steps[index].set_weight
    if weight is not None:
        return weight
    return _weight_of(ctx, _last_write(ctx, index))


def _last_write(ctx: Context, index: int) -> int:
    """The index of the step whose write the target carries during step ``index``."""
    steps = ctx.spec.canary_steps
    if index >= len(steps):
        return index
    return max((i for i in range(index + 1) if steps[i].set_weight is not None), default=0)


def _adopt(ctx: Context, run: Run, target: Mapping[str, Any]) -> Step:
    """Our write landed, but the operator stopped before recording it: verify it."""
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


def _target_changed(ctx: Context, run: Run, during: str) -> Step:
    changed = Failure(
        "TargetChanged",
        f"{ctx.spec.target} was deleted or overwritten by someone else during {during}",
    )
    return _finish(ctx, run, Phase.FAILED, changed)


def _rolled_back(ctx: Context, run: Run) -> Step:
    if run.canary is not None:
        run = replace(run, canary=replace(run.canary, weight=0))
    return _finish(ctx, run, Phase.ROLLED_BACK, run.outcome, _rolled_back_message(ctx, run))


# --- failures and waiting ------------------------------------------------------


def _retry_or_fail(ctx: Context, run: Run, failure: Failure) -> Step:
    if failure.retryable and ctx.now < _deadline(ctx, run):
        since = (
            run.error_since if run.last_error and run.last_error.reason == failure.reason else None
        )
        run = replace(run, last_error=failure, error_since=since or ctx.now)
        delay = _delay(ctx, run.error_since or ctx.now, poll=False)
        if failure.retry_after is not None:
            # The server's wish is a minimum, but never beyond our own longest wait.
            delay = max(delay, min(failure.retry_after, ctx.policy.max_delay))
        return _step(ctx, run, f"retrying after {failure.reason}: {failure.message}", None, delay)
    if run.phase == Phase.VERIFYING:
        return _target_failed(ctx, run, _timed_out(ctx, None) if failure.retryable else failure)
    if run.canary is not None and run.canary.weight > 0 and run.phase != Phase.ROLLING_BACK:
        # A canary is on the target: take it out rather than leave it half done.
        return _target_failed(ctx, run, failure)
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
    canary = run.canary
    if canary is not None and run.phase == Phase.ANALYZING:
        step = ctx.spec.canary_steps[canary.step]
        expected = datetime.timedelta(seconds=ctx.spec.analysis_seconds(step))
        return canary.step_started_at + expected + timeout
    if canary is not None and run.phase == Phase.PAUSED:
        return canary.pause_until or canary.step_started_at + _NEVER
    if canary is not None and run.phase == Phase.PROMOTING:
        return canary.step_started_at + timeout
    if run.phase == Phase.AWAITING_APPROVAL:
        return run.phase_since + _NEVER  # a person decides when
    if run.phase == Phase.PROMOTING and run.approved_at is not None:
        return run.approved_at + timeout
    if run.phase == Phase.VERIFYING:
        return (run.applied_at or run.phase_since) + timeout
    if run.phase == Phase.ROLLING_BACK:
        return run.phase_since + timeout
    return run.started_at + timeout


def _delay(ctx: Context, since: datetime.datetime, *, poll: bool) -> float:
    policy = ctx.policy
    waited = max(0.0, (ctx.now - since).total_seconds())
    ceiling = policy.max_poll if poll else policy.max_delay
    nominal = min(ceiling, max(policy.min_delay, waited))
    return round(min(ceiling, nominal * (0.75 + 0.5 * ctx.jitter)), 3)


# --- recording ----------------------------------------------------------------


def _finish(
    ctx: Context, run: Run, phase: Phase, outcome: Failure | None, message: str | None = None
) -> Step:
    run = replace(run, outcome=outcome, last_error=None, error_since=None)
    text = message or (outcome.message if outcome else phase.value)
    step = _step(ctx, run.moved_to(phase, ctx.now), text)
    return replace(step, run=_with_history(step.run))


def _with_history(run: Run) -> Run:
    """``run`` (finished) with itself first in the history of runs."""
    plan = run.plan
    entry = HistoryEntry(
        generation=run.generation,
        retry=run.retry,
        outcome=str(run.phase),
        reason=ready_reason(run.conditions),
        started_at=run.started_at,
        finished_at=run.finished_at or run.phase_since,
        source=run.source,
        target=run.target,
        source_generation=plan.source_generation if plan else None,
        target_generation=run.applied_generation if run.phase == Phase.SUCCEEDED else None,
        images=plan.images if plan else (),
        model_uris=plan.model_uris if plan else (),
        approved_by=run.approved_by,
    )
    earlier = [e for e in run.history if (e.generation, e.retry) != (run.generation, run.retry)]
    return replace(run, history=(entry, *earlier)[:HISTORY_LENGTH])


def _step(
    ctx: Context,
    run: Run,
    message: str,
    action: Action | None = None,
    requeue_after: float | None = None,
) -> Step:
    if requeue_after is not None and not is_settled(run):
        # Come back by the deadline at the latest, so a run ends on time, whatever
        # a server asked for.
        remaining = (_deadline(ctx, run) - ctx.now).total_seconds()
        if remaining > 0:
            requeue_after = min(requeue_after, math.ceil(remaining * 1000) / 1000)
    run = with_conditions(run, message, dry_run=ctx.spec.dry_run, now=ctx.now)
    return Step(run, action, requeue_after)


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


def _ours(ctx: Context, deployment: Mapping[str, Any], run: Run | None = None) -> bool:
    """Whether ``deployment`` is this run's write (for a canary: of its current step)."""
    if not written_by(deployment, ctx.promotion):
        return False
    if run is None or run.canary is None:
        return True
    return written_step(deployment) == _last_write(ctx, run.canary.step)


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
