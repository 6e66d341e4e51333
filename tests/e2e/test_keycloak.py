"""The harness Keycloak serves the seed's realm: both grants, groups, short tokens."""

from __future__ import annotations

import jwt
import pytest
import requests

from tests.harness.keycloak import (
    DATA_SCIENTIST,
    OPERATOR_SERVICE_ACCOUNT,
    Keycloak,
)

pytestmark = pytest.mark.e2e


def _claims(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_discovery_names_the_realm_token_endpoint(keycloak: Keycloak) -> None:
    discovery = requests.get(f"{keycloak.issuer}/.well-known/openid-configuration", timeout=10)
    assert discovery.json()["token_endpoint"] == keycloak.token_url


def test_password_grant_issues_an_id_token_with_groups(keycloak: Keycloak) -> None:
    response = keycloak.password_grant(DATA_SCIENTIST)
    claims = _claims(response["id_token"])
    assert claims["email"] == DATA_SCIENTIST.username
    assert claims["groups"] == ["data-scientists"]
    assert claims["iss"] == keycloak.issuer


def test_client_credentials_grant_identifies_the_service_account(keycloak: Keycloak) -> None:
    claims = _claims(keycloak.client_credentials_grant()["access_token"])
    assert claims["email"] == OPERATOR_SERVICE_ACCOUNT
    assert claims["groups"] == ["promotion-operators"]


def test_access_tokens_live_a_minute_or_less(keycloak: Keycloak) -> None:
    claims = _claims(keycloak.password_grant(DATA_SCIENTIST)["access_token"])
    lifetime = int(str(claims["exp"])) - int(str(claims["iat"]))
    assert 0 < lifetime <= 60


def test_wrong_password_is_refused(keycloak: Keycloak) -> None:
    response = requests.post(
        keycloak.token_url,
        data={
            "grant_type": "password",
            "client_id": "sd-api",
            "username": DATA_SCIENTIST.username,
            "password": "not-the-password",
        },
        timeout=10,
    )
    # RFC 6749 section 5.2: a bad resource-owner password is 400 invalid_grant.
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
