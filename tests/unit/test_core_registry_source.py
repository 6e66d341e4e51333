"""A registry source: a model version's storage URI written into the existing target,
with the rest of the run as for a source deployment."""

from __future__ import annotations

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
    assert back.tags["deploy.mlops.dev/production/iris.outcome"] == "Succeeded"
    assert back.tags["deploy.mlops.dev/production/iris.promotion"] == (
        "ml-promotions/iris-to-prod run 2"
    )
    assert back.alias == "production"


def test_a_rolled_back_run_sets_no_alias() -> None:
    spec = parse_spec(registry_spec(writeBack={"alias": "production"}))
    run = Run(2, Phase.ROLLED_BACK, T0, T0, finished_at=T0, model_version=VERSION)
    back = write_back(spec, run, PROMOTION)
    assert back is not None and back.alias is None
    assert back.tags["deploy.mlops.dev/production/iris.outcome"] == "RolledBack"
