"""Measuring analysis templates: what a canary's analysis step and a bake share.

A template is due first one ``interval`` after its measuring started, then one
``interval`` after each conclusive measurement, or after a backoff when its last
measurement was inconclusive. Its readings in a pass (one query; for a comparison,
the champion's and the challenger's) make one :class:`Measurement`, folded into its
:class:`TemplateProgress` (:func:`measure`) until it has ``count`` conclusive
measurements or more than ``failureLimit`` failed ones. What that means for the run
(the next step, a rollback, the end of a bake) is the caller's:
:mod:`canary_stepping` for an analysis step, :mod:`baking` for a bake.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple

from promotion_operator.core.canary_steps import AnalysisTemplate, Templates
from promotion_operator.core.comparisons import Samples
from promotion_operator.core.pass_io import Context, Query, Reading, Side
from promotion_operator.core.run import Failure, Measurement, Run, TemplateProgress, Verdict
from promotion_operator.core.transitions import backoff

#: Measurements kept in status (the most recent ones of the run).
RECENT_MEASUREMENTS = 10


def sides(template: AnalysisTemplate | None) -> tuple[Side, ...]:
    """Whom ``template``'s queries measure: what its placeholders name, or, for a
    comparison, the champion and then the challenger."""
    if template is None or template.compare is None:
        return (Side.MEASURED,)
    return (Side.CHAMPION, Side.CHALLENGER)


def due_queries(
    templates: Templates,
    progress: Sequence[TemplateProgress],
    now: datetime.datetime,
    promql: Callable[[AnalysisTemplate, Side], str],
) -> list[Query]:
    """The queries of the templates due at ``now`` that have not reached their count:
    one per template, two (champion and challenger) per comparison; ``promql`` fills
    a template's placeholders in for a side."""
    queries = []
    for current in progress:
        template = templates.get(current.template)
        if template is None or current.due_at > now or current.taken >= template.count:
            continue
        by = template.compare.by if template.compare is not None else None
        for side in sides(template):
            queries.append(Query(template.name, side, promql(template, side), by))
    return queries


class Measured(NamedTuple):
    """What one pass's readings did to the templates being measured.

    ``refused``: a reading that asking again cannot help (a query Prometheus refused),
    which ends the measuring at once; ``progress`` and ``recent`` are then those from
    before the pass. ``failed``: a template with more failed measurements than its
    ``failureLimit`` (``AnalysisFailed``, naming it). ``inconclusive``: the first
    reading without an answer, to be measured again after a backoff.
    """

    progress: tuple[TemplateProgress, ...]
    recent: tuple[Measurement, ...]
    refused: Failure | None = None
    failed: Failure | None = None
    inconclusive: Failure | None = None


def measure(
    ctx: Context,
    progress: Sequence[TemplateProgress],
    recent: Sequence[Measurement],
    readings: Mapping[tuple[str, Side], Reading],
) -> Measured:
    """Fold the pass's ``readings`` into ``progress`` and the ``recent`` measurements."""
    folded: list[TemplateProgress] = []
    measured: list[Measurement] = []
    inconclusive: Failure | None = None
    for current in progress:
        template = ctx.spec.templates.get(current.template)
        answers = [readings.get((current.template, side)) for side in sides(template)]
        if template is None or any(answer is None for answer in answers):
            folded.append(current)  # not due, or not measured in this pass
            continue
        outcome = _measurement(ctx, template, current, [a for a in answers if a is not None])
        if isinstance(outcome, Failure):
            if not outcome.retryable:
                return Measured(tuple(progress), tuple(recent), refused=outcome)
            inconclusive = inconclusive or outcome
            folded.append(replace(current, inconclusive=current.inconclusive + 1))
            measured.append(
                Measurement(template.name, Verdict.INCONCLUSIVE, ctx.now, message=outcome.message)
            )
            continue
        measurement, samples = outcome
        failed = measurement.verdict == Verdict.FAILED
        folded.append(
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
    latest = (*recent, *measured)[-RECENT_MEASUREMENTS:]
    for current in folded:
        template = ctx.spec.templates.get(current.template)
        if template is not None and current.failed > template.failure_limit:
            last = next(m for m in reversed(latest) if m.template == template.name)
            failure = _analysis_failed(template.name, last, current, template.failure_limit)
            return Measured(tuple(folded), latest, failed=failure, inconclusive=inconclusive)
    return Measured(tuple(folded), latest, inconclusive=inconclusive)


def complete(templates: Templates, progress: Sequence[TemplateProgress]) -> bool:
    """Whether every template has its count of conclusive measurements."""
    return not pending(templates, progress)


def pending(templates: Templates, progress: Sequence[TemplateProgress]) -> list[TemplateProgress]:
    """The templates still short of their count."""
    return [
        p for p in progress if p.template not in templates or p.taken < templates[p.template].count
    ]


def progress_line(templates: Templates, progress: Sequence[TemplateProgress]) -> str:
    """How far the templates are, for messages: ``error-rate 2/3 (1 failed)``."""
    return ", ".join(
        f"{p.template} {p.taken}/{templates[p.template].count if p.template in templates else '?'}"
        f"{f' ({p.failed} failed)' if p.failed else ''}"
        for p in progress
    )


def measure_again(ctx: Context, run: Run, failure: Failure) -> tuple[Run, datetime.datetime]:
    """``run`` retrying after an inconclusive ``failure``, and when to measure again:
    after the backoff of its reason (a Retry-After from Prometheus as a minimum)."""
    same = run.last_error is not None and run.last_error.reason == failure.reason
    since = run.error_since if same and run.error_since else ctx.now
    run = replace(run, last_error=failure, error_since=since)
    delay = backoff(ctx, since, poll=False)
    if failure.retry_after is not None:
        delay = max(delay, min(failure.retry_after, ctx.policy.max_delay))
    return run, ctx.now + datetime.timedelta(seconds=delay)


def postponed(
    progress: Sequence[TemplateProgress], now: datetime.datetime, retry_at: datetime.datetime
) -> tuple[TemplateProgress, ...]:
    """``progress`` with the templates due now due again at ``retry_at`` (after an
    inconclusive measurement: the backoff, not the interval)."""
    return tuple(replace(p, due_at=retry_at) if p.due_at <= now else p for p in progress)


def no_evidence(what: str, failure: Failure | None) -> Failure:
    """The end of measuring at its deadline without conclusive evidence: never pass on it."""
    last = f"; last: {failure.reason}: {failure.message}" if failure else ""
    return Failure("AnalysisInconclusive", f"{what} before its deadline{last}")


def _measurement(
    ctx: Context,
    template: AnalysisTemplate,
    progress: TemplateProgress,
    readings: Sequence[Reading],
) -> tuple[Measurement, Samples] | Failure:
    """One measurement of ``template`` from its readings (one per side), or why it has
    none: a refused query (not retryable), or an inconclusive answer."""
    values: list[float | Mapping[str, float]] = []
    for side, reading in zip(sides(template), readings, strict=True):
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
