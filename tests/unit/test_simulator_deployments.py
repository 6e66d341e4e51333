"""Deployment CRUD, validation and the time-derived rollout states (non-GitOps namespace)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.simulator.control import SimulatorControl
from tests.simulator.testing import (
    ApiCaller,
    RunningSimulator,
    deployment_body,
    wait_for,
)

NS = "prod"
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(rollout_seconds=0.2) as running:
        yield running


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    control.set_delays(rollout_seconds=0.2)
    control.add_namespace(NS, users={ALICE: ["read", "write"]})
    return control


@pytest.fixture
def api(sim: RunningSimulator, ctl: SimulatorControl) -> ApiCaller:
    return ApiCaller(sim.base_url, sim.idp.token(ALICE))


def _state(api: ApiCaller, name: str) -> Any:
    return api.read(NS, name).json().get("status", {}).get("state")


def test_create_returns_the_object_with_server_fields(api: ApiCaller) -> None:
    response = api.create(NS, deployment_body("iris", team="ml"))
    assert response.status_code == 200
    created = response.json()
    assert created["apiVersion"] == "machinelearning.seldon.io/v1"
    assert created["kind"] == "SeldonDeployment"
    meta = created["metadata"]
    assert meta["name"] == "iris" and meta["namespace"] == NS
    assert meta["labels"] == {"team": "ml"}
    assert meta["generation"] == 1
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert created["spec"] == deployment_body("iris")["spec"]
    assert created["status"] == {"state": "Creating", "observedGeneration": 1}


def test_client_sent_status_and_server_fields_are_ignored(api: ApiCaller) -> None:
    body = deployment_body("iris")
    body["status"] = {"state": "Available", "observedGeneration": 7}
    body["metadata"]["generation"] = 7
    created = api.create(NS, body).json()
    assert created["metadata"]["generation"] == 1
    assert created["status"]["state"] == "Creating"


def test_duplicate_create_is_409(api: ApiCaller) -> None:
    assert api.create(NS, deployment_body("iris")).status_code == 200
    assert api.create(NS, deployment_body("iris")).status_code == 409


def test_update_of_missing_deployment_is_404(api: ApiCaller) -> None:
    assert api.update(NS, "ghost", deployment_body("ghost")).status_code == 404


def test_read_of_missing_deployment_is_404(api: ApiCaller) -> None:
    assert api.read(NS, "ghost").status_code == 404


def test_delete_of_missing_deployment_is_404(api: ApiCaller) -> None:
    assert api.delete(NS, "ghost").status_code == 404


def test_update_with_other_name_in_body_is_400(api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"))
    assert api.update(NS, "iris", deployment_body("other")).status_code == 400


def test_body_in_other_namespace_is_400(api: ApiCaller) -> None:
    body = deployment_body("iris")
    body["metadata"]["namespace"] = "elsewhere"
    assert api.create(NS, body).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"spec": {"predictors": []}},
        {"metadata": {"name": "iris"}},
        {"metadata": {"name": "Not_A_Name"}, "spec": {"predictors": []}},
        {"metadata": {"name": "iris"}, "spec": {"predictors": []}},
        ["not", "an", "object"],
    ],
    ids=["no-metadata", "no-spec", "bad-name", "no-predictors", "not-object"],
)
def test_invalid_body_is_400(api: ApiCaller, body: object) -> None:
    assert api.create(NS, body).status_code == 400


def predictors(*specs: dict[str, object]) -> dict[str, object]:
    """The iris body with predictors named and shaped by ``specs``."""
    body = deployment_body("iris")
    template = body["spec"]["predictors"][0]
    body["spec"]["predictors"] = [{**template, **spec} for spec in specs]
    return body


@pytest.mark.parametrize(
    ("body", "why"),
    [
        pytest.param(
            predictors({"name": "a", "traffic": 90}, {"name": "b", "traffic": 20}),
            "traffic must sum to 100 for multiple predictors (it sums to 110)",
            id="sum-over-100",
        ),
        pytest.param(
            predictors({"name": "a"}, {"name": "b"}),
            "traffic must sum to 100 for multiple predictors (it sums to 0)",
            id="split-without-traffic",
        ),
        pytest.param(
            predictors({"name": "a", "traffic": 50}),
            "traffic must be 100 for a single predictor when set",
            id="single-at-50",
        ),
        pytest.param(
            predictors({"name": "a", "traffic": 50}, {"name": "a", "traffic": 50}),
            "duplicate predictor name: a",
            id="duplicate-names",
        ),
        pytest.param(
            predictors({"name": "a", "traffic": 110}, {"name": "b", "traffic": -10}),
            "traffic must be an integer in [0, 100]",
            id="out-of-range",
        ),
        pytest.param(
            predictors({"name": "a", "shadow": True}),
            "a shadow can not be the only predictor",
            id="only-a-shadow",
        ),
    ],
)
def test_traffic_the_webhook_refuses_is_400(api: ApiCaller, body: object, why: str) -> None:
    response = api.create(NS, body)

    assert response.status_code == 400
    assert why in response.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            predictors({"name": "a", "traffic": 90}, {"name": "b", "traffic": 10}), id="split"
        ),
        pytest.param(predictors({"name": "a", "traffic": 100}), id="single-at-100"),
        pytest.param(
            predictors({"name": "a"}, {"name": "s", "shadow": True, "traffic": 100}), id="shadow"
        ),
    ],
)
def test_traffic_the_webhook_accepts_is_created(api: ApiCaller, body: object) -> None:
    assert api.create(NS, body).status_code == 200


def test_non_json_body_is_400(api: ApiCaller) -> None:
    response = api.call(
        "POST",
        f"/namespaces/{NS}/seldondeployments",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_generation_bumps_only_when_spec_changes(api: ApiCaller) -> None:
    first = api.create(NS, deployment_body("iris")).json()["metadata"]
    same = api.update(NS, "iris", deployment_body("iris", team="relabelled")).json()["metadata"]
    changed = api.update(NS, "iris", deployment_body("iris", replicas=3)).json()["metadata"]
    assert (first["generation"], same["generation"], changed["generation"]) == (1, 1, 2)
    versions = [int(m["resourceVersion"]) for m in (first, same, changed)]
    assert versions == sorted(set(versions))


def test_creating_becomes_available_after_the_rollout_delay(api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"))
    assert _state(api, "iris") == "Creating"
    wait_for(lambda: _state(api, "iris") == "Available", timeout=3)
    assert api.read(NS, "iris").json()["status"]["observedGeneration"] == 1


def test_spec_change_rolls_out_the_new_generation(api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"))
    wait_for(lambda: _state(api, "iris") == "Available", timeout=3)
    updated = api.update(NS, "iris", deployment_body("iris", image="iris:2")).json()
    assert updated["status"] == {"state": "Creating", "observedGeneration": 2}
    wait_for(lambda: _state(api, "iris") == "Available", timeout=3)


def test_deployment_marked_failing_ends_failed_with_description(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.mark_failing(NS, "iris", description="image pull back-off")
    api.create(NS, deployment_body("iris"))
    wait_for(lambda: _state(api, "iris") == "Failed", timeout=3)
    assert api.read(NS, "iris").json()["status"]["description"] == "image pull back-off"


def test_failing_mark_can_target_one_spec(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.mark_failing(NS, "iris", spec_contains="iris:broken")
    api.create(NS, deployment_body("iris", image="iris:broken"))
    wait_for(lambda: _state(api, "iris") == "Failed", timeout=3)
    api.update(NS, "iris", deployment_body("iris", image="iris:good"))
    wait_for(lambda: _state(api, "iris") == "Available", timeout=3)


def test_unmarked_deployment_succeeds_again(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.mark_failing(NS, "iris")
    ctl.unmark_failing(NS, "iris")
    api.create(NS, deployment_body("iris"))
    wait_for(lambda: _state(api, "iris") == "Available", timeout=3)


def test_per_deployment_delay_overrides_the_global_one(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.set_delays(rollout_seconds=60, namespace=NS, name="slow")
    api.create(NS, deployment_body("slow"))
    api.create(NS, deployment_body("fast"))
    wait_for(lambda: _state(api, "fast") == "Available", timeout=3)
    assert _state(api, "slow") == "Creating"


def test_delete_removes_the_deployment(api: ApiCaller) -> None:
    api.create(NS, deployment_body("iris"))
    response = api.delete(NS, "iris", params={"action": "Delete", "message": "bye"})
    assert response.status_code == 200
    assert response.json()["code"] == 200
    assert api.read(NS, "iris").status_code == 404


def test_list_returns_a_seldon_deployment_list(api: ApiCaller) -> None:
    api.create(NS, deployment_body("b"))
    api.create(NS, deployment_body("a"))
    listed = api.list(NS).json()
    assert listed["kind"] == "SeldonDeploymentList"
    assert [d["metadata"]["name"] for d in listed["items"]] == ["a", "b"]


def test_validate_returns_message_for_a_valid_body(api: ApiCaller) -> None:
    response = api.validate(NS, deployment_body("iris"))
    assert response.status_code == 200
    assert set(response.json()) == {"code", "message"}


def test_validate_rejects_an_invalid_body_with_400(api: ApiCaller) -> None:
    response = api.validate(NS, {"metadata": {"name": "iris"}})
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "requestId"}


def test_validate_without_a_body_is_400(api: ApiCaller) -> None:
    assert api.call("GET", f"/namespaces/{NS}/seldondeployments/validate").status_code == 400


def test_seeded_deployment_is_available_at_once(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_deployment(NS, deployment_body("iris"))
    assert api.read(NS, "iris").json()["status"] == {
        "state": "Available",
        "observedGeneration": 1,
        "address": {"url": f"http://iris.{NS}.svc.cluster.local:8000"},
    }


def test_seeded_deployment_keeps_a_given_state(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.seed_deployment(NS, deployment_body("iris"), state="Failed", description="boom")
    status = api.read(NS, "iris").json()["status"]
    assert (status["state"], status["description"]) == ("Failed", "boom")


def _two_predictors(name: str, traffic: tuple[int, int], *, image: str = "iris:1") -> Any:
    """``deployment_body`` with a second predictor ``old`` and the split ``traffic``."""
    body = deployment_body(name, image=image)
    main = body["spec"]["predictors"][0]
    old = {**main, "name": "old"}
    main["traffic"], old["traffic"] = traffic
    body["spec"]["predictors"].append(old)
    return body


def test_a_traffic_only_change_is_available_at_once(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.set_delays(rollout_seconds=60)
    ctl.seed_deployment(NS, _two_predictors("iris", (100, 0)))
    updated = api.update(NS, "iris", _two_predictors("iris", (0, 100))).json()
    assert updated["metadata"]["generation"] == 2
    assert updated["status"]["state"] == "Available"
    assert updated["status"]["observedGeneration"] == 2


def test_a_traffic_only_change_takes_the_traffic_delay(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.set_delays(rollout_seconds=60, traffic_seconds=0.2)
    ctl.seed_deployment(NS, _two_predictors("iris", (100, 0)))
    api.update(NS, "iris", _two_predictors("iris", (0, 100)))
    assert _state(api, "iris") == "Creating"
    wait_for(lambda: _state(api, "iris") == "Available", timeout=3)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(lambda: _two_predictors("iris", (0, 100), image="iris:2"), id="and-image"),
        pytest.param(lambda: deployment_body("iris", image="iris:1"), id="predictor-removed"),
    ],
)
def test_a_change_beyond_the_traffic_rolls_out_new_pods(
    ctl: SimulatorControl, api: ApiCaller, changed: Any
) -> None:
    ctl.set_delays(rollout_seconds=60)
    ctl.seed_deployment(NS, _two_predictors("iris", (100, 0)))
    assert api.update(NS, "iris", changed()).json()["status"]["state"] == "Creating"


def test_the_traffic_delay_is_shown_and_may_not_be_negative(ctl: SimulatorControl) -> None:
    assert ctl.set_delays(traffic_seconds=0.5)["traffic_seconds"] == 0.5
    with pytest.raises(Exception, match="negative"):
        ctl.set_delays(traffic_seconds=-1)
