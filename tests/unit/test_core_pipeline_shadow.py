"""A Pipeline's shadow, pass by pass: the promoted spec runs as ``<target>-shadow``, the
target's shadow experiment mirrors its traffic there, comparisons judge the two
Pipelines by name, and the shadow is promoted (``PUT .../experiment/shadow``), handed
over to a weighted canary (``DELETE .../experiment/shadow`` first), or rolled back."""

from __future__ import annotations

import copy
import datetime
from dataclasses import replace
from typing import Any

from promotion_operator.core.canary_stepping import due_queries
from promotion_operator.core.canary_steps import (
    Analysis,
    AnalysisTemplate,
    CanaryStep,
    Pause,
    SetWeight,
    Shadow,
)
from promotion_operator.core.comparisons import Difference
from promotion_operator.core.pass_io import Reading, Side
from promotion_operator.core.planning import written_by
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import ActionKind, Failure, Phase, Run, to_status
from promotion_operator.core.spec import PromotionSpec, Strategy
from tests.unit.core_builders import PROMOTION, FakeSeldon, Pass, context, drive
from tests.unit.test_core_v2 import (
    ERROR_RATE,
    PIPELINE_SPEC,
    calls,
    earlier_canary,
    last,
    seldon_for_canary,
)

#: The share of failed requests of whichever Pipeline ``{{predictor}}`` names.
ERRORS = AnalysisTemplate(
    "errors",
    'errors{pipeline="{{predictor}}"}',
    interval="30s",
    count=2,
    compare=Difference(max=0.01),
)


def shadow_spec(*steps: CanaryStep, **changes: Any) -> PromotionSpec:
    return replace(
        PIPELINE_SPEC,
        strategy=Strategy.CANARY,
        canary_steps=steps,
        templates={"errors": ERRORS, "error-rate": ERROR_RATE},
        **changes,
    )


JUDGED = shadow_spec(Shadow(), Analysis(("errors",)))
THEN_WEIGHTED = shadow_spec(
    Shadow(), Analysis(("errors",)), SetWeight(20), Analysis(("error-rate",))
)
SHADOW_PASSED = ["Create model iris-v2", "Create pipeline chain-shadow", "Mirror", "Promote shadow"]
HANDED_OVER = [
    "Create model iris-v2",
    "Create pipeline chain-shadow",
    "Mirror",
    "Remove shadow",
    "Create pipeline chain-canary",
    "SetWeight 20",
    "Promote canary",
]


def by_pipeline(stable: float, shadow: float | None, canary: float = 0.0) -> Any:
    """Prometheus answering each Pipeline apart, by the name in the query."""

    def answer(query: str, _at: datetime.datetime) -> Reading:
        if 'pipeline="chain-shadow"' in query:
            return Reading(shadow)
        if 'pipeline="chain-canary"' in query:
            return Reading(canary)
        if 'pipeline="chain"' in query:
            return Reading(stable)
        raise AssertionError(f"a query for no Pipeline of the run: {query}")

    return answer


def seldon(stable: float = 0.01, shadow: float | None = 0.012, **changes: Any) -> FakeSeldon:
    """``production/chain`` serving ``prep`` and ``iris``; the source names ``iris-v2``."""
    return seldon_for_canary(prometheus=by_pipeline(stable, shadow), **changes)


def analyzing(passes: list[Pass]) -> Run:
    return next(p.step.run for p in passes if p.step.run.phase == Phase.ANALYZING)


# --- promoted -------------------------------------------------------------------------------


def test_a_judged_pipeline_shadow_is_promoted_through_its_experiment() -> None:
    fake = seldon()

    passes = drive(fake, spec=JUDGED, max_passes=100)

    assert calls(passes) == SHADOW_PASSED
    run = last(passes)
    assert run.phase == Phase.SUCCEEDED
    assert fake.target is not None
    assert [s["name"] for s in fake.target["spec"]["steps"]] == ["prep", "iris-v2"]
    assert written_by(fake.target, PROMOTION)
    assert fake.experiment is None and "chain-shadow" not in fake.pipelines
    assert run.canary is not None
    assert (run.canary.canary_predictor, run.canary.stable_predictor) == ("chain-shadow", "chain")
    assert run.canary.weight == 100


