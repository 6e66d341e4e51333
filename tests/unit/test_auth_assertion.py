"""The client-assertion mode: client_credentials with a projected ServiceAccount token
(RFC 7523 jwt-bearer) read from the credentials directory on every token request.

The identity provider here is a recording ``requests.Session`` double: what matters
is what the provider sends and how it reports a refusal. The real exchange with
Keycloak's Kubernetes identity provider is in ``tests/e2e/test_federated_auth.py``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from promotion_operator.__main__ import main
from promotion_operator.clients.auth import TokenProvider
from promotion_operator.config.credentials import JWT_BEARER_ASSERTION, read_credentials
from promotion_operator.config.settings import InstanceSettings
from promotion_operator.errors import AuthenticationFailed, SettingsError
from tests.oidcstub import FakeClock, write_secret
from tests.oidcstub.server import signing_key

ISSUER = "https://idp.example/realms/deploy-realm"
TOKEN_URL = f"{ISSUER}/protocol/openid-connect/token"
SUBJECT = "system:serviceaccount:promotion-operator:promotion-operator"
CLUSTER = "https://kubernetes.default.svc.cluster.local"


def service_account_token(
    clock: FakeClock,
    *,
    subject: str = SUBJECT,
    audience: str | list[str] = ISSUER,
    lifetime: float = 600,
    issued_ago: float = 0,
) -> str:
    """A token shaped like the apiserver's (signed, so a JWT, but by a test key)."""
    iat = int(clock() - issued_ago)
    claims = {
        "iss": CLUSTER,
        "sub": subject,
        "aud": [audience] if isinstance(audience, str) else audience,
        "iat": iat,
        "nbf": iat,
        "exp": int(iat + lifetime),
        "kubernetes.io": {"namespace": "promotion-operator"},
    }
    return jwt.encode(claims, signing_key(), algorithm="RS256", headers={"kid": "k8s"})


class FakeIdentityProvider(requests.Session):
    """Answers token requests from a queue of (status, body); records every form."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.forms: list[dict[str, str]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return self._answer(200, {"issuer": ISSUER, "token_endpoint": TOKEN_URL})
        assert url == TOKEN_URL and method == "POST"
        data: Mapping[str, str] = kwargs["data"]
        self.forms.append(dict(data))
        status, body = self.answers.pop(0) if self.answers else (200, self._token())
        return self._answer(status, body)

    @staticmethod
    def _answer(status: int, body: dict[str, Any]) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        # A body to stream, as a real answer's: the provider reads it in chunks, up to a cap.
        response.raw = io.BytesIO(json.dumps(body).encode())
        response.headers["Content-Type"] = "application/json"
        return response

    def _token(self) -> dict[str, Any]:
        now = int(self.clock())
        claims = {"iss": ISSUER, "sub": "sa", "iat": now, "exp": now + 10}
        token = jwt.encode(claims, signing_key(), algorithm="RS256")
        return {"access_token": token, "id_token": token, "expires_in": 10}

    def refuse(self, status: int, error: str, description: str) -> None:
        self.answers.append((status, {"error": error, "error_description": description}))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def idp(clock: FakeClock) -> FakeIdentityProvider:
    return FakeIdentityProvider(clock)


@pytest.fixture
def directory(tmp_path: Path, clock: FakeClock) -> Path:
    """What the projected volume holds: the ConfigMap's keys and the token."""
    return write_secret(
        tmp_path / "credentials",
        {
            "token-url": TOKEN_URL,
            "client-id": "promotion-operator-k8s",
            "grant-type": "client_credentials",
            "client-assertion": service_account_token(clock),
        },
    )


@pytest.fixture
def provider(
    directory: Path, idp: FakeIdentityProvider, clock: FakeClock
) -> Iterator[TokenProvider]:
    instance = InstanceSettings(
        name="staging", url="https://sd.example/api", credentials_dir=directory
    )
    yield TokenProvider(instance, session=idp, clock=clock, refresh_margin=5)


def with_oidc_server(directory: Path) -> None:
    """Name the issuer instead of the token URL (so the expected audience is known)."""
    write_secret(directory, {"token-url": None, "oidc-server": ISSUER})


