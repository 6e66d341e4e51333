"""The simulator speaks Seldon Deploy's wire format to the official SDK, with real tokens.

Tokens come from the harness Keycloak through the SDK's own ``OIDCAuthenticator``;
calls go through the SDK's ``SeldonDeploymentsApi`` and answers must deserialize
into its models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from seldon_deploy_sdk import ApiClient, Configuration, SeldonDeploymentsApi
from seldon_deploy_sdk.auth import OIDCAuthenticator
from seldon_deploy_sdk.models.message import Message
from seldon_deploy_sdk.models.seldon_deployment import SeldonDeployment
from seldon_deploy_sdk.models.seldon_deployment_list import SeldonDeploymentList
from seldon_deploy_sdk.rest import ApiException

from tests.harness.keycloak import (
    DATA_SCIENTIST,
    DATA_VIEWER,
    OPERATOR_CLIENT_ID,
    OPERATOR_CLIENT_SECRET,
    OPERATOR_SERVICE_ACCOUNT,
    PUBLIC_CLIENT_ID,
    SHORT_LIVED_CLIENT_ID,
    Keycloak,
)
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e


def _sdk_config(simulator: Simulator, keycloak: Keycloak, **auth: Any) -> Configuration:
    config = Configuration()
    config.host = simulator.api_url
    config.oidc_server = keycloak.issuer
    for key, value in auth.items():
        setattr(config, key, value)
    return config


def _password_grant_config(simulator: Simulator, keycloak: Keycloak) -> Configuration:
    config = _sdk_config(simulator, keycloak, oidc_client_id=PUBLIC_CLIENT_ID)
    config.access_token = OIDCAuthenticator(config).authenticate(
        DATA_SCIENTIST.username, DATA_SCIENTIST.password
    )
    return config


def _client_credentials_config(simulator: Simulator, keycloak: Keycloak) -> Configuration:
    config = _sdk_config(
        simulator,
        keycloak,
        oidc_client_id=OPERATOR_CLIENT_ID,
        oidc_client_secret=OPERATOR_CLIENT_SECRET,
        auth_method="client_credentials",
    )
    config.access_token = OIDCAuthenticator(config).authenticate()
    return config


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("configure", "identity"),
    [
        (_password_grant_config, DATA_SCIENTIST.username),
        (_client_credentials_config, OPERATOR_SERVICE_ACCOUNT),
    ],
    ids=["password-grant", "client-credentials"],
)
def test_sdk_round_trip(
    simulator: Simulator,
    keycloak: Keycloak,
    configure: Callable[[Simulator, Keycloak], Configuration],
    identity: str,
) -> None:
    simulator.control.add_namespace(
        "staging",
        users={DATA_SCIENTIST.username: ["read", "write"]},
        groups={"promotion-operators": ["read", "write"]},
    )
    simulator.control.set_delays(rollout_seconds=0.5)
    api = SeldonDeploymentsApi(ApiClient(configure(simulator, keycloak)))

    created = api.create_seldon_deployment("staging", deployment_body("iris"))
    assert isinstance(created, SeldonDeployment)
    assert created.metadata.generation == 1

    listed = api.list_seldon_deployments("staging")
    assert isinstance(listed, SeldonDeploymentList)
    assert [d.metadata.name for d in listed.items] == ["iris"]

    _wait_for(lambda: api.read_seldon_deployment("iris", "staging").status.state == "Available")

    body = deployment_body("iris", image="seldonio/sklearn-iris:0.2")
    updated = api.update_seldon_deployment("iris", "staging", body)
    assert isinstance(updated, SeldonDeployment)
    assert updated.metadata.generation == 2
    assert updated.spec.predictors[0].component_specs[0].spec.containers[0].image.endswith("0.2")

    # The SDK drops the body of GET requests, so its validate call can only send
    # an empty body; the simulator answers that the body is missing.
    with pytest.raises(ApiException) as empty:
        api.validate_seldon_deployment("staging", body)
    assert empty.value.status == 400

    # The SDK declares delete's answer as a plain object.
    deleted = api.delete_seldon_deployment("iris", "staging")
    assert deleted["code"] == 200
    assert api.list_seldon_deployments("staging").items == []
    users = {entry["user"] for entry in simulator.control.requests_log()}
    assert users == {identity}


def test_validate_with_a_body_answers_an_sdk_message(
    simulator: Simulator, keycloak: Keycloak
) -> None:
    simulator.control.add_namespace("staging", groups={"data-scientists": ["read"]})
    token = keycloak.password_grant(DATA_SCIENTIST)["id_token"]
    response = requests.get(
        f"{simulator.api_url}/namespaces/staging/seldondeployments/validate",
        json=deployment_body("iris"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200
    message = ApiClient().deserialize(_Response(response), "Message")
    assert isinstance(message, Message)


class _Response:
    """Adapts a requests response to what the SDK's deserializer reads."""

    def __init__(self, response: requests.Response) -> None:
        self.data = response.text


