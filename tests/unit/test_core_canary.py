"""The Canary strategy, pass by pass: traffic steps on the target, analysis, pauses,
the final promotion, rollback, crashes, and what a dry run reports."""

from __future__ import annotations

import datetime
import itertools
from dataclasses import replace
from typing import Any

import pytest

from promotion_operator.core.canary_stepping import fill_query
from promotion_operator.core.canary_steps import (
    CANARY_STEP_ANNOTATION,
    Analysis,
    AnalysisTemplate,
    CanaryStep,
    Pause,
    SetWeight,
)
from promotion_operator.core.pass_io import Action, Reading
from promotion_operator.core.planning import GENERATION_ANNOTATION, Plan, PlanningError
from promotion_operator.core.run import ActionKind, Failure, Phase, Run, Verdict
from promotion_operator.core.spec import PromotionSpec, Strategy
from promotion_operator.core.strategies.predictor_canary import (
    CANARY_PREDICTOR_ANNOTATION,
    canary_deployment,
    without_canary,
)
from tests.unit.core_builders import (
    PROMOTION,
    FakeSeldon,
    Pass,
    drive,
    foreign_target,
    make_spec,
    plan_for,
    previous_of,
    source_deployment,
)

ERROR_RATE = AnalysisTemplate(
    name="error-rate",
    query='errors{deployment="{{target}}",predictor="{{canary}}"}[{{interval}}]',
    max=0.05,
    interval="10s",
    count=3,
    failure_limit=0,
)
STEPS = (
    SetWeight(10),
    Analysis(("error-rate",)),
    SetWeight(50),
    Analysis(("error-rate",)),
)
CANARY = make_spec(
    strategy=Strategy.CANARY,
    canary_steps=STEPS,
    templates={"error-rate": ERROR_RATE},
    timeout_seconds=60.0,
)


def canary_spec(*steps: CanaryStep, **changes: Any) -> PromotionSpec:
    return replace(CANARY, canary_steps=steps or STEPS, **changes)


def single_predictor_source() -> dict[str, Any]:
    """The staging source with one serving predictor (a canary carries exactly one)."""
    source = source_deployment()
    source["spec"]["predictors"] = source["spec"]["predictors"][:1]
    return source


def seldon(**changes: Any) -> FakeSeldon:
    """The staging source and an existing, Available production target (stable 'main')."""
    return FakeSeldon(source=single_predictor_source(), target=foreign_target(), **changes)


def promoted(spec: PromotionSpec = CANARY) -> Plan:
    return plan_for(spec, single_predictor_source())


def final(passes: list[Pass]) -> Run:
    return passes[-1].step.run


def writes(fake: FakeSeldon) -> list[Action]:
    return fake.writes()


def traffic(deployment: Any) -> dict[str, int | None]:
    return {p["name"]: p.get("traffic") for p in deployment["spec"]["predictors"]}


def measuring(value: float) -> Any:
    return lambda _query, _at: Reading(value)


# --- the writes -----------------------------------------------------------------------------


def test_a_passing_canary_writes_each_weight_then_the_promoted_spec() -> None:
    fake = seldon()

    passes = drive(fake, spec=CANARY)

    assert final(passes).phase == Phase.SUCCEEDED
    assert [traffic(w.deployment) for w in writes(fake)] == [
        {"main": 90, "canary": 10},
        {"main": 50, "canary": 50},
        {"main": None},
    ]
    assert fake.target is not None
    assert fake.target["spec"] == promoted().deployment["spec"]


def test_every_write_is_an_update_marked_with_its_step() -> None:
    fake = seldon()

    drive(fake, spec=CANARY)

    assert [w.kind for w in writes(fake)] == [ActionKind.UPDATE] * 3
    marks = [w.deployment["metadata"]["annotations"] for w in writes(fake) if w.deployment]
    assert [m[CANARY_STEP_ANNOTATION] for m in marks] == ["0", "2", "4"]
    assert all(m[GENERATION_ANNOTATION] == str(PROMOTION.generation) for m in marks)


def test_the_canary_runs_through_every_phase_in_order() -> None:
    passes = drive(seldon(), spec=CANARY)

    phases: list[Phase] = []
    for one in passes:
        if not phases or phases[-1] != one.step.run.phase:
            phases.append(one.step.run.phase)
    assert phases == [
        Phase.PROMOTING,
        Phase.VERIFYING,
        Phase.ANALYZING,
        Phase.PROMOTING,
        Phase.VERIFYING,
        Phase.ANALYZING,
        Phase.PROMOTING,
        Phase.VERIFYING,
        Phase.SUCCEEDED,
    ]