def texts(error: BaseException) -> str:
    return " ".join([str(error), repr(error), repr(error.args)])


# -- reading the directory ----------------------------------------------------------


def test_the_assertion_is_read_and_hidden_from_repr(directory: Path, clock: FakeClock) -> None:
    credentials = read_credentials(directory)

    assert credentials.grant_type == "client_credentials"
    assert credentials.client_secret is None
    assert credentials.client_assertion == service_account_token(clock)
    assert credentials.client_assertion_file == directory / "client-assertion"
    assert credentials.client_assertion not in repr(credentials)
    assert credentials.client_assertion in credentials.secrets


def test_without_a_grant_type_an_assertion_means_client_credentials(directory: Path) -> None:
    write_secret(directory, {"grant-type": None})

    assert read_credentials(directory).grant_type == "client_credentials"


def test_a_secret_and_an_assertion_together_are_a_problem(directory: Path) -> None:
    write_secret(directory, {"client-secret": "s3cr3t-value"})

    with pytest.raises(SettingsError) as caught:
        read_credentials(directory)

    assert caught.value.problems == [
        f"{directory}: set one of client-secret or client-assertion, not both (a client "
        "authenticates with a secret or with a signed token)"
    ]
    assert "s3cr3t-value" not in str(caught.value)


def test_an_assertion_with_the_password_grant_is_a_problem(directory: Path) -> None:
    write_secret(directory, {"grant-type": "password", "username": "u", "password": "p4ss"})

    with pytest.raises(SettingsError) as caught:
        read_credentials(directory)

    assert caught.value.problems == [
        f"{directory}: client-assertion authenticates a client with the client_credentials "
        "grant; remove it or set grant-type client_credentials"
    ]


def test_a_file_that_is_not_a_jwt_is_a_problem_without_quoting_it(directory: Path) -> None:
    write_secret(directory, {"client-assertion": "not-a-token-but-a-s3cret"})

    with pytest.raises(SettingsError) as caught:
        read_credentials(directory)

    assert caught.value.problems == [
        f"{directory / 'client-assertion'} is not a signed JWT (header.payload.signature); "
        "it must be a projected ServiceAccount token"
    ]
    assert "s3cret" not in str(caught.value)


def test_client_credentials_needs_a_secret_or_an_assertion(directory: Path) -> None:
    write_secret(directory, {"client-assertion": None})

    with pytest.raises(SettingsError) as caught:
        read_credentials(directory)

    assert caught.value.problems == [
        f"{directory}: the client_credentials grant needs client-secret or client-assertion "
        "(the projected ServiceAccount token); both are missing or empty"
    ]


# -- the token request ------------------------------------------------------------


def test_the_request_carries_the_assertion_and_no_secret(
    provider: TokenProvider, idp: FakeIdentityProvider, clock: FakeClock
) -> None:
    provider.token()

    assert idp.forms == [
        {
            "grant_type": "client_credentials",
            "client_id": "promotion-operator-k8s",
            "client_assertion_type": JWT_BEARER_ASSERTION,
            "client_assertion": service_account_token(clock),
            "scope": "openid profile email groups",
        }
    ]


def test_the_file_is_read_again_on_every_token_request(
    provider: TokenProvider, idp: FakeIdentityProvider, directory: Path, clock: FakeClock
) -> None:
    provider.token()
    first = service_account_token(clock)
    clock.advance(60)  # the identity provider's token (10 s) expired meanwhile
    rotated = service_account_token(clock)
    write_secret(directory, {"client-assertion": rotated})

    provider.token()

    assert first != rotated
    assert [form["client_assertion"] for form in idp.forms] == [first, rotated]


def test_the_cached_token_is_reused_without_reading_the_file(
    provider: TokenProvider, idp: FakeIdentityProvider, directory: Path
) -> None:
    provider.token()
    write_secret(directory, {"client-assertion": "garbage"})

    provider.token()

    assert len(idp.forms) == 1


