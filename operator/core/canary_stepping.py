"""What the two canary strategies share: checking the steps, starting, entering a
step, measuring an analysis, pausing, and the pass of a step (its write is the
strategy's). The steps themselves are :mod:`canary_steps`."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import assert_never

from promotion_operator.core.canary_steps import (
    Analysis,
    AnalysisTemplate,
    Pause,
    WriteStep,
    check_steps,
    entered,
    step_at,
    step_name,
)
from promotion_operator.core.comparisons import Samples
from promotion_operator.core.pass_io import Context, Decision, Observed, Query, Reading, Side
from promotion_operator.core.planning import PlanningError
from promotion_operator.core.requests import RESUME_ANNOTATION
from promotion_operator.core.run import (
    CanaryState,
    Failure,
    Measurement,
    Phase,
    Run,
    TemplateProgress,
    Verdict,
    format_time,
)
from promotion_operator.core.spec import PromotionSpec
from promotion_operator.core.transitions import (
    backoff,
    deadline,
    decision,
    finish,
    retry_or_fail,
    target_changed,
    target_failed,
)

#: Measurements of the current analysis step kept in status.
RECENT_MEASUREMENTS = 10


#: The phases of a canary step (or of the final promotion's write), which the strategy's
#: pass takes; the others are the shared phases'.
STEP_PHASES = (Phase.PROMOTING, Phase.ANALYZING, Phase.PAUSED)


def check_canary(spec: PromotionSpec) -> None:
    """Refuse steps the admission rules should have refused (an older CRD, say)."""
    problem = check_steps(spec.canary_steps, spec.templates)
    if problem is not None:
        raise PlanningError(problem)


def canary_summary(ctx: Context) -> str | Failure:
    """What a validated canary will do, or why it cannot (analysis without Prometheus)."""
    if any(step.measures for step in ctx.spec.canary_steps) and not ctx.prometheus_configured:
        return Failure(
            "InvalidSettings",
            "the canary has analysis steps but the operator has no Prometheus "
            "(set PROMETHEUS_URL in its settings)",
        )
    return f"run a canary of {ctx.spec.source.described} on {ctx.spec.target.described}"


def without_target(ctx: Context, run: Run, observed: Observed) -> Decision | None:
    """The end of a canary whose target does not exist (nothing would serve beside it)."""
    if observed.target is not None:
        return None
    missing = Failure(
        "Invalid",
        f"a canary needs an existing target to keep serving beside it; "
        f"{ctx.spec.target.described} does not exist (promote it once with strategy Replace)",
    )
    return finish(ctx, run, Phase.FAILED, missing)


def start_canary(ctx: Context, run: Run, done: str, *, canary: str, stable: str) -> Decision:
    """After validation (and approval): into step 0, whose write comes on the next pass."""
    state = CanaryState(
        step=-1, step_started_at=ctx.now, canary_predictor=canary, stable_predictor=stable
    )
    return enter_step(ctx, replace(run, canary=state), 0, done)


def step_pass(
    ctx: Context,
    run: Run,
    observed: Observed,
    write: Callable[[], Decision],
    *,
    in_place: Callable[[], bool],
) -> Decision | None:
    """The pass of the current step: its write (``write``, the strategy's), measuring,
    or pausing; None in the shared phases."""
    canary = run.canary
    if canary is None or run.phase not in STEP_PHASES:
        return None
    step = step_at(ctx.spec.canary_steps, canary.step)
    if step is None or isinstance(step, WriteStep):  # None: the final promotion
        return write()
    match step:
        case Analysis():
            return analyze(ctx, run, observed, in_place=in_place())
        case Pause():
            return pause(ctx, run)
        case _:
            assert_never(step)


def after_verified(ctx: Context, run: Run, ready: str) -> Decision | None:
    """The write of a step is ready: on to the next step; None after the final one."""
    canary = run.canary
    if canary is None or canary.step >= len(ctx.spec.canary_steps):
        return None
    return enter_step(ctx, run, canary.step + 1, f"{ctx.spec.target.described} is {ready}")


def due_queries(ctx: Context, run: Run) -> list[Query]:
    """The analysis queries to run in this pass, with their PromQL filled in: one per
    due template, two (champion and challenger) per due comparison."""
    if run.phase != Phase.ANALYZING or run.canary is None:
        return []
    canary = run.canary
    due = [
        ctx.spec.templates[progress.template]
        for progress in canary.analysis
        if progress.due_at <= ctx.now
        and progress.template in ctx.spec.templates
        and progress.taken < ctx.spec.templates[progress.template].count
    ]
    names = {Side.CHAMPION: canary.stable_predictor, Side.CHALLENGER: canary.canary_predictor}
    queries = []
    for template in due:
        by = template.compare.by if template.compare is not None else None
        for side in _sides(template):
            promql = fill_query(
                template,
                ctx.spec,
                canary=canary.canary_predictor,
                stable=canary.stable_predictor,
                predictor=names.get(side, ""),
            )
            queries.append(Query(template.name, side, promql, by))
    return queries


def fill_query(
    template: AnalysisTemplate,
    spec: PromotionSpec,
    *,
    canary: str,
    stable: str,
    predictor: str = "",
) -> str:
    """The template's PromQL with its placeholders filled in (``predictor``: whom a
    comparison's query measures, the champion or the challenger)."""
    values = {
        "predictor": predictor,
        "target": spec.target.name,
        "namespace": spec.target.namespace,
        "canary": canary,
        "stable": stable,
        "interval": template.interval,
    }
    query = template.query
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value)
    return query


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