def test_each_step_posts_an_event() -> None:
    passes = drive(seldon(), spec=CANARY)

    reasons = [e.reason for p in passes for e in p.events]
    assert reasons == [
        "Promoting",
        "WaitingForAvailable",
        "Analyzing",
        "Promoting",
        "WaitingForAvailable",
        "Analyzing",
        "Promoting",
        "WaitingForAvailable",
        "Succeeded",
    ]


def test_status_shows_the_step_and_weight_as_the_canary_goes() -> None:
    passes = drive(seldon(), spec=CANARY)

    seen = [
        (p.step.run.canary.step, p.step.run.canary.weight)
        for p in passes
        if p.step.run.canary is not None and p.step.run.phase == Phase.ANALYZING
    ]
    assert (1, 10) in seen and (3, 50) in seen
    done = final(passes).canary
    assert done is not None and (done.step, done.weight) == (4, 100)


def test_analysis_measures_count_times_at_its_interval() -> None:
    fake = seldon()

    passes = drive(fake, spec=CANARY)

    analysing = [p.at for p in passes if p.before and p.before.phase == Phase.ANALYZING]
    first = analysing[:3]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(first)]
    assert gaps == [10.0, 10.0]
    assert len(fake.queries) == 6  # 3 per analysis step


def test_queries_have_their_placeholders_filled() -> None:
    fake = seldon()

    drive(fake, spec=CANARY)

    assert fake.queries[0] == 'errors{deployment="iris",predictor="canary"}[10s]'


def test_fill_query_knows_every_placeholder() -> None:
    template = replace(
        ERROR_RATE, query="{{target}} {{namespace}} {{canary}} {{stable}} {{interval}}"
    )

    assert fill_query(template, CANARY, canary="c", stable="s") == "iris production c s 10s"


# --- analysis outcomes ------------------------------------------------------------------------


