"""The run's state machine: from what was observed to what to do and record.

:func:`reconcile` is one pass, and the only entry point the shell needs: it reads
the recorded run from ``status``, asks :class:`~promotion_operator.core.pass_io.Effects`
for the deployments (and measurements) the phase needs, decides, performs at most
one action through them, and returns the status to record, the Events to post and
when to come back. The decisions themselves (:func:`decide`, :func:`after_action`)
are plain functions over plain data.

This module holds the phases every strategy shares (validation, approval, abort,
verification, the bake, rollback);
they reach the strategy only through :class:`~promotion_operator.core.strategy.PromotionStrategy`,
which :func:`~promotion_operator.core.strategies.strategy_for` picks. The strategies
are in :mod:`promotion_operator.core.strategies`; :mod:`transitions` holds the
building blocks all of them use.

Every transition that precedes a write is recorded before the write happens, so
a crash between the two is recovered by re-reading the target: a target
carrying this run's annotations is adopted, never written a second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from promotion_operator.core.baking import (
    alert_labels,
    bake_pass,
    check_bake,
    describe,
    start_bake,
    without_prometheus,
)
from promotion_operator.core.baking import due_queries as bake_queries
from promotion_operator.core.canary_stepping import due_queries
from promotion_operator.core.canary_steps import step_name, weight_of
from promotion_operator.core.conditions import (
    Event,
    ready_message,
    ready_reason,
    set_condition,
    transition_events,
    with_conditions,
)
from promotion_operator.core.kinds import readiness, ready_word, server_validates
from promotion_operator.core.pass_io import (
    Action,
    Answer,
    Context,
    Decision,
    Effects,
    Observed,
    PassResult,
    Purpose,
)
from promotion_operator.core.pipeline_models import (
    model_written,
    models_written,
    same_models,
    undo_models,
    with_landed_models,
)
from promotion_operator.core.planning import PlanningError
from promotion_operator.core.requests import (
    APPROVE_ANNOTATION,
    Requests,
    consumed_by,
    used_before,
)
from promotion_operator.core.run import (
    FINISHED,
    ActionKind,
    Failure,
    Phase,
    PlannedChange,
    PreviousTarget,
    Run,
    UnreadableStatus,
    consumed_cleared,
    format_time,
    from_status,
    to_status,
)
from promotion_operator.core.strategies import strategy_for
from promotion_operator.core.strategy import PromotionStrategy
from promotion_operator.core.transitions import (
    adopt,
    backoff,
    deadline,
    decision,
    deployment_hash,
    finish,
    is_ours,
    is_settled,
    previous_of,
    retry_or_fail,
    rolled_back,
    same_target,
    target_changed,
    target_failed,
    timed_out,
    unusable_reads,
)

#: Ready reason of a resource whose recorded status cannot be read back.
STATUS_UNREADABLE = "StatusUnreadable"


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
    # A request the recorded status says was used is still there only because the pass
    # that used it stopped before removing its annotation: remove it, never act again.
    asked = ctx.requests
    used_already = used_before(asked, dict(recorded.consumed) if recorded else {})
    ctx = replace(ctx, requests=asked.without(used_already))
    run = start_run(ctx, recorded)
    started = run is not recorded
    # Writes carry the run (generation and retry), so a retry never takes the write
    # of the run before it for its own.
    ctx = replace(ctx, promotion=replace(ctx.promotion, retry=run.retry))
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
        run, used = _consuming(asked, run, (*used_already, *used))
        changed = (
            None
            if recorded is not None and to_status(run) == to_status(recorded)
            else to_status(run)
        )
        message = ready_message(run.conditions)
        return _removing(PassResult(run, changed, tuple(notes), None, message, started, used))

    read_source, read_target = reads_for(run.phase)
    source = effects.read_source() if read_source else Answer()
    target = effects.read_target() if read_target else Answer()
    readings = {
        (query.template, query.side): effects.query(query.promql, query.by)
        for query in (*due_queries(ctx, run), *bake_queries(ctx, run))
    }
    labels = alert_labels(ctx, run)
    alerts = effects.firing_alerts(labels) if labels is not None else None
    beside = strategy_for(ctx.spec).read(ctx, run, source, effects)
    observed = Observed(
        source.deployment,
        target.deployment,
        source.failure,
        target.failure,
        readings,
        alerts,
        source_models=beside.source_models,
        models=beside.models,
        canary=beside.canary,
        experiment=beside.experiment,
    )
    decided = decide(ctx, run, observed)
    used = decided.used  # acted on by the decision, whatever the action's answer
    if decided.action is not None:
        done = effects.perform(decided.action)
        decided = after_action(ctx, decided.run, decided.action, done.deployment, done.failure)
    after, all_used = _consuming(
        asked,
        decided.run,
        (*used_already, *stale, *used, *(name for name in decided.used if name not in used)),
    )
    return _removing(
        PassResult(
            after,
            None if _only_counted(recorded, after) else to_status(after),
            (*notes, *transition_events(run, after)),
            decided.requeue_after,
            ready_message(after.conditions),
            started=started,
            used=all_used,
        )
    )


def _consuming(asked: Requests, run: Run, used: tuple[str, ...]) -> tuple[Run, tuple[str, ...]]:
    """The run recording the requests ``used`` (as read from the annotations, ``asked``) in
    ``consumedRequests``, the record of any other dropped: its annotation is gone or holds
    a new request. Recorded in the pass's status write, before the annotations go."""
    consumed = consumed_by(asked, used)
    return replace(run, consumed=consumed), tuple(name for name, _ in consumed)