def validate_again(ctx: Context, run: Run, why: str) -> Decision:
    """Nothing written yet, but what was validated changed: validate on the next pass
    (and ask again for an approval given for the plan that changed)."""
    message = f"{why}; validating again"
    run = replace(run, approved_by=None, approved_at=None)
    return decision(ctx, run.moved_to(Phase.VALIDATING, ctx.now), message, None, 0.0)


def analyze(ctx: Context, run: Run, observed: Observed, *, in_place: bool) -> Decision:
    """Fold the due measurements in; on to the next step once every template passed.
    ``in_place``: the canary this run wrote still takes traffic (the strategy knows where)."""
    canary = run.canary
    assert canary is not None
    if observed.target_error is not None:
        return retry_or_fail(ctx, run, observed.target_error)
    if observed.target is None or not in_place:
        return target_changed(ctx, run, "the analysis")
    progress: list[TemplateProgress] = []
    measured: list[Measurement] = []
    inconclusive: Failure | None = None
    for current in canary.analysis:
        template = ctx.spec.templates.get(current.template)
        readings = [observed.readings.get((current.template, side)) for side in _sides(template)]
        if template is None or any(reading is None for reading in readings):
            progress.append(current)
            continue
        outcome = _measure(ctx, template, current, [r for r in readings if r is not None])
        if isinstance(outcome, Failure):
            if not outcome.retryable:
                return target_failed(ctx, run, outcome)
            inconclusive = inconclusive or outcome
            progress.append(replace(current, inconclusive=current.inconclusive + 1))
            measured.append(
                Measurement(template.name, Verdict.INCONCLUSIVE, ctx.now, message=outcome.message)
            )
            continue
        measurement, samples = outcome
        failed = measurement.verdict == Verdict.FAILED
        progress.append(
            replace(
                current,
                due_at=ctx.now + datetime.timedelta(seconds=template.interval_seconds),
                taken=current.taken + 1,
                failed=current.failed + (1 if failed else 0),
                champion_samples=samples.champion,
                challenger_samples=samples.challenger,
            )
        )
        measured.append(measurement)
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


def _sides(template: AnalysisTemplate | None) -> tuple[Side, ...]:
    """Whom ``template``'s queries measure."""
    if template is None or template.compare is None:
        return (Side.MEASURED,)
    return (Side.CHAMPION, Side.CHALLENGER)


def _measure(
    ctx: Context,
    template: AnalysisTemplate,
    progress: TemplateProgress,
    readings: Sequence[Reading],
) -> tuple[Measurement, Samples] | Failure:
    """One measurement of ``template`` from its readings (one per side), or why it has
    none: a refused query (not retryable), or an inconclusive answer."""
    values: list[float | Mapping[str, float]] = []
    for side, reading in zip(_sides(template), readings, strict=True):
        whose = f"the {side}'s query: " if side else ""
        failure = reading.failure
        if failure is not None and not failure.retryable:
            return Failure(
                failure.reason, f"analysis template {template.name!r}: {whose}{failure.message}"
            )
        if failure is not None or reading.value is None:
            message = failure.message if failure else "no value"
            return Failure(
                failure.reason if failure else "AnalysisInconclusive",
                f"{whose}{message}",
                retryable=True,
                retry_after=failure.retry_after if failure else None,
            )
        values.append(reading.value)
    if template.compare is None:
        value = values[0]
        assert not isinstance(value, Mapping)
        passed = (template.min is None or value >= template.min) and (
            template.max is None or value <= template.max
        )
        verdict = Verdict.PASSED if passed else Verdict.FAILED
        return Measurement(
            template.name, verdict, ctx.now, value, template.min, template.max
        ), Samples()
    champion, challenger = values
    earlier = Samples(progress.champion_samples, progress.challenger_samples)
    last = progress.taken + 1 >= template.count
    judged, samples = template.compare.judge(champion, challenger, earlier, last)
    if judged.verdict == Verdict.INCONCLUSIVE:
        return Failure("AnalysisInconclusive", judged.says, retryable=True)
    return Measurement(
        template.name,
        judged.verdict,
        ctx.now,
        challenger if not isinstance(challenger, Mapping) else None,
        judged.min,
        judged.max,
        judged.says,
        champion if not isinstance(champion, Mapping) else None,
        judged.score,
    ), samples


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
    # A comparison's band is on its score; its message says what was compared.
    value = last.score if last.score is not None else last.value
    if last.max is not None and value is not None and value > last.max:
        bound = f"above its max {last.max:g}"
    else:
        bound = f"below its min {last.min:g}" if last.min is not None else "out of range"
    what = last.message if last.score is not None else f"{last.value:g}"
    return Failure(
        "AnalysisFailed",
        f"analysis {name!r} measured {what}, {bound} ({progress.failed} of "
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
