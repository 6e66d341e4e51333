"""The bake: a while of watching the promotion after its last write was verified.

With ``spec.bake``, a run whose last write (Replace's one write, a canary's final
promotion) is verified does not succeed at once: it enters ``Baking`` for
``bake.duration``. Every pass of the bake reads the target (someone else's write
ends the run, as in an analysis step), measures the bake's templates that are due
exactly as an analysis step does (:mod:`measuring`), and looks at the alerts firing
now whose labels equal ``bake.alerts.matchLabels``. A template over its
``failureLimit`` ends the bake with ``AnalysisFailed``, a firing alert with
``AlertFiring``; both roll the promotion back as any failure after the write does
(``target_failed``: the strategy's ``undo``, then the previous spec, or the target
removed). Once the duration is over, every template has its count, and the last
look at the alerts found none, the run succeeds. An inconclusive answer (no data,
Prometheus unreachable) is asked again after a backoff; at the deadline (the end of
the duration plus ``verification.timeout``) a bake without conclusive evidence fails:
it never passes on missing evidence.

A bake writes nothing: its state is ``status.bake``, so a restart resumes measuring
from it. Passes that only looked at the alerts and found none change nothing and
cost no status write.

For a SeldonDeployment the last write keeps the previous version warm beside the
promoted one, at traffic 0 (:mod:`warm`; ``bake.warm``, the default). Every way a bake
fails goes through ``target_failed`` into the shared ``RollingBack`` phase, whose first
call is the strategy's ``undo``: with a warm copy, the switch of the traffic to it
(then the previous spec restored, as without one). A bake that passes with a warm copy
on the target records ``passedAt`` and, in the next pass, writes the target without
it (``Purpose.DROP_WARM``); the run succeeds once that write is Available.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from promotion_operator.core.canary_steps import scheduled
from promotion_operator.core.conditions import ready_message
from promotion_operator.core.kinds import readiness, ready_word
from promotion_operator.core.measuring import (
    complete,
    measure,
    measure_again,
    no_evidence,
    pending,
    postponed,
    progress_line,
)
from promotion_operator.core.measuring import (
    due_queries as due_queries_of,
)
from promotion_operator.core.pass_io import Action, Context, Decision, Observed, Purpose, Query
from promotion_operator.core.planning import PlanningError
from promotion_operator.core.run import (
    ActionKind,
    BakeState,
    Failure,
    FiringAlert,
    Phase,
    Run,
    format_time,
)
from promotion_operator.core.spec import PromotionSpec
from promotion_operator.core.transitions import (
    backoff,
    deadline,
    decision,
    finish,
    is_ours,
    retry_or_fail,
    target_changed,
    target_failed,
    timed_out,
    write_message,
)
from promotion_operator.core.warm import warm_predictor, without_warm
from promotion_operator.placeholders import fill, query_values

#: The shortest and longest bake (as the CRD bounds ``spec.bake.duration``).
MIN_SECONDS, MAX_SECONDS = 1.0, 24 * 3600.0
#: What a name in ``matchLabels`` must look like (Prometheus' label names).
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: The label Prometheus gives ``ALERTS`` to say an alert is pending or firing.
ALERT_STATE = "alertstate"
#: Alerts kept in ``status.bake.alerts`` and named in a message.
KEPT_ALERTS, NAMED_ALERTS = 10, 3


def check_bake(spec: PromotionSpec) -> None:
    """Refuse a bake the admission rules should have refused (an older CRD, say), with a
    PlanningError naming the field."""
    bake = spec.bake
    if bake is None:
        return
    if not MIN_SECONDS <= bake.seconds <= MAX_SECONDS:
        raise PlanningError("spec.bake.duration must be between 1s and 24h")
    if not bake.templates and not bake.alerts:
        raise PlanningError(
            "spec.bake needs templates to measure, alerts.matchLabels to watch, or both"
        )
    unknown = [name for name in bake.templates if name not in spec.templates]
    if unknown:
        raise PlanningError(
            "spec.bake.templates names templates that spec.analysis.templates does not "
            f"define: {', '.join(unknown)}"
        )
    compared = [name for name in bake.templates if spec.templates[name].compare is not None]
    if compared:
        raise PlanningError(
            f"spec.bake.templates cannot use templates with compare ({', '.join(compared)}): "
            "once the promotion is written there is no challenger to compare with the champion"
        )
    canary = [
        name
        for name in bake.templates
        if "{{canary}}" in spec.templates[name].query or "{{stable}}" in spec.templates[name].query
    ]
    if canary:
        raise PlanningError(
            f"spec.bake.templates: the queries of {', '.join(canary)} name the canary with "
            "{{canary}} or {{stable}}, and a bake has none: measure the target with "
            "{{target}} and {{namespace}}"
        )
    for name in bake.templates:
        template = spec.templates[name]
        seconds = template.count * template.interval_seconds
        if seconds > bake.seconds:
            raise PlanningError(
                f"spec.bake.templates: {name!r} takes {template.count} x {template.interval} = "
                f"{seconds:g}s of measurements, longer than spec.bake.duration "
                f"{bake.duration}: lower its count or interval, or bake longer"
            )
    for label in bake.alerts:
        if not LABEL_NAME.fullmatch(label):
            raise PlanningError(
                f"spec.bake.alerts.matchLabels: {label!r} is not a Prometheus label name "
                "([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        if label == ALERT_STATE or label.startswith("__"):
            raise PlanningError(
                f"spec.bake.alerts.matchLabels cannot match {label}: it is Prometheus' own "
                "(the operator selects the firing alerts)"
            )


def without_prometheus(ctx: Context) -> Failure | None:
    """Why a run with a bake must not start: the bake needs Prometheus, and there is none."""
    if ctx.spec.bake is None or ctx.prometheus_configured:
        return None
    return Failure(
        "InvalidSettings",
        "spec.bake measures templates and watches alerts on Prometheus, but the operator has "
        "no Prometheus (set PROMETHEUS_URL in its settings)",
    )


def describe(ctx: Context) -> str:
    """What the bake will do, for messages: ``bake 10m (error-rate; alerts {...})``."""
    bake = ctx.spec.bake
    assert bake is not None
    watched = []
    if bake.templates:
        watched.append(", ".join(bake.templates))
    if bake.alerts:
        watched.append(f"alerts {_selector(alert_labels(ctx))}")
    return f"bake {bake.duration} ({'; '.join(watched)})"


def start_bake(
    ctx: Context, run: Run, done: str, target: Mapping[str, Any] | None = None
) -> Decision:
    """The last write is verified (``done`` says so): bake it for ``spec.bake.duration``,
    keeping the warm copy the write carries on ``target`` (if any)."""
    bake = ctx.spec.bake
    assert bake is not None
    warm = warm_predictor(target) or ""
    state = BakeState(
        started_at=ctx.now,
        ends_at=ctx.now + datetime.timedelta(seconds=bake.seconds),
        analysis=scheduled(bake.templates, ctx.spec.templates, ctx.now),
        warm=warm,
    )
    run = replace(run, bake=state).moved_to(Phase.BAKING, ctx.now)
    if warm:
        done = f"{done}, the previous version warm beside it as predictor {warm!r} at 0%"
    return decision(ctx, run, f"{done}; {_baking(ctx, state)}", None, _next(ctx, state))


def due_queries(ctx: Context, run: Run) -> list[Query]:
    """The bake's template queries to run in this pass, placeholders filled in."""
    if run.phase != Phase.BAKING or run.bake is None or run.bake.passed_at is not None:
        return []
    values = _values(ctx)
    return due_queries_of(
        ctx.spec.templates,
        run.bake.analysis,
        ctx.now,
        lambda template, _side: fill(
            template.query, query_values(**values, interval=template.interval)
        ),
    )