def _removing(result: PassResult) -> PassResult:
    """``result`` with the status patch the shell writes once it removed the annotations
    of the requests the pass used (none used: nothing to clear)."""
    return replace(result, after_removal=consumed_cleared() if result.used else None)


def _only_counted(recorded: Run | None, after: Run) -> bool:
    """Whether the pass changed nothing of the recorded run but its own count (a poll
    that saw the same state again): such a pass writes nothing, so waiting costs no
    status writes."""
    if recorded is None:
        return False
    return to_status(replace(after, attempts=recorded.attempts)) == to_status(recorded)


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


def at_rest(generation: int, status: Mapping[str, Any], requests: Requests) -> bool:
    """Whether a resource needs no pass: its run for ``generation`` is settled and
    nobody asks anything of it (a retry token already acted on does not count)."""
    if requests.present() or status.get("observedGeneration") != generation:
        return False
    if status.get("consumedRequests"):
        return False  # a record of used requests is left to clear (requests.py)
    phase = status.get("phase")
    settled = phase == Phase.SUSPENDED.value or any(phase == p.value for p in FINISHED)
    # A new retry token starts a run (or, on a suspended one, is said to be ignored).
    return settled and requests.retry in (None, status.get("lastRetry"))


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
        source=ctx.spec.source.described,
        target=ctx.spec.target.described,
        retry=retry,
        # The token in place when a run starts is handled: it never starts another.
        last_retry=token if token is not None else (recorded.last_retry if recorded else None),
        history=recorded.history if recorded else (),
        conditions=recorded.conditions if recorded else (),
    )
    message = f"promotion of {ctx.spec.source.described} to {ctx.spec.target.described} queued"
    if retry:
        message = f"retry {retry} of the {recorded.phase if recorded else ''} run: {message}"
    return with_conditions(run, message, dry_run=ctx.spec.dry_run, now=ctx.now)


def reads_for(phase: Phase) -> tuple[bool, bool]:
    """Which deployments a pass in ``phase`` reads: (source, target)."""
    if phase in (Phase.PENDING, Phase.VALIDATING, Phase.PROMOTING):
        return True, True
    # Waiting for a person reads nothing: the request is in the resource itself.
    if phase in (Phase.VERIFYING, Phase.ANALYZING, Phase.BAKING, Phase.ROLLING_BACK):
        return False, True
    return False, False


