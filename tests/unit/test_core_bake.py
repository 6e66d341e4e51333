"""A bake, pass by pass: after the last write is verified, the run watches the target
a while (its templates measured, its alerts looked at) before it succeeds, and rolls
it back when a template fails or an alert fires."""

from __future__ import annotations

import copy
import datetime
import itertools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from promotion_operator.core.canary_steps import AnalysisTemplate
from promotion_operator.core.comparisons import Ratio
from promotion_operator.core.machine import reconcile
from promotion_operator.core.pass_io import Alerts, Reading
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import (
    ActionKind,
    BakeState,
    Failure,
    FiringAlert,
    Measurement,
    Phase,
    Run,
    TemplateProgress,
    Verdict,
    from_status,
    to_status,
)
from promotion_operator.core.spec import Bake, PromotionSpec, Strategy, parse_spec
from promotion_operator.core.transitions import deadline
from tests.unit.core_builders import (
    SPEC_DICT,
    FakeSeldon,
    Pass,
    at,
    condition,
    context,
    drive,
    foreign_target,
    make_spec,
    run_in,
    source_deployment,
)
from tests.unit.test_core_canary import CANARY, seldon, traffic
from tests.unit.test_core_v2 import PIPELINE_CANARY, calls, seldon_for_canary, seldon_for_pipeline

ERROR_RATE = AnalysisTemplate(
    name="error-rate",
    query='errors{namespace="{{namespace}}",deployment="{{target}}"}[{{interval}}]',
    max=0.05,
    interval="10s",
    count=3,
)
WATCHED = {"namespace": "{{namespace}}", "deployment_name": "{{target}}"}
BAKE = Bake(seconds=60.0, duration="1m", templates=("error-rate",), alerts=WATCHED)
BAKED = make_spec(templates={"error-rate": ERROR_RATE}, bake=BAKE, timeout_seconds=60.0)
ALERT = {
    "alertname": "PredictorErrorRateHigh",
    "alertstate": "firing",
    "namespace": "production",
    "deployment_name": "iris",
    "predictor_name": "main",
    "severity": "critical",
}


def spec_with(**changes: Any) -> PromotionSpec:
    return replace(BAKED, bake=replace(BAKE, **changes))


def fake(**changes: Any) -> FakeSeldon:
    """The staging source and an existing production target (someone else's)."""
    return FakeSeldon(source=source_deployment(), target=foreign_target(), **changes)


def final(passes: list[Pass]) -> Run:
    return passes[-1].step.run


def bake_start(passes: list[Pass]) -> datetime.datetime:
    """When the bake started, as status records it (to the second, as every time)."""
    baking = next(p.step.run for p in passes if p.step.run.phase == Phase.BAKING)
    recorded = from_status(to_status(baking))
    assert recorded is not None and recorded.bake is not None
    return recorded.bake.started_at


def measuring(value: float) -> Any:
    return lambda _query, _at: Reading(value)


def unavailable(_query: str, _at: datetime.datetime) -> Reading:
    return Reading(failure=Failure("MetricsUnavailable", "connection refused", retryable=True))


def firing_from(seconds: float, *alerts: Mapping[str, str]) -> Any:
    """Prometheus answering ``alerts`` as firing from ``seconds`` after T0 on."""
    return lambda _labels, now: Alerts(tuple(alerts)) if now >= at(seconds) else Alerts()


def rollbacks(seldon: FakeSeldon) -> list[ActionKind]:
    return [w.kind for w in seldon.writes() if w.rollback]


# --- a bake that passes -------------------------------------------------------------------


def test_a_replace_with_a_bake_succeeds_once_its_duration_is_over() -> None:
    seldon = fake()

    passes = drive(seldon, spec=BAKED)

    run = final(passes)
    assert run.phase == Phase.SUCCEEDED
    assert passes[-1].at == bake_start(passes) + datetime.timedelta(seconds=60)
    assert [w.kind for w in seldon.writes()] == [ActionKind.UPDATE]
    assert condition(run, "Ready")["message"] == (
        "production/iris is Available with the promoted spec and its bake of 1m passed: "
        'analysis error-rate passed; no alert {namespace="production",deployment_name="iris"} '
        "fired"
    )


