"""A ModelPromotion promotes, end to end: the operator as its own process, the real
apiserver, the real Keycloak and the Seldon Deploy simulator."""

from __future__ import annotations

import time
from typing import Any

import pytest
from seldon_deploy_sdk import SeldonDeploymentsApi

from tests.e2e.conftest import StartOperator
from tests.harness.controlplane import ControlPlane
from tests.harness.keycloak import DATA_SCIENTIST, OPERATOR_SERVICE_ACCOUNT, Keycloak
from tests.harness.operator_process import OperatorProcess, client_credentials
from tests.harness.promotions import Promotions
from tests.harness.seldon_log import creates, writes
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

PROMOTE_IRIS: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
    "overrides": {"replicas": 3, "labels": {"environment": "production"}},
    "verification": {"timeout": "2m"},
}


def _sdk_dict(api: SeldonDeploymentsApi, namespace: str, name: str) -> dict[str, Any]:
    deployment = api.read_seldon_deployment(name, namespace)
    as_dict: dict[str, Any] = api.api_client.sanitize_for_serialization(deployment)
    return as_dict


def test_promotion_with_password_grant_copies_source_plus_overrides(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, sdk: SeldonDeploymentsApi
) -> None:
    promotions.apply("iris", PROMOTE_IRIS)

    status = promotions.wait_for_phase("iris", {"Succeeded", "Failed", "RolledBack"})

    assert status["phase"] == "Succeeded"
    assert promotions.ready("iris")["status"] == "True"
    source = _sdk_dict(sdk, "staging", "iris")
    target = _sdk_dict(sdk, "production", "iris")
    expected = source["spec"]
    for predictor in expected["predictors"]:
        predictor["replicas"] = 3
    assert target["spec"] == expected
    assert target["metadata"]["labels"]["environment"] == "production"
    annotations = target["metadata"]["annotations"]
    assert annotations["deploy.mlops.dev/source"] == "staging/iris"
    assert annotations["deploy.mlops.dev/promotion"] == f"{promotions.namespace}/iris"
    assert annotations["deploy.mlops.dev/source-spec-hash"] == status["plan"]["sourceSpecHash"]
    assert status["plan"]["images"] == ["seldonio/sklearn-iris:1.4"]
    assert {user for user in _users(seldon)} == {DATA_SCIENTIST.username}


def test_promotion_with_client_credentials_acts_as_the_service_account(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
) -> None:
    operator_factory(client_credentials(keycloak))
    promotions.apply("iris", PROMOTE_IRIS)

    status = promotions.wait_for_phase("iris", {"Succeeded", "Failed", "RolledBack"})

    assert status["phase"] == "Succeeded"
    assert set(_users(seldon)) == {OPERATOR_SERVICE_ACCOUNT}


