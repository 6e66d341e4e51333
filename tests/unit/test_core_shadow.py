"""A shadow step and comparison analysis, pass by pass: the challenger gets a copy of
the traffic, and is judged against the champion on it before anything is promoted."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest

from promotion_operator.core.canary_stepping import due_queries
from promotion_operator.core.canary_steps import (
    Analysis,
    AnalysisTemplate,
    CanaryStep,
    Pause,
    SetWeight,
    Shadow,
    check_steps,
)
from promotion_operator.core.comparisons import (
    Difference,
    Distribution,
    MannWhitney,
    Ratio,
    Samples,
)
from promotion_operator.core.pass_io import Reading, Side
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import ActionKind, Phase, Verdict, from_status, to_status
from promotion_operator.core.spec import PromotionSpec, Strategy
from tests.unit.core_builders import context, drive, make_spec
from tests.unit.test_core_canary import final, seldon, traffic
from tests.unit.test_core_v2 import PIPELINE_CANARY, calls, last, seldon_for_canary

LATENCY = 'latency{deployment="{{target}}",predictor="{{predictor}}"}'
PREDICTIONS = 'sum by (class) (predictions{predictor="{{predictor}}"})'


def template(name: str, query: str = LATENCY, **changes: Any) -> AnalysisTemplate:
    return AnalysisTemplate(name=name, query=query, interval="10s", count=3, **changes)


def shadow_spec(*steps: CanaryStep, **templates: AnalysisTemplate) -> PromotionSpec:
    return make_spec(
        strategy=Strategy.CANARY,
        canary_steps=steps,
        templates=templates,
        timeout_seconds=60.0,
    )


IRIS = {"setosa": 100.0, "versicolor": 100.0, "virginica": 100.0}
SHIFTED = {"setosa": 250.0, "versicolor": 25.0, "virginica": 25.0}
LATENCY_RATIO = template("latency", compare=Ratio(max=1.1))
JUDGED = shadow_spec(Shadow(), Analysis(("latency",)), latency=LATENCY_RATIO)


def by_predictor(champion: Any, challenger: Any) -> Any:
    """Prometheus answering the stable predictor ('main') and the canary apart."""

    def answer(query: str, _at: datetime.datetime) -> Reading:
        if 'predictor="canary"' in query:
            return Reading(challenger)
        if 'predictor="main"' in query:
            return Reading(champion)
        raise AssertionError(f"a query for neither predictor: {query}")

    return answer


# --- the shadow write -----------------------------------------------------------------------


def test_a_shadow_adds_the_challenger_with_shadow_true_and_leaves_the_champion_at_100() -> None:
    fake = seldon(prometheus=by_predictor(0.1, 0.1))

    drive(fake, spec=JUDGED)

    shadowed = fake.writes()[0].deployment
    assert shadowed is not None
    assert traffic(shadowed) == {"main": 100, "canary": None}
    canary = next(p for p in shadowed["spec"]["predictors"] if p["name"] == "canary")
    assert canary["shadow"] is True


def test_a_judged_shadow_is_promoted_in_one_write_after_it() -> None:
    fake = seldon(prometheus=by_predictor(0.1, 0.105))

    run = final(drive(fake, spec=JUDGED))

    assert run.phase == Phase.SUCCEEDED
    final_write = fake.writes()[-1].deployment
    assert final_write is not None
    assert traffic(final_write) == {"main": None}
    assert len(fake.writes()) == 2  # the shadow, then the promoted spec


def test_a_shadow_before_a_set_weight_is_not_taken_for_the_first_write() -> None:
    spec = shadow_spec(Shadow(), Analysis(("latency",)), SetWeight(20), latency=LATENCY_RATIO)
    fake = seldon(prometheus=by_predictor(0.1, 0.1))

    run = final(drive(fake, spec=spec))

    assert run.phase == Phase.SUCCEEDED
    kinds = [action.kind for action in fake.calls]
    assert kinds.count(ActionKind.VALIDATE) == 1  # validated once, never again
    weighted = fake.writes()[1].deployment
    assert weighted is not None
    assert traffic(weighted) == {"main": 80, "canary": 20}


def test_a_shadow_measures_both_values_in_each_measurement() -> None:
    fake = seldon(prometheus=by_predictor(0.1, 0.105))

    passes = drive(fake, spec=JUDGED)

    measured = [
        m
        for p in passes
        if p.step.run.canary is not None
        for m in p.step.run.canary.measurements
        if m.verdict == Verdict.PASSED
    ]
    assert measured
    first = measured[0]
    assert (first.value, first.champion, first.max) == (0.105, 0.1, 1.1)
    assert first.score == pytest.approx(1.05)


def test_a_challenger_slower_than_the_ratio_allows_is_rolled_back() -> None:
    fake = seldon(prometheus=by_predictor(0.1, 0.2))

    run = final(drive(fake, spec=JUDGED))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "AnalysisFailed"
    assert "ratio 2 (challenger 0.2, champion 0.1), above its max 1.1" in run.outcome.message
    assert fake.target is not None
    assert traffic(fake.target) == {"main": None}  # the previous spec, restored


def test_a_shadow_without_traffic_is_never_promoted() -> None:
    fake = seldon(prometheus=by_predictor(0.1, None))

    run = final(drive(fake, spec=JUDGED, max_passes=200))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "AnalysisInconclusive"
    assert fake.target is not None
    assert traffic(fake.target) == {"main": None}  # the previous spec, restored


def test_an_abort_after_the_shadow_was_written_rolls_it_back() -> None:
    spec = shadow_spec(Shadow(), Pause(), SetWeight(20), latency=LATENCY_RATIO)
    fake = seldon()
    paused = drive(fake, spec=spec, max_passes=15)
    assert paused[-1].step.run.phase == Phase.PAUSED
    recorded = to_status(paused[-1].step.run)

    run = final(drive(fake, spec=spec, status=recorded, requests=Requests(abort="bob")))

    assert run.phase == Phase.ROLLED_BACK
    assert fake.target is not None
    assert traffic(fake.target) == {"main": None}  # the previous spec, restored


def test_a_shadow_on_a_pipeline_mirrors_its_traffic_to_a_shadow_pipeline() -> None:
    spec = replace(
        PIPELINE_CANARY,
        canary_steps=(Shadow(), *PIPELINE_CANARY.canary_steps[1:]),
    )
    fake = seldon_for_canary()

    passes = drive(fake, spec=spec, max_passes=100)

    assert last(passes).phase == Phase.SUCCEEDED
    assert calls(passes) == [
        "Create model iris-v2",
        "Create pipeline chain-shadow",
        "Mirror",
        "Remove shadow",
        "Create pipeline chain-canary",
        "SetWeight 50",
        "Promote canary",
    ]
    # The analysis between them measured {{canary}}: the shadow Pipeline, by its name.
    assert fake.queries and set(fake.queries) == {'errors{pipeline="chain-shadow"}'}


# --- where a shadow may stand ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        pytest.param((Shadow(), Shadow()), "may have one shadow step", id="two"),
        pytest.param(
            (SetWeight(10), Shadow()), "the shadow step must come before any setWeight", id="late"
        ),
        pytest.param((Pause(), Shadow()), "must start with a setWeight or shadow", id="not-first"),
    ],
)
def test_steps_with_a_misplaced_shadow_are_refused(
    steps: tuple[CanaryStep, ...], problem: str
) -> None:
    assert problem in (check_steps(steps, {}) or "")


def test_a_shadow_first_then_weights_is_allowed() -> None:
    assert check_steps((Shadow(), SetWeight(10), SetWeight(50)), {}) is None


# --- the queries ----------------------------------------------------------------------------


def test_a_comparison_queries_the_champion_and_the_challenger() -> None:
    fake = seldon(prometheus=by_predictor(0.1, 0.1))
    analyzing = next(
        p.step.run for p in drive(fake, spec=JUDGED) if p.step.run.phase == Phase.ANALYZING
    )
    ctx = replace(context(spec=JUDGED), now=analyzing.phase_since + datetime.timedelta(hours=1))

    queries = due_queries(ctx, analyzing)

    assert [(q.side, q.promql) for q in queries] == [
        (Side.CHAMPION, 'latency{deployment="iris",predictor="main"}'),
        (Side.CHALLENGER, 'latency{deployment="iris",predictor="canary"}'),
    ]


def test_a_distribution_comparison_reads_its_queries_by_its_label() -> None:
    spec = shadow_spec(
        Shadow(),
        Analysis(("classes",)),
        classes=template("classes", PREDICTIONS, compare=Distribution("class", max_psi=0.2)),
    )
    fake = seldon(prometheus=by_predictor(IRIS, IRIS))
    analyzing = next(
        p.step.run for p in drive(fake, spec=spec) if p.step.run.phase == Phase.ANALYZING
    )
    ctx = replace(context(spec=spec), now=analyzing.phase_since + datetime.timedelta(hours=1))

    assert {q.by for q in due_queries(ctx, analyzing)} == {"class"}


# --- the verdicts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "distribution",
    [Distribution("class", max_psi=0.2), Distribution("class", significance=0.01)],
    ids=["psi", "chi-square"],
)
def test_a_shifted_distribution_of_predictions_is_rolled_back(distribution: Distribution) -> None:
    spec = shadow_spec(
        Shadow(),
        Analysis(("classes",)),
        classes=template("classes", PREDICTIONS, compare=distribution),
    )
    fake = seldon(prometheus=by_predictor(IRIS, SHIFTED))

    run = final(drive(fake, spec=spec))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and "predictions by class" in run.outcome.message


def test_the_same_distribution_of_predictions_passes() -> None:
    spec = shadow_spec(
        Shadow(),
        Analysis(("classes",)),
        classes=template("classes", PREDICTIONS, compare=Distribution("class", max_psi=0.2)),
    )
    fake = seldon(prometheus=by_predictor(IRIS, dict(IRIS)))

    assert final(drive(fake, spec=spec)).phase == Phase.SUCCEEDED


def mann_whitney_spec() -> PromotionSpec:
    return shadow_spec(
        Shadow(),
        Analysis(("latency",)),
        latency=replace(template("latency", compare=MannWhitney()), count=5),
    )


def test_a_mann_whitney_comparison_samples_until_its_last_measurement() -> None:
    fake = seldon(prometheus=by_predictor(0.1, 0.1))

    passes = drive(fake, spec=mann_whitney_spec())

    verdicts = [
        m.verdict
        for m in passes[-1].step.run.canary.measurements  # type: ignore[union-attr]
    ]
    assert verdicts == [Verdict.SAMPLED] * 4 + [Verdict.PASSED]


def test_a_mann_whitney_comparison_fails_a_challenger_significantly_slower() -> None:
    latencies = iter([0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19] * 4)

    def answer(query: str, _at: datetime.datetime) -> Reading:
        value = next(latencies)
        return Reading(value + (1.0 if 'predictor="canary"' in query else 0.0))

    fake = seldon(prometheus=answer)

    run = final(drive(fake, spec=mann_whitney_spec()))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and "Mann-Whitney p=0.00397" in run.outcome.message


def test_the_samples_survive_the_status_round_trip() -> None:
    fake = seldon(prometheus=by_predictor(0.1, 0.2))
    passes = drive(fake, spec=mann_whitney_spec())
    sampled = next(
        p.step.run
        for p in passes
        if p.step.run.canary is not None
        and any(a.challenger_samples for a in p.step.run.canary.analysis)
    )

    read = from_status(to_status(sampled))

    assert read is not None and read.canary is not None and sampled.canary is not None
    assert [(a.champion_samples, a.challenger_samples) for a in read.canary.analysis] == [
        ((0.1,), (0.2,))
    ]


# --- the comparisons alone ------------------------------------------------------------------


def test_a_ratio_of_two_zeros_is_one() -> None:
    judged, _ = Ratio(max=1.1).judge(0.0, 0.0, Samples(), last=True)

    assert (judged.verdict, judged.score) == (Verdict.PASSED, 1.0)


def test_a_ratio_against_a_champion_at_zero_is_inconclusive() -> None:
    judged, _ = Ratio(max=1.1).judge(0.0, 0.5, Samples(), last=True)

    assert judged.verdict == Verdict.INCONCLUSIVE
    assert "use difference" in judged.says


def test_a_difference_is_the_challenger_minus_the_champion() -> None:
    judged, _ = Difference(max=0.01).judge(0.02, 0.05, Samples(), last=True)

    assert judged.verdict == Verdict.FAILED
    assert judged.score == pytest.approx(0.03)


def test_a_mann_whitney_where_lower_is_worse_fails_a_lower_challenger() -> None:
    test = MannWhitney(worse="Lower")
    earlier = Samples((0.9, 0.91, 0.92, 0.93), (0.5, 0.51, 0.52, 0.53))

    judged, _ = test.judge(0.94, 0.54, earlier, last=True)

    assert judged.verdict == Verdict.FAILED
