"""The building blocks every transition uses: recording a decision (conditions and a
requeue that never reaches past the deadline), finishing a run (and its history),
retrying or failing, rolling back, and recognising this run's own write."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from promotion_operator.core.canary_steps import last_write, step_deadline, written_step
from promotion_operator.core.conditions import ready_reason, with_conditions
from promotion_operator.core.durations import NEVER
from promotion_operator.core.kinds import ready_word
from promotion_operator.core.pass_io import Action, Context, Decision, Observed
from promotion_operator.core.planning import spec_hash, strip_server_fields, written_by
from promotion_operator.core.run import (
    FINISHED,
    HISTORY_LENGTH,
    Failure,
    HistoryEntry,
    Phase,
    PreviousTarget,
    Run,
)


def is_settled(run: Run) -> bool:
    """Whether the run needs no more passes for its generation."""
    return run.phase in FINISHED or run.phase == Phase.SUSPENDED


def unusable_reads(ctx: Context, run: Run, observed: Observed) -> Decision | None:
    """A retry (or the end of the run) when a write cannot be planned from what was read."""
    if observed.source_error is not None:
        return retry_or_fail(ctx, run, observed.source_error)
    if observed.source is None:
        missing = Failure(
            "SourceNotFound",
            f"source {ctx.spec.source.noun} does not exist",
            http_status=404,
            retryable=True,
        )
        return retry_or_fail(ctx, run, missing)
    changed = source_changed(ctx, observed.source)
    if changed is not None:
        return retry_or_fail(ctx, run, changed)
    if observed.target_error is not None:
        return retry_or_fail(ctx, run, observed.target_error)
    return None


def source_changed(ctx: Context, source: Mapping[str, Any]) -> Failure | None:
    """A failure when the spec pins a source generation and the source is at another:
    what was checked (a path's freight) is not what would be written. Not retryable:
    the newer version is another promotion's to make."""
    pinned = ctx.spec.source_generation
    generation = (source.get("metadata") or {}).get("generation")
    if pinned is None or generation == pinned:
        return None
    return Failure(
        "SourceChanged",
        f"{ctx.spec.source.described} is at generation {generation}, not the generation "
        f"{pinned} that spec.source.generation pins; that generation is not promoted",
    )


def adopt(ctx: Context, run: Run, target: Mapping[str, Any]) -> Decision:
    """Our write landed, but the operator stopped before recording it: verify it."""
    generation = (target.get("metadata") or {}).get("generation")
    run = replace(
        run,
        applied_generation=int(generation) if generation is not None else None,
        applied_at=run.applied_at or ctx.now,
    )
    return decision(
        ctx,
        run.moved_to(Phase.VERIFYING, ctx.now),
        f"found this run's write on {ctx.spec.target.described}; verifying it",
        requeue_after=0.0,
    )


def target_changed(ctx: Context, run: Run, during: str) -> Decision:
    changed = Failure(
        "TargetChanged",
        f"{ctx.spec.target.described} was deleted or overwritten by someone else during {during}",
    )
    return finish(ctx, run, Phase.FAILED, changed)


def rolled_back(ctx: Context, run: Run) -> Decision:
    if run.canary is not None:
        run = replace(run, canary=replace(run.canary, weight=0))
    return finish(ctx, run, Phase.ROLLED_BACK, run.outcome, _rolled_back_message(ctx, run))


def retry_or_fail(ctx: Context, run: Run, failure: Failure) -> Decision:
    if failure.retryable and ctx.now < deadline(ctx, run):
        since = (
            run.error_since if run.last_error and run.last_error.reason == failure.reason else None
        )
        run = replace(run, last_error=failure, error_since=since or ctx.now)
        delay = backoff(ctx, run.error_since or ctx.now, poll=False)
        if failure.retry_after is not None:
            # The server's wish is a minimum, but never beyond our own longest wait.
            delay = max(delay, min(failure.retry_after, ctx.policy.max_delay))
        return decision(
            ctx, run, f"retrying after {failure.reason}: {failure.message}", None, delay
        )
    if run.phase == Phase.VERIFYING:
        return target_failed(ctx, run, timed_out(ctx, None) if failure.retryable else failure)
    if run.phase == Phase.BAKING:
        # The promotion is on the target and its bake cannot finish: never keep it unproven.
        return target_failed(ctx, run, failure)
    if run.canary is not None and run.canary.written and run.phase != Phase.ROLLING_BACK:
        # A canary is on the target: take it out rather than leave it half done.
        return target_failed(ctx, run, failure)
    if any(d.written for d in run.models) and run.phase != Phase.ROLLING_BACK:
        # Models were written for a Pipeline that will not come: undo them.
        return target_failed(ctx, run, failure)
    if run.phase == Phase.ROLLING_BACK:
        cause = run.outcome.reason if run.outcome else "a failure"
        rollback_failed = Failure(
            "RollbackFailed",
            f"could not roll back {ctx.spec.target.described} after {cause}: {failure.message}",
            failure.http_status,
        )
        return finish(ctx, run, Phase.FAILED, rollback_failed)
    return finish(ctx, run, Phase.FAILED, failure)


def target_failed(ctx: Context, run: Run, failure: Failure) -> Decision:
    if ctx.spec.rollback_on_failure:
        run = replace(run, outcome=failure, last_error=None, error_since=None)
        message = f"{failure.message}; rolling back"
        return decision(ctx, run.moved_to(Phase.ROLLING_BACK, ctx.now), message, None, 0.0)
    return finish(ctx, run, Phase.FAILED, failure)


def timed_out(ctx: Context, state: str | None) -> Failure:
    return Failure(
        "VerificationTimedOut",
        f"{ctx.spec.target.described} did not become {ready_word(ctx.spec.target.kind)} with the "
        f"promoted spec within {ctx.spec.timeout_seconds:g}s (last state: {state or 'unknown'})",
    )


def deadline(ctx: Context, run: Run) -> datetime.datetime:
    timeout = datetime.timedelta(seconds=ctx.spec.timeout_seconds)
    if run.phase == Phase.BAKING and run.bake is not None and run.bake.passed_at is not None:
        # The bake passed: the warm copy's removal has its own verification time.
        return run.bake.passed_at + timeout
    if run.phase == Phase.BAKING and run.bake is not None:
        # The bake's duration, and the slack an analysis step has beyond its measurements.
        return run.bake.ends_at + timeout
    canary = run.canary
    if canary is not None and run.phase in (Phase.PROMOTING, Phase.ANALYZING, Phase.PAUSED):
        # The phase of a step (or of the final promotion's write): the step knows its time.
        return step_deadline(ctx.spec.canary_steps, canary, timeout, ctx.spec.templates)
    if run.phase in (Phase.AWAITING_APPROVAL, Phase.AWAITING_WINDOW):
        return run.phase_since + NEVER  # a person, or a promotion window, decides when
    released = run.window.released_at if run.window is not None else None
    if run.phase == Phase.PROMOTING and (run.approved_at or released) is not None:
        # The write's time counts from the last wait before it (approval, window).
        return max(t for t in (run.approved_at, released) if t is not None) + timeout
    if run.phase == Phase.VERIFYING:
        return (run.applied_at or run.phase_since) + timeout
    if run.phase == Phase.ROLLING_BACK:
        return run.phase_since + timeout
    return run.started_at + timeout


def backoff(ctx: Context, since: datetime.datetime, *, poll: bool) -> float:
    policy = ctx.policy
    waited = max(0.0, (ctx.now - since).total_seconds())
    ceiling = policy.max_poll if poll else policy.max_delay
    # A poll waits half the time already waited (gaps grow by half, not double), so
    # a rollout is seen at most a third of its duration late; polls of busy
    # namespaces are shared reads, so the extra ones cost little.
    nominal = min(ceiling, max(policy.min_delay, waited / 2 if poll else waited))
    return round(min(ceiling, nominal * (0.75 + 0.5 * ctx.jitter)), 3)


def finish(
    ctx: Context, run: Run, phase: Phase, outcome: Failure | None, message: str | None = None
) -> Decision:
    run = replace(run, outcome=outcome, last_error=None, error_since=None)
    text = message or (outcome.message if outcome else phase.value)
    decided = decision(ctx, run.moved_to(phase, ctx.now), text)
    return replace(decided, run=_with_history(decided.run))


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
        break_glass_by=run.break_glass.by if run.break_glass else None,
        model_version=run.model_version,
    )
    earlier = [e for e in run.history if (e.generation, e.retry) != (run.generation, run.retry)]
    return replace(run, history=(entry, *earlier)[:HISTORY_LENGTH])


