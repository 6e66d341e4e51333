"""The core promoting Seldon Core v2 resources: a Model on its own, and a Pipeline with
the Models its steps name (written first, Ready before the Pipeline, undone on rollback)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from promotion_operator.core.canary_steps import Analysis, AnalysisTemplate, SetWeight
from promotion_operator.core.kinds import KINDS
from promotion_operator.core.pass_io import Reading
from promotion_operator.core.planning import written_by
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import ActionKind, Failure, Phase, from_status, to_status
from promotion_operator.core.spec import Kind, Strategy, parse_spec
from tests.unit.core_builders import PROMOTION, FakeSeldon, Pass, core_v2_status, drive

MODEL_SPEC = parse_spec(
    {
        "source": {"kind": "Model", "namespace": "staging", "name": "iris"},
        "target": {"namespace": "production"},
    }
)
PIPELINE_SPEC = parse_spec(
    {
        "source": {"kind": "Pipeline", "namespace": "staging", "name": "chain"},
        "target": {"namespace": "production"},
    }
)


def model(name: str, uri: str, namespace: str = "staging", generation: int = 3) -> dict[str, Any]:
    """A Model as Seldon Deploy returns it: server fields, Ready."""
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Model",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "resourceVersion": "17",
            "generation": generation,
        },
        "spec": {"storageUri": uri, "requirements": ["sklearn"], "replicas": 1},
        "status": core_v2_status(generation),
    }


def pipeline(
    namespace: str = "staging", steps: tuple[str, ...] = ("prep", "iris")
) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "chain", "namespace": namespace, "generation": 2, "uid": "p"},
        "spec": {"steps": [{"name": s} for s in steps], "output": {"steps": [steps[-1]]}},
        "status": core_v2_status(2),
    }


def seldon_for_model(target: dict[str, Any] | None = None, state: str = "Available") -> FakeSeldon:
    return FakeSeldon(
        source=model("iris", "gs://m/iris/v2"),
        target=target,
        kind=MODEL_SPEC.target.kind,
        rollout_seconds=5,
        rollout_state=state,
    )


def seldon_for_pipeline(**changes: Any) -> FakeSeldon:
    """Staging has the Pipeline and its two Models; production has ``prep`` already (same
    spec) and an older ``iris``, unless ``changes`` say otherwise."""
    fields: dict[str, Any] = {
        "source": pipeline(),
        "kind": PIPELINE_SPEC.target.kind,
        "source_models": [model("prep", "gs://m/prep/v1"), model("iris", "gs://m/iris/v2")],
        "models": {
            "prep": model("prep", "gs://m/prep/v1", "production", 1),
            "iris": model("iris", "gs://m/iris/v1", "production", 4),
        },
        "rollout_seconds": 5,
    }
    fields.update(changes)
    return FakeSeldon(**fields)


def writes(passes: list[Pass]) -> list[tuple[str, str]]:
    """Each write as (verb, what): ``("Create", "model iris")`` or ``("Update", "target")``."""
    return [
        (str(p.action.kind), f"model {p.action.model}" if p.action.model else "target")
        for p in passes
        if p.action is not None and p.action.kind != ActionKind.VALIDATE
    ]


def last(passes: list[Pass]) -> Any:
    return passes[-1].step.run


# --- a Model ---------------------------------------------------------------------------


def test_a_model_is_created_and_succeeds_once_its_ready_condition_is_true() -> None:
    seldon = seldon_for_model()
    passes = drive(seldon, spec=MODEL_SPEC)
    assert writes(passes) == [("Create", "target")]
    assert last(passes).phase == Phase.SUCCEEDED
    assert (
        "production/iris is Ready with the promoted spec" in last(passes).conditions[0]["message"]
    )


def test_a_model_is_not_validated_by_a_call_as_the_api_has_no_validation_for_core_v2() -> None:
    seldon = seldon_for_model()
    drive(seldon, spec=MODEL_SPEC)
    assert all(call.kind != ActionKind.VALIDATE for call in seldon.calls)


def test_a_model_write_carries_the_core_v2_api_version_and_no_server_fields() -> None:
    seldon = seldon_for_model()
    drive(seldon, spec=MODEL_SPEC)
    assert seldon.target is not None
    assert seldon.target["apiVersion"] == "mlops.seldon.io/v1alpha1"
    assert seldon.target["kind"] == "Model"
    assert "uid" not in seldon.target["metadata"]
    assert written_by(seldon.target, PROMOTION)


def test_model_overrides_replace_storage_uri_requirements_and_replicas() -> None:
    spec_dict = {
        "source": {"kind": "Model", "namespace": "staging", "name": "iris"},
        "target": {"namespace": "production"},
        "overrides": {
            "replicas": 3,
            "model": {"storageUri": "s3://prod/iris/v2", "requirements": ["sklearn", "gpu"]},
        },
    }
    seldon = seldon_for_model()
    passes = drive(seldon, spec=parse_spec(spec_dict))
    assert seldon.target is not None
    assert seldon.target["spec"] == {
        "storageUri": "s3://prod/iris/v2",
        "requirements": ["sklearn", "gpu"],
        "replicas": 3,
    }
    assert last(passes).plan.model_uris == ("s3://prod/iris/v2",)


def test_a_model_that_fails_to_load_is_removed_when_it_did_not_exist_before() -> None:
    seldon = seldon_for_model(state="Failed")
    passes = drive(seldon, spec=MODEL_SPEC)
    assert writes(passes) == [("Create", "target"), ("Delete", "target")]
    assert last(passes).phase == Phase.ROLLED_BACK
    assert last(passes).outcome.reason == "TargetFailed"
    assert "went LoadFailed: out of memory" in last(passes).outcome.message


def test_a_model_that_fails_to_load_gets_its_previous_spec_back() -> None:
    before = model("iris", "gs://m/iris/v1", "production", 4)
    seldon = seldon_for_model(target=copy.deepcopy(before), state="Failed")
    passes = drive(seldon, spec=MODEL_SPEC)
    assert writes(passes) == [("Update", "target"), ("Update", "target")]
    assert seldon.target is not None
    assert seldon.target["spec"] == before["spec"]


# --- a Pipeline --------------------------------------------------------------------------


def test_a_pipeline_writes_the_models_it_lacks_before_itself() -> None:
    seldon = seldon_for_pipeline(models={})
    passes = drive(seldon, spec=PIPELINE_SPEC)
    assert writes(passes) == [
        ("Create", "model prep"),
        ("Create", "model iris"),
        ("Create", "target"),
    ]
    assert last(passes).phase == Phase.SUCCEEDED


def test_a_pipeline_updates_a_model_at_another_spec_and_leaves_an_equal_one_alone() -> None:
    seldon = seldon_for_pipeline()
    passes = drive(seldon, spec=PIPELINE_SPEC)
    assert writes(passes) == [("Update", "model iris"), ("Create", "target")]
    assert [(d.name, d.action) for d in last(passes).models] == [
        ("prep", None),
        ("iris", ActionKind.UPDATE),
    ]


def test_the_pipeline_is_written_only_once_every_model_it_names_is_ready() -> None:
    seldon = seldon_for_pipeline()
    passes = drive(seldon, spec=PIPELINE_SPEC)
    model_write = next(p for p in passes if p.action is not None and p.action.model == "iris")
    pipeline_write = next(p for p in passes if p.action is not None and p.action.model is None)
    assert (pipeline_write.at - model_write.at).total_seconds() >= seldon.rollout_seconds
    messages = [p.step.run.conditions[0]["message"] for p in passes]
    assert any(
        m.startswith("waiting for the Models iris in production to become") for m in messages
    )


def test_the_pipelines_plan_lists_the_model_writes_before_its_own() -> None:
    seldon = seldon_for_pipeline()
    passes = drive(seldon, spec=PIPELINE_SPEC)
    assert last(passes).plan.steps == (
        "update Model production/iris",
        "wait until the Models prep, iris are Ready in production",
        "create Pipeline production/chain",
    )
    assert last(passes).plan.model_uris == ("gs://m/iris/v2", "gs://m/prep/v1")


def test_a_failing_pipeline_is_removed_then_its_models_removed_or_restored() -> None:
    seldon = seldon_for_pipeline(models={"iris": model("iris", "gs://m/iris/v1", "production", 4)})
    seldon.rollout_state = "Failed"
    passes = drive(seldon, spec=PIPELINE_SPEC)
    assert writes(passes) == [
        ("Create", "model prep"),
        ("Update", "model iris"),
        ("Create", "target"),
        ("Delete", "target"),
        ("Update", "model iris"),
        ("Delete", "model prep"),
    ]
    assert last(passes).phase == Phase.ROLLED_BACK
    assert seldon.models["iris"]["spec"]["storageUri"] == "gs://m/iris/v1"
    assert "prep" not in seldon.models
    message = last(passes).conditions[0]["message"]
    assert "restored Model production/iris; removed Model production/prep" in message


def test_a_model_that_fails_to_load_rolls_back_the_models_and_never_writes_the_pipeline() -> None:
    seldon = seldon_for_pipeline(models={}, model_states={"iris": "Failed"})
    passes = drive(seldon, spec=PIPELINE_SPEC)
    assert ("Create", "target") not in writes(passes)
    assert writes(passes)[-2:] == [("Delete", "model iris"), ("Delete", "model prep")]
    assert last(passes).phase == Phase.ROLLED_BACK
    assert "it was not written" in last(passes).conditions[0]["message"]


def test_a_restart_after_each_write_never_writes_anything_twice() -> None:
    seldon = seldon_for_pipeline(models={})
    passes = drive(seldon, spec=PIPELINE_SPEC, crash_after_writes=frozenset({1, 2, 3}))
    assert writes(passes) == [
        ("Create", "model prep"),
        ("Create", "model iris"),
        ("Create", "target"),
    ]
    assert last(passes).phase == Phase.SUCCEEDED


def test_a_restart_after_each_rollback_write_undoes_everything_once() -> None:
    seldon = seldon_for_pipeline(models={}, rollout_state="Failed")
    crashes = frozenset({4, 5, 6})
    passes = drive(seldon, spec=PIPELINE_SPEC, crash_after_writes=crashes)
    assert [w for w in writes(passes) if w[0] == "Delete"] == [
        ("Delete", "target"),
        ("Delete", "model iris"),
        ("Delete", "model prep"),
    ]
    assert last(passes).phase == Phase.ROLLED_BACK


def test_a_step_naming_a_model_the_source_lacks_is_waited_for_then_fails_naming_it() -> None:
    seldon = seldon_for_pipeline(source_models=[model("iris", "gs://m/iris/v2")])
    passes = drive(seldon, spec=PIPELINE_SPEC, max_passes=200)
    assert writes(passes) == []
    assert last(passes).phase == Phase.FAILED
    assert last(passes).outcome.reason == "SourceNotFound"
    assert "name Models that staging lacks: prep" in last(passes).outcome.message


def test_a_model_override_naming_no_step_fails_the_run_as_invalid() -> None:
    spec = parse_spec(
        {
            "source": {"kind": "Pipeline", "namespace": "staging", "name": "chain"},
            "target": {"namespace": "production"},
            "overrides": {"models": [{"name": "irsi", "storageUri": "s3://x"}]},
        }
    )
    passes = drive(seldon_for_pipeline(), spec=spec)
    assert last(passes).phase == Phase.FAILED
    assert last(passes).outcome.reason == "Invalid"
    assert "no model named 'irsi' among the models the steps of Pipeline staging/chain" in (
        last(passes).outcome.message
    )


def test_a_model_override_applies_to_the_step_model_it_names() -> None:
    spec = parse_spec(
        {
            "source": {"kind": "Pipeline", "namespace": "staging", "name": "chain"},
            "target": {"namespace": "production"},
            "overrides": {
                "models": [{"name": "prep", "storageUri": "s3://prod/prep", "replicas": 2}]
            },
        }
    )
    seldon = seldon_for_pipeline()
    drive(seldon, spec=spec)
    assert seldon.models["prep"]["spec"]["storageUri"] == "s3://prod/prep"
    assert seldon.models["prep"]["spec"]["replicas"] == 2
    assert seldon.models["iris"]["spec"]["replicas"] == 1


def test_abort_while_waiting_for_the_models_removes_the_ones_written() -> None:
    seldon = seldon_for_pipeline(models={}, rollout_seconds=60)
    passes = drive(seldon, spec=PIPELINE_SPEC, max_passes=6)
    assert last(passes).phase == Phase.PROMOTING
    status = to_status(last(passes))
    rest = drive(seldon, spec=PIPELINE_SPEC, status=status, requests=Requests(abort="yes"))
    assert writes(rest) == [("Delete", "model iris"), ("Delete", "model prep")]
    assert last(rest).phase == Phase.ROLLED_BACK
    assert last(rest).outcome.reason == "Aborted"


def test_the_models_round_trip_through_status() -> None:
    seldon = seldon_for_pipeline()
    run = last(drive(seldon, spec=PIPELINE_SPEC))
    again = from_status(to_status(run))
    assert again is not None
    assert again.models == run.models
    assert again.models[1].previous.deployment is not None


def test_a_failure_shown_for_an_older_generation_of_a_model_is_waited_past() -> None:
    broken = model("iris", "gs://m/iris/v1", "production", 4)
    broken["status"] = core_v2_status(4, ready=False, failed=True)
    seldon = seldon_for_pipeline(models={"iris": broken})
    passes = drive(seldon, spec=PIPELINE_SPEC)
    assert writes(passes) == [
        ("Create", "model prep"),
        ("Update", "model iris"),
        ("Create", "target"),
    ]
    assert last(passes).phase == Phase.SUCCEEDED


# --- a Pipeline's canary, through the Experiments API ------------------------------------

ERROR_RATE = AnalysisTemplate(
    "error-rate", 'errors{pipeline="{{canary}}"}', max=0.05, interval="30s", count=2
)
PIPELINE_CANARY = replace(
    PIPELINE_SPEC,
    strategy=Strategy.CANARY,
    canary_steps=(
        SetWeight(10),
        Analysis(("error-rate",)),
        SetWeight(50),
    ),
    templates={"error-rate": ERROR_RATE},
)


def seldon_for_canary(error_rate: float = 0.01, **changes: Any) -> FakeSeldon:
    """A stable Pipeline ``chain`` in production serving ``prep`` and ``iris``; the source
    names ``prep`` and a new Model ``iris-v2``."""
    fields: dict[str, Any] = {
        "source": pipeline(steps=("prep", "iris-v2")),
        "target": pipeline("production", steps=("prep", "iris")),
        "source_models": [model("prep", "gs://m/prep/v1"), model("iris-v2", "gs://m/iris/v2")],
        "models": {
            "prep": model("prep", "gs://m/prep/v1", "production", 1),
            "iris": model("iris", "gs://m/iris/v1", "production", 4),
        },
        "prometheus": lambda _q, _t: Reading(error_rate),
    }
    fields.update(changes)
    return seldon_for_pipeline(**fields)


def calls(passes: list[Pass]) -> list[str]:
    """Each call but validation, as ``Create pipeline chain-canary``, ``SetWeight 10``,
    ``Mirror``, ``Promote canary``, ``Remove shadow`` ..."""
    out = []
    for p in passes:
        action = p.action
        if action is None or action.kind == ActionKind.VALIDATE:
            continue
        what = (
            f" model {action.model}"
            if action.model
            else f" pipeline {action.pipeline}"
            if action.pipeline
            else f" {action.weight}"
            if action.weight is not None
            else f" {action.experiment}"
            if action.kind in (ActionKind.PROMOTE, ActionKind.REMOVE)
            else ""
        )
        out.append(f"{action.kind}{what}")
    return out


def test_a_pipeline_canary_creates_its_models_and_canary_then_sets_each_weight_then_promotes() -> (
    None
):
    seldon = seldon_for_canary()
    passes = drive(seldon, spec=PIPELINE_CANARY, max_passes=100)
    assert calls(passes) == [
        "Create model iris-v2",
        "Create pipeline chain-canary",
        "SetWeight 10",
        "SetWeight 50",
        "Promote canary",
    ]
    assert last(passes).phase == Phase.SUCCEEDED
    assert seldon.target is not None
    assert [s["name"] for s in seldon.target["spec"]["steps"]] == ["prep", "iris-v2"]
    assert seldon.experiment is None and "chain-canary" not in seldon.pipelines


def test_a_pipeline_canary_measures_the_canary_pipeline_by_name() -> None:
    seldon = seldon_for_canary()
    drive(seldon, spec=PIPELINE_CANARY, max_passes=100)
    assert seldon.queries and set(seldon.queries) == {'errors{pipeline="chain-canary"}'}


def test_a_pipeline_canary_failing_its_analysis_removes_the_canary_and_its_new_model() -> None:
    seldon = seldon_for_canary(error_rate=0.5)
    before = copy.deepcopy(seldon.target)
    passes = drive(seldon, spec=PIPELINE_CANARY, max_passes=100)
    assert calls(passes) == [
        "Create model iris-v2",
        "Create pipeline chain-canary",
        "SetWeight 10",
        "Remove canary",
        "Delete model iris-v2",
    ]
    assert last(passes).phase == Phase.ROLLED_BACK
    assert last(passes).outcome.reason == "AnalysisFailed"
    assert seldon.target == before
    assert "iris-v2" not in seldon.models and seldon.experiment is None


def test_a_restart_after_each_canary_call_makes_no_call_twice() -> None:
    seldon = seldon_for_canary()
    passes = drive(
        seldon, spec=PIPELINE_CANARY, max_passes=100, crash_after_writes=frozenset({1, 2, 3, 4, 5})
    )
    assert calls(passes) == [
        "Create model iris-v2",
        "Create pipeline chain-canary",
        "SetWeight 10",
        "SetWeight 50",
        "Promote canary",
    ]
    assert last(passes).phase == Phase.SUCCEEDED


def test_a_pipeline_canary_refuses_to_change_a_model_the_stable_pipeline_serves() -> None:
    seldon = seldon_for_canary(
        source=pipeline(steps=("prep", "iris")),
        source_models=[model("prep", "gs://m/prep/v1"), model("iris", "gs://m/iris/v2")],
    )
    passes = drive(seldon, spec=PIPELINE_CANARY)
    assert calls(passes) == []
    assert last(passes).outcome.reason == "Invalid"
    assert "a canary cannot change the Models iris in place" in last(passes).outcome.message


def test_a_pipeline_canary_dry_run_lists_the_experiment_steps() -> None:
    seldon = seldon_for_canary()
    passes = drive(seldon, spec=replace(PIPELINE_CANARY, dry_run=True))
    assert calls(passes) == []
    assert last(passes).plan.steps == (
        "create Model production/iris-v2",
        "wait until the Models prep, iris-v2 are Ready in production",
        "create Pipeline production/chain-canary (the promoted spec)",
        "0: experiment on production/chain: chain-canary at 10%",
        "1: analysis error-rate",
        "2: experiment on production/chain: chain-canary at 50%",
        "3: promote the canary: production/chain takes chain-canary's spec; "
        "the experiment and chain-canary are removed",
    )


def test_status_names_a_core_v2_source_and_target_with_their_kind() -> None:
    run = last(drive(seldon_for_pipeline(), spec=PIPELINE_SPEC))
    assert (run.source, run.target) == ("Pipeline staging/chain", "Pipeline production/chain")


def test_a_refused_first_weight_removes_the_canary_pipeline_it_was_for() -> None:
    refused = Failure("Invalid", "experiment refused", 400)
    seldon = seldon_for_canary(
        models={
            "prep": model("prep", "gs://m/prep/v1", "production", 1),
            "iris-v2": model("iris-v2", "gs://m/iris/v2", "production", 1),
        }
    )
    seldon.experiment_refusal = refused
    passes = drive(seldon, spec=PIPELINE_CANARY, max_passes=100)
    assert calls(passes) == [
        "Create pipeline chain-canary",
        "SetWeight 10",
        "Delete pipeline chain-canary",
    ]
    assert last(passes).phase == Phase.ROLLED_BACK
    assert "chain-canary" not in seldon.pipelines


def test_abort_after_a_restart_that_lost_a_model_write_still_removes_that_model() -> None:
    seldon = seldon_for_pipeline(models={}, rollout_seconds=60)
    passes = drive(seldon, spec=PIPELINE_SPEC, max_passes=2)  # validated, prep written
    status = to_status(passes[0].step.run)  # the record of prep's write is lost
    assert "prep" in seldon.models
    rest = drive(seldon, spec=PIPELINE_SPEC, status=status, requests=Requests(abort="yes"))
    assert writes(rest) == [("Delete", "model prep")]
    assert last(rest).phase == Phase.ROLLED_BACK


def earlier_canary(generation: str) -> dict[str, Any]:
    """The canary Pipeline an earlier run of this ModelPromotion left beside the target."""
    left = pipeline("production", steps=("prep", "iris-v2"))
    left["metadata"]["name"] = "chain-canary"
    left["metadata"]["annotations"] = {
        "deploy.mlops.dev/promotion-uid": PROMOTION.uid,
        "deploy.mlops.dev/promotion-generation": generation,
    }
    return left


def test_a_replace_removes_the_canary_an_earlier_run_left_before_anything_else() -> None:
    seldon = seldon_for_canary(pipelines={"chain-canary": earlier_canary("1")})
    candidates = [{"name": "chain", "weight": 90}, {"name": "chain-canary", "weight": 10}]
    seldon.experiment = {"metadata": {"name": "chain"}, "spec": {"candidates": candidates}}
    passes = drive(seldon, spec=PIPELINE_SPEC)
    assert calls(passes)[0] == "Remove canary"
    assert last(passes).phase == Phase.SUCCEEDED
    assert seldon.experiment is None and "chain-canary" not in seldon.pipelines


def test_a_new_canary_run_removes_a_canary_pipeline_left_without_its_experiment() -> None:
    seldon = seldon_for_canary(pipelines={"chain-canary": earlier_canary("1")})
    passes = drive(seldon, spec=PIPELINE_CANARY, max_passes=100)
    assert calls(passes)[:2] == ["Delete pipeline chain-canary", "Create model iris-v2"]
    assert last(passes).phase == Phase.SUCCEEDED


def test_a_dry_run_leaves_an_earlier_runs_canary_alone() -> None:
    seldon = seldon_for_canary(pipelines={"chain-canary": earlier_canary("1")})
    passes = drive(seldon, spec=replace(PIPELINE_SPEC, dry_run=True))
    assert calls(passes) == []
    assert "chain-canary" in seldon.pipelines


def test_a_canary_pipeline_of_another_promotion_is_not_removed_by_a_replace() -> None:
    foreign = earlier_canary("1")
    foreign["metadata"]["annotations"]["deploy.mlops.dev/promotion-uid"] = "someone-else"
    seldon = seldon_for_canary(pipelines={"chain-canary": foreign})
    passes = drive(seldon, spec=PIPELINE_SPEC)
    assert "Remove canary" not in calls(passes)
    assert "Delete pipeline chain-canary" not in calls(passes)
    assert "chain-canary" in seldon.pipelines


def test_every_kind_has_one_row_and_only_models_cannot_be_listed() -> None:
    assert set(KINDS) == set(Kind)
    for facts in KINDS.values():
        assert facts.item_path == facts.collection_path + "/{name}"
    assert [kind for kind, facts in KINDS.items() if not facts.listable] == [Kind.MODEL]