def test_the_shadow_pipeline_carries_the_promoted_spec_and_this_runs_annotations() -> None:
    fake = seldon()

    passes = drive(fake, spec=JUDGED, max_passes=100)

    create = next(p.action for p in passes if p.action and p.action.pipeline == "chain-shadow")
    assert create.kind == ActionKind.CREATE and create.deployment is not None
    assert create.deployment["metadata"]["name"] == "chain-shadow"
    assert written_by(create.deployment, PROMOTION)
    assert create.deployment["metadata"]["annotations"]["deploy.mlops.dev/canary-step"] == "2"
    assert [s["name"] for s in create.deployment["spec"]["steps"]] == ["prep", "iris-v2"]


def test_the_experiment_mirrors_only_once_the_shadow_pipeline_is_ready() -> None:
    fake = seldon()

    passes = drive(fake, spec=JUDGED, max_passes=100)

    created = next(p for p in passes if p.action and p.action.pipeline == "chain-shadow")
    mirrored = next(p for p in passes if p.action and p.action.kind == ActionKind.MIRROR)
    assert (mirrored.at - created.at).total_seconds() >= fake.rollout_seconds
    assert mirrored.step.run.canary is not None and mirrored.step.run.canary.weight == 0
    waiting = [p.step.run.conditions[0]["message"] for p in passes if p.at < mirrored.at]
    assert any(
        "waiting for the shadow production/chain-shadow to become Ready" in m for m in waiting
    )


def test_the_comparison_queries_name_the_target_and_the_shadow_pipeline() -> None:
    fake = seldon()

    passes = drive(fake, spec=JUDGED, max_passes=100)

    assert set(fake.queries) == {'errors{pipeline="chain"}', 'errors{pipeline="chain-shadow"}'}
    run = analyzing(passes)
    ctx = replace(context(spec=JUDGED), now=run.phase_since + datetime.timedelta(hours=1))
    assert [(q.side, q.promql) for q in due_queries(ctx, run)] == [
        (Side.CHAMPION, 'errors{pipeline="chain"}'),
        (Side.CHALLENGER, 'errors{pipeline="chain-shadow"}'),
    ]


# --- handed over to a canary ------------------------------------------------------------------


def test_a_weight_after_the_shadow_removes_it_then_runs_the_canary_as_before() -> None:
    fake = seldon()

    passes = drive(fake, spec=THEN_WEIGHTED, max_passes=100)

    assert calls(passes) == HANDED_OVER
    assert last(passes).phase == Phase.SUCCEEDED
    removed = next(p.action for p in passes if p.action and p.action.kind == ActionKind.REMOVE)
    assert not removed.rollback
    assert fake.experiment is None
    assert "chain-shadow" not in fake.pipelines and "chain-canary" not in fake.pipelines
    assert fake.target is not None
    assert [s["name"] for s in fake.target["spec"]["steps"]] == ["prep", "iris-v2"]


def test_after_the_handover_the_canary_pipeline_is_measured() -> None:
    fake = seldon()

    passes = drive(fake, spec=THEN_WEIGHTED, max_passes=100)

    weighted = next(
        p.step.run for p in passes if p.action and p.action.kind == ActionKind.SET_WEIGHT
    )
    assert weighted.canary is not None
    assert (weighted.canary.canary_predictor, weighted.canary.weight) == ("chain-canary", 20)
    # error-rate measures {{canary}}: the canary Pipeline once it takes traffic.
    assert 'errors{pipeline="chain-canary"}' in fake.queries
    assert fake.queries.index('errors{pipeline="chain-canary"}') > fake.queries.index(
        'errors{pipeline="chain-shadow"}'
    )


def test_the_dry_run_lists_the_shadow_the_handover_and_the_promotion() -> None:
    passes = drive(seldon(), spec=replace(THEN_WEIGHTED, dry_run=True))

    assert calls(passes) == []
    assert last(passes).plan.steps == (
        "create Model production/iris-v2",
        "wait until the Models prep, iris-v2 are Ready in production",
        "create Pipeline production/chain-shadow (the promoted spec)",
        "0: experiment on production/chain: chain-shadow mirrored (a copy of its traffic)",
        "1: analysis errors",
        "2: experiment on production/chain: chain-canary at 20%, after removing the shadow "
        "experiment and chain-shadow and creating Pipeline production/chain-canary "
        "(the promoted spec)",
        "3: analysis error-rate",
        "4: promote the canary: production/chain takes chain-canary's spec; "
        "the experiment and chain-canary are removed",
    )