def decision(
    ctx: Context,
    run: Run,
    message: str,
    action: Action | None = None,
    requeue_after: float | None = None,
) -> Decision:
    """Record ``run`` with its conditions saying ``message``; take ``action``; come back
    after ``requeue_after`` (None: not until the resource changes)."""
    if requeue_after is not None and not is_settled(run):
        # Come back by the deadline at the latest, so a run ends on time, whatever
        # a server asked for.
        remaining = (deadline(ctx, run) - ctx.now).total_seconds()
        if remaining > 0:
            requeue_after = min(requeue_after, math.ceil(remaining * 1000) / 1000)
    run = with_conditions(run, message, dry_run=ctx.spec.dry_run, now=ctx.now)
    return Decision(run, action, requeue_after)


def _rolled_back_message(ctx: Context, run: Run) -> str:
    cause = run.outcome
    what = "restored its previous spec" if run.previous and run.previous.existed else "removed it"
    if run.models and run.applied_at is None:
        what = "it was not written"  # the run stopped at the Models a Pipeline needs
    done = [what]
    for dependency in reversed(run.models):
        if dependency.written:
            verb = "restored" if dependency.previous.existed else "removed"
            done.append(f"{verb} {ctx.spec.target.model(dependency.name).described}")
    because = f"{cause.reason}: {cause.message}" if cause else "a failure"
    return f"rolled back {ctx.spec.target.described} ({'; '.join(done)}) after {because}"


def write_message(ctx: Context) -> str:
    if ctx.spec.gitops_message:
        return ctx.spec.gitops_message
    return (
        f"Promote {ctx.spec.origin} to {ctx.spec.target.described} "
        f"(ModelPromotion {ctx.promotion}, generation {ctx.promotion.generation})"
    )


def is_ours(ctx: Context, deployment: Mapping[str, Any], run: Run | None = None) -> bool:
    """Whether ``deployment`` is this run's write (for a canary: of its current step)."""
    if not written_by(deployment, ctx.promotion):
        return False
    if run is None or run.canary is None:
        return True
    return written_step(deployment) == last_write(ctx.spec.canary_steps, run.canary.step)


def deployment_hash(deployment: Mapping[str, Any]) -> str:
    return spec_hash(deployment.get("spec") or {})


def previous_of(target: Mapping[str, Any] | None) -> PreviousTarget:
    if target is None:
        return PreviousTarget(existed=False)
    return PreviousTarget(True, deployment_hash(target), strip_server_fields(target))


def same_target(recorded: PreviousTarget | None, now: PreviousTarget) -> bool:
    return (
        recorded is not None
        and recorded.existed == now.existed
        and recorded.spec_hash == now.spec_hash
    )