def alert_labels(ctx: Context, run: Run | None = None) -> Mapping[str, str] | None:
    """The labels the alerts this pass looks at must have, placeholders filled in; None
    when it looks at none (not baking, or no ``alerts`` in the bake)."""
    bake = ctx.spec.bake
    if bake is None or not bake.alerts:
        return None
    if run is not None and (
        run.phase != Phase.BAKING or (run.bake is not None and run.bake.passed_at is not None)
    ):
        return None  # not baking, or the bake passed (its warm copy is being removed)
    values = _values(ctx)
    return {name: fill(value, values) for name, value in bake.alerts.items()}


def bake_pass(ctx: Context, run: Run, observed: Observed) -> Decision:
    """A pass of the bake: the target, the due measurements, the alerts; then on, the
    end (passed, or rolled back), or measuring again."""
    state, run_before = run.bake, run
    if state is None or ctx.spec.bake is None:
        # Only a status edited by hand gets here: bake from now on.
        return start_bake(
            ctx, run, "the recorded bake could not be found; baking again", observed.target
        )
    if observed.target_error is not None:
        return retry_or_fail(ctx, run, observed.target_error)
    target = observed.target
    if target is None or not is_ours(ctx, target, run):
        return target_changed(ctx, run, "the bake")
    if state.passed_at is not None:
        return _cool(ctx, run, state, target)
    seen = readiness(ctx.spec.target.kind, target)
    current = run.applied_generation is None or (
        seen.observed_generation is not None and seen.observed_generation >= run.applied_generation
    )
    if seen.failed and current:
        why = f": {seen.description}" if seen.description else ""
        went = f"{ctx.spec.target.described} went {seen.state} during the bake{why}"
        return target_failed(ctx, run, Failure("TargetFailed", went))

    measured = measure(ctx, state.analysis, state.measurements, observed.readings)
    if measured.refused is not None:
        return target_failed(ctx, run, measured.refused)
    state = replace(state, analysis=measured.progress, measurements=measured.recent)
    run = replace(run, bake=state)
    if measured.failed is not None:
        return target_failed(ctx, run, measured.failed)
    alerts = observed.alerts
    if alerts is not None and alerts.failure is None and alerts.firing:
        kept = tuple(_firing_alert(labels) for labels in alerts.firing[:KEPT_ALERTS])
        run = replace(run, bake=replace(state, alerts=kept))
        return target_failed(ctx, run, _alert_firing(ctx, alerts.firing))
    looked = alerts.failure if alerts is not None else None
    if looked is not None and not looked.retryable:
        # A selector Prometheus refuses, or no Prometheus any more: asking again cannot help.
        return target_failed(ctx, run, replace(looked, message=f"bake alerts: {looked.message}"))

    inconclusive = measured.inconclusive or looked
    if (
        inconclusive is None
        and ctx.now >= state.ends_at
        and complete(ctx.spec.templates, state.analysis)
    ):
        if warm_predictor(target) is not None:
            # One more write first: the target without its warm copy (recorded first).
            run = replace(run, bake=replace(state, passed_at=ctx.now))
            name = warm_predictor(target)
            message = f"{_passed(ctx, state)}; removing the warm predictor {name!r}"
            return decision(ctx, run, message, None, 0.0)
        return finish(ctx, run, Phase.SUCCEEDED, None, _passed(ctx, state))
    if ctx.now >= deadline(ctx, run):
        return target_failed(ctx, run, _no_evidence(ctx, inconclusive or run.last_error))
    if inconclusive is not None:
        run, retry_at = measure_again(ctx, run, inconclusive)
        state = replace(state, analysis=postponed(state.analysis, ctx.now, retry_at))
        run = replace(run, bake=state)
        message = f"inconclusive, looking again: {inconclusive.reason}: {inconclusive.message}"
        return decision(ctx, run, message, None, _next(ctx, state, retry_at))
    quiet = state == run_before.bake and run.last_error is None
    run = replace(run, last_error=None, error_since=None)
    # A pass that only looked (no measurement, no error over) keeps the message it found,
    # so it changes nothing and writes nothing.
    message = ready_message(run.conditions) if quiet else _baking(ctx, state)
    return decision(ctx, run, message, None, _next(ctx, state))


