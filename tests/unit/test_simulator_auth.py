"""The simulator's token checks, namespace policies, error shape and request log."""

from __future__ import annotations

import pytest

from tests.simulator.control import SimulatorControl
from tests.simulator.testing import ApiCaller, RunningSimulator, deployment_body, new_rsa_key

NS = "staging"
ALICE = "alice@example.com"


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    control.add_namespace(NS, users={ALICE: ["read", "write"], "viewer@example.com": ["read"]})
    return control


@pytest.fixture
def api(sim: RunningSimulator, ctl: SimulatorControl) -> ApiCaller:
    return ApiCaller(sim.base_url, sim.idp.token(ALICE))


def test_valid_token_is_accepted(api: ApiCaller) -> None:
    assert api.list(NS).status_code == 200


def test_missing_token_is_401(api: ApiCaller) -> None:
    assert api.list(NS, token="").status_code == 401


def test_malformed_token_is_401(api: ApiCaller) -> None:
    assert api.list(NS, token="not-a-jwt").status_code == 401


def test_token_signed_by_another_key_is_401(sim: RunningSimulator, api: ApiCaller) -> None:
    forged = sim.idp.token(ALICE, key=new_rsa_key())
    assert api.list(NS, token=forged).status_code == 401


def test_token_with_unknown_key_id_is_401(sim: RunningSimulator, api: ApiCaller) -> None:
    forged = sim.idp.token(ALICE, key=new_rsa_key(), kid="someone-elses-key")
    assert api.list(NS, token=forged).status_code == 401


def test_expired_token_is_401(sim: RunningSimulator, api: ApiCaller) -> None:
    expired = sim.idp.token(ALICE, expires_in=-60)
    response = api.list(NS, token=expired)
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_token_from_another_issuer_is_401(sim: RunningSimulator, api: ApiCaller) -> None:
    foreign = sim.idp.token(ALICE, issuer="https://evil.example.com/realms/deploy-realm")
    assert api.list(NS, token=foreign).status_code == 401


def test_id_token_with_client_audience_is_accepted(sim: RunningSimulator, api: ApiCaller) -> None:
    id_token = sim.idp.token(ALICE, aud="sd-api", typ="ID")
    assert api.list(NS, token=id_token).status_code == 200


def test_identity_falls_back_to_preferred_username(
    sim: RunningSimulator, ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.add_namespace(NS, users={"service-account-promoter": ["read"]})
    token = sim.idp.token(None, preferred_username="service-account-promoter")
    assert api.list(NS, token=token).status_code == 200


def test_user_without_write_gets_403_on_create(sim: RunningSimulator, api: ApiCaller) -> None:
    viewer = sim.idp.token("viewer@example.com")
    response = api.create(NS, deployment_body("iris"), token=viewer)
    assert response.status_code == 403


def test_user_without_any_permission_gets_403_on_read(
    sim: RunningSimulator, api: ApiCaller
) -> None:
    stranger = sim.idp.token("mallory@example.com")
    assert api.list(NS, token=stranger).status_code == 403


@pytest.mark.parametrize("claimed", ["/data-scientists", "data-scientists"])
@pytest.mark.parametrize("policy", ["/data-scientists", "data-scientists"])
def test_group_permission_grants_access_with_or_without_leading_slash(
    sim: RunningSimulator, ctl: SimulatorControl, api: ApiCaller, claimed: str, policy: str
) -> None:
    ctl.add_namespace(NS, groups={policy: ["read", "write"]})
    token = sim.idp.token("bob@example.com", groups=[claimed])
    assert api.create(NS, deployment_body("iris"), token=token).status_code == 200


def test_unmanaged_namespace_is_403(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.add_namespace("kube-system", managed=False, users={ALICE: ["read", "write"]})
    assert api.list("kube-system").status_code == 403


def test_unknown_namespace_is_403(api: ApiCaller) -> None:
    assert api.list("nowhere").status_code == 403


def test_error_body_has_the_sdk_error_shape(api: ApiCaller) -> None:
    response = api.read(NS, "missing")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "requestId"}
    assert body["code"] == 404
    assert isinstance(body["message"], str) and body["message"]


def test_unknown_api_path_answers_in_the_error_shape(api: ApiCaller) -> None:
    response = api.call("GET", "/no/such/thing")
    assert response.status_code == 404
    assert response.json()["code"] == 404


def test_request_log_records_user_and_omits_token(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.clear_requests_log()
    api.create(NS, deployment_body("iris"), params={"action": "Create", "message": "hi"})
    api.list(NS, token="")
    entries = ctl.requests_log()
    assert [e["status"] for e in entries] == [200, 401]
    created, anonymous = entries
    assert created["user"] == ALICE
    assert created["method"] == "POST"
    assert created["template"] == (
        "/seldon-deploy/api/v1alpha1/namespaces/{namespace}/seldondeployments"
    )
    assert created["query"] == {"action": "Create", "message": "hi"}
    assert created["fault"] is None
    assert anonymous["user"] is None
    assert api.token is not None
    text = str(entries)
    assert api.token not in text
    assert "Bearer" not in text and "Authorization" not in text
