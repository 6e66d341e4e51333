"""Promotion across Seldon Deploy instances (a staging cluster's, then a production
cluster's), each trusting its own realm, each called with its own identity and grant.

- Instance ``default`` (A) is the stack's simulator, trusting ``deploy-realm``; the
  operator signs in there with its ServiceAccount token (client assertion, client
  ``promotion-operator-k8s``).
- Instance ``production`` (B) is a second simulator, trusting ``production-realm``
  only; the operator signs in there with the client-credentials grant of that
  realm's ``promotion-operator-production`` (a client secret).

Each simulator refuses the other realm's tokens, so a call that reached the wrong
instance with the wrong token would fail; the request logs say who read and who
wrote where.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import WRITERS, StartOperator
from tests.harness.controlplane import ControlPlane
from tests.harness.federation import assertion_credentials, service_account_token
from tests.harness.keycloak import (
    FEDERATED_SERVICE_ACCOUNT,
    PRODUCTION_CLIENT_ID,
    PRODUCTION_CLIENT_SECRET,
    PRODUCTION_REALM,
    PRODUCTION_SERVICE_ACCOUNT,
    Keycloak,
)
from tests.harness.operator_process import OperatorProcess, write_credentials
from tests.harness.promotion_paths import Paths, newest_freight, stage_is
from tests.harness.promotions import FINISHED_PHASES, Promotions, ready_reason_is
from tests.harness.secrets import SECRETS, assertion_secrets
from tests.harness.seldon_log import WRITE_METHODS, writes
from tests.harness.simulator import Simulator, start_simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

PROMOTE_ACROSS: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production", "instance": "production"},
    "verification": {"timeout": "2m"},
}
OLD_IMAGE = "seldonio/sklearn-iris:1.2"
STAGE = "deploy.mlops.dev/stage"


@pytest.fixture
def production(keycloak: Keycloak) -> Iterator[Simulator]:
    """Instance B: its own simulator, trusting only the production realm."""
    simulator = start_simulator(keycloak.realm_issuer(PRODUCTION_REALM))
    try:
        control = simulator.control
        control.add_namespace("production", groups=WRITERS)
        control.set_delays(rollout_seconds=1.0, gitops_sync_seconds=2.0)
        control.clear_requests_log()
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def operator(
    seldon: Simulator,
    production: Simulator,
    control_plane: ControlPlane,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> OperatorProcess:
    """One operator, two instances, two identities and grants."""
    assertion = service_account_token(control_plane, keycloak.issuer)
    for key, value in assertion_secrets("the ServiceAccount token", assertion).items():
        monkeypatch.setitem(SECRETS, key, value)
    production_credentials = write_credentials(
        tmp_path / "production-credentials",
        {
            "oidc-server": keycloak.realm_issuer(PRODUCTION_REALM),
            "client-id": PRODUCTION_CLIENT_ID,
            "client-secret": PRODUCTION_CLIENT_SECRET,
            "grant-type": "client_credentials",
        },
    )
    settings = tmp_path / "instances.yaml"
    instances = [
        {
            "name": "production",
            "url": production.api_url,
            "credentialsDir": str(production_credentials),
        }
    ]
    settings.write_text(json.dumps({"instances": instances}))
    return operator_factory(
        assertion_credentials(keycloak, assertion),
        extra_env={"PROMOTION_OPERATOR_SETTINGS_FILE": str(settings)},
    )


def calls(simulator: Simulator) -> list[tuple[str | None, str, str]]:
    """(user, method, path) of every call the simulator answered, oldest first."""
    return [(e["user"], e["method"], e["path"]) for e in simulator.control.requests_log()]


def image_of(deployment: dict[str, Any]) -> str:
    container = deployment["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    image: str = container["image"]
    return image


def test_each_instance_refuses_the_other_realms_tokens(
    seldon: Simulator, production: Simulator, keycloak: Keycloak
) -> None:
    production_token = requests.post(
        f"{keycloak.realm_issuer(PRODUCTION_REALM)}/protocol/openid-connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": PRODUCTION_CLIENT_ID,
            "client_secret": PRODUCTION_CLIENT_SECRET,
            "scope": "openid profile email groups",
        },
        timeout=10,
    ).json()["access_token"]
    staging_token = keycloak.client_credentials_grant()["access_token"]
    path = "/namespaces/production/seldondeployments"

    def status(simulator: Simulator, token: str) -> int:
        answer = requests.get(
            simulator.api_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        return answer.status_code

    assert status(production, production_token) == 200
    assert status(production, staging_token) == 401
    assert status(seldon, staging_token) == 200
    assert status(seldon, production_token) == 401


def test_promotes_from_one_instance_to_another_each_with_its_own_identity(
    seldon: Simulator, production: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", PROMOTE_ACROSS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "Succeeded", status
    # A: read, by the ServiceAccount's client; nothing written there.
    on_a = calls(seldon)
    assert on_a and {user for user, _, _ in on_a} == {FEDERATED_SERVICE_ACCOUNT}
    assert not [c for c in on_a if c[1] in WRITE_METHODS]
    assert "GET" in {m for _, m, p in on_a if "/namespaces/staging/" in p}
    assert seldon.control.get_deployment("production", "iris") is None
    # B: written and verified by the production realm's client.
    on_b = calls(production)
    assert {user for user, _, _ in on_b} == {PRODUCTION_SERVICE_ACCOUNT}
    assert [m for m, _ in writes(production, "production")] == ["POST"]
    assert any(m == "GET" and "/namespaces/production/" in p for _, m, p in on_b)
    assert not [p for _, _, p in on_b if "/namespaces/staging/" in p]
    target = production.control.get_deployment("production", "iris")
    assert target is not None
    assert image_of(target) == "seldonio/sklearn-iris:1.4"
    assert target["metadata"]["annotations"]["deploy.mlops.dev/source"] == "staging/iris"


def test_a_failing_target_on_the_second_instance_is_rolled_back_there(
    seldon: Simulator, production: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    production.control.seed_deployment("production", deployment_body("iris", image=OLD_IMAGE))
    production.control.mark_failing(
        "production", "iris", description="ImagePullBackOff", spec_contains="sklearn-iris:1.4"
    )
    production.control.clear_requests_log()
    promotions.apply("iris", PROMOTE_ACROSS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "RolledBack", status
    assert status["outcome"]["reason"] == "TargetFailed"
    assert "ImagePullBackOff" in status["outcome"]["message"]
    target = production.control.get_deployment("production", "iris")
    assert target is not None and image_of(target) == OLD_IMAGE
    # The write and its rollback both on B, by B's identity; A only read.
    assert [m for m, _ in writes(production, "production")] == ["PUT", "PUT"]
    assert {user for user, _, _ in calls(production)} == {PRODUCTION_SERVICE_ACCOUNT}
    assert writes(seldon) == []
    assert {user for user, _, _ in calls(seldon)} == {FEDERATED_SERVICE_ACCOUNT}


def test_the_second_instance_unreachable_is_seldon_deploy_unavailable_naming_it(
    seldon: Simulator, production: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    production.process.stop()  # B down, A up
    promotions.apply("iris", PROMOTE_ACROSS)

    body = promotions.wait_for("iris", ready_reason_is("SeldonDeployUnavailable"), "B down")

    error = body["status"]["lastError"]
    assert "Seldon Deploy 'production'" in error["message"]
    assert "Seldon Deploy 'default'" not in error["message"]
    assert error["reason"] == "SeldonDeployUnavailable"
    assert "connection failed" in error["message"]
    assert body["status"].get("phase") not in FINISHED_PHASES
    # A answered: the source was read there by the ServiceAccount's client.
    assert any(
        user == FEDERATED_SERVICE_ACCOUNT and m == "GET" and "/namespaces/staging/" in p
        for user, m, p in calls(seldon)
    )
    assert writes(seldon) == []


def test_a_path_stage_on_the_second_instance_promotes_what_passed_the_first(
    seldon: Simulator,
    production: Simulator,
    operator: OperatorProcess,
    control_plane: ControlPlane,
    namespace: str,
) -> None:
    seldon.control.add_namespace("qa", groups=WRITERS)
    paths = Paths(control_plane, namespace)
    paths.apply(
        "iris",
        {"name": "qa", "target": {"namespace": "qa"}},
        {"name": "prod", "target": {"namespace": "production", "instance": "production"}},
        source={"namespace": "staging", "name": "iris"},
    )
    body = paths.wait_for("iris", stage_is("prod", phase="Succeeded"), "prod Succeeded")
    freight = newest_freight(body)
    assert [s["promoted"] for s in body["status"]["stages"]] == [freight, freight]
    written = production.control.get_deployment("production", "iris")
    assert written is not None and image_of(written) == "seldonio/sklearn-iris:1.4"
    # The prod stage read its source, qa/iris, on instance A and wrote only on B.
    prod_run = next(r for r in paths.runs("iris") if r["metadata"]["labels"][STAGE] == "prod")
    source = prod_run["spec"]["source"]  # the CRD's default adds kind
    assert (source["namespace"], source["name"], source.get("instance")) == ("qa", "iris", None)
    assert prod_run["spec"]["target"]["instance"] == "production"
    assert [w for w in writes(seldon, "production") if not w[1].endswith("/validate")] == []