def test_expired_token_is_refused(simulator: Simulator, keycloak: Keycloak) -> None:
    simulator.control.add_namespace("staging", groups={"data-scientists": ["read"]})
    token = keycloak.password_grant(DATA_SCIENTIST, SHORT_LIVED_CLIENT_ID)["id_token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{simulator.api_url}/namespaces/staging/seldondeployments"
    assert requests.get(url, headers=headers, timeout=10).status_code == 200

    time.sleep(5 + 2 + 1)  # the client's 5 s lifespan, the simulator's 2 s leeway, a margin
    expired = requests.get(url, headers=headers, timeout=10)
    assert expired.status_code == 401
    assert expired.json()["code"] == 401


def test_forged_token_is_refused(simulator: Simulator, keycloak: Keycloak) -> None:
    simulator.control.add_namespace("staging", groups={"data-scientists": ["read"]})
    header, payload, signature = keycloak.password_grant(DATA_SCIENTIST)["id_token"].split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    response = requests.get(
        f"{simulator.api_url}/namespaces/staging/seldondeployments",
        headers={"Authorization": f"Bearer {forged}"},
        timeout=10,
    )
    assert response.status_code == 401


def test_narrower_user_may_read_but_not_write(simulator: Simulator, keycloak: Keycloak) -> None:
    simulator.control.add_namespace(
        "production",
        groups={"data-scientists": ["read", "write"], "data-viewers": ["read"]},
    )
    token = keycloak.password_grant(DATA_VIEWER)["id_token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{simulator.api_url}/namespaces/production/seldondeployments"
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    refused = requests.post(url, json=deployment_body("iris"), headers=headers, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["code"] == 403


def test_gitops_write_is_a_commit_and_status_waits_for_the_sync(
    simulator: Simulator, keycloak: Keycloak
) -> None:
    simulator.control.add_namespace(
        "production", gitops=True, groups={"data-scientists": ["read", "write"]}
    )
    simulator.control.set_delays(rollout_seconds=0.5, gitops_sync_seconds=3.0)
    api = SeldonDeploymentsApi(ApiClient(_password_grant_config(simulator, keycloak)))

    written = time.monotonic()
    api.create_seldon_deployment(
        "production", deployment_body("iris"), action="Promote", message="promote iris v1"
    )
    [commit] = simulator.control.commits("production", "iris")
    assert (commit["action"], commit["message"], commit["author"]) == (
        "Promote",
        "promote iris v1",
        DATA_SCIENTIST.username,
    )

    # The repository is the truth at once; the cluster's status only after the sync.
    read = api.read_seldon_deployment("iris", "production")
    assert read.metadata.name == "iris"
    assert read.status is None or read.status.state is None

    _wait_for(lambda: api.read_seldon_deployment("iris", "production").status is not None)
    assert time.monotonic() - written >= 3.0
    _wait_for(lambda: api.read_seldon_deployment("iris", "production").status.state == "Available")