def decide(ctx: Context, run: Run, observed: Observed) -> Decision:
    """The decision for ``run`` given what was just observed."""
    if is_settled(run) and not _abort_suspended(ctx, run):
        return Decision(run)
    run = replace(run, attempts=run.attempts + 1)
    if ctx.requests.abort is not None:
        decided = _abort(ctx, run, observed)
        done = decided.run.phase in FINISHED or decided.run.phase == Phase.ROLLING_BACK
        return replace(decided, used=("abort",)) if done else decided
    if run.phase == Phase.AWAITING_APPROVAL:
        return _await_approval(ctx, run)
    if run.phase == Phase.VERIFYING:
        return _verify(ctx, run, observed)
    if run.phase == Phase.BAKING:
        return bake_pass(ctx, run, observed)
    if run.phase == Phase.ROLLING_BACK:
        return _roll_back(ctx, run, observed)
    strategy = strategy_for(ctx.spec)
    own = strategy.proceed(ctx, run, observed)
    return own if own is not None else _before_write(ctx, run, observed, strategy)


def after_action(
    ctx: Context,
    run: Run,
    action: Action,
    result: Mapping[str, Any] | None,
    failure: Failure | None,
) -> Decision:
    """The decision once ``action`` succeeded (``result``) or failed (``failure``)."""
    if failure is None:
        run = replace(run, last_error=None, error_since=None)
    if action.purpose is Purpose.CLEANUP:
        gone = (
            failure is not None and failure.http_status == 404 and action.kind != ActionKind.UPDATE
        )
        if failure is not None and not gone:
            return retry_or_fail(ctx, run, failure)
        message = f"removed the canary an earlier generation left on {ctx.spec.target.described}"
        return decision(ctx, run, message, None, 0.0)
    if action.purpose is Purpose.ROLLBACK:
        gone = (
            action.kind in (ActionKind.DELETE, ActionKind.REMOVE)
            and failure is not None
            and failure.http_status == 404
        )
        if failure is not None and not gone:
            return retry_or_fail(ctx, run, failure)
        beside = action.model or action.pipeline or action.kind == ActionKind.REMOVE
        if beside or models_written(run):
            # More may be left to undo (the target, the Models): each is seen again first.
            return decision(ctx, run, "rolling back: seeing what is left to undo", None, 0.0)
        return rolled_back(ctx, run)
    if action.model is not None:
        return model_written(ctx, run, action, failure)
    own = strategy_for(ctx.spec).done(ctx, run, action, result, failure)
    if own is not None:
        return own
    if failure is not None:
        if action.kind == ActionKind.UPDATE and failure.http_status == 404:
            # The target vanished since it was read; the next pass creates it.
            failure = replace(failure, retryable=True)
        return retry_or_fail(ctx, run, failure)
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
        run = replace(
            run, canary=replace(run.canary, weight=weight_of(ctx.spec.canary_steps, index))
        )
        what = f" ({step_name(ctx.spec.canary_steps, index)})"
    return decision(
        ctx,
        run.moved_to(Phase.VERIFYING, ctx.now),
        f"{verb} {ctx.spec.target.described}{what}; waiting for it to become "
        f"{ready_word(ctx.spec.target.kind)}",
        requeue_after=backoff(ctx, run.phase_since, poll=True),
    )