def test_an_expired_assertion_is_reported_as_expired(
    provider: TokenProvider, idp: FakeIdentityProvider, directory: Path, clock: FakeClock
) -> None:
    expired = service_account_token(clock, issued_ago=900, lifetime=600)
    write_secret(directory, {"client-assertion": expired})
    idp.refuse(400, "invalid_client", "Token is not active")

    with pytest.raises(AuthenticationFailed) as caught:
        provider.token()

    assert caught.value.message == (
        f"instance staging: the identity provider at {TOKEN_URL} refused the "
        "client_credentials grant for client promotion-operator-k8s with the client "
        f"assertion in {directory / 'client-assertion'} (HTTP 400: invalid_client: Token is "
        f"not active); the client assertion in {directory / 'client-assertion'} "
        f"(ServiceAccount {SUBJECT}) expired 300 s ago: the token file is not being "
        "refreshed (check the projected serviceAccountToken volume and that the kubelet "
        "can rotate it)"
    )
    assert expired not in texts(caught.value)


def test_a_wrong_audience_is_reported_with_the_expected_one(
    provider: TokenProvider, idp: FakeIdentityProvider, directory: Path, clock: FakeClock
) -> None:
    with_oidc_server(directory)
    wrong = service_account_token(clock, audience="https://kubernetes.default.svc")
    write_secret(directory, {"client-assertion": wrong})
    idp.refuse(400, "invalid_client", "Invalid token audience")

    with pytest.raises(AuthenticationFailed) as caught:
        provider.token()

    message = caught.value.message
    assert "(HTTP 400: invalid_client: Invalid token audience)" in message
    assert message.endswith(
        f"(ServiceAccount {SUBJECT}) has the wrong audience (https://kubernetes.default.svc): "
        f"set the projected token's audience to exactly the realm's issuer {ISSUER}"
    )
    assert wrong not in texts(caught.value)


def test_an_assertion_for_another_service_account_names_it(
    provider: TokenProvider, idp: FakeIdentityProvider, directory: Path, clock: FakeClock
) -> None:
    with_oidc_server(directory)
    other = service_account_token(clock, subject="system:serviceaccount:ml:someone-else")
    write_secret(directory, {"client-assertion": other})
    idp.refuse(401, "invalid_client", "Invalid client or Invalid client credentials")

    with pytest.raises(AuthenticationFailed) as caught:
        provider.token()

    assert caught.value.message.endswith(
        f"the client assertion in {directory / 'client-assertion'} is for "
        f"system:serviceaccount:ml:someone-else (issuer {CLUSTER}), which the identity "
        "provider does not accept for client promotion-operator-k8s: check that this "
        "ServiceAccount is the client's federated subject and that the realm trusts this "
        "issuer (its Kubernetes identity provider)"
    )
    assert other not in texts(caught.value)


def test_a_description_quoting_the_assertion_is_redacted(
    provider: TokenProvider, idp: FakeIdentityProvider, clock: FakeClock
) -> None:
    assertion = service_account_token(clock)
    idp.refuse(400, "invalid_client", f"bad assertion {assertion[-20:]} and {assertion}")

    with pytest.raises(AuthenticationFailed) as caught:
        provider.token()

    assert assertion not in texts(caught.value)
    assert "[REDACTED]" in caught.value.message


def test_the_log_names_the_assertion_file_but_never_its_content(
    provider: TokenProvider,
    directory: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="promotion_operator")

    provider.token()

    assert f"with the client assertion in {directory / 'client-assertion'}" in caplog.text
    assert service_account_token(clock) not in caplog.text


def test_a_bad_assertion_file_stops_the_operator_with_one_line(
    directory: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_secret(directory, {"client-assertion": "s3cret-but-no-jwt"})
    for other in ("PROMOTION_OPERATOR_SETTINGS_FILE", "PROMETHEUS_URL", "NOTIFY_SLACK_URL_FILE"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv("SELDON_DEPLOY_URL", "https://sd.example/seldon-deploy/api/v1alpha1")
    monkeypatch.setenv("SELDON_DEPLOY_CREDENTIALS_DIR", str(directory))

    assert main(["--all-namespaces"]) == 2

    assert capsys.readouterr().err.splitlines() == [
        "promotion-operator: invalid setting: instance 'default' (SELDON_DEPLOY_CREDENTIALS_DIR): "
        f"{directory / 'client-assertion'} is not a signed JWT (header.payload.signature); "
        "it must be a projected ServiceAccount token"
    ]