def test_reapplying_the_same_spec_writes_nothing_even_after_a_restart(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", PROMOTE_IRIS)
    promotions.wait_for_phase("iris", {"Succeeded"})
    writes_after_run = writes(seldon)

    promotions.apply("iris", PROMOTE_IRIS)  # what Argo CD does on every sync
    promotions.kube.kubectl("label", "mp", "iris", "-n", promotions.namespace, "touched=yes")
    operator.restart()  # the resume handler sees the finished run
    promotions.apply("iris", PROMOTE_IRIS)
    _settle(promotions, "iris")

    assert writes(seldon) == writes_after_run
    assert promotions.status("iris")["phase"] == "Succeeded"


def test_a_spec_change_makes_exactly_one_new_run(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", PROMOTE_IRIS)
    first = promotions.wait_for_phase("iris", {"Succeeded"})
    before = len(writes(seldon))

    promotions.patch_spec("iris", {"overrides": {"replicas": 5}})
    second = promotions.wait_for_phase("iris", {"Succeeded"})
    _settle(promotions, "iris")

    assert second["observedGeneration"] == first["observedGeneration"] + 1
    assert second["startedAt"] >= first["startedAt"]
    new_writes = writes(seldon)[before:]
    assert new_writes == [
        ("PUT", "/seldon-deploy/api/v1alpha1/namespaces/production/seldondeployments/iris")
    ]


def test_dry_run_validates_and_writes_nothing(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", {**PROMOTE_IRIS, "dryRun": True})

    status = promotions.wait_for_phase("iris", {"Succeeded", "Failed"})

    assert promotions.ready("iris")["reason"] == "DryRun"
    assert status["plan"]["action"] == "Create"
    assert writes(seldon) == []
    validations = [e for e in seldon.control.requests_log() if e["path"].endswith("/validate")]
    assert len(validations) == 1 and validations[0]["status"] == 200
    assert seldon.control.get_deployment("production", "iris") is None


def test_suspended_promotion_stops_before_the_first_write_and_resumes(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", {**PROMOTE_IRIS, "suspend": True})
    promotions.wait_for_phase("iris", {"Suspended"})
    _settle(promotions, "iris")
    assert writes(seldon) == []

    promotions.patch_spec("iris", {"suspend": False})

    assert promotions.wait_for_phase("iris", {"Succeeded"})["phase"] == "Succeeded"
    assert creates(seldon, "production") == 1


def test_gitops_namespace_gets_one_commit_with_the_message_and_identity(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.add_namespace(
        "production", gitops=True, groups={"data-scientists": ["read", "write"]}
    )
    seldon.control.set_delays(rollout_seconds=1.0, gitops_sync_seconds=3.0)
    message = "Promote iris 1.4 to production (change CHG-1234)"
    promotions.apply("iris", {**PROMOTE_IRIS, "gitops": {"message": message}})

    status = promotions.wait_for_phase("iris", {"Succeeded", "Failed", "RolledBack"})

    assert status["phase"] == "Succeeded"
    [commit] = seldon.control.commits("production", "iris")
    assert (commit["message"], commit["author"]) == (message, DATA_SCIENTIST.username)
    # Success came from the synced status of the written generation, not the
    # repository view that is visible (with no status) right after the write.
    target = seldon.control.get_deployment("production", "iris")
    assert target is not None
    assert target["status"]["observedGeneration"] == status["appliedGeneration"]


def test_kubectl_wait_for_ready_returns_on_success(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    promotions.apply("iris", PROMOTE_IRIS)

    waited = control_plane.kubectl(
        "wait", "--for=condition=Ready", "mp/iris", "-n", promotions.namespace, "--timeout=90s"
    )

    assert "condition met" in waited.stdout


def test_events_record_each_phase_change_in_order(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", PROMOTE_IRIS)
    promotions.wait_for_phase("iris", {"Succeeded"})

    reasons = [event["reason"] for event in promotions.events("iris")]

    assert reasons == ["Promoting", "WaitingForAvailable", "Succeeded"]


def test_deleting_a_promotion_leaves_the_target_alone(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", PROMOTE_IRIS)
    promotions.wait_for_phase("iris", {"Succeeded"})
    before = writes(seldon)

    promotions.kube.kubectl("delete", "mp", "iris", "-n", promotions.namespace, "--timeout=30s")

    assert seldon.control.get_deployment("production", "iris") is not None
    assert writes(seldon) == before


def _users(simulator: Simulator) -> list[str]:
    return [e["user"] for e in simulator.control.requests_log() if e["user"] is not None]


def _settle(promotions: Promotions, name: str) -> None:
    """Give the operator time to act on the latest change, if it were going to.

    Kopf handles a change within a second on this machine; waiting for its own
    annotations to catch up with the generation proves it saw the change.
    """
    generation = promotions.get(name)["metadata"]["generation"]
    promotions.wait_for(
        name,
        lambda body: (body.get("status") or {}).get("observedGeneration") == generation,
        "the operator's view of the latest generation",
    )
    time.sleep(3)