def _cool(ctx: Context, run: Run, state: BakeState, target: Mapping[str, Any]) -> Decision:
    """After a passed bake: write the target without its warm copy, then wait until it
    is Available and succeed. A target already without it is that write (a restart
    between the write and its record), verified at its own generation."""
    described = ctx.spec.target.described
    name = warm_predictor(target)
    if name is not None:
        drop = Action(
            ActionKind.UPDATE, without_warm(target, name), write_message(ctx), Purpose.DROP_WARM
        )
        return decision(
            ctx, run, f"bake passed; removing the warm predictor {name!r} from {described}", drop
        )
    generation = (target.get("metadata") or {}).get("generation")
    if isinstance(generation, int) and (
        run.applied_generation is None or generation > run.applied_generation
    ):
        run = replace(run, applied_generation=generation)
    seen = readiness(ctx.spec.target.kind, target)
    current = run.applied_generation is None or (
        seen.observed_generation is not None and seen.observed_generation >= run.applied_generation
    )
    if current and seen.ready:
        warm = f"; removed the warm predictor {state.warm!r}" if state.warm else ""
        return finish(ctx, run, Phase.SUCCEEDED, None, f"{_passed(ctx, state)}{warm}")
    if current and seen.failed:
        why = f": {seen.description}" if seen.description else ""
        went = f"{described} went {seen.state} once its warm predictor was removed{why}"
        return target_failed(ctx, run, Failure("TargetFailed", went))
    if ctx.now >= deadline(ctx, run):
        return target_failed(ctx, run, timed_out(ctx, seen.state))
    run = replace(run, last_error=None, error_since=None)
    wait = backoff(ctx, run.applied_at or state.passed_at or ctx.now, poll=True)
    return decision(ctx, run, ready_message(run.conditions), None, wait)


