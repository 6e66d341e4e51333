"""The Canary strategy's transitions: entering a step, writing its weight (or the
promoted spec), measuring an analysis, pausing. Planning the deployments they write
is :mod:`canary`."""

from __future__ import annotations

import datetime
from dataclasses import replace

from promotion_operator.core.canary import canary_deployment, fill_query, final_deployment
from promotion_operator.core.canary_steps import entered, step_name, weight_of
from promotion_operator.core.pass_io import Action, Context, Decision, Observed
from promotion_operator.core.planning import PlanningError, plan_promotion, written_by
from promotion_operator.core.requests import RESUME_ANNOTATION
from promotion_operator.core.run import (
    ActionKind,
    Failure,
    Measurement,
    Phase,
    Run,
    TemplateProgress,
    Verdict,
    format_time,
)
from promotion_operator.core.spec import Kind
from promotion_operator.core.transitions import (
    adopt,
    backoff,
    deadline,
    decision,
    is_ours,
    previous_of,
    retry_or_fail,
    same_target,
    target_changed,
    target_failed,
    unusable_reads,
    write_message,
)

#: Measurements of the current analysis step kept in status.
RECENT_MEASUREMENTS = 10


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


def enter_step(ctx: Context, run: Run, index: int, done: str) -> Decision:
    """Move the canary to step ``index`` (``len(steps)``: the final promotion)."""
    assert run.canary is not None
    steps = ctx.spec.canary_steps
    phase, canary, requeue_after, note = entered(
        steps, index, run.canary, ctx.now, ctx.spec.templates
    )
    run = replace(run, canary=canary, last_error=None, error_since=None)
    message = f"{done}; {step_name(steps, index)}{note}"
    # No time of its own (a pause until resumed): a person decides, polled.
    wait = ctx.policy.max_poll if requeue_after is None else requeue_after
    return decision(ctx, run.moved_to(phase, ctx.now), message, None, wait)


def canary_write(ctx: Context, run: Run, observed: Observed) -> Decision:
    """Write the current step's weight (or, after the last step, the promoted spec)."""
    canary, recorded, stable = run.canary, run.plan, run.previous
    assert canary is not None and recorded is not None and stable is not None
    assert stable.deployment is not None
    target = observed.target
    if observed.target_error is None and target is not None and is_ours(ctx, target, run):
        # This step's write landed, but the operator stopped before recording it.
        # (applied_at belongs to the previous step's write: this one's clock starts now.)
        weight = weight_of(ctx.spec.canary_steps, canary.step)
        run = replace(run, applied_at=None, canary=replace(canary, weight=weight))
        return adopt(ctx, run, target)
    unreadable = unusable_reads(ctx, run, observed)
    if unreadable is not None:
        return unreadable
    assert observed.source is not None
    first_write = canary.weight == 0
    if first_write and not same_target(run.previous, previous_of(target)):
        # The target changed between validation and the first write: validate again.
        return validate_again(ctx, run, "the target changed since it was validated")
    if not first_write and (target is None or not written_by(target, ctx.promotion)):
        return target_changed(ctx, run, "the canary")
    try:
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
    except PlanningError as error:
        return retry_or_fail(ctx, run, Failure("Invalid", str(error)))
    if plan.source_spec_hash != recorded.source_spec_hash:
        if first_write:
            return validate_again(ctx, run, "the source changed before the first write")
        changed = Failure(
            "SourceChanged",
            f"{ctx.spec.source.described} changed during the canary; what was measured is "
            "no longer what would be promoted (change the spec to start a new run)",
        )
        return target_failed(ctx, run, changed)
    final = canary.step >= len(ctx.spec.canary_steps)
    try:
        deployment = (
            final_deployment(plan, canary.step)
            if final
            else canary_deployment(
                plan, stable.deployment, weight_of(ctx.spec.canary_steps, canary.step), canary.step
            )
        )
    except PlanningError as error:
        return retry_or_fail(ctx, run, Failure("Invalid", str(error)))
    message = f"{write_message(ctx)} ({step_name(ctx.spec.canary_steps, canary.step)})"
    write = Action(ActionKind.UPDATE, deployment, message)
    return decision(ctx, run, f"{step_name(ctx.spec.canary_steps, canary.step)} in flight", write)