def test_the_dry_run_of_a_shadow_alone_promotes_the_shadow() -> None:
    passes = drive(seldon(), spec=replace(JUDGED, dry_run=True))

    assert last(passes).plan.steps[-1] == (
        "2: promote the shadow: production/chain takes chain-shadow's spec; "
        "the experiment and chain-shadow are removed"
    )


# --- rolled back ------------------------------------------------------------------------------


def test_a_failed_comparison_removes_the_shadow_and_its_new_model_and_leaves_the_target() -> None:
    fake = seldon(stable=0.01, shadow=0.2)
    before = copy.deepcopy(fake.target)

    passes = drive(fake, spec=JUDGED, max_passes=100)

    assert calls(passes) == [
        "Create model iris-v2",
        "Create pipeline chain-shadow",
        "Mirror",
        "Remove shadow",
        "Delete model iris-v2",
    ]
    run = last(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "AnalysisFailed"
    assert "difference 0.19 (challenger 0.2, champion 0.01)" in run.outcome.message
    assert fake.target == before
    assert fake.experiment is None and "chain-shadow" not in fake.pipelines
    assert "iris-v2" not in fake.models


def test_a_shadow_without_traffic_is_never_promoted() -> None:
    fake = seldon(shadow=None)

    run = last(drive(fake, spec=replace(JUDGED, timeout_seconds=60.0), max_passes=200))

    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "AnalysisInconclusive"
    assert fake.experiment is None and "chain-shadow" not in fake.pipelines


def test_a_failing_shadow_pipeline_is_deleted_before_any_experiment() -> None:
    fake = seldon(model_states={"chain-shadow": "Failed"})

    passes = drive(fake, spec=JUDGED, max_passes=100)

    assert calls(passes) == [
        "Create model iris-v2",
        "Create pipeline chain-shadow",
        "Delete pipeline chain-shadow",
        "Delete model iris-v2",
    ]
    run = last(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "TargetFailed"
    assert "production/chain-shadow went LoadFailed" in run.outcome.message


def test_a_refused_mirror_deletes_the_shadow_pipeline_it_was_for() -> None:
    fake = seldon()
    fake.experiment_refusal = Failure("Invalid", "experiment refused", 400)

    passes = drive(fake, spec=JUDGED, max_passes=100)

    assert calls(passes) == [
        "Create model iris-v2",
        "Create pipeline chain-shadow",
        "Mirror",
        "Delete pipeline chain-shadow",
        "Delete model iris-v2",
    ]
    assert last(passes).phase == Phase.ROLLED_BACK


def test_a_failed_canary_after_the_handover_removes_the_canary_not_the_gone_shadow() -> None:
    fake = seldon_for_canary(prometheus=by_pipeline(0.01, 0.012, canary=0.5))

    passes = drive(fake, spec=THEN_WEIGHTED, max_passes=100)

    assert calls(passes) == [*HANDED_OVER[:-1], "Remove canary", "Delete model iris-v2"]
    assert last(passes).phase == Phase.ROLLED_BACK
    assert fake.experiment is None and not fake.pipelines


def test_a_promoted_shadow_that_fails_gets_the_previous_target_back() -> None:
    fake = seldon(rollout_state="Failed")
    before = copy.deepcopy(fake.target)
    assert before is not None

    passes = drive(fake, spec=JUDGED, max_passes=100)

    assert calls(passes) == [*SHADOW_PASSED, "Update", "Delete model iris-v2"]
    assert last(passes).phase == Phase.ROLLED_BACK
    assert fake.target is not None and fake.target["spec"] == before["spec"]


# --- aborted ----------------------------------------------------------------------------------


def test_an_abort_during_the_shadows_analysis_removes_the_shadow_and_the_models() -> None:
    fake = seldon()
    passes = drive(fake, spec=JUDGED, max_passes=100)
    measuring = next(p for p in passes if p.step.run.phase == Phase.ANALYZING)
    fake = seldon()
    passes = drive(fake, spec=JUDGED, max_passes=passes.index(measuring) + 1)
    assert last(passes).phase == Phase.ANALYZING
    assert fake.experiment is not None and "chain-shadow" in fake.pipelines

    rest = drive(fake, spec=JUDGED, status=to_status(last(passes)), requests=Requests(abort="bob"))

    assert calls(rest) == ["Remove shadow", "Delete model iris-v2"]
    run = last(rest)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "Aborted"
    assert fake.experiment is None and not fake.pipelines


def test_an_abort_during_a_pause_after_the_shadow_removes_the_shadow() -> None:
    spec = shadow_spec(Shadow(), Pause(), SetWeight(20))
    fake = seldon()
    paused = drive(fake, spec=spec, max_passes=100)
    assert last(paused).phase == Phase.PAUSED

    rest = drive(fake, spec=spec, status=to_status(last(paused)), requests=Requests(abort="bob"))

    assert calls(rest) == ["Remove shadow", "Delete model iris-v2"]
    assert last(rest).phase == Phase.ROLLED_BACK


# --- crash safety -----------------------------------------------------------------------------


def test_a_restart_after_each_write_of_a_shadow_writes_nothing_twice() -> None:
    fake = seldon()

    passes = drive(fake, spec=JUDGED, max_passes=100, crash_after_writes=frozenset({1, 2, 3, 4}))

    assert calls(passes) == SHADOW_PASSED
    assert last(passes).phase == Phase.SUCCEEDED


def test_a_restart_after_each_write_of_a_handover_writes_nothing_twice() -> None:
    fake = seldon()

    passes = drive(
        fake,
        spec=THEN_WEIGHTED,
        max_passes=100,
        crash_after_writes=frozenset(range(1, len(HANDED_OVER) + 1)),
    )

    assert calls(passes) == HANDED_OVER
    assert last(passes).phase == Phase.SUCCEEDED


def test_a_restart_that_lost_the_record_of_the_mirror_sees_the_experiment() -> None:
    fake = seldon()

    passes = drive(fake, spec=JUDGED, max_passes=100, crash_after_writes=frozenset({3}))

    mirrors = [p for p in passes if p.action and p.action.kind == ActionKind.MIRROR]
    assert len(mirrors) == 1
    after = passes[passes.index(mirrors[0]) + 1]
    assert after.action is None
    assert "mirrors its traffic to chain-shadow" in after.step.run.conditions[0]["message"]


# --- an earlier run's shadow --------------------------------------------------------------------


def earlier_shadow(generation: str) -> dict[str, Any]:
    """The shadow Pipeline an earlier run of this ModelPromotion left beside the target."""
    left = earlier_canary(generation)
    left["metadata"]["name"] = "chain-shadow"
    return left


def shadow_experiment() -> dict[str, Any]:
    spec = {
        "candidates": [{"name": "chain", "weight": 100}],
        "mirror": {"name": "chain-shadow", "percent": 100},
    }
    return {"metadata": {"name": "chain"}, "spec": spec}


def test_a_replace_removes_the_shadow_an_earlier_run_left_with_its_experiment() -> None:
    fake = seldon(pipelines={"chain-shadow": earlier_shadow("1")})
    fake.experiment = shadow_experiment()

    passes = drive(fake, spec=PIPELINE_SPEC)

    assert calls(passes)[0] == "Remove shadow"
    assert last(passes).phase == Phase.SUCCEEDED
    assert fake.experiment is None and "chain-shadow" not in fake.pipelines


def test_a_new_run_deletes_a_shadow_pipeline_left_without_its_experiment() -> None:
    fake = seldon(pipelines={"chain-shadow": earlier_shadow("1")})

    passes = drive(fake, spec=JUDGED, max_passes=100)

    assert calls(passes) == ["Delete pipeline chain-shadow", *SHADOW_PASSED]
    assert last(passes).phase == Phase.SUCCEEDED


def test_a_shadow_pipeline_of_another_promotion_is_taken_over_not_deleted() -> None:
    foreign = earlier_shadow("1")
    foreign["metadata"]["annotations"]["deploy.mlops.dev/promotion-uid"] = "someone-else"
    fake = seldon(pipelines={"chain-shadow": foreign})

    passes = drive(fake, spec=JUDGED, max_passes=100)

    assert calls(passes)[:2] == ["Create model iris-v2", "Update pipeline chain-shadow"]
    assert last(passes).phase == Phase.SUCCEEDED