def _values(ctx: Context) -> dict[str, str]:
    """What the bake's placeholders become: the target's name and namespace."""
    target = ctx.spec.target
    return {"target": target.name, "namespace": target.namespace}


def _next(ctx: Context, state: BakeState, retry_at: datetime.datetime | None = None) -> float:
    """How long until the bake's next pass: the next template due, the end of the
    duration, the next look at the alerts (at least every ``--max-poll-delay``), or a
    retry after an inconclusive answer."""
    moments = [p.due_at for p in pending(ctx.spec.templates, state.analysis)]
    if state.ends_at > ctx.now:
        moments.append(state.ends_at)
    if retry_at is not None:
        moments.append(retry_at)  # the alerts are looked at again then too
    elif alert_labels(ctx) is not None:
        moments.append(ctx.now + datetime.timedelta(seconds=ctx.policy.max_poll))
    later = [moment for moment in moments if moment > ctx.now]
    if not later:
        return ctx.policy.max_poll if not moments else 0.0
    return max(0.0, (min(later) - ctx.now).total_seconds())


def _baking(ctx: Context, state: BakeState) -> str:
    """What the bake is doing, for the conditions: the same until something changes, so
    a pass that only looked at the alerts writes nothing."""
    parts = []
    if state.analysis:
        parts.append(progress_line(ctx.spec.templates, state.analysis))
    labels = alert_labels(ctx)
    if labels is not None:
        parts.append(f"watching alerts {_selector(labels)}")
    return (
        f"baking {ctx.spec.target.described} until {format_time(state.ends_at)}: {'; '.join(parts)}"
    )


def _passed(ctx: Context, state: BakeState) -> str:
    bake = ctx.spec.bake
    assert bake is not None
    parts = []
    if state.analysis:
        parts.append(f"analysis {', '.join(p.template for p in state.analysis)} passed")
    labels = alert_labels(ctx)
    if labels is not None:
        parts.append(f"no alert {_selector(labels)} fired")
    ready = ready_word(ctx.spec.target.kind)
    return (
        f"{ctx.spec.target.described} is {ready} with the promoted spec and its bake of "
        f"{bake.duration} passed: {'; '.join(parts)}"
    )


def _selector(labels: Mapping[str, str] | None) -> str:
    """``{namespace="production",deployment_name="iris"}``."""
    pairs = ",".join(
        f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in (labels or {}).items()
    )
    return "{" + pairs + "}"


def _firing_alert(labels: Mapping[str, str]) -> FiringAlert:
    name = labels.get("alertname", "")
    rest = {k: v for k, v in sorted(labels.items()) if k not in ("alertname", ALERT_STATE)}
    return FiringAlert(name, rest)


def _alert_firing(ctx: Context, firing: Sequence[Mapping[str, str]]) -> Failure:
    """``AlertFiring``, naming the alerts by name and the labels the selector did not fix:
    ``alert PredictorErrorRateHigh{predictor_name="main"} fired during the bake of ...``."""
    fixed = set(alert_labels(ctx) or {}) | {"alertname", ALERT_STATE}
    named = []
    for labels in firing[:NAMED_ALERTS]:
        rest = {k: v for k, v in sorted(labels.items()) if k not in fixed}
        named.append(f"{labels.get('alertname', 'unnamed')}{_selector(rest) if rest else ''}")
    more = f" and {len(firing) - NAMED_ALERTS} more" if len(firing) > NAMED_ALERTS else ""
    noun = "alert" if len(firing) == 1 else "alerts"
    return Failure(
        "AlertFiring",
        f"{noun} {', '.join(named)}{more} fired during the bake of {ctx.spec.target.described}",
    )


def _no_evidence(ctx: Context, failure: Failure | None) -> Failure:
    return no_evidence(
        f"the bake of {ctx.spec.target.described} got no conclusive evidence",
        failure,
    )