def _before_write(
    ctx: Context, run: Run, observed: Observed, strategy: PromotionStrategy
) -> Decision:
    # Adoption comes first: once written, the source no longer matters to this run.
    target = observed.target
    if (
        run.phase == Phase.PROMOTING
        and observed.target_error is None
        and target is not None
        and is_ours(ctx, target)
    ):
        return adopt(ctx, run, target)
    unreadable = unusable_reads(ctx, run, observed)
    if unreadable is not None:
        return unreadable
    assert observed.source is not None
    if observed.failed_read is not None:
        return retry_or_fail(ctx, run, observed.failed_read)
    first, target = strategy.clear(ctx, run, observed)
    if first is not None:
        return first
    previous = previous_of(target)
    try:
        planned = strategy.plan(ctx, run, observed, previous)
        check_bake(ctx.spec)
    except PlanningError as error:
        return finish(ctx, run, Phase.FAILED, Failure("Invalid", str(error)))
    if isinstance(planned, Failure):
        return retry_or_fail(ctx, run, planned)
    plan, models, checked, steps = planned
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
        and same_target(run.previous, previous)
        and run.plan is not None
        and run.plan.source_spec_hash == plan.source_spec_hash
        and same_models(run.models, models)
    ):
        run = replace(run, plan=change, models=tuple(m.dependency for m in models))
        return strategy.write(ctx, run, planned, observed)

    # Validate first; a target that changed since validation is validated again, and
    # an approval given for the plan that changed is asked for again.
    if run.phase == Phase.PROMOTING:
        run = replace(run, approved_by=None, approved_at=None)
    dependencies = tuple(m.dependency for m in models)
    run = replace(run, plan=change, previous=previous, models=dependencies)
    run = run.moved_to(Phase.VALIDATING, ctx.now)
    if not server_validates(ctx.spec.target.kind):
        # Seldon Deploy has no validation endpoint for Core v2 resources: planning
        # checked what can be checked, and the write itself is the server's check.
        return _validated(ctx, run)
    validate = Action(ActionKind.VALIDATE, checked, "")
    return decision(
        ctx, run, f"validating the promoted deployment for {ctx.spec.target.described}", validate
    )


def _validated(ctx: Context, run: Run) -> Decision:
    assert run.plan is not None
    summary = strategy_for(ctx.spec).summary(ctx, run)
    if isinstance(summary, Failure):
        return finish(ctx, run, Phase.FAILED, summary)
    unbakeable = without_prometheus(ctx)
    if unbakeable is not None:
        return finish(ctx, run, Phase.FAILED, unbakeable)
    if ctx.spec.bake is not None:
        summary = f"{summary}, then {describe(ctx)}"
    if ctx.spec.dry_run:
        return finish(ctx, run, Phase.SUCCEEDED, None, f"dry run: would {summary}; wrote nothing")
    if ctx.spec.suspend:
        message = f"suspended before the first write: would {summary}; set spec.suspend=false"
        return decision(ctx, run.moved_to(Phase.SUSPENDED, ctx.now), message)
    if ctx.spec.approval_required and run.approved_by is None:
        waiting = run.moved_to(Phase.AWAITING_APPROVAL, ctx.now)
        return decision(ctx, waiting, _approval_wanted(ctx), None, ctx.policy.max_poll)
    return _start_writing(ctx, run, f"validated; {summary}")


def _start_writing(ctx: Context, run: Run, done: str) -> Decision:
    """After validation (and approval): record the plan, then write on the next pass."""
    return strategy_for(ctx.spec).start(ctx, run, done)


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


def _await_approval(ctx: Context, run: Run) -> Decision:
    approver = ctx.requests.approve
    if approver is None:
        return decision(ctx, run, _approval_wanted(ctx), None, ctx.policy.max_poll)
    # The API server's admission policy let only an allowed user set it, to their name.
    run = replace(run, approved_by=approver, approved_at=ctx.now)
    decided = _start_writing(ctx, run, f"approved by {approver}")
    return replace(decided, used=("approve",))


def _abort(ctx: Context, run: Run, observed: Observed) -> Decision:
    """Stop before the next write; undo what was written, as a failure would."""
    if run.phase == Phase.ROLLING_BACK:
        return _roll_back(ctx, run, observed)  # already undoing it
    target = observed.target
    if run.phase == Phase.PROMOTING and observed.target_error is not None:
        # Whether the write landed cannot be told yet: look again before acting.
        return retry_or_fail(ctx, run, observed.target_error)
    run = with_landed_models(ctx, run, observed)  # a write a restart kept from being recorded
    written = (
        run.phase in (Phase.VERIFYING, Phase.ANALYZING, Phase.PAUSED, Phase.BAKING)
        or (run.canary is not None and run.canary.written)
        or (run.phase == Phase.PROMOTING and target is not None and is_ours(ctx, target, run))
        or models_written(run)
        or strategy_for(ctx.spec).in_place(ctx, observed)
    )
    if written:
        aborted = Failure(
            "Aborted", f"aborted on request after {ctx.spec.target.described} was written"
        )
        return target_failed(ctx, run, aborted)
    nothing = Failure("Aborted", "aborted on request before anything was written")
    return finish(ctx, run, Phase.ABORTED, nothing)