def test_a_failed_measurement_rolls_the_canary_back_to_the_stable_spec() -> None:
    fake = seldon(prometheus=measuring(0.2))
    before = foreign_target()

    passes = drive(fake, spec=CANARY)

    run = final(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert [traffic(w.deployment) for w in writes(fake)] == [
        {"main": 90, "canary": 10},
        {"main": None},
    ]
    assert writes(fake)[-1].rollback
    assert fake.target is not None and fake.target["spec"] == before["spec"]
    assert run.canary is not None and run.canary.weight == 0


def test_a_failed_analysis_names_the_template_the_value_and_the_threshold() -> None:
    passes = drive(seldon(prometheus=measuring(0.2)), spec=CANARY)

    outcome = final(passes).outcome
    assert outcome is not None
    assert outcome.reason == "AnalysisFailed"
    assert outcome.message == (
        "analysis 'error-rate' measured 0.2, above its max 0.05 "
        "(1 of 1 measurements failed, 0 tolerated)"
    )


def test_the_measurements_are_recorded_in_status() -> None:
    passes = drive(seldon(prometheus=measuring(0.2)), spec=CANARY)

    canary = final(passes).canary
    assert canary is not None
    (measurement,) = canary.measurements
    assert (measurement.template, measurement.verdict, measurement.value) == (
        "error-rate",
        Verdict.FAILED,
        0.2,
    )
    assert measurement.max == 0.05


def test_failures_up_to_the_limit_are_tolerated() -> None:
    values = iter([0.2, 0.0, 0.0, 0.0, 0.0, 0.0])
    tolerant = canary_spec(templates={"error-rate": replace(ERROR_RATE, failure_limit=1)})

    passes = drive(seldon(prometheus=lambda _q, _t: Reading(next(values))), spec=tolerant)

    assert final(passes).phase == Phase.SUCCEEDED


def test_a_minimum_is_a_threshold_too() -> None:
    success = replace(ERROR_RATE, name="success", min=0.99, max=None)
    spec = canary_spec(
        SetWeight(10),
        Analysis(("success",)),
        templates={"success": success},
    )

    passes = drive(seldon(prometheus=measuring(0.5)), spec=spec)

    outcome = final(passes).outcome
    assert outcome is not None and "below its min 0.99" in outcome.message


def unavailable(_query: str, _at: datetime.datetime) -> Reading:
    return Reading(failure=Failure("MetricsUnavailable", "connection refused", retryable=True))


def test_inconclusive_measurements_roll_back_at_the_deadline_never_promote() -> None:
    fake = seldon(prometheus=unavailable)

    passes = drive(fake, spec=CANARY, max_passes=200)

    run = final(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "AnalysisInconclusive"
    assert "MetricsUnavailable: connection refused" in run.outcome.message
    assert len(writes(fake)) == 2  # the first weight, then the rollback


def test_inconclusive_measurements_are_retried_with_backoff() -> None:
    fake = seldon(prometheus=unavailable)

    passes = drive(fake, spec=CANARY, max_passes=200)

    retries = [p for p in passes if p.step.run.last_error is not None]
    assert retries and all(
        p.step.run.last_error and p.step.run.last_error.reason == "MetricsUnavailable"
        for p in retries
    )
    gaps = [p.step.requeue_after or 0 for p in retries]
    assert gaps[0] < gaps[-1]


def test_a_recovered_prometheus_lets_the_canary_pass() -> None:
    def flaky(_query: str, at: datetime.datetime) -> Reading:
        if at < PASSES_START + datetime.timedelta(seconds=25):
            return unavailable(_query, at)
        return Reading(0.0)

    passes = drive(seldon(prometheus=flaky), spec=CANARY, max_passes=200)

    assert final(passes).phase == Phase.SUCCEEDED


PASSES_START = datetime.datetime(2025, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)


def test_a_query_prometheus_refuses_rolls_back_as_invalid_with_its_message() -> None:
    def refused(_query: str, _at: datetime.datetime) -> Reading:
        return Reading(failure=Failure("Invalid", "parse error at char 7: unexpected '{'"))

    passes = drive(seldon(prometheus=refused), spec=CANARY)

    run = final(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome == Failure(
        "Invalid", "analysis template 'error-rate': parse error at char 7: unexpected '{'"
    )


def test_analysis_steps_without_prometheus_fail_before_any_write() -> None:
    fake = seldon()

    passes = drive(fake, spec=CANARY, prometheus=False)

    run = final(passes)
    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "InvalidSettings"
    assert writes(fake) == []


# --- pauses -------------------------------------------------------------------------------


def test_a_timed_pause_waits_its_duration() -> None:
    spec = canary_spec(SetWeight(10), Pause(120))

    passes = drive(seldon(), spec=spec)

    paused = [p for p in passes if p.step.run.phase == Phase.PAUSED]
    assert paused and paused[0].step.requeue_after == 120
    resumed = next(p for p in passes if p.before and p.before.phase == Phase.PAUSED)
    assert (resumed.at - paused[0].at).total_seconds() == 120
    assert final(passes).phase == Phase.SUCCEEDED


def test_a_pause_without_duration_waits_for_a_person() -> None:
    spec = canary_spec(SetWeight(10), Pause())

    passes = drive(seldon(), spec=spec, max_passes=15)

    run = final(passes)
    assert run.phase == Phase.PAUSED
    ready = next(c for c in run.conditions if c["type"] == "Ready")
    assert ready["reason"] == "AwaitingResume"
    assert "deploy.mlops.dev/resume=true" in ready["message"]


def test_a_person_resumes_a_paused_canary_once() -> None:
    spec = canary_spec(SetWeight(10), Pause())

    passes = drive(seldon(), spec=spec, resume_at=300)

    assert final(passes).phase == Phase.SUCCEEDED
    assert sum(1 for p in passes if "resume" in p.step.used) == 1


# --- crashes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("write", [1, 2, 3])
def test_a_crash_after_any_write_never_writes_twice(write: int) -> None:
    fake = seldon()

    passes = drive(fake, spec=CANARY, crash_after_writes=frozenset({write}))

    assert final(passes).phase == Phase.SUCCEEDED
    assert len(writes(fake)) == 3


# --- the target -----------------------------------------------------------------------------


def test_a_canary_needs_an_existing_target() -> None:
    fake = FakeSeldon(source=single_predictor_source())

    run = final(drive(fake, spec=CANARY))

    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "Invalid"
    assert "does not exist" in run.outcome.message
    assert fake.calls == []


def test_a_target_already_split_between_predictors_is_refused() -> None:
    split = foreign_target()
    split["spec"]["predictors"].append({**split["spec"]["predictors"][0], "name": "b"})

    run = final(drive(FakeSeldon(source=single_predictor_source(), target=split), spec=CANARY))

    assert run.outcome is not None and run.outcome.reason == "Invalid"
    assert "exactly one serving (non-shadow) predictor; it has 2 (main, b)" in run.outcome.message


def test_someone_else_writing_the_target_mid_canary_fails_without_rollback() -> None:
    fake = seldon()

    def overwrite(_query: str, _at: datetime.datetime) -> Reading:
        fake.target = foreign_target(image="seldonio/iris:hotfix")
        return Reading(0.0)

    fake.prometheus = overwrite
    run = final(drive(fake, spec=CANARY))

    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "TargetChanged"
    assert not any(w.rollback for w in writes(fake))


def test_a_pinned_source_that_moves_on_mid_canary_rolls_the_canary_back() -> None:
    fake = seldon()

    def publish(_query: str, _at: datetime.datetime) -> Reading:
        assert fake.source is not None
        fake.source["metadata"]["generation"] = 6
        return Reading(0.0)

    fake.prometheus = publish
    run = final(drive(fake, spec=canary_spec(source_generation=5)))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "SourceChanged"
    assert writes(fake)[-1].rollback


def test_a_new_generation_first_removes_the_canary_an_older_one_left() -> None:
    left = canary_deployment(promoted(), previous_of(foreign_target()).deployment or {}, 10, 0)
    left["metadata"]["annotations"][GENERATION_ANNOTATION] = "1"  # the previous generation
    left["metadata"]["generation"] = 8
    left["status"] = {"state": "Available", "observedGeneration": 8}
    fake = FakeSeldon(source=single_predictor_source(), target=left)

    passes = drive(fake, spec=CANARY)

    first = writes(fake)[0]
    assert first.rollback and first.deployment is not None
    assert traffic(first.deployment) == {"main": 100}
    assert CANARY_PREDICTOR_ANNOTATION not in first.deployment["metadata"]["annotations"]
    assert final(passes).phase == Phase.SUCCEEDED


def test_without_canary_restores_a_single_serving_predictor() -> None:
    left = canary_deployment(promoted(), previous_of(foreign_target()).deployment or {}, 30, 2)

    clean = without_canary(left)

    assert traffic(clean) == {"main": 100}
    assert CANARY_STEP_ANNOTATION not in clean["metadata"]["annotations"]


@pytest.mark.parametrize("weight", [100, -5, 150])
def test_weights_the_webhook_would_refuse_are_never_planned(weight: int) -> None:
    with pytest.raises(PlanningError, match="between 0 and 99"):
        canary_deployment(promoted(), previous_of(foreign_target()).deployment or {}, weight, 0)


def test_a_canary_write_keeps_the_stable_spec_and_adds_the_promoted_predictor() -> None:
    stable = previous_of(foreign_target()).deployment or {}

    written = canary_deployment(promoted(), stable, 25, 0)

    main, canary = written["spec"]["predictors"]
    assert {**main, "traffic": None} == {**stable["spec"]["predictors"][0], "traffic": None}
    predictor = promoted().deployment["spec"]["predictors"][0]
    assert canary == {**predictor, "name": "canary", "traffic": 25}
    assert (main["traffic"], canary["traffic"]) == (75, 25)


# --- dry run ---------------------------------------------------------------------------------


def test_a_dry_run_reports_the_whole_sequence_and_writes_nothing() -> None:
    fake = seldon()

    run = final(drive(fake, spec=canary_spec(dry_run=True)))

    assert run.phase == Phase.SUCCEEDED
    assert writes(fake) == []
    assert run.plan is not None
    assert run.plan.steps == (
        "0: update production/iris: predictor 'canary' (promoted) at 10%, 'main' at 90%",
        "1: analysis error-rate",
        "2: update production/iris: predictor 'canary' (promoted) at 50%, 'main' at 50%",
        "3: analysis error-rate",
        "4: update production/iris: the promoted spec at 100%, predictor 'canary' removed",
    )


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        pytest.param((), "must start with a setWeight or shadow step", id="no-steps"),
        pytest.param((Analysis(("error-rate",)),), "must start with a setWeight", id="first"),
        pytest.param((SetWeight(100),), "setWeight must be 1..99", id="weight"),
        pytest.param(
            (SetWeight(10), Analysis(("latency",))),
            "does not define: latency",
            id="unknown-template",
        ),
    ],
)
def test_steps_admission_should_have_refused_fail_as_invalid(
    steps: tuple[CanaryStep, ...], problem: str
) -> None:
    fake = seldon()

    run = final(drive(fake, spec=replace(CANARY, canary_steps=steps)))

    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "Invalid"
    assert problem in run.outcome.message
    assert writes(fake) == []


def test_a_template_that_reached_its_count_is_not_measured_again() -> None:
    quick = replace(ERROR_RATE, name="quick", count=1)
    spec = canary_spec(
        SetWeight(10),
        Analysis(("error-rate", "quick")),
        templates={"error-rate": ERROR_RATE, "quick": quick},
    )
    fake = seldon()

    drive(fake, spec=spec)

    assert len(fake.queries) == ERROR_RATE.count + quick.count


def test_a_dry_run_plans_around_an_old_canary_without_removing_it() -> None:
    left = canary_deployment(promoted(), previous_of(foreign_target()).deployment or {}, 10, 0)
    left["metadata"]["annotations"][GENERATION_ANNOTATION] = "1"
    left["metadata"]["generation"] = 8
    left["status"] = {"state": "Available", "observedGeneration": 8}
    fake = FakeSeldon(source=single_predictor_source(), target=left)

    run = final(drive(fake, spec=canary_spec(dry_run=True)))

    assert run.phase == Phase.SUCCEEDED
    assert writes(fake) == []
    assert run.plan is not None and "'main' at 90%" in run.plan.steps[0]