def validate_again(ctx: Context, run: Run, why: str) -> Decision:
    """Nothing written yet, but what was validated changed: validate on the next pass
    (and ask again for an approval given for the plan that changed)."""
    message = f"{why}; validating again"
    run = replace(run, approved_by=None, approved_at=None)
    return decision(ctx, run.moved_to(Phase.VALIDATING, ctx.now), message, None, 0.0)


def analyze(ctx: Context, run: Run, observed: Observed) -> Decision:
    canary = run.canary
    assert canary is not None
    if observed.target_error is not None:
        return retry_or_fail(ctx, run, observed.target_error)
    if observed.target is None or not _canary_in_place(ctx, run, observed):
        return target_changed(ctx, run, "the analysis")
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
            return target_failed(ctx, run, refused)
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
            return target_failed(
                ctx, run, _analysis_failed(template.name, last, current, template.failure_limit)
            )
    if all(p.taken >= ctx.spec.templates[p.template].count for p in progress):
        names = ", ".join(p.template for p in progress)
        return enter_step(ctx, run, canary.step + 1, f"analysis {names} passed")
    if inconclusive is not None:
        return _inconclusive(ctx, run, inconclusive)
    if ctx.now >= deadline(ctx, run):
        return target_failed(ctx, run, _no_evidence(ctx, run, run.last_error))
    run = replace(run, last_error=None, error_since=None)
    pending = [p for p in progress if p.taken < ctx.spec.templates[p.template].count]
    wait = max(0.0, (min(p.due_at for p in pending) - ctx.now).total_seconds())
    return decision(ctx, run, _analysis_message(ctx, run), None, wait)


def _canary_in_place(ctx: Context, run: Run, observed: Observed) -> bool:
    """Whether the canary this run wrote still takes traffic: on the target (a
    SeldonDeployment's canary predictor), or beside it (a Pipeline's canary Pipeline)."""
    if ctx.spec.target.kind is Kind.PIPELINE:
        pipeline = observed.canary.deployment
        return pipeline is not None and written_by(pipeline, ctx.promotion)
    return observed.target is not None and is_ours(ctx, observed.target, run)


def _inconclusive(ctx: Context, run: Run, failure: Failure) -> Decision:
    """Measure again with backoff; at the deadline, never promote on missing evidence."""
    canary = run.canary
    assert canary is not None
    if ctx.now >= deadline(ctx, run):
        return target_failed(ctx, run, _no_evidence(ctx, run, failure))
    same = run.last_error is not None and run.last_error.reason == failure.reason
    since = run.error_since if same and run.error_since else ctx.now
    run = replace(run, last_error=failure, error_since=since)
    delay = backoff(ctx, since, poll=False)
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
    return decision(ctx, run, message, None, max(0.0, wait))


def pause(ctx: Context, run: Run) -> Decision:
    canary = run.canary
    assert canary is not None
    if canary.pause_until is not None:
        if ctx.now >= canary.pause_until:
            return enter_step(ctx, run, canary.step + 1, "pause over")
        wait = (canary.pause_until - ctx.now).total_seconds()
        name = step_name(ctx.spec.canary_steps, canary.step)
        message = f"{name} until {format_time(canary.pause_until)}"
        return decision(ctx, run, message, None, wait)
    if ctx.requests.resume is not None:
        decided = enter_step(ctx, run, canary.step + 1, "resumed")
        return replace(decided, used=("resume",))
    message = (
        f"{step_name(ctx.spec.canary_steps, canary.step)}: waiting for a person to run "
        f"kubectl annotate mp {ctx.promotion.name} {RESUME_ANNOTATION}=true"
    )
    return decision(ctx, run, message, None, ctx.policy.max_poll)


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
        f"the analysis of {ctx.spec.target.described} got no conclusive measurements before its "
        f"deadline{last}",
    )


def _analysis_message(ctx: Context, run: Run) -> str:
    assert run.canary is not None
    done = ", ".join(
        f"{p.template} {p.taken}/{ctx.spec.templates[p.template].count}"
        f"{f' ({p.failed} failed)' if p.failed else ''}"
        for p in run.canary.analysis
    )
    return f"{step_name(ctx.spec.canary_steps, run.canary.step)}: {done}"