def _verify(ctx: Context, run: Run, observed: Observed) -> Decision:
    if observed.target_error is not None:
        return retry_or_fail(ctx, run, observed.target_error)
    target = observed.target
    if target is None or not is_ours(ctx, target, run):
        return target_changed(ctx, run, "verification")
    if run.applied_generation is None:
        # The write's answer had no generation; the first read after it (carrying
        # our annotations) tells which generation our spec is.
        generation = (target.get("metadata") or {}).get("generation")
        if generation is not None:
            run = replace(run, applied_generation=int(generation))
    kind = ctx.spec.target.kind
    ready = ready_word(kind)
    seen = readiness(kind, target)
    state = seen.state
    observed_generation = seen.observed_generation
    current = run.applied_generation is None or (
        observed_generation is not None and observed_generation >= run.applied_generation
    )
    if current and seen.ready:
        further = strategy_for(ctx.spec).verified(ctx, run, ready)
        if further is not None:
            return further
        done = f"{ctx.spec.target.described} is {ready} with the promoted spec"
        if ctx.spec.bake is not None:
            # Not a success yet: watched a while first, rolled back if it misbehaves.
            return start_bake(ctx, run, done, target)
        return finish(ctx, run, Phase.SUCCEEDED, None, done)
    if current and seen.failed:
        description = seen.description or "no description"
        return target_failed(
            ctx,
            run,
            Failure("TargetFailed", f"{ctx.spec.target.described} went {state}: {description}"),
        )
    if ctx.now >= deadline(ctx, run):
        return target_failed(ctx, run, timed_out(ctx, state))
    if current and run.last_error is None:
        # The write's own message stands while the target rolls out, so that seeing
        # its state again (or a new transient one) costs no status write.
        waiting = ready_message(run.conditions)
    elif current:
        waiting = f"waiting for {ctx.spec.target.described} to become {ready} (state {state})"
    else:
        waiting = (
            f"waiting for {ctx.spec.target.described}'s status to observe generation "
            f"{run.applied_generation} (GitOps sync or rollout pending; status shows "
            f"{state or 'nothing'} for generation {observed_generation})"
        )
    run = replace(run, last_error=None, error_since=None)
    return decision(ctx, run, waiting, None, backoff(ctx, run.phase_since, poll=True))


def _roll_back(ctx: Context, run: Run, observed: Observed) -> Decision:
    if observed.target_error is not None:
        return retry_or_fail(ctx, run, observed.target_error)
    target = observed.target
    previous = run.previous or PreviousTarget(existed=False)
    message = f"rollback of {ctx.promotion}: {run.outcome.reason if run.outcome else 'failure'}"
    undo = strategy_for(ctx.spec).undo(ctx, run, observed, message)
    if undo is not None:
        return undo  # what the strategy wrote beside the target goes first
    if previous.existed and previous.deployment is None:
        # Never delete what existed before; without its spec there is nothing to restore.
        lost = Failure(
            "RollbackFailed", f"the previous spec of {ctx.spec.target.described} was not recorded"
        )
        return finish(ctx, run, Phase.FAILED, lost)
    if previous.existed and previous.deployment is not None:
        if (
            target is not None
            and not is_ours(ctx, target)
            and deployment_hash(target) == previous.spec_hash
        ):
            return undo_models(ctx, run, observed, message) or rolled_back(ctx, run)
        kind = ActionKind.UPDATE if target is not None else ActionKind.CREATE
        restore = Action(kind, previous.deployment, message, Purpose.ROLLBACK)
        return decision(
            ctx, run, f"restoring the previous spec of {ctx.spec.target.described}", restore
        )
    if target is None:
        return undo_models(ctx, run, observed, message) or rolled_back(ctx, run)
    remove = Action(ActionKind.DELETE, None, message, Purpose.ROLLBACK)
    return decision(
        ctx, run, f"removing {ctx.spec.target.described}, which did not exist before", remove
    )
