"""The simulator's wire format, checked by driving it with the official seldon-deploy-sdk."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from seldon_deploy_sdk import ApiClient, Configuration, GitOpsApi, SeldonDeploymentsApi
from seldon_deploy_sdk.models import (
    AuditLog,
    Message,
    ObjectMeta,
    PredictiveUnit,
    PredictorSpec,
    SeldonDeployment,
    SeldonDeploymentList,
    SeldonDeploymentSpec,
)
from seldon_deploy_sdk.rest import ApiException

from tests.simulator.control import SimulatorControl
from tests.simulator.testing import RunningSimulator, wait_for

NS = "staging"
GITOPS_NS = "gitops"
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(rollout_seconds=0.2, gitops_sync_seconds=0.2) as running:
        yield running


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    control.add_namespace(NS, users={ALICE: ["read", "write"]})
    control.add_namespace(GITOPS_NS, gitops=True, users={ALICE: ["read", "write"]})
    return control


@pytest.fixture
def client(sim: RunningSimulator, ctl: SimulatorControl) -> Iterator[ApiClient]:
    config = Configuration()
    config.host = ctl.api_url
    config.access_token = sim.idp.token(ALICE)
    api_client = ApiClient(config)
    yield api_client
    api_client.rest_client.pool_manager.clear()


def _model(name: str, image: str) -> SeldonDeployment:
    graph = PredictiveUnit(name="classifier", type="MODEL", model_uri=image)
    return SeldonDeployment(
        api_version="machinelearning.seldon.io/v1",
        kind="SeldonDeployment",
        metadata=ObjectMeta(name=name, labels={"team": "ml"}),
        spec=SeldonDeploymentSpec(
            predictors=[PredictorSpec(name="default", graph=graph, replicas=1)]
        ),
    )


def test_sdk_drives_list_create_read_update_delete(client: ApiClient) -> None:
    sdeps = SeldonDeploymentsApi(client)

    created = sdeps.create_seldon_deployment(
        NS, _model("iris", "gs://models/iris/1"), action="Create", message="first"
    )
    assert isinstance(created, SeldonDeployment)
    assert created.metadata.generation == 1
    assert created.status.state == "Creating"

    listed = sdeps.list_seldon_deployments(NS)
    assert isinstance(listed, SeldonDeploymentList)
    assert [d.metadata.name for d in listed.items] == ["iris"]

    wait_for(lambda: sdeps.read_seldon_deployment("iris", NS).status.state == "Available")
    read = sdeps.read_seldon_deployment("iris", NS)
    assert isinstance(read, SeldonDeployment)
    assert read.status.observed_generation == 1
    assert read.spec.predictors[0].graph.model_uri == "gs://models/iris/1"

    updated = sdeps.update_seldon_deployment(
        "iris", NS, _model("iris", "gs://models/iris/2"), action="Update", message="second"
    )
    assert updated.metadata.generation == 2
    assert (updated.status.state, updated.status.observed_generation) == ("Creating", 2)

    deleted = sdeps.delete_seldon_deployment("iris", NS, action="Delete", message="bye")
    assert deleted["code"] == 200
    with pytest.raises(ApiException) as missing:
        sdeps.read_seldon_deployment("iris", NS)
    assert missing.value.status == 404


def test_sdk_validate_sends_no_body_and_gets_400(client: ApiClient) -> None:
    # seldon-deploy-sdk 2.4.0 builds validate as a GET and its REST layer drops
    # the body of GETs, so the server sees no deployment to validate.
    with pytest.raises(ApiException) as error:
        SeldonDeploymentsApi(client).validate_seldon_deployment(NS, _model("iris", "x"))
    assert error.value.status == 400
    assert "body is empty" in error.value.body


def test_sdk_sees_http_errors_as_api_exceptions_with_the_error_body(client: ApiClient) -> None:
    with pytest.raises(ApiException) as error:
        SeldonDeploymentsApi(client).list_seldon_deployments("not-managed")
    assert error.value.status == 403
    assert '"requestId"' in error.value.body


def test_sdk_reads_git_logs_and_reverts(client: ApiClient) -> None:
    sdeps = SeldonDeploymentsApi(client)
    gitops = GitOpsApi(client)
    sdeps.create_seldon_deployment(GITOPS_NS, _model("iris", "v1"), action="Create", message="a")
    sdeps.update_seldon_deployment(
        "iris", GITOPS_NS, _model("iris", "v2"), action="Update", message="b"
    )

    logs = gitops.read_seldon_deployment_git_logs("iris", GITOPS_NS)
    assert all(isinstance(entry, AuditLog) for entry in logs)
    assert logs[0].author_name == ALICE
    assert isinstance(logs[0].author_when, datetime)

    reverted = gitops.seldon_deployment_git_revert(
        "iris", GITOPS_NS, hash=logs[0].hash, action="Rollback", message="undo b"
    )
    assert isinstance(reverted, Message)
    assert reverted.code == 200
    restored = sdeps.read_seldon_deployment("iris", GITOPS_NS)
    assert restored.spec.predictors[0].graph.model_uri == "v1"
