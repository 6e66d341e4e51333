"""A registry source: a model version's storage URI written into the existing target,
with the rest of the run as for a source deployment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from promotion_operator.core.pass_io import VersionAnswer
from promotion_operator.core.planning import PlanningError
from promotion_operator.core.registry import with_version, write_back
from promotion_operator.core.run import Failure, ModelVersion, Phase, Run, from_status, to_status
from promotion_operator.core.spec import Kind, RegistrySource, RegistryWriteBack, parse_spec
from tests.unit.core_builders import PROMOTION, T0, FakeSeldon, drive, foreign_target

VERSION = ModelVersion("iris", "7", "s3://models/iris/7", run_id="abc123", alias="champion")


def registry_spec(**registry: Any) -> dict[str, Any]:
    return {
        "source": {"registry": {"model": "iris", "alias": "champion", **registry}},
        "target": {"namespace": "production", "name": "iris"},
    }


SPEC = parse_spec(registry_spec())


def test_a_registry_source_is_read_into_the_spec() -> None:
    spec = parse_spec(registry_spec(node="classifier", writeBack={"alias": "production"}))
    assert spec.registry == RegistrySource(
        "iris",
        alias="champion",
        node="classifier",
        write_back=RegistryWriteBack(tags=True, alias="production"),
    )
    assert spec.source == spec.target  # the version is written into the target itself
    assert spec.origin == "MLflow model iris@champion"


def test_the_version_uri_replaces_the_root_node_model_uri() -> None:
    body = with_version(foreign_target(), Kind.SELDON_DEPLOYMENT, SPEC.registry, VERSION)  # type: ignore[arg-type]
    assert body["spec"]["predictors"][0]["graph"]["modelUri"] == "s3://models/iris/7"


def test_a_model_target_gets_the_uri_as_its_storage_uri() -> None:
    model = {"kind": "Model", "spec": {"storageUri": "gs://old", "requirements": ["sklearn"]}}
    body = with_version(model, Kind.MODEL, SPEC.registry, VERSION)  # type: ignore[arg-type]
    assert body["spec"] == {"storageUri": "s3://models/iris/7", "requirements": ["sklearn"]}


def test_a_graph_node_that_is_not_there_is_named_in_the_error() -> None:
    registry = RegistrySource("iris", alias="champion", node="missing")
    with pytest.raises(PlanningError, match=r"spec\.source\.registry\.node: no graph node named"):
        with_version(foreign_target(), Kind.SELDON_DEPLOYMENT, registry, VERSION)


def test_a_run_writes_the_version_uri_and_records_the_version() -> None:
    seldon = FakeSeldon(source=None, target=foreign_target(), registry=VersionAnswer(VERSION))
    passes = drive(seldon, spec=SPEC)
    run = passes[-1].step.run
    assert run.phase == Phase.SUCCEEDED
    written = seldon.writes()[0].deployment
    assert written is not None
    assert written["spec"]["predictors"][0]["graph"]["modelUri"] == "s3://models/iris/7"
    assert run.model_version == VERSION
    assert run.history[0].model_version == VERSION
    assert run.source == "MLflow model iris@champion"


def test_a_run_reads_the_registry_once() -> None:
    seldon = FakeSeldon(source=None, target=foreign_target(), registry=VersionAnswer(VERSION))
    drive(seldon, spec=SPEC)
    assert seldon.reads.count("model version") == 1


def test_a_registry_failure_writes_nothing_to_the_target() -> None:
    unknown = Failure("ModelVersionNotFound", "alias 'champion' of 'iris' not found", 400)
    seldon = FakeSeldon(source=None, target=foreign_target(), registry=VersionAnswer(None, unknown))
    run = drive(seldon, spec=SPEC)[-1].step.run
    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "ModelVersionNotFound"
    assert seldon.calls == []


def test_a_missing_target_ends_the_run_with_target_not_found() -> None:
    seldon = FakeSeldon(source=None, target=None, registry=VersionAnswer(VERSION))
    run = drive(seldon, spec=SPEC)[-1].step.run
    assert run.outcome is not None and run.outcome.reason == "TargetNotFound"
    assert seldon.calls == []


def test_the_model_version_round_trips_through_the_status() -> None:
    run = Run(1, Phase.PENDING, T0, T0, model_version=VERSION)
    assert from_status(to_status(run)) == run


def test_a_finished_run_tags_its_version_and_sets_the_alias_on_success() -> None:
    spec = parse_spec(registry_spec(writeBack={"alias": "production"}))
    run = Run(2, Phase.SUCCEEDED, T0, T0, finished_at=T0, model_version=VERSION)
    back = write_back(spec, run, PROMOTION)
    assert back is not None
    tag = json.loads(back.tags["deploy.mlops.dev/production/iris"])
    assert tag["outcome"] == "Succeeded"
    assert tag["promotion"] == "ml-promotions/iris-to-prod run 2"
    assert tag["at"] == "2025-03-01T12:00:00Z"
    assert back.alias == "production"


def test_a_rolled_back_run_sets_no_alias() -> None:
    spec = parse_spec(registry_spec(writeBack={"alias": "production"}))
    run = Run(2, Phase.ROLLED_BACK, T0, T0, finished_at=T0, model_version=VERSION)
    back = write_back(spec, run, PROMOTION)
    assert back is not None and back.alias is None
    assert json.loads(back.tags["deploy.mlops.dev/production/iris"])["outcome"] == "RolledBack"


FOLLOW = parse_spec(registry_spec(follow=True, pollInterval="30s"))
V1 = ModelVersion("iris", "1", "s3://models/iris/1", alias="champion")
V2 = ModelVersion("iris", "2", "s3://models/iris/2", alias="champion")


def test_a_followed_alias_that_moved_starts_exactly_one_new_run_writing_the_new_uri() -> None:
    seldon = FakeSeldon(source=None, target=foreign_target(), registry=VersionAnswer(V1))
    first = drive(seldon, spec=FOLLOW, max_passes=30)
    assert first[-1].step.run.phase == Phase.SUCCEEDED
    seldon.registry = VersionAnswer(V2)
    written = len(seldon.writes())

    later = drive(seldon, spec=FOLLOW, status=to_status(first[-1].step.run), max_passes=40)

    new_writes = seldon.writes()[written:]
    assert len(new_writes) == 1
    assert new_writes[0].deployment is not None
    graph = new_writes[0].deployment["spec"]["predictors"][0]["graph"]
    assert graph["modelUri"] == "s3://models/iris/2"
    assert {p.step.run.retry for p in later} == {1}  # one new run, then only polls
    assert later[-1].step.run.phase == Phase.SUCCEEDED
    assert later[-1].step.run.model_version == V2


def test_a_settled_followed_run_is_polled_at_its_interval() -> None:
    seldon = FakeSeldon(source=None, target=foreign_target(), registry=VersionAnswer(V1))
    passes = drive(seldon, spec=FOLLOW, max_passes=30)
    assert passes[-1].step.run.phase == Phase.SUCCEEDED
    assert passes[-1].step.requeue_after == 30.0


def test_a_rolled_back_version_is_not_promoted_again_by_the_next_poll() -> None:
    seldon = FakeSeldon(
        source=None,
        target=foreign_target(),
        registry=VersionAnswer(V2),
        rollout_state="Failed",
        rollout_seconds=1.0,
    )
    first = drive(seldon, spec=FOLLOW, max_passes=40)
    run = first[-1].step.run
    assert run.phase == Phase.ROLLED_BACK
    written, polled = len(seldon.writes()), seldon.reads.count("model version")

    later = drive(seldon, spec=FOLLOW, status=to_status(run), max_passes=10)

    assert len(seldon.writes()) == written
    assert all(p.step.run.retry == 0 for p in later)
    assert seldon.reads.count("model version") == polled + 10  # one read per poll


def test_without_follow_a_settled_run_is_not_polled() -> None:
    seldon = FakeSeldon(source=None, target=foreign_target(), registry=VersionAnswer(V1))
    passes = drive(seldon, spec=SPEC)
    assert passes[-1].step.requeue_after is None