def test_the_bake_comes_between_verification_and_success() -> None:
    passes = drive(fake(), spec=BAKED)

    reasons = [e.reason for p in passes for e in p.events]
    assert reasons == ["Promoting", "WaitingForAvailable", "Baking", "Succeeded"]
    baking = next(p.step.run for p in passes if p.step.run.phase == Phase.BAKING)
    assert (condition(baking, "Ready")["status"], condition(baking, "Ready")["reason"]) == (
        "False",
        "Baking",
    )
    assert (
        condition(baking, "Progressing")["status"],
        condition(baking, "Progressing")["reason"],
    ) == (
        "True",
        "Baking",
    )


def test_the_bake_measures_its_templates_as_an_analysis_step_does() -> None:
    seldon = fake()

    passes = drive(seldon, spec=BAKED)

    assert seldon.queries == ['errors{namespace="production",deployment="iris"}[10s]'] * 3
    start, bake = bake_start(passes), final(passes).bake
    assert bake is not None
    assert [(m.at - start).total_seconds() for m in bake.measurements] == [10.0, 20.0, 30.0]


def test_the_bake_looks_at_the_targets_alerts_at_least_every_poll_delay() -> None:
    seldon = fake()

    passes = drive(seldon, spec=replace(BAKED, bake=replace(BAKE, templates=())))

    assert seldon.alert_queries
    assert all(
        q == {"namespace": "production", "deployment_name": "iris"} for q in seldon.alert_queries
    )
    baking = [p.at for p in passes if p.before is not None and p.before.phase == Phase.BAKING]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(baking)]
    assert gaps and max(gaps) <= 10.0
    assert final(passes).phase == Phase.SUCCEEDED


def test_looking_at_the_alerts_and_finding_none_writes_nothing() -> None:
    spec = spec_with(templates=())
    seldon = fake()
    baking = baking_status(seldon, spec=spec)
    ctx = replace(context(spec=spec), prometheus_configured=True)

    for seconds in (10, 20):
        later = replace(ctx, now=baking.phase_since + datetime.timedelta(seconds=seconds))
        result = reconcile(later, to_status(baking), seldon)

        assert result.status is None and result.events == ()
        assert result.requeue_after == 10.0


# --- a bake that fails ---------------------------------------------------------------------


def test_a_template_failing_in_the_bake_rolls_the_promotion_back() -> None:
    seldon = fake(prometheus=measuring(0.2))
    before = foreign_target()

    run = final(drive(seldon, spec=BAKED))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome == Failure(
        "AnalysisFailed",
        "analysis 'error-rate' measured 0.2, above its max 0.05 "
        "(1 of 1 measurements failed, 0 tolerated)",
    )
    assert rollbacks(seldon) == [ActionKind.UPDATE]
    assert seldon.target is not None and seldon.target["spec"] == before["spec"]


def test_a_firing_alert_rolls_the_promotion_back_naming_the_alert() -> None:
    seldon = fake(alerts=firing_from(45, ALERT))

    run = final(drive(seldon, spec=BAKED))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome == Failure(
        "AlertFiring",
        'alert PredictorErrorRateHigh{predictor_name="main",severity="critical"} fired during '
        "the bake of production/iris",
    )
    assert condition(run, "Progressing")["reason"] == "AlertFiring"
    assert run.bake is not None
    assert run.bake.alerts == (
        FiringAlert(
            "PredictorErrorRateHigh",
            {
                "deployment_name": "iris",
                "namespace": "production",
                "predictor_name": "main",
                "severity": "critical",
            },
        ),
    )
    assert seldon.target is not None and seldon.target["spec"] == foreign_target()["spec"]


def test_several_firing_alerts_are_all_named() -> None:
    other = {**ALERT, "alertname": "LatencyHigh", "predictor_name": "b"}
    seldon = fake(alerts=firing_from(45, ALERT, other))

    run = final(drive(seldon, spec=BAKED))

    assert run.outcome is not None and run.outcome.message.startswith(
        'alerts PredictorErrorRateHigh{predictor_name="main",severity="critical"}, '
        'LatencyHigh{predictor_name="b",severity="critical"} fired during the bake'
    )


