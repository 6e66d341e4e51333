"""Core v2 Experiments: canaries (`P-canary`), shadows (`P-shadow`) and generic experiments
of a pipeline P, with their 400/404/409/403 answers (in-process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.simulator.control import SimulatorControl
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
PIPE = f"/namespaces/{NS}/pipelines/pipe"
CANARY = PIPE + "/experiment/canary"
SHADOW = PIPE + "/experiment/shadow"
EXPERIMENT = PIPE + "/experiment"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(rollout_seconds=0.2, gitops_sync_seconds=0.2) as running:
        yield running


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    control.set_delays(rollout_seconds=0.2, gitops_sync_seconds=0.2)
    for ns, gitops in ((NS, False), (GITOPS_NS, True)):
        control.add_namespace(ns, gitops=gitops, users={ALICE: ["read", "write"], READER: ["read"]})
    return control


@pytest.fixture
def api(sim: RunningSimulator, ctl: SimulatorControl) -> ApiCaller:
    return ApiCaller(sim.base_url, sim.idp.token(ALICE))


@pytest.fixture
def reader(sim: RunningSimulator, ctl: SimulatorControl) -> ApiCaller:
    return ApiCaller(sim.base_url, sim.idp.token(READER))


def _seed(ctl: SimulatorControl, *candidates: str, ns: str = NS) -> None:
    """Ready model iris, pipeline `pipe` on it, and each candidate pipeline (iris then wine)."""
    ctl.seed_model(ns, model_body("iris"))
    ctl.seed_model(ns, model_body("wine"))
    ctl.seed_pipeline(
        ns,
        pipeline_body("pipe", ["iris"], labels={"track": "stable", "old": "x"}, annotations={}),
    )
    for candidate in candidates:
        ctl.seed_pipeline(
            ns,
            pipeline_body(
                candidate,
                ["iris", "wine"],
                labels={"track": candidate},
                annotations={"version": "2"},
            ),
        )


def _canary(api: ApiCaller, weight: object, path: str = CANARY) -> Any:
    params = None if weight is None else {"weight": weight}
    return api.call("POST", path, params=params)


def _experiment_body(*candidates: tuple[str, int], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "pipe"},
        "spec": {"candidates": [{"name": n, "weight": w} for n, w in candidates], **spec},
    }


def _experiment(ctl: SimulatorControl) -> dict[str, Any]:
    experiment = ctl.get_experiment(NS, "pipe")
    assert experiment is not None
    return experiment


# -- Canary --------------------------------------------------------------------


def test_canary_creates_experiment_p_with_the_weights(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    _seed(ctl, "pipe-canary")

    response = _canary(api, 20)

    assert response.status_code == 200
    assert set(response.json()) == {"code", "message"}
    experiment = _experiment(ctl)
    assert (experiment["apiVersion"], experiment["kind"]) == (
        "mlops.seldon.io/v1alpha1",
        "Experiment",
    )
    meta = experiment["metadata"]
    assert (meta["name"], meta["namespace"], meta["generation"]) == ("pipe", NS, 1)
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert experiment["spec"]["candidates"] == [
        {"name": "pipe", "weight": 80},
        {"name": "pipe-canary", "weight": 20},
    ]


def test_canary_weight_change_updates_the_experiment(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")
    _canary(api, 10)

    assert _canary(api, 50).status_code == 200

    experiment = _experiment(ctl)
    assert experiment["metadata"]["generation"] == 2
    assert [c["weight"] for c in experiment["spec"]["candidates"]] == [50, 50]


def test_canary_with_the_same_weight_is_a_no_op(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")
    _canary(api, 10)
    before = _experiment(ctl)["metadata"]

    assert _canary(api, 10).status_code == 200

    after = _experiment(ctl)["metadata"]
    assert (after["generation"], after["resourceVersion"]) == (
        before["generation"],
        before["resourceVersion"],
    )


@pytest.mark.parametrize("weight", [None, "", 0, 100, -5, "ten", "1.5"])
def test_canary_weight_outside_1_to_99_is_400(
    ctl: SimulatorControl, api: ApiCaller, weight: object
) -> None:
    _seed(ctl, "pipe-canary")

    response = _canary(api, weight)

    assert response.status_code == 400
    assert "weight" in response.json()["message"]


@pytest.mark.parametrize(
    ("present", "missing"),
    [(["pipe"], "pipe-canary"), ([], "pipe")],
)
def test_canary_without_p_or_p_canary_is_404_naming_it(
    ctl: SimulatorControl, api: ApiCaller, present: list[str], missing: str
) -> None:
    for name in present:
        ctl.seed_pipeline(NS, pipeline_body(name, ["iris"]))

    response = _canary(api, 10)

    assert response.status_code == 404
    assert f"{NS}/{missing} not found" in response.json()["message"]


def test_canary_over_a_shadow_experiment_is_409(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary", "pipe-shadow")
    api.call("POST", SHADOW)

    assert _canary(api, 10).status_code == 409


def test_canary_experiment_is_ready_only_while_both_pipelines_are(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    _seed(ctl)
    ctl.seed_pipeline(NS, pipeline_body("pipe-canary", ["iris", "lemon"]))
    _canary(api, 10)

    (ready,) = _experiment(ctl)["status"]["conditions"]
    assert (ready["type"], ready["status"]) == ("Ready", "False")
    assert "pipe-canary" in ready["message"]

    ctl.seed_model(NS, model_body("lemon"))

    (ready,) = _experiment(ctl)["status"]["conditions"]
    assert ready["status"] == "True"


def test_promote_copies_spec_labels_and_annotations_and_rolls_p_out(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    _seed(ctl, "pipe-canary")
    _canary(api, 10)

    assert api.call("PUT", CANARY).status_code == 200

    pipe = api.call("GET", PIPE).json()
    assert [s["name"] for s in pipe["spec"]["steps"]] == ["iris", "wine"]
    assert pipe["metadata"]["labels"] == {"track": "pipe-canary"}
    assert pipe["metadata"]["annotations"] == {"version": "2"}
    assert pipe["metadata"]["generation"] == 2
    ready = next(c for c in pipe["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], pipe["status"]["observedGeneration"]) == ("PipelineCreating", 2)
    # After P's own rollout it is Ready on the candidate's models.
    wait_for(lambda: api.call("GET", PIPE).json()["status"]["conditions"][2]["status"] == "True")


def test_promote_removes_the_canary_and_the_experiment(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    _seed(ctl, "pipe-canary")
    _canary(api, 10)

    api.call("PUT", CANARY)

    assert api.call("GET", f"/namespaces/{NS}/pipelines/pipe-canary").status_code == 404
    assert api.call("GET", EXPERIMENT).status_code == 404


def test_promote_without_a_canary_experiment_is_404(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary", "pipe-shadow")
    api.call("POST", SHADOW)

    response = api.call("PUT", CANARY)

    assert response.status_code == 404
    assert "no canary experiment" in response.json()["message"]


def test_remove_canary_leaves_p_untouched(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")
    before = ctl.get_pipeline(NS, "pipe")
    _canary(api, 10)

    assert api.call("DELETE", CANARY).status_code == 200

    assert ctl.get_pipeline(NS, "pipe") == before
    assert (ctl.get_pipeline(NS, "pipe-canary"), ctl.get_experiment(NS, "pipe")) == (None, None)


def test_remove_without_a_canary_experiment_is_404(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")

    assert api.call("DELETE", CANARY).status_code == 404


def test_reader_cannot_start_a_canary(ctl: SimulatorControl, reader: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")

    assert _canary(reader, "not-even-a-number").status_code == 403


def test_gitops_promote_commits_p_and_the_canary_delete_but_no_experiment(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    _seed(ctl, "pipe-canary", ns=GITOPS_NS)
    base = f"/namespaces/{GITOPS_NS}/pipelines/pipe/experiment/canary"
    _canary(api, 10, path=base)

    api.call("PUT", base, params={"action": "Promote", "message": "ship it"})

    commits = [
        (c["name"], c["action"], c["message"]) for c in ctl.commits(GITOPS_NS, kind="Pipeline")
    ]
    assert commits[-2:] == [("pipe", "Promote", "ship it"), ("pipe-canary", "Promote", "ship it")]
    assert [c["action"] for c in ctl.commits(GITOPS_NS)][:-2] == ["Seed"] * 4


# -- Shadow --------------------------------------------------------------------


def test_shadow_mirrors_p_to_p_shadow(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-shadow")

    assert api.call("POST", SHADOW).status_code == 200

    spec = _experiment(ctl)["spec"]
    assert spec["candidates"] == [{"name": "pipe", "weight": 100}]
    assert spec["mirror"] == {"name": "pipe-shadow", "percent": 100}


def test_shadow_without_p_shadow_is_404(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl)

    response = api.call("POST", SHADOW)

    assert response.status_code == 404
    assert "pipe-shadow" in response.json()["message"]


def test_promote_shadow_copies_it_onto_p(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-shadow")
    api.call("POST", SHADOW)

    assert api.call("PUT", SHADOW).status_code == 200

    pipe = ctl.get_pipeline(NS, "pipe")
    assert pipe is not None
    assert pipe["metadata"]["labels"] == {"track": "pipe-shadow"}
    assert [s["name"] for s in pipe["spec"]["steps"]] == ["iris", "wine"]
    assert (ctl.get_pipeline(NS, "pipe-shadow"), ctl.get_experiment(NS, "pipe")) == (None, None)


def test_remove_shadow_without_one_is_404(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")
    _canary(api, 10)

    assert api.call("DELETE", SHADOW).status_code == 404


# -- Generic experiments -----------------------------------------------------------


def test_create_experiment_returns_the_seldon_experiment(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    _seed(ctl, "pipe-canary")
    body = _experiment_body(("pipe", 3), ("pipe-canary", 1), default="pipe")

    response = api.call("POST", EXPERIMENT, json=body)

    assert response.status_code == 200
    created = response.json()
    assert created["spec"] == {**body["spec"], "resourceType": "pipeline"}
    assert created["metadata"]["generation"] == 1
    assert created["status"]["observedGeneration"] == 1
    assert api.call("GET", EXPERIMENT).json() == created


def test_create_experiment_when_one_exists_is_409(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")
    _canary(api, 10)

    response = api.call("POST", EXPERIMENT, json=_experiment_body(("pipe", 1)))

    assert response.status_code == 409


def test_create_experiment_for_a_missing_pipeline_is_404(api: ApiCaller) -> None:
    response = api.call("POST", EXPERIMENT, json=_experiment_body(("pipe", 1)))

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "why"),
    [
        pytest.param(_experiment_body(("pipe", 1), ("ghost", 1)), "ghost", id="missing-pipeline"),
        pytest.param(_experiment_body(("pipe", -1)), "weight", id="negative-weight"),
        pytest.param(_experiment_body(("pipe", 1), ("pipe", 2)), "duplicate", id="duplicate"),
        pytest.param(_experiment_body(), "candidates", id="no-candidates"),
        pytest.param(
            _experiment_body(("pipe", 1), default="other"), "spec.default", id="bad-default"
        ),
        pytest.param(
            _experiment_body(("pipe", 1), resourceType="model"), "resourceType", id="model-type"
        ),
        pytest.param(
            _experiment_body(("pipe", 1), mirror={"name": "ghost"}), "ghost", id="missing-mirror"
        ),
        pytest.param(
            {**_experiment_body(("pipe", 1)), "metadata": {"name": "other"}},
            "does not match",
            id="other-name",
        ),
    ],
)
def test_invalid_experiment_is_400_saying_why(
    ctl: SimulatorControl, api: ApiCaller, body: dict[str, Any], why: str
) -> None:
    _seed(ctl)

    response = api.call("POST", EXPERIMENT, json=body)

    assert response.status_code == 400
    assert why in response.json()["message"]


def test_experiment_metadata_may_be_left_out(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl)
    body = _experiment_body(("pipe", 1))
    del body["metadata"]

    response = api.call("POST", EXPERIMENT, json=body)

    assert response.status_code == 200
    assert response.json()["metadata"]["name"] == "pipe"


def test_update_experiment_replaces_it(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")
    api.call("POST", EXPERIMENT, json=_experiment_body(("pipe", 1)))

    response = api.call("PUT", EXPERIMENT, json=_experiment_body(("pipe-canary", 1)))

    assert response.status_code == 200
    assert response.json()["spec"]["candidates"] == [{"name": "pipe-canary", "weight": 1}]
    assert response.json()["metadata"]["generation"] == 2


def test_update_of_a_missing_experiment_is_404(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl)

    response = api.call("PUT", EXPERIMENT, json=_experiment_body(("pipe", 1)))

    assert response.status_code == 404


def test_delete_experiment_leaves_the_pipelines(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl, "pipe-canary")
    _canary(api, 10)

    response = api.call("DELETE", EXPERIMENT)

    assert (response.status_code, response.json()["code"]) == (200, 200)
    assert ctl.get_experiment(NS, "pipe") is None
    assert ctl.get_pipeline(NS, "pipe-canary") is not None


def test_read_of_a_missing_experiment_is_404(ctl: SimulatorControl, api: ApiCaller) -> None:
    _seed(ctl)

    response = api.call("GET", EXPERIMENT)

    assert response.status_code == 404
    assert response.json()["message"] == f"no experiment for pipeline {NS}/pipe"


def test_reader_may_read_but_not_delete_an_experiment(
    ctl: SimulatorControl, api: ApiCaller, reader: ApiCaller
) -> None:
    _seed(ctl, "pipe-canary")
    _canary(api, 10)

    assert reader.call("GET", EXPERIMENT).status_code == 200
    assert reader.call("DELETE", EXPERIMENT).status_code == 403
