"""Core v2 Models and Pipelines: CRUD, validation, permissions, time-derived conditions,
GitOps, the request log and the control API (in-process, short rollouts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.simulator.control import ControlError, SimulatorControl
from tests.simulator.testing import (
    ApiCaller,
    RunningSimulator,
    model_body,
    pipeline_body,
    wait_for,
)

NS = "prod"
GITOPS_NS = "gitops"
ALICE = "alice@example.com"
READER = "rita@example.com"
MODELS = f"/namespaces/{NS}/models"
PIPELINES = f"/namespaces/{NS}/pipelines"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(rollout_seconds=0.2, gitops_sync_seconds=0.3) as running:
        yield running


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    control.set_delays(rollout_seconds=0.2, gitops_sync_seconds=0.3)
    control.add_namespace(NS, users={ALICE: ["read", "write"], READER: ["read"]})
    control.add_namespace(GITOPS_NS, gitops=True, users={ALICE: ["read", "write"]})
    return control


@pytest.fixture
def api(sim: RunningSimulator, ctl: SimulatorControl) -> ApiCaller:
    return ApiCaller(sim.base_url, sim.idp.token(ALICE))


@pytest.fixture
def reader(sim: RunningSimulator, ctl: SimulatorControl) -> ApiCaller:
    return ApiCaller(sim.base_url, sim.idp.token(READER))


def _post(api: ApiCaller, path: str, body: object, **kw: Any) -> Any:
    return api.call("POST", path, json=body, **kw)


def _put(api: ApiCaller, path: str, body: object, **kw: Any) -> Any:
    return api.call("PUT", path, json=body, **kw)


def _condition(body: dict[str, Any], kind: str) -> dict[str, str]:
    return next(c for c in body["status"]["conditions"] if c["type"] == kind)


def _model(api: ApiCaller, name: str, ns: str = NS) -> Any:
    return api.call("GET", f"/namespaces/{ns}/models/{name}").json()


def _pipeline(api: ApiCaller, name: str, ns: str = NS) -> Any:
    return api.call("GET", f"/namespaces/{ns}/pipelines/{name}").json()


def _reason(body: dict[str, Any], kind: str = "Ready") -> tuple[str, str]:
    condition = _condition(body, kind)
    return condition["status"], condition["reason"]


# -- Models: the rollout -----------------------------------------------------------


def test_created_model_is_progressing_then_available(api: ApiCaller) -> None:
    created = _post(api, MODELS, model_body("iris")).json()
    assert _reason(created, "ModelReady") == ("False", "ModelProgressing")
    assert _reason(created) == ("False", "ModelProgressing")
    assert created["status"]["replicas"] == 0

    wait_for(lambda: _reason(_model(api, "iris")) == ("True", "ModelAvailable"), timeout=3)

    status = _model(api, "iris")["status"]
    assert (status["observedGeneration"], status["replicas"]) == (1, 1)


def test_model_has_the_kubernetes_shape_with_server_fields(api: ApiCaller) -> None:
    body = model_body("iris", labels={"team": "ml"}, memory="100Ki")
    body["metadata"]["generation"] = 9
    body["status"] = {"observedGeneration": 9}

    created = _post(api, MODELS, body).json()

    assert (created["apiVersion"], created["kind"]) == ("mlops.seldon.io/v1alpha1", "Model")
    meta = created["metadata"]
    assert (meta["name"], meta["namespace"], meta["labels"]) == ("iris", NS, {"team": "ml"})
    assert meta["generation"] == 1
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert created["spec"] == body["spec"]
    assert created["status"]["observedGeneration"] == 1


def test_model_failure_mark_gives_model_failed_with_its_text(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.mark_failing(NS, "iris", description="OOMKilled", kind="Model")
    _post(api, MODELS, model_body("iris"))

    wait_for(lambda: _reason(_model(api, "iris")) == ("False", "ModelFailed"), timeout=3)

    for kind in ("ModelReady", "Ready"):
        assert _condition(_model(api, "iris"), kind)["message"] == "OOMKilled"


def test_model_failure_mark_can_target_one_spec(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.mark_failing(NS, "iris", spec_contains="broken", kind="Model")
    _post(api, MODELS, model_body("iris", storage_uri="gs://broken"))
    wait_for(lambda: _reason(_model(api, "iris"))[1] == "ModelFailed", timeout=3)

    _put(api, f"{MODELS}/iris", model_body("iris", storage_uri="gs://good"))

    wait_for(lambda: _reason(_model(api, "iris"))[1] == "ModelAvailable", timeout=3)


def test_model_failure_mark_does_not_touch_a_deployment_of_that_name(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.mark_failing(NS, "iris", kind="Model")
    ctl.unmark_failing(NS, "iris")  # the deployment's mark, which there is none of
    _post(api, MODELS, model_body("iris"))

    wait_for(lambda: _reason(_model(api, "iris"))[1] == "ModelFailed", timeout=3)
    assert _condition(_model(api, "iris"), "Ready")["message"] == (
        "simulated failure: model marked to fail"
    )


def test_unmarked_model_rolls_out_again(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.mark_failing(NS, "iris", kind="Model")
    ctl.unmark_failing(NS, "iris", kind="Model")
    _post(api, MODELS, model_body("iris"))

    wait_for(lambda: _reason(_model(api, "iris"))[1] == "ModelAvailable", timeout=3)


def test_per_model_delay_overrides_the_global_one(ctl: SimulatorControl, api: ApiCaller) -> None:
    delays = ctl.set_delays(rollout_seconds=60, namespace=NS, name="slow", kind="Model")
    assert delays["core_overrides"] == [
        {
            "kind": "Model",
            "namespace": NS,
            "name": "slow",
            "rollout_seconds": 60.0,
            "gitops_sync_seconds": 0.3,
        }
    ]
    assert delays["overrides"] == []
    _post(api, MODELS, model_body("slow"))
    _post(api, MODELS, model_body("fast"))

    wait_for(lambda: _reason(_model(api, "fast"))[1] == "ModelAvailable", timeout=3)
    assert _reason(_model(api, "slow"))[1] == "ModelProgressing"


# -- Generations -----------------------------------------------------------------


def test_model_generation_rises_only_when_the_spec_changes(api: ApiCaller) -> None:
    first = _post(api, MODELS, model_body("iris")).json()["metadata"]
    relabelled = _put(api, f"{MODELS}/iris", model_body("iris", labels={"a": "b"})).json()
    changed = _put(api, f"{MODELS}/iris", model_body("iris", replicas=3)).json()

    generations = [m["metadata"]["generation"] for m in (relabelled, changed)]
    assert [first["generation"], *generations] == [1, 1, 2]
    versions = [int(first["resourceVersion"])] + [
        int(m["metadata"]["resourceVersion"]) for m in (relabelled, changed)
    ]
    assert versions == sorted(set(versions))


def test_pipeline_generation_rises_only_when_the_spec_changes(api: ApiCaller) -> None:
    _post(api, PIPELINES, pipeline_body("pipe", ["iris"]))
    same = _put(api, f"{PIPELINES}/pipe", pipeline_body("pipe", ["iris"], labels={"x": "y"}))
    changed = _put(api, f"{PIPELINES}/pipe", pipeline_body("pipe", ["wine"]))

    assert same.json()["metadata"]["generation"] == 1
    assert changed.json()["metadata"]["generation"] == 2
    assert changed.json()["status"]["observedGeneration"] == 2


# -- Pipelines: conditions ---------------------------------------------------------


def test_pipeline_is_not_ready_while_a_step_names_a_missing_model(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris", "wine"]))

    pipeline = _pipeline(api, "pipe")

    assert _reason(pipeline, "ModelsReady") == ("False", "ModelsNotReady")
    assert "wine" in _condition(pipeline, "ModelsReady")["message"]
    assert "iris" not in _condition(pipeline, "ModelsReady")["message"]
    assert _reason(pipeline, "PipelineReady") == ("True", "PipelineReady")
    assert _reason(pipeline) == ("False", "ModelsNotReady")


def test_pipeline_becomes_ready_once_its_model_is(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    _post(api, MODELS, model_body("iris"))
    assert _reason(_pipeline(api, "pipe")) == ("False", "ModelsNotReady")
    assert "iris" in _condition(_pipeline(api, "pipe"), "ModelsReady")["message"]

    wait_for(lambda: _reason(_pipeline(api, "pipe")) == ("True", "PipelineReady"), timeout=3)

    assert _reason(_pipeline(api, "pipe"), "ModelsReady") == ("True", "ModelsReady")


def test_pipeline_is_creating_during_its_own_rollout(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_model(NS, model_body("iris"))

    created = _post(api, PIPELINES, pipeline_body("pipe", ["iris"])).json()

    assert _reason(created, "PipelineReady") == ("False", "PipelineCreating")
    assert _reason(created) == ("False", "PipelineCreating")
    wait_for(lambda: _reason(_pipeline(api, "pipe"))[0] == "True", timeout=3)


def test_failed_pipeline_shows_pipeline_failed_on_ready(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.mark_failing(NS, "pipe", description="kafka topic missing", kind="Pipeline")
    _post(api, PIPELINES, pipeline_body("pipe", ["iris"]))  # its model is missing too

    wait_for(lambda: _reason(_pipeline(api, "pipe"))[1] == "PipelineFailed", timeout=3)

    ready = _condition(_pipeline(api, "pipe"), "Ready")
    assert (ready["status"], ready["message"]) == ("False", "kafka topic missing")


def test_seeded_pipeline_keeps_a_given_state(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]), state="Failed", description="boom")

    ready = _condition(_pipeline(api, "pipe"), "Ready")

    assert (ready["reason"], ready["message"]) == ("PipelineFailed", "boom")


def test_deleting_a_model_makes_its_pipelines_not_ready(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    assert _reason(_pipeline(api, "pipe"))[0] == "True"

    assert api.call("DELETE", f"{MODELS}/iris").status_code == 200

    assert _reason(_pipeline(api, "pipe")) == ("False", "ModelsNotReady")


def test_pipeline_models_of_a_missing_pipeline_is_404(api: ApiCaller) -> None:
    assert api.call("GET", f"{PIPELINES}/ghost/models").status_code == 404


def test_deleting_a_pipeline_removes_its_experiment(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    ctl.seed_pipeline(NS, pipeline_body("pipe-canary", ["iris"]))
    _post(api, f"{PIPELINES}/pipe/experiment/canary", None, params={"weight": 10})

    api.call("DELETE", f"{PIPELINES}/pipe")

    assert ctl.get_experiment(NS, "pipe") is None
    assert ctl.get_pipeline(NS, "pipe-canary") is not None


# -- 400 / 404 / 405 / 409 -------------------------------------------------------


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    body["spec"].pop(key)
    return body


def _with_spec(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body["spec"].update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "why"),
    [
        pytest.param(_without(model_body("iris"), "storageUri"), "storageUri", id="no-uri"),
        pytest.param(model_body("iris", storage_uri=""), "storageUri", id="empty-uri"),
        pytest.param(_with_spec(model_body("iris"), replicas=-1), "replicas", id="negative"),
        pytest.param(_with_spec(model_body("iris"), maxReplicas="2"), "maxReplicas", id="str"),
        pytest.param(_with_spec(model_body("iris"), minReplicas=True), "minReplicas", id="bool"),
        pytest.param(
            _with_spec(model_body("iris"), requirements="sklearn"), "requirements", id="reqs"
        ),
        pytest.param(dict(model_body("iris"), kind="Pipeline"), "kind", id="kind"),
        pytest.param(dict(model_body("iris"), apiVersion="v1"), "apiVersion", id="version"),
        pytest.param(
            {"name": "iris", "spec": {"storageUri": "gs://x"}}, "metadata", id="flat-metadata"
        ),
        pytest.param({"metadata": {"name": "Iris!"}, "spec": {"storageUri": "x"}}, "DNS", id="nm"),
        pytest.param({"metadata": {"name": "iris"}}, "spec", id="no-spec"),
    ],
)
def test_invalid_model_is_400_saying_why(api: ApiCaller, body: object, why: str) -> None:
    response = _post(api, MODELS, body)

    assert response.status_code == 400
    assert why in response.json()["message"]


def _steps(*steps: object, output: object = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"steps": list(steps)}
    if output is not None:
        spec["output"] = output
    return {"metadata": {"name": "pipe"}, "spec": spec}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        pytest.param(_steps(), "spec.steps", id="no-steps"),
        pytest.param(_steps("iris"), "spec.steps[0] must be an object", id="string-step"),
        pytest.param(_steps({"inputs": []}), "spec.steps[0].name", id="unnamed"),
        pytest.param(_steps({"name": "Bad_Name"}), "DNS-1123", id="bad-name"),
        pytest.param(_steps({"name": "a"}, {"name": "a"}), "duplicate step name: a", id="dup"),
        pytest.param(
            _steps({"name": "a"}, output={"steps": ["b"]}), "does not have: b", id="output"
        ),
        pytest.param(_steps({"name": "a"}, output={"steps": "a"}), "output.steps", id="out-str"),
    ],
)
def test_invalid_pipeline_is_400_saying_why(api: ApiCaller, body: object, why: str) -> None:
    response = _post(api, PIPELINES, body)

    assert response.status_code == 400
    assert why in response.json()["message"]


def test_pipeline_keeps_step_fields_it_does_not_check(api: ApiCaller) -> None:
    step = {
        "name": "join",
        "inputs": ["a.outputs", "b.outputs"],
        "triggers": ["c"],
        "tensorMap": {"a.outputs.x": "y"},
        "inputsJoinType": "any",
        "batch": {"size": 2},
    }
    created = _post(api, PIPELINES, _steps(step)).json()

    assert created["spec"]["steps"] == [step]


def test_update_whose_body_names_another_model_is_400(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.seed_model(NS, model_body("iris"))

    assert _put(api, f"{MODELS}/iris", model_body("wine")).status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{MODELS}/ghost"),
        ("PUT", f"{MODELS}/ghost"),
        ("DELETE", f"{MODELS}/ghost"),
        ("GET", f"{PIPELINES}/ghost"),
        ("PUT", f"{PIPELINES}/ghost"),
        ("DELETE", f"{PIPELINES}/ghost"),
    ],
)
def test_missing_model_or_pipeline_is_404(api: ApiCaller, method: str, path: str) -> None:
    body = model_body("ghost") if "models" in path else pipeline_body("ghost", ["iris"])

    response = api.call(method, path, json=body if method == "PUT" else None)

    assert response.status_code == 404
    assert "ghost" in response.json()["message"]


def test_duplicate_model_is_409(api: ApiCaller) -> None:
    assert _post(api, MODELS, model_body("iris")).status_code == 200
    assert _post(api, MODELS, model_body("iris")).status_code == 409


def test_duplicate_pipeline_is_409(api: ApiCaller) -> None:
    assert _post(api, PIPELINES, pipeline_body("pipe", ["iris"])).status_code == 200
    assert _post(api, PIPELINES, pipeline_body("pipe", ["iris"])).status_code == 409


def test_there_is_no_list_of_models(api: ApiCaller) -> None:
    assert api.call("GET", MODELS).status_code == 405


# -- Permissions -----------------------------------------------------------------


def test_reader_cannot_create_a_model(reader: ApiCaller) -> None:
    response = _post(reader, MODELS, model_body("iris"))

    assert response.status_code == 403


def test_reader_may_read_a_pipeline_and_its_models(
    ctl: SimulatorControl, reader: ApiCaller
) -> None:
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))

    assert reader.call("GET", f"{PIPELINES}/pipe").status_code == 200
    assert reader.call("GET", f"{PIPELINES}/pipe/models").status_code == 200
    assert reader.call("GET", PIPELINES).status_code == 200


def test_permission_check_comes_before_validation(reader: ApiCaller) -> None:
    assert _post(reader, PIPELINES, {"not": "a pipeline"}).status_code == 403


def test_unmanaged_namespace_is_403(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.add_namespace("wild", managed=False, users={ALICE: ["read", "write"]})

    assert api.call("GET", "/namespaces/wild/pipelines").status_code == 403


# -- GitOps --------------------------------------------------------------------


def test_gitops_model_write_is_a_commit_of_kind_model(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    params = {"action": "Promote", "message": "promote iris"}
    _post(api, f"/namespaces/{GITOPS_NS}/models", model_body("iris"), params=params)

    (commit,) = ctl.commits(GITOPS_NS, "iris")

    assert (commit["kind"], commit["action"], commit["message"]) == (
        "Model",
        "Promote",
        params["message"],
    )
    assert commit["spec"] == model_body("iris")["spec"]
    assert ctl.commits(kind="SeldonDeployment") == []


def test_gitops_model_has_no_status_until_synced(api: ApiCaller) -> None:
    created = _post(api, f"/namespaces/{GITOPS_NS}/models", model_body("iris")).json()
    assert "status" not in created

    wait_for(lambda: "status" in _model(api, "iris", GITOPS_NS), timeout=3)
    wait_for(lambda: _reason(_model(api, "iris", GITOPS_NS))[0] == "True", timeout=3)


def test_gitops_pipeline_update_keeps_the_old_generation_until_synced(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.seed_pipeline(GITOPS_NS, pipeline_body("pipe", ["iris"]))

    updated = _put(
        api, f"/namespaces/{GITOPS_NS}/pipelines/pipe", pipeline_body("pipe", ["wine"])
    ).json()

    assert updated["metadata"]["generation"] == 2
    assert updated["status"]["observedGeneration"] == 1
    wait_for(
        lambda: _pipeline(api, "pipe", GITOPS_NS)["status"]["observedGeneration"] == 2, timeout=3
    )


def test_gitops_pipeline_git_logs_list_its_commits(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_pipeline(GITOPS_NS, pipeline_body("pipe", ["iris"]))
    _put(api, f"/namespaces/{GITOPS_NS}/pipelines/pipe", pipeline_body("pipe", ["wine"]))

    logs = api.call("GET", f"/namespaces/{GITOPS_NS}/pipelines/pipe/gitlogs").json()

    assert [entry["Action"] for entry in logs] == ["Update", "Seed"]
    assert logs[0]["AuthorName"] == ALICE


# -- The request log and the control API -----------------------------------------


def test_request_log_records_the_core_v2_paths(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    ctl.seed_pipeline(NS, pipeline_body("pipe-canary", ["iris"]))
    _post(api, MODELS, model_body("iris"))
    api.call("GET", f"{PIPELINES}/pipe/models")
    _post(api, f"{PIPELINES}/pipe/experiment/canary", None, params={"weight": "5"})

    log = ctl.requests_log()

    base = "/seldon-deploy/api/v1alpha1/namespaces/{namespace}"
    assert [(e["method"], e["template"], e["status"]) for e in log] == [
        ("POST", base + "/models", 200),
        ("GET", base + "/pipelines/{name}/models", 200),
        ("POST", base + "/pipelines/{name}/experiment/canary", 200),
    ]
    assert log[2]["query"] == {"weight": "5"}
    assert {e["user"] for e in log} == {ALICE}


def test_faults_apply_to_the_core_v2_paths(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.fail_next(1, 503, path="/models")

    assert _post(api, MODELS, model_body("iris")).status_code == 503
    assert _post(api, MODELS, model_body("iris")).status_code == 200


def test_seeded_model_is_ready_at_once(ctl: SimulatorControl) -> None:
    seeded = ctl.seed_model(NS, model_body("iris", replicas=3))

    assert _reason(seeded) == ("True", "ModelAvailable")
    assert seeded["status"]["replicas"] == 3
    assert ctl.get_model(NS, "iris") == seeded


@pytest.mark.parametrize(
    ("state", "reason"),
    [("Creating", "ModelProgressing"), ("Failed", "ModelFailed"), (None, "ModelProgressing")],
)
def test_seeded_model_takes_a_given_state(
    ctl: SimulatorControl, state: str | None, reason: str
) -> None:
    seeded = ctl.seed_model(NS, model_body("iris"), state=state)

    assert _reason(seeded) == ("False", reason)


def test_control_reads_of_missing_objects_are_none(ctl: SimulatorControl) -> None:
    assert ctl.get_model(NS, "ghost") is None
    assert ctl.get_pipeline(NS, "ghost") is None
    assert ctl.get_experiment(NS, "ghost") is None


def test_seed_of_a_model_into_an_unknown_namespace_is_refused(ctl: SimulatorControl) -> None:
    with pytest.raises(ControlError, match="404"):
        ctl.seed_model("nowhere", model_body("iris"))


def test_unknown_kind_is_refused(ctl: SimulatorControl) -> None:
    with pytest.raises(ControlError, match="400"):
        ctl.mark_failing(NS, "iris", kind="Server")  # type: ignore[arg-type]


def test_remove_namespace_drops_its_core_v2_objects(ctl: SimulatorControl) -> None:
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    ctl.remove_namespace(NS)
    ctl.add_namespace(NS)

    assert (ctl.get_model(NS, "iris"), ctl.get_pipeline(NS, "pipe")) == (None, None)


def test_reset_forgets_core_v2_objects_marks_and_delays(ctl: SimulatorControl) -> None:
    ctl.seed_model(NS, model_body("iris"))
    ctl.mark_failing(NS, "iris", kind="Model")
    ctl.set_delays(rollout_seconds=9, namespace=NS, name="iris", kind="Pipeline")

    ctl.reset()

    ctl.add_namespace(NS)
    assert ctl.get_model(NS, "iris") is None
    assert ctl.set_delays()["core_overrides"] == []
    ctl.seed_model(NS, model_body("iris"), state=None)
    wait_for(lambda: _reason(ctl.get_model(NS, "iris") or {})[1] == "ModelAvailable", timeout=3)
