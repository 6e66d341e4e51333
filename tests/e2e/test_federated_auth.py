"""Sign-in without a stored secret: the operator authenticates to Keycloak with its
projected ServiceAccount token (federated client authentication, RFC 7523 client
assertion), checked by the realm's Kubernetes identity provider against the real
apiserver's issuer discovery and keys.

Every token here is minted by the real apiserver (TokenRequest, as the kubelet
projects it), except the expired one: TokenRequest grants at least 10 minutes, so
that one is signed with the apiserver's own service-account key (see
``tests.harness.federation.expired_service_account_token``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import yaml

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.controlplane import ControlPlane
from tests.harness.federation import (
    assertion_credentials,
    expired_service_account_token,
    service_account_token,
)
from tests.harness.keycloak import (
    CLIENT_ASSERTION_TYPE,
    FEDERATED_CLIENT_ID,
    FEDERATED_SERVICE_ACCOUNT,
    FEDERATED_SUBJECT,
    Keycloak,
)
from tests.harness.operator_process import write_credentials
from tests.harness.promotions import FINISHED_PHASES, Promotions, ready_reason_is
from tests.harness.rbac import MANIFESTS, render
from tests.harness.secrets import SECRETS, assert_no_secrets, assertion_secrets
from tests.harness.seldon_log import creates
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

Register = Callable[[str, str], str]


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch) -> Register:
    """Adds an assertion to the secret scan that the operator fixture runs at the end
    (logs, Events, status); returns the assertion."""

    def add(name: str, assertion: str) -> str:
        for key, value in assertion_secrets(name, assertion).items():
            monkeypatch.setitem(SECRETS, key, value)
        return assertion

    return add


def users_of(seldon: Simulator) -> set[str | None]:
    return {entry["user"] for entry in seldon.control.requests_log()}


def test_the_apiserver_serves_issuer_discovery_anonymously(control_plane: ControlPlane) -> None:
    discovery = requests.get(
        f"{control_plane.url}/.well-known/openid-configuration",
        verify=str(control_plane.ca_cert),
        timeout=10,
    )
    keys = requests.get(
        f"{control_plane.url}/openid/v1/jwks", verify=str(control_plane.ca_cert), timeout=10
    )

    assert discovery.status_code == 200, discovery.text
    assert discovery.json()["issuer"] == control_plane.url
    assert discovery.json()["jwks_uri"] == f"{control_plane.url}/openid/v1/jwks"
    assert keys.status_code == 200 and keys.json()["keys"][0]["kty"] == "RSA"


def test_keycloak_exchanges_a_service_account_token_for_its_own(
    control_plane: ControlPlane, keycloak: Keycloak, operator_kubeconfig: Path
) -> None:
    assertion = service_account_token(control_plane, keycloak.issuer)

    response = requests.post(
        keycloak.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": "openid profile email groups",
        },
        timeout=10,
    )

    assert response.status_code == 200, response.text
    id_token = response.json()["id_token"]
    claims = jwt.decode(id_token, options={"verify_signature": False})
    assert claims["azp"] == FEDERATED_CLIENT_ID
    assert claims["email"] == FEDERATED_SERVICE_ACCOUNT
    assert claims["groups"] == ["promotion-operators"]


def test_operator_with_only_a_service_account_token_promotes_end_to_end(
    seldon: Simulator,
    control_plane: ControlPlane,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
    register: Register,
) -> None:
    assertion = register(
        "the ServiceAccount token", service_account_token(control_plane, keycloak.issuer)
    )
    operator = operator_factory(assertion_credentials(keycloak, assertion))
    assert sorted(p.name for p in operator.credentials_dir.iterdir() if p.name[0] != ".") == [
        "client-assertion",
        "client-id",
        "grant-type",
        "oidc-server",
    ]
    promotions.apply("iris", PROMOTE_IRIS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "Succeeded"
    assert creates(seldon, "production") == 1
    # Seldon Deploy saw the client's identity, and nothing else.
    assert users_of(seldon) == {FEDERATED_SERVICE_ACCOUNT}
    assert f"client {FEDERATED_CLIENT_ID} with the client assertion in" in operator.log()
    assert_no_secrets(
        {"metrics": operator.metrics_text()}, assertion_secrets("the token", assertion)
    )


# What the status must say (ours, from the token's claims, then Keycloak's answer).
REFUSALS: dict[str, tuple[str, str]] = {
    "another ServiceAccount": (
        "is for system:serviceaccount:{namespace}:intruder (issuer {issuer}), which the "
        "identity provider does not accept for client promotion-operator-k8s",
        "HTTP 401: invalid_client: Invalid client or Invalid client credentials",
    ),
    "the wrong audience": (
        f"(ServiceAccount {FEDERATED_SUBJECT}) has the wrong audience "
        "(https://kubernetes.default.svc.cluster.local): set the projected token's "
        "audience to exactly the realm's issuer {realm}",
        "HTTP 400: invalid_client: Invalid token audience",
    ),
    "an expired token": (
        f"(ServiceAccount {FEDERATED_SUBJECT}) expired ",  # 300-something seconds ago
        "HTTP 400: invalid_client: Token is not active",
    ),
}


def _refused_token(case: str, control_plane: ControlPlane, keycloak: Keycloak, ns: str) -> str:
    if case == "another ServiceAccount":
        control_plane.kubectl("create", "serviceaccount", "intruder", "-n", ns)
        return service_account_token(control_plane, keycloak.issuer, namespace=ns, name="intruder")
    if case == "the wrong audience":
        # What a pod's default token carries: the cluster's own audience.
        return service_account_token(control_plane, "https://kubernetes.default.svc.cluster.local")
    return expired_service_account_token(control_plane, keycloak.issuer)


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_token_is_authentication_failed_saying_which(
    case: str,
    seldon: Simulator,
    control_plane: ControlPlane,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
    register: Register,
    operator_kubeconfig: Path,
) -> None:
    assertion = register(case, _refused_token(case, control_plane, keycloak, promotions.namespace))
    operator = operator_factory(assertion_credentials(keycloak, assertion))
    promotions.apply("iris", PROMOTE_IRIS)

    body = promotions.wait_for("iris", ready_reason_is("AuthenticationFailed"), case)

    ours, keycloaks = REFUSALS[case]
    expected = ours.format(
        namespace=promotions.namespace, issuer=control_plane.url, realm=keycloak.issuer
    )
    message = body["status"]["lastError"]["message"]
    assert expected in message
    assert keycloaks in message
    if case == "an expired token":
        assert " s ago: the token file is not being refreshed" in message
    assert seldon.control.requests_log() == []  # no token, no call
    assert_no_secrets(
        {"metrics": operator.metrics_text(), "status": json.dumps(body["status"])},
        assertion_secrets(case, assertion),
    )


def test_a_token_file_rotated_mid_run_is_used_at_the_next_token_request(
    seldon: Simulator,
    control_plane: ControlPlane,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
    register: Register,
) -> None:
    """The realm's tokens for this client live 10 s, so the operator asks for one
    every few seconds while the target rolls out: each request reads the file.

    The run cannot leave Verifying without a token, so once the refused file is in
    place it waits there, whatever the rollout's 30 s do meanwhile.
    """
    first = register("the first token", service_account_token(control_plane, keycloak.issuer))
    operator = operator_factory(assertion_credentials(keycloak, first))
    seldon.control.set_delays(rollout_seconds=30.0)
    promotions.apply("iris", PROMOTE_IRIS)
    promotions.wait_for_phase("iris", {"Verifying"})

    # A file the realm refuses: the very next token request fails with it ...
    wrong = register(
        "a wrong-audience token",
        service_account_token(control_plane, "https://kubernetes.default.svc.cluster.local"),
    )
    write_credentials(operator.credentials_dir, assertion_credentials(keycloak, wrong))
    body = promotions.wait_for("iris", ready_reason_is("AuthenticationFailed"), "refused")
    assert "Invalid token audience" in body["status"]["lastError"]["message"]
    assert body["status"]["phase"] == "Verifying"  # the run goes on, nothing rolled back

    # ... and a fresh one is used by the next, without a restart.
    fresh = register("the fresh token", service_account_token(control_plane, keycloak.issuer))
    assert fresh != first
    write_credentials(operator.credentials_dir, assertion_credentials(keycloak, fresh))
    status = promotions.wait_for_phase("iris", FINISHED_PHASES, timeout=120)
    assert status["phase"] == "Succeeded"
    assert creates(seldon, "production") == 1
    assert len(list(operator.workdir.glob("operator*.log"))) == 1  # never restarted
    assert operator.process.running()
    assert users_of(seldon) == {FEDERATED_SERVICE_ACCOUNT}


# -- the manifests' variant ---------------------------------------------------------

OVERLAY = "overlays/federated"


def _rendered(control_plane: ControlPlane) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(control_plane, OVERLAY)) if d]


def test_the_federated_overlay_mounts_a_projected_token_and_no_secret(
    control_plane: ControlPlane,
) -> None:
    documents = _rendered(control_plane)

    assert not [d for d in documents if d["kind"] == "Secret"]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "promotion-operator"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert not [v for v in volumes.values() if "secret" in v]
    sources = volumes["seldon-deploy-credentials"]["projected"]["sources"]
    token = next(s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s)
    config_map = next(s["configMap"] for s in sources if "configMap" in s)
    assert token["path"] == "client-assertion"
    assert token["expirationSeconds"] == 600  # the shortest the apiserver grants
    settings = next(
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map["name"]
    )
    # The audience is the realm's issuer: the same URL as oidc-server.
    assert token["audience"] == settings["data"]["oidc-server"]
    assert settings["data"]["grant-type"] == "client_credentials"
    assert "client-secret" not in settings["data"]
    mount = next(
        m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "seldon-deploy-credentials"
    )
    assert mount["mountPath"] == "/var/run/secrets/seldon-deploy"


def test_the_federated_overlay_is_accepted_by_the_apiserver(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input_text=render(control_plane, OVERLAY)
    )

    assert "deployment.apps/promotion-operator" in result.stdout
    assert (MANIFESTS / OVERLAY / "kustomization.yaml").exists()
