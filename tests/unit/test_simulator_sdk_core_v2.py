"""The simulator's Core v2 wire format, driven by seldon-deploy-sdk 2.4.0's Models, Pipelines
and Experiments APIs.

Bodies are dicts in the Kubernetes shape (the SDK sends them as they are). Where
the SDK's response models would drop fields (lists hold the flat `Model` and
`Pipeline` request types), the tests read the raw JSON with
`_preload_content=False`. `Conditions` has no fields in the SDK, so it comes
back as the raw list of conditions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from seldon_deploy_sdk import ApiClient, Configuration, ExperimentsApi, ModelsApi, PipelinesApi
from seldon_deploy_sdk.models import SeldonExperiment, SeldonModel, SeldonPipeline
from seldon_deploy_sdk.rest import ApiException

from tests.simulator.control import SimulatorControl
from tests.simulator.testing import RunningSimulator, model_body, pipeline_body, wait_for

NS = "staging"
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(rollout_seconds=0.2, gitops_sync_seconds=0.2) as running:
        yield running


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    control.set_delays(rollout_seconds=0.2)
    control.add_namespace(NS, users={ALICE: ["read", "write"]})
    return control


@pytest.fixture
def client(sim: RunningSimulator, ctl: SimulatorControl) -> Iterator[ApiClient]:
    config = Configuration()
    config.host = ctl.api_url
    config.access_token = sim.idp.token(ALICE)
    api_client = ApiClient(config)
    yield api_client
    api_client.rest_client.pool_manager.clear()


@pytest.fixture
def models(client: ApiClient) -> ModelsApi:
    return ModelsApi(client)


@pytest.fixture
def pipelines(client: ApiClient) -> PipelinesApi:
    return PipelinesApi(client)


@pytest.fixture
def experiments(client: ApiClient) -> ExperimentsApi:
    return ExperimentsApi(client)


def _conditions(status: Any) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in status.conditions}


def _raw(response: Any) -> Any:
    return json.loads(response.data)


def _seed_canary(ctl: SimulatorControl, pipeline: str = "pipe") -> None:
    """Ready models and pipelines `pipeline` (model iris) and `pipeline-canary` (iris, wine)."""
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_model(NS, model_body("wine"))
    ctl.seed_pipeline(NS, pipeline_body(pipeline, ["iris"], labels={"track": "stable"}))
    ctl.seed_pipeline(
        NS,
        pipeline_body(
            f"{pipeline}-canary",
            ["iris", "wine"],
            labels={"track": "canary"},
            annotations={"version": "2"},
        ),
    )


# -- Models ----------------------------------------------------------------------


def test_sdk_creates_a_model(models: ModelsApi) -> None:
    created = models.create_model(NS, model_body("iris"), action="Create", message="first")

    assert isinstance(created, SeldonModel)
    assert (created.api_version, created.kind) == ("mlops.seldon.io/v1alpha1", "Model")
    assert (created.metadata.name, created.metadata.namespace) == ("iris", NS)
    assert created.metadata.generation == 1
    assert created.spec.storage_uri == "gs://seldon-models/scikit-learn/iris"
    assert created.status.observed_generation == 1
    assert _conditions(created.status)["ModelReady"]["reason"] == "ModelProgressing"


def test_sdk_reads_a_model_ready_after_its_rollout(models: ModelsApi) -> None:
    models.create_model(NS, model_body("iris", replicas=2))

    wait_for(lambda: models.read_model("iris", NS).status.replicas == 2, timeout=3)
    read = models.read_model("iris", NS)
    assert isinstance(read, SeldonModel)
    conditions = _conditions(read.status)
    assert set(conditions) == {"ModelReady", "Ready"}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "ModelAvailable"
    assert set(conditions["Ready"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }


def test_sdk_updates_a_model(models: ModelsApi) -> None:
    models.create_model(NS, model_body("iris"))

    updated = models.update_model(
        "iris", NS, model_body("iris", storage_uri="gs://models/iris/2"), action="Update"
    )

    assert updated.metadata.generation == 2
    assert updated.spec.storage_uri == "gs://models/iris/2"
    assert updated.status.observed_generation == 2


def test_sdk_deletes_a_model(models: ModelsApi) -> None:
    models.create_model(NS, model_body("iris"))

    deleted = models.delete_model("iris", NS, action="Delete", message="bye")

    assert deleted["code"] == 200
    with pytest.raises(ApiException) as missing:
        models.read_model("iris", NS)
    assert missing.value.status == 404


def test_sdk_sees_an_invalid_model_as_a_400(models: ModelsApi) -> None:
    body = model_body("iris")
    del body["spec"]["storageUri"]

    with pytest.raises(ApiException) as error:
        models.create_model(NS, body)

    assert error.value.status == 400
    assert "storageUri" in json.loads(error.value.body)["message"]


# -- Pipelines -------------------------------------------------------------------


def test_sdk_creates_a_pipeline(pipelines: PipelinesApi) -> None:
    created = pipelines.create_pipeline(NS, pipeline_body("pipe", ["iris", "wine"]))

    assert isinstance(created, SeldonPipeline)
    assert (created.kind, created.metadata.name, created.metadata.generation) == (
        "Pipeline",
        "pipe",
        1,
    )
    assert [s.name for s in created.spec.steps] == ["iris", "wine"]
    assert created.spec.steps[1].inputs == ["iris"]
    assert created.spec.output.steps == ["wine"]


def test_sdk_lists_pipelines(ctl: SimulatorControl, pipelines: PipelinesApi) -> None:
    ctl.seed_pipeline(NS, pipeline_body("b", ["iris"]))
    ctl.seed_pipeline(NS, pipeline_body("a", ["iris"]))

    listed = _raw(pipelines.list_pipelines(NS, _preload_content=False))

    assert (listed["apiVersion"], listed["kind"], listed["metadata"]) == (
        "mlops.seldon.io/v1alpha1",
        "PipelineList",
        {},
    )
    assert [p["metadata"]["name"] for p in listed["items"]] == ["a", "b"]
    assert all("status" in p for p in listed["items"])


def test_sdk_reads_a_pipeline_ready_once_its_models_are(
    ctl: SimulatorControl, pipelines: PipelinesApi
) -> None:
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    assert _conditions(pipelines.read_pipeline("pipe", NS).status)["Ready"]["status"] == "False"

    ctl.seed_model(NS, model_body("iris"))

    read = pipelines.read_pipeline("pipe", NS)
    assert isinstance(read, SeldonPipeline)
    conditions = _conditions(read.status)
    assert [c["type"] for c in read.status.conditions] == ["ModelsReady", "PipelineReady", "Ready"]
    assert {t: c["status"] for t, c in conditions.items()} == {
        "ModelsReady": "True",
        "PipelineReady": "True",
        "Ready": "True",
    }
    assert read.status.observed_generation == 1


def test_sdk_updates_a_pipeline(pipelines: PipelinesApi) -> None:
    pipelines.create_pipeline(NS, pipeline_body("pipe", ["iris"]))

    updated = pipelines.update_pipeline("pipe", NS, pipeline_body("pipe", ["iris", "wine"]))

    assert updated.metadata.generation == 2
    assert [s.name for s in updated.spec.steps] == ["iris", "wine"]
    assert _conditions(updated.status)["PipelineReady"]["reason"] == "PipelineCreating"


def test_sdk_deletes_a_pipeline(ctl: SimulatorControl, pipelines: PipelinesApi) -> None:
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))

    deleted = pipelines.delete_pipeline("pipe", NS, action="Delete", message="bye")

    assert deleted["code"] == 200
    assert ctl.get_pipeline(NS, "pipe") is None


def test_sdk_lists_the_models_of_a_pipeline(ctl: SimulatorControl, pipelines: PipelinesApi) -> None:
    ctl.seed_model(NS, model_body("wine"))
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_model(NS, model_body("unrelated"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["wine", "missing", "iris"]))

    listed = _raw(pipelines.list_pipeline_models("pipe", NS, _preload_content=False))

    assert (listed["apiVersion"], listed["kind"], listed["metadata"]) == (
        "mlops.seldon.io/v1alpha1",
        "ModelList",
        {},
    )
    assert [m["metadata"]["name"] for m in listed["items"]] == ["wine", "iris"]
    assert listed["items"][0] == ctl.get_model(NS, "wine")


# -- Canary and shadow experiments -------------------------------------------------


def test_sdk_creates_a_canary_experiment(
    ctl: SimulatorControl, experiments: ExperimentsApi
) -> None:
    _seed_canary(ctl)

    answer = experiments.create_canary_experiment("pipe", NS, 10, action="Canary")

    assert answer["code"] == 200 and answer["message"]
    experiment = ctl.get_experiment(NS, "pipe")
    assert experiment is not None
    assert experiment["spec"] == {
        "default": "pipe",
        "resourceType": "pipeline",
        "candidates": [{"name": "pipe", "weight": 90}, {"name": "pipe-canary", "weight": 10}],
    }
    assert experiment["status"]["conditions"][0]["status"] == "True"


def test_sdk_promotes_a_canary(ctl: SimulatorControl, experiments: ExperimentsApi) -> None:
    _seed_canary(ctl)
    experiments.create_canary_experiment("pipe", NS, 10)

    answer = experiments.promote_canary("pipe", NS, action="Promote", message="go")

    assert answer["code"] == 200
    promoted = ctl.get_pipeline(NS, "pipe")
    assert promoted is not None
    assert [s["name"] for s in promoted["spec"]["steps"]] == ["iris", "wine"]
    assert promoted["metadata"]["labels"] == {"track": "canary"}
    assert promoted["metadata"]["annotations"] == {"version": "2"}
    assert promoted["metadata"]["generation"] == 2
    assert ctl.get_pipeline(NS, "pipe-canary") is None
    assert ctl.get_experiment(NS, "pipe") is None


def test_sdk_removes_a_canary(ctl: SimulatorControl, experiments: ExperimentsApi) -> None:
    _seed_canary(ctl)
    experiments.create_canary_experiment("pipe", NS, 10)
    before = ctl.get_pipeline(NS, "pipe")

    answer = experiments.remove_canary("pipe", NS, action="Abort")

    assert answer["code"] == 200
    assert ctl.get_experiment(NS, "pipe") is None
    assert ctl.get_pipeline(NS, "pipe-canary") is None
    assert ctl.get_pipeline(NS, "pipe") == before


def test_sdk_creates_a_shadow_experiment(
    ctl: SimulatorControl, experiments: ExperimentsApi
) -> None:
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    ctl.seed_pipeline(NS, pipeline_body("pipe-shadow", ["iris"]))

    answer = experiments.create_shadow_experiment("pipe", NS, action="Shadow")

    assert answer["code"] == 200
    experiment = ctl.get_experiment(NS, "pipe")
    assert experiment is not None
    assert experiment["spec"] == {
        "default": "pipe",
        "resourceType": "pipeline",
        "candidates": [{"name": "pipe", "weight": 100}],
        "mirror": {"name": "pipe-shadow", "percent": 100},
    }


def test_sdk_promotes_a_shadow(ctl: SimulatorControl, experiments: ExperimentsApi) -> None:
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    ctl.seed_pipeline(NS, pipeline_body("pipe-shadow", ["wine"], annotations={"v": "2"}))
    experiments.create_shadow_experiment("pipe", NS)

    answer = experiments.promote_shadow("pipe", NS)

    assert answer["code"] == 200
    promoted = ctl.get_pipeline(NS, "pipe")
    assert promoted is not None
    assert [s["name"] for s in promoted["spec"]["steps"]] == ["wine"]
    assert promoted["metadata"]["annotations"] == {"v": "2"}
    assert (ctl.get_pipeline(NS, "pipe-shadow"), ctl.get_experiment(NS, "pipe")) == (None, None)


def test_sdk_removes_a_shadow(ctl: SimulatorControl, experiments: ExperimentsApi) -> None:
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    ctl.seed_pipeline(NS, pipeline_body("pipe-shadow", ["wine"]))
    experiments.create_shadow_experiment("pipe", NS)

    answer = experiments.remove_shadow("pipe", NS)

    assert answer["code"] == 200
    assert (ctl.get_pipeline(NS, "pipe-shadow"), ctl.get_experiment(NS, "pipe")) == (None, None)
    assert ctl.get_pipeline(NS, "pipe") is not None


def test_sdk_sees_a_canary_without_its_candidate_as_a_404(
    ctl: SimulatorControl, experiments: ExperimentsApi
) -> None:
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))

    with pytest.raises(ApiException) as error:
        experiments.create_canary_experiment("pipe", NS, 10)

    assert error.value.status == 404
    assert "pipe-canary" in json.loads(error.value.body)["message"]


# -- Generic experiments -----------------------------------------------------------


def _experiment(*candidates: tuple[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "pipe", "labels": {"team": "ml"}},
        "spec": {
            "default": candidates[0][0],
            "candidates": [{"name": n, "weight": w} for n, w in candidates],
        },
    }


def test_sdk_creates_a_pipeline_experiment(
    ctl: SimulatorControl, experiments: ExperimentsApi
) -> None:
    _seed_canary(ctl)

    created = experiments.create_pipeline_experiment(
        "pipe", NS, _experiment(("pipe", 70), ("pipe-canary", 30))
    )

    assert isinstance(created, SeldonExperiment)
    assert (created.kind, created.metadata.name, created.metadata.generation) == (
        "Experiment",
        "pipe",
        1,
    )
    assert created.metadata.labels == {"team": "ml"}
    assert [(c.name, c.weight) for c in created.spec.candidates] == [
        ("pipe", 70),
        ("pipe-canary", 30),
    ]
    assert created.spec.resource_type == "pipeline"
    assert created.status.conditions[0]["type"] == "Ready"


def test_sdk_gets_a_pipeline_experiment(ctl: SimulatorControl, experiments: ExperimentsApi) -> None:
    _seed_canary(ctl)
    experiments.create_canary_experiment("pipe", NS, 25)

    read = experiments.get_pipeline_experiment("pipe", NS)

    assert isinstance(read, SeldonExperiment)
    assert read.spec.default == "pipe"
    assert [(c.name, c.weight) for c in read.spec.candidates] == [
        ("pipe", 75),
        ("pipe-canary", 25),
    ]
    assert read.status.observed_generation == 1


def test_sdk_updates_a_pipeline_experiment(
    ctl: SimulatorControl, experiments: ExperimentsApi
) -> None:
    _seed_canary(ctl)
    experiments.create_pipeline_experiment(
        "pipe", NS, _experiment(("pipe", 70), ("pipe-canary", 30))
    )

    updated = experiments.update_pipeline_experiment(
        "pipe", NS, _experiment(("pipe", 50), ("pipe-canary", 50))
    )

    assert updated.metadata.generation == 2
    assert [c.weight for c in updated.spec.candidates] == [50, 50]


def test_sdk_deletes_a_pipeline_experiment(
    ctl: SimulatorControl, experiments: ExperimentsApi
) -> None:
    _seed_canary(ctl)
    experiments.create_canary_experiment("pipe", NS, 10)

    answer = experiments.delete_pipeline_experiment("pipe", NS)

    assert answer["code"] == 200
    assert ctl.get_experiment(NS, "pipe") is None
    assert ctl.get_pipeline(NS, "pipe-canary") is not None  # only the experiment goes


def test_sdk_sees_a_missing_experiment_as_a_404(experiments: ExperimentsApi) -> None:
    with pytest.raises(ApiException) as error:
        experiments.get_pipeline_experiment("pipe", NS)

    assert error.value.status == 404
    assert set(json.loads(error.value.body)) == {"code", "message", "requestId"}