def test_a_target_that_did_not_exist_is_removed_when_its_bake_fails() -> None:
    seldon = FakeSeldon(source=source_deployment(), alerts=firing_from(30, ALERT))

    run = final(drive(seldon, spec=BAKED))

    assert run.phase == Phase.ROLLED_BACK
    assert rollbacks(seldon) == [ActionKind.DELETE]
    assert seldon.target is None


def test_a_bake_without_conclusive_evidence_fails_at_its_deadline_never_passes() -> None:
    seldon = fake(prometheus=unavailable)

    passes = drive(seldon, spec=BAKED, max_passes=200)

    run = final(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "AnalysisInconclusive"
    assert run.outcome.message.startswith(
        "the bake of production/iris got no conclusive evidence before its deadline; "
        "last: MetricsUnavailable: connection refused"
    )
    assert not any(p.step.run.phase == Phase.SUCCEEDED for p in passes)
    failed = next(p for p in passes if p.step.run.phase == Phase.ROLLING_BACK)
    assert failed.at == bake_start(passes) + datetime.timedelta(seconds=60 + 60)


def test_alerts_prometheus_cannot_answer_are_looked_at_again_then_fail_the_bake() -> None:
    down = Alerts(failure=Failure("MetricsUnavailable", "connection refused", retryable=True))
    seldon = fake(alerts=lambda _labels, _at: down)

    passes = drive(seldon, spec=spec_with(templates=()), max_passes=200)

    retried = [p for p in passes if p.step.run.phase == Phase.BAKING and p.step.run.last_error]
    assert retried and condition(retried[0].step.run, "Progressing")["reason"] == "Retrying"
    run = final(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "AnalysisInconclusive"


def test_a_prometheus_back_before_the_deadline_lets_the_bake_pass() -> None:
    def flaky(query: str, now: datetime.datetime) -> Reading:
        return unavailable(query, now) if now < at(70) else Reading(0.0)

    passes = drive(fake(prometheus=flaky), spec=BAKED, max_passes=200)

    assert final(passes).phase == Phase.SUCCEEDED


def test_a_selector_prometheus_refuses_rolls_back_at_once() -> None:
    refused = Alerts(failure=Failure("Invalid", "bad_data: parse error"))
    seldon = fake(alerts=lambda _labels, _at: refused)

    run = final(drive(seldon, spec=BAKED))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome == Failure("Invalid", "bake alerts: bad_data: parse error")


def test_someone_else_writing_the_target_during_the_bake_fails_without_rollback() -> None:
    seldon = fake()

    def overwrite(_query: str, _at: datetime.datetime) -> Reading:
        seldon.target = foreign_target(image="seldonio/iris:hotfix")
        return Reading(0.0)

    seldon.prometheus = overwrite
    run = final(drive(seldon, spec=BAKED))

    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "TargetChanged"
    assert "during the bake" in run.outcome.message
    assert rollbacks(seldon) == []


def test_a_target_going_failed_during_the_bake_is_rolled_back() -> None:
    seldon = fake()

    def breaks(_query: str, _at: datetime.datetime) -> Reading:
        assert seldon.target is not None
        seldon.target["status"]["state"] = "Failed"
        seldon.rollout_state = "Failed"
        return Reading(0.0)

    seldon.prometheus = breaks
    run = final(drive(seldon, spec=BAKED))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "TargetFailed"
    assert "during the bake" in run.outcome.message


# --- abort, restarts, status ---------------------------------------------------------------


def baking_status(seldon: FakeSeldon, spec: PromotionSpec = BAKED, measured: int = 0) -> Run:
    """The run in Baking with ``measured`` measurements taken, as the drive recorded it."""
    passes = drive(seldon, spec=spec)
    baking = [p.step.run for p in passes if p.step.run.phase == Phase.BAKING]
    return next(
        run for run in baking if run.bake is not None and len(run.bake.measurements) == measured
    )


def test_an_abort_during_the_bake_rolls_the_promotion_back() -> None:
    seldon = fake()
    baking = baking_status(seldon, measured=1)
    seldon.target = copy.deepcopy(seldon.target)  # the promoted spec, as the bake left it

    passes = drive(
        seldon,
        spec=BAKED,
        status=to_status(baking),
        requests=Requests(abort="bob"),
        start=(baking.phase_since - at(0)).total_seconds() + 15,
    )

    run = final(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "Aborted"
    assert condition(run, "Progressing")["reason"] == "Aborted"
    assert seldon.target is not None and seldon.target["spec"] == foreign_target()["spec"]
    assert any("abort" in p.step.used for p in passes)


def test_a_restart_mid_bake_resumes_measuring_without_writing() -> None:
    seldon = fake()
    baking = baking_status(seldon, measured=1)
    written = len(seldon.writes())
    assert baking.bake is not None

    passes = drive(
        seldon,
        spec=BAKED,
        status=to_status(baking),
        start=(baking.bake.measurements[0].at - at(0)).total_seconds() + 3,
    )

    run = final(passes)
    assert run.phase == Phase.SUCCEEDED
    assert len(seldon.writes()) == written  # nothing written again
    assert run.bake is not None
    assert [p.taken for p in run.bake.analysis] == [3]
    assert passes[-1].at == baking.bake.ends_at


def test_the_bake_round_trips_through_status() -> None:
    bake = BakeState(
        started_at=at(100),
        ends_at=at(160),
        analysis=(TemplateProgress("error-rate", at(130), taken=2, failed=1, inconclusive=1),),
        measurements=(
            Measurement("error-rate", Verdict.PASSED, at(110), 0.01, None, 0.05),
            Measurement("error-rate", Verdict.INCONCLUSIVE, at(115), message="no data"),
        ),
        alerts=(FiringAlert("PredictorErrorRateHigh", {"predictor_name": "main"}),),
    )
    run = run_in(Phase.BAKING, phase_since=at(100), bake=bake)

    status = to_status(run)

    assert status["bake"]["endsAt"] == "2025-03-01T12:02:40Z"
    assert status["bake"]["alerts"] == [
        {"alertname": "PredictorErrorRateHigh", "labels": {"predictor_name": "main"}}
    ]
    assert from_status(status) == run


def test_an_unreadable_bake_in_status_is_named() -> None:
    status = to_status(run_in(Phase.BAKING, bake=BakeState(at(0), at(60))))
    status["bake"]["endsAt"] = "soon"

    with pytest.raises(ValueError, match=r"status\.bake\.endsAt is 'soon'"):
        from_status(status)


def test_the_deadline_covers_the_bake() -> None:
    run = run_in(Phase.BAKING, phase_since=at(100), bake=BakeState(at(100), at(160)))

    assert deadline(context(spec=BAKED), run) == at(160 + 60)


# --- what is refused before anything is written ----------------------------------------------


def test_a_bake_without_prometheus_fails_before_any_write() -> None:
    seldon = fake()

    run = final(drive(seldon, spec=BAKED, prometheus=False))

    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "InvalidSettings"
    assert "PROMETHEUS_URL" in run.outcome.message
    assert seldon.writes() == []


def test_a_bake_of_alerts_alone_needs_prometheus_too() -> None:
    seldon = fake()

    run = final(drive(seldon, spec=spec_with(templates=()), prometheus=False))

    assert run.outcome is not None and run.outcome.reason == "InvalidSettings"
    assert seldon.writes() == []


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param(spec_with(templates=("latency",)), "does not define: latency", id="undefined"),
        pytest.param(
            replace(
                BAKED,
                templates={
                    "error-rate": replace(
                        ERROR_RATE, query="x{p='{{predictor}}'}", max=None, compare=Ratio(max=1.1)
                    )
                },
            ),
            "cannot use templates with compare (error-rate)",
            id="compare",
        ),
        pytest.param(
            replace(
                BAKED, templates={"error-rate": replace(ERROR_RATE, query="e{p='{{canary}}'}")}
            ),
            "name the canary with {{canary}} or {{stable}}",
            id="canary",
        ),
        pytest.param(
            spec_with(seconds=20.0, duration="20s"),
            "'error-rate' takes 3 x 10s = 30s of measurements, longer than spec.bake.duration 20s",
            id="too-long",
        ),
        pytest.param(
            spec_with(alerts={"deployment-name": "x"}), "not a Prometheus label", id="name"
        ),
        pytest.param(
            spec_with(alerts={"alertstate": "pending"}), "cannot match alertstate", id="state"
        ),
        pytest.param(spec_with(templates=(), alerts={}), "needs templates", id="nothing"),
        pytest.param(spec_with(seconds=0.0, duration=""), "between 1s and 24h", id="no-duration"),
    ],
)
def test_a_bake_admission_should_have_refused_fails_as_invalid(
    spec: PromotionSpec, problem: str
) -> None:
    seldon = fake()

    run = final(drive(seldon, spec=spec))

    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "Invalid"
    assert problem in run.outcome.message
    assert seldon.writes() == []


def test_a_dry_run_says_it_would_bake() -> None:
    run = final(drive(fake(), spec=replace(BAKED, dry_run=True)))

    assert run.phase == Phase.SUCCEEDED
    assert condition(run, "Ready")["message"] == (
        "dry run: would update production/iris from staging/iris, then bake 1m (error-rate; "
        'alerts {namespace="production",deployment_name="iris"}); wrote nothing'
    )


def test_the_spec_reads_the_bake() -> None:
    spec = parse_spec(
        {
            **SPEC_DICT,
            "bake": {
                "duration": "1h30m",
                "templates": ["error-rate"],
                "alerts": {"matchLabels": {"namespace": "{{namespace}}"}},
            },
        }
    )

    assert spec.bake == Bake(5400.0, "1h30m", ("error-rate",), {"namespace": "{{namespace}}"})
    assert parse_spec(SPEC_DICT).bake is None


# --- a canary, and the other kinds ------------------------------------------------------------


CANARY_BAKED = replace(
    CANARY,
    templates={**CANARY.templates, "error-rate-all": replace(ERROR_RATE, name="error-rate-all")},
    bake=replace(BAKE, templates=("error-rate-all",)),
)
ALWAYS_FIRING = Alerts((ALERT,))  # looked at only while baking


def test_a_canary_bakes_after_its_final_promotion() -> None:
    target = seldon()

    passes = drive(target, spec=CANARY_BAKED, max_passes=100)

    phases: list[Phase] = []
    for one in passes:
        if not phases or phases[-1] != one.step.run.phase:
            phases.append(one.step.run.phase)
    assert phases[-4:] == [Phase.PROMOTING, Phase.VERIFYING, Phase.BAKING, Phase.SUCCEEDED]
    run = final(passes)
    assert run.canary is not None and run.canary.weight == 100
    assert target.queries[-1] == 'errors{namespace="production",deployment="iris"}[10s]'


def test_a_canary_rolled_back_by_its_bake_restores_the_stable_spec() -> None:
    target = seldon(alerts=lambda _labels, _now: ALWAYS_FIRING)

    run = final(drive(target, spec=CANARY_BAKED, max_passes=100))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "AlertFiring"
    assert run.canary is not None and run.canary.weight == 0
    assert target.target is not None and target.target["spec"] == foreign_target()["spec"]
    assert traffic(target.target) == {"main": None}


PIPELINE_BAKED = replace(PIPELINE_CANARY, bake=replace(BAKE, templates=()))


def test_a_pipeline_rolled_back_by_its_bake_undoes_the_pipeline_then_its_models() -> None:
    pipelines = seldon_for_pipeline(alerts=lambda _labels, _now: ALWAYS_FIRING)
    spec = replace(PIPELINE_BAKED, strategy=Strategy.REPLACE, canary_steps=())

    passes = drive(pipelines, spec=spec, max_passes=100)

    assert final(passes).phase == Phase.ROLLED_BACK
    assert pipelines.alert_queries[0] == {"namespace": "production", "deployment_name": "chain"}
    assert calls(passes) == ["Update model iris", "Create", "Delete", "Update model iris"]


def test_a_pipeline_canary_bakes_after_its_promotion_and_is_rolled_back_like_one() -> None:
    pipelines = seldon_for_canary(alerts=lambda _labels, _now: ALWAYS_FIRING)
    before = copy.deepcopy(pipelines.target)

    passes = drive(pipelines, spec=PIPELINE_BAKED, max_passes=200)

    assert final(passes).phase == Phase.ROLLED_BACK
    assert calls(passes)[-3:] == ["Promote canary", "Update", "Delete model iris-v2"]
    assert pipelines.target is not None and before is not None
    assert pipelines.target["spec"] == before["spec"]
