"""What the two canary strategies share: checking the steps, starting, entering a
step, an analysis step's pass, pausing, and the pass of a step (its write is the
strategy's). The steps themselves are :mod:`canary_steps`; measuring the templates
(which a bake does too) is :mod:`measuring`'s."""

from __future__ import annotations

from collections.abc import Callable
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
from promotion_operator.core.measuring import (
    complete,
    measure,
    measure_again,
    no_evidence,
    pending,
    postponed,
    progress_line,
)
from promotion_operator.core.measuring import due_queries as due_queries_of
from promotion_operator.core.pass_io import Context, Decision, Observed, Query, Side
from promotion_operator.core.planning import PlanningError
from promotion_operator.core.requests import RESUME_ANNOTATION
from promotion_operator.core.run import (
    CanaryState,
    Failure,
    Phase,
    Run,
    format_time,
)
from promotion_operator.core.spec import PromotionSpec
from promotion_operator.core.transitions import (
    deadline,
    decision,
    finish,
    retry_or_fail,
    target_changed,
    target_failed,
)
from promotion_operator.placeholders import fill, query_values

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
    return f"run a canary of {ctx.spec.origin} on {ctx.spec.target.described}"


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
    names = {Side.CHAMPION: canary.stable_predictor, Side.CHALLENGER: canary.canary_predictor}

    def promql(template: AnalysisTemplate, side: Side) -> str:
        return fill_query(
            template,
            ctx.spec,
            canary=canary.canary_predictor,
            stable=canary.stable_predictor,
            predictor=names.get(side, ""),
        )

    return due_queries_of(ctx.spec.templates, canary.analysis, ctx.now, promql)


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
    values = query_values(
        target=spec.target.name,
        namespace=spec.target.namespace,
        interval=template.interval,
        canary=canary,
        stable=stable,
        predictor=predictor,
    )
    return fill(template.query, values)


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
    measured = measure(ctx, canary.analysis, canary.measurements, observed.readings)
    if measured.refused is not None:
        return target_failed(ctx, run, measured.refused)
    canary = replace(canary, analysis=measured.progress, measurements=measured.recent)
    run = replace(run, canary=canary)
    if measured.failed is not None:
        return target_failed(ctx, run, measured.failed)
    if complete(ctx.spec.templates, canary.analysis):
        names = ", ".join(p.template for p in canary.analysis)
        return enter_step(ctx, run, canary.step + 1, f"analysis {names} passed")
    if measured.inconclusive is not None:
        return _inconclusive(ctx, run, measured.inconclusive)
    if ctx.now >= deadline(ctx, run):
        return target_failed(ctx, run, _no_evidence(ctx, run.last_error))
    run = replace(run, last_error=None, error_since=None)
    due = min(p.due_at for p in pending(ctx.spec.templates, canary.analysis))
    wait = max(0.0, (due - ctx.now).total_seconds())
    return decision(ctx, run, _analysis_message(ctx, run), None, wait)


def _inconclusive(ctx: Context, run: Run, failure: Failure) -> Decision:
    """Measure again with backoff; at the deadline, never promote on missing evidence."""
    if ctx.now >= deadline(ctx, run):
        return target_failed(ctx, run, _no_evidence(ctx, failure))
    run, retry_at = measure_again(ctx, run, failure)
    canary = run.canary
    assert canary is not None
    analysis = postponed(canary.analysis, ctx.now, retry_at)
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


def _no_evidence(ctx: Context, failure: Failure | None) -> Failure:
    return no_evidence(
        f"the analysis of {ctx.spec.target.described} got no conclusive measurements", failure
    )


def _analysis_message(ctx: Context, run: Run) -> str:
    assert run.canary is not None
    done = progress_line(ctx.spec.templates, run.canary.analysis)
    return f"{step_name(ctx.spec.canary_steps, run.canary.step)}: {done}"
