"""The token provider against a real local OIDC server (tests.oidcstub)."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pytest
import requests

from promotion_operator.clients.auth import MAX_RESPONSE_BYTES, TokenProvider, TokenProviders
from promotion_operator.config.settings import InstanceSettings, Settings, TokenKind
from promotion_operator.errors import (
    AuthenticationFailed,
    IdentityProviderUnavailable,
    PromotionError,
)
from tests.harness.certs import CertificateAuthority
from tests.oidcstub import FakeClock, OIDCStub, write_secret

PASSWORD = "alice-Pa55w0rd-hunter2"
CLIENT_SECRET = "promoter-s3cr3t-value"
USER_SECRET = "sd-api-confidential-s3cr3t"

MakeProvider = Callable[..., TokenProvider]
T = TypeVar("T")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def idp(clock: FakeClock) -> Iterator[OIDCStub]:
    with OIDCStub(
        users={"alice": PASSWORD},
        clients={"sd-api": None, "sd-private": USER_SECRET, "promoter": CLIENT_SECRET},
        lifetime=300,
        clock=clock,
        user_claims={"alice": {"groups": ["data-scientists"]}},
    ) as stub:
        yield stub


@pytest.fixture
def secret(tmp_path: Path, idp: OIDCStub) -> Path:
    """Password grant for alice through the public client, endpoint by discovery."""
    return write_secret(
        tmp_path / "secret",
        {
            "oidc-server": idp.issuer,
            "client-id": "sd-api",
            "username": "alice",
            "password": PASSWORD,
        },
    )


@pytest.fixture
def make_provider(secret: Path, clock: FakeClock) -> Iterator[MakeProvider]:
    providers: list[TokenProvider] = []

    def make(
        *,
        token_kind: TokenKind = "id_token",
        timeout: float = 5.0,
        verify_tls: bool = True,
        refresh_margin: float = 30.0,
        credentials_dir: Path | None = None,
    ) -> TokenProvider:
        instance = InstanceSettings(
            name="test",
            url="https://deploy.example/seldon-deploy/api/v1alpha1",
            credentials_dir=credentials_dir or secret,
            verify_tls=verify_tls,
            token_kind=token_kind,
            request_timeout=timeout,
        )
        provider = TokenProvider(instance, clock=clock, refresh_margin=refresh_margin)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


def use_client_credentials(secret: Path) -> None:
    write_secret(
        secret,
        {
            "client-id": "promoter",
            "client-secret": CLIENT_SECRET,
            "username": None,
            "password": None,
        },
    )


def assert_no_secrets(text: str, idp: OIDCStub) -> None:
    for secret in (PASSWORD, CLIENT_SECRET, USER_SECRET, *idp.issued_tokens):
        assert secret not in text


def error_texts(error: BaseException) -> str:
    assert isinstance(error, PromotionError)
    return " ".join([str(error), repr(error), error.message, repr(error.args)])


# -- grants -------------------------------------------------------------------


def test_password_grant_posts_user_client_and_scope(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    token = make_provider().token()

    [request] = idp.token_requests
    assert dict(request.form) == {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "client_id": "sd-api",
        "scope": "openid profile email groups",
    }
    assert idp.decode(token)["preferred_username"] == "alice"


def test_password_grant_sends_client_secret_of_confidential_client(
    make_provider: MakeProvider, idp: OIDCStub, secret: Path
) -> None:
    write_secret(secret, {"client-id": "sd-private", "client-secret": USER_SECRET})

    make_provider().token()

    [request] = idp.token_requests
    assert request.form["client_secret"] == USER_SECRET
    assert request.form["grant_type"] == "password"


def test_client_credentials_grant_posts_client_id_secret_and_scope(
    make_provider: MakeProvider, idp: OIDCStub, secret: Path
) -> None:
    use_client_credentials(secret)

    token = make_provider().token()

    [request] = idp.token_requests
    assert dict(request.form) == {
        "grant_type": "client_credentials",
        "client_id": "promoter",
        "client_secret": CLIENT_SECRET,
        "scope": "openid profile email groups",
    }
    assert idp.decode(token)["preferred_username"] == "service-account-promoter"


def test_groups_claim_reaches_the_token(make_provider: MakeProvider, idp: OIDCStub) -> None:
    token = make_provider().token()

    assert idp.decode(token)["groups"] == ["data-scientists"]


# -- endpoint -----------------------------------------------------------------


def test_token_endpoint_is_discovered_through_oidc_server(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    make_provider().token()

    assert idp.discovery_requests == 1
    assert [r.path for r in idp.token_requests] == ["/realms/test/protocol/openid-connect/token"]


def test_discovered_endpoint_is_remembered_across_refreshes(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    provider = make_provider()

    provider.token()
    provider.token(force_refresh=True)

    assert idp.discovery_requests == 1
    assert len(idp.token_requests) == 2


def test_endpoint_is_rediscovered_after_a_failed_token_request(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    provider = make_provider()
    provider.token()
    idp.fail(503, times=1)

    with pytest.raises(IdentityProviderUnavailable):
        provider.token(force_refresh=True)
    provider.token(force_refresh=True)

    assert idp.discovery_requests == 2


def test_explicit_token_url_skips_discovery(
    make_provider: MakeProvider, idp: OIDCStub, secret: Path
) -> None:
    write_secret(secret, {"oidc-server": None, "token-url": idp.token_endpoint})

    make_provider().token()

    assert idp.discovery_requests == 0
    assert len(idp.token_requests) == 1


def test_discovery_failure_is_identity_provider_unavailable(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.fail(404, endpoint="discovery")

    with pytest.raises(IdentityProviderUnavailable) as caught:
        make_provider().token()

    assert caught.value.http_status == 404
    assert "OIDC discovery at" in str(caught.value)
    assert "check oidc-server" in str(caught.value)


def test_discovery_without_token_endpoint_is_a_clear_error(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.return_garbage(b'{"issuer": "x"}', content_type="application/json", endpoint="discovery")

    with pytest.raises(IdentityProviderUnavailable, match="gave no usable token_endpoint"):
        make_provider().token()


# -- which token ----------------------------------------------------------------


def test_id_token_is_preferred(make_provider: MakeProvider, idp: OIDCStub) -> None:
    token = make_provider().token()

    assert idp.decode(token)["typ"] == "ID"


def test_access_token_is_the_fallback_without_id_token(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.issue_id_token = False

    token = make_provider().token()

    assert idp.decode(token)["typ"] == "Bearer"


def test_token_kind_access_token_sends_the_access_token(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    token = make_provider(token_kind="access_token").token()

    assert idp.decode(token)["typ"] == "Bearer"


def test_response_without_any_token_is_a_clear_error(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.issue_id_token = False
    idp.issue_access_token = False

    with pytest.raises(IdentityProviderUnavailable) as caught:
        make_provider().token()

    assert str(caught.value).endswith(
        "has no id_token or access_token (fields: expires_in, not-before-policy, scope, token_type)"
    )


# -- caching and expiry ---------------------------------------------------------------


def test_token_is_reused_until_the_refresh_margin(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    provider = make_provider(refresh_margin=30)
    first = provider.token()

    clock.advance(269)  # 300 s lifetime, refresh 30 s before exp
    again = provider.token()

    assert again == first
    assert len(idp.token_requests) == 1


def test_token_is_refreshed_within_the_margin_before_exp(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    provider = make_provider(refresh_margin=30)
    first = provider.token()

    clock.advance(271)
    second = provider.token()

    assert second != first
    assert len(idp.token_requests) == 2


def test_token_is_refreshed_after_expiry(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    provider = make_provider()
    first = provider.token()

    clock.advance(1000)
    second = provider.token()

    assert second != first
    assert jwt.decode(second, options={"verify_signature": False})["exp"] > clock()


def test_margin_is_at_most_half_the_lifetime(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    idp.lifetime = 10
    provider = make_provider(refresh_margin=30)
    first = provider.token()

    clock.advance(4)
    assert provider.token() == first
    clock.advance(2)
    assert provider.token() != first
    assert len(idp.token_requests) == 2


def test_expires_in_is_used_when_the_token_has_no_exp(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    idp.exp_claim = False
    idp.lifetime = 100
    provider = make_provider(refresh_margin=10)
    first = provider.token()

    clock.advance(89)
    assert provider.token() == first
    clock.advance(2)
    assert provider.token() != first


def test_opaque_access_token_lives_as_long_as_expires_in(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    idp.opaque_access_token = True
    idp.lifetime = 100
    provider = make_provider(token_kind="access_token", refresh_margin=10)
    first = provider.token()

    assert first.startswith("opaque-")
    clock.advance(89)
    assert provider.token() == first
    clock.advance(2)
    assert provider.token() != first


def test_token_without_any_lifetime_is_kept_a_minute(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    idp.exp_claim = False
    idp.expires_in = False
    provider = make_provider(refresh_margin=10)
    first = provider.token()

    clock.advance(49)
    assert provider.token() == first
    clock.advance(2)
    assert provider.token() != first


def test_force_refresh_fetches_a_new_token(make_provider: MakeProvider, idp: OIDCStub) -> None:
    provider = make_provider()
    first = provider.token()

    second = provider.token(force_refresh=True)

    assert second != first
    assert provider.token() == second
    assert len(idp.token_requests) == 2


def test_stale_token_already_replaced_is_not_refreshed_again(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    provider = make_provider()
    refused = provider.token()
    replaced = provider.token(stale=refused)  # a first caller got 401 and refreshed

    again = provider.token(stale=refused)  # a second caller got 401 with the same token

    assert again == replaced != refused
    assert len(idp.token_requests) == 2


def test_concurrent_callers_cause_one_token_request(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.delay = 0.2  # keep the first refresh in flight while the others arrive
    provider = make_provider()

    tokens = run_concurrently(20, provider.token)

    assert len(set(tokens)) == 1
    assert len(idp.token_requests) == 1


def test_concurrent_refreshes_after_401_cause_one_token_request(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    provider = make_provider()
    refused = provider.token()
    idp.delay = 0.2

    tokens = run_concurrently(20, lambda: provider.token(stale=refused))

    assert len(set(tokens)) == 1
    assert refused not in tokens
    assert len(idp.token_requests) == 2


def test_concurrent_force_refreshes_cause_one_token_request(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    provider = make_provider()
    first = provider.token()
    idp.delay = 0.2

    tokens = run_concurrently(20, lambda: provider.token(force_refresh=True))

    assert len(set(tokens)) == 1
    assert first not in tokens
    assert len(idp.token_requests) == 2


def test_concurrent_callers_share_one_failure(make_provider: MakeProvider, idp: OIDCStub) -> None:
    idp.delay = 0.2
    idp.fail(503)
    provider = make_provider()

    outcomes = run_concurrently(20, lambda: catch(provider.token))

    assert all(isinstance(o, IdentityProviderUnavailable) for o in outcomes)
    assert len(idp.token_requests) == 1


def run_concurrently(count: int, call: Callable[[], T]) -> list[T]:
    barrier = threading.Barrier(count)
    results: list[T] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        result = call()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == count
    return results


def catch(call: Callable[[], str]) -> str | BaseException:
    try:
        return call()
    except Exception as exc:
        return exc


# -- rotation -------------------------------------------------------------------


def test_rotated_password_is_used_on_the_next_refresh(
    make_provider: MakeProvider, idp: OIDCStub, secret: Path, clock: FakeClock
) -> None:
    provider = make_provider()
    provider.token()
    idp.users["alice"] = "rotated-Pa55"
    write_secret(secret, {"password": "rotated-Pa55"})

    clock.advance(1000)
    provider.token()

    assert [r.form["password"] for r in idp.token_requests] == [PASSWORD, "rotated-Pa55"]


def test_rotated_secret_can_switch_the_grant(
    make_provider: MakeProvider, idp: OIDCStub, secret: Path
) -> None:
    provider = make_provider()
    provider.token()
    use_client_credentials(secret)

    token = provider.token(force_refresh=True)

    assert idp.token_requests[-1].form["grant_type"] == "client_credentials"
    assert idp.decode(token)["sub"] == "promoter"


def test_broken_credentials_at_refresh_time_are_authentication_failed(
    make_provider: MakeProvider, secret: Path
) -> None:
    provider = make_provider()
    provider.token()
    write_secret(secret, {"client-id": None, "password": None})

    with pytest.raises(AuthenticationFailed) as caught:
        provider.token(force_refresh=True)

    message = str(caught.value)
    assert message.startswith(f"instance test: the credentials in {secret} are invalid: ")
    assert "client-id is missing" in message
    assert "the password grant needs password" in message


# -- refusals and failures ------------------------------------------------------------


def test_wrong_password_is_authentication_failed_naming_what_was_refused(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.users["alice"] = "changed-on-the-idp"

    with pytest.raises(AuthenticationFailed) as caught:
        make_provider().token()

    assert caught.value.http_status == 401
    assert str(caught.value) == (
        f"instance test: the identity provider at {idp.token_endpoint} refused the password "
        "grant for client sd-api and user alice (HTTP 401: invalid_grant: Invalid user "
        f"credentials); fix the credentials in {make_provider().instance.credentials_dir}"
    )


def test_wrong_password_error_leaks_no_secret(
    make_provider: MakeProvider, idp: OIDCStub, secret: Path
) -> None:
    write_secret(secret, {"client-id": "sd-private", "client-secret": USER_SECRET})
    idp.users["alice"] = "changed-on-the-idp"

    with pytest.raises(AuthenticationFailed) as caught:
        make_provider().token()

    assert_no_secrets(error_texts(caught.value), idp)
    assert caught.value.__cause__ is None


def test_wrong_client_secret_is_authentication_failed(
    make_provider: MakeProvider, idp: OIDCStub, secret: Path
) -> None:
    use_client_credentials(secret)
    idp.clients["promoter"] = "rotated-on-the-idp"

    with pytest.raises(AuthenticationFailed) as caught:
        make_provider().token()

    assert "client_credentials grant for client promoter" in str(caught.value)
    assert "unauthorized_client" in str(caught.value)
    assert_no_secrets(error_texts(caught.value), idp)


def test_echoed_secret_in_error_description_is_masked(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    body = {"error": "invalid_request", "error_description": f"bad password {PASSWORD}"}
    idp.fail(400, body=json.dumps(body).encode())

    with pytest.raises(AuthenticationFailed) as caught:
        make_provider().token()

    assert "invalid_request: bad password [REDACTED]" in str(caught.value)
    assert_no_secrets(error_texts(caught.value), idp)


def test_long_error_description_is_truncated(make_provider: MakeProvider, idp: OIDCStub) -> None:
    body = {"error": "invalid_grant", "error_description": "x" * 5000 + "\n\x00tail"}
    idp.fail(400, body=json.dumps(body).encode())

    with pytest.raises(AuthenticationFailed) as caught:
        make_provider().token()

    assert "x" * 299 + "…" in str(caught.value)
    assert "tail" not in str(caught.value)


def test_idp_503_is_identity_provider_unavailable_with_retry_after(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.fail(503, retry_after="7")

    with pytest.raises(IdentityProviderUnavailable) as caught:
        make_provider().token()

    assert (caught.value.http_status, caught.value.retry_after) == (503, 7.0)
    assert caught.value.retryable
    assert "answered HTTP 503: temporarily_unavailable: try later" in str(caught.value)


def test_idp_429_is_identity_provider_unavailable(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.fail(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")

    with pytest.raises(IdentityProviderUnavailable) as caught:
        make_provider().token()

    assert (caught.value.http_status, caught.value.retry_after) == (429, 0.0)


def test_garbage_body_is_a_clear_error(make_provider: MakeProvider, idp: OIDCStub) -> None:
    idp.return_garbage(f"<html>{PASSWORD}</html>".encode())

    with pytest.raises(IdentityProviderUnavailable) as caught:
        make_provider().token()

    message = str(caught.value)
    assert "answered HTTP 200 with a non-JSON body (text/html, " in message
    assert "not a JSON token response" in message
    assert "<html>" not in message
    assert_no_secrets(message, idp)


def test_a_token_answer_over_the_cap_is_not_read(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    padding = "x" * MAX_RESPONSE_BYTES
    idp.return_garbage(
        json.dumps({"access_token": "a.b.c", "padding": padding}).encode(),
        content_type="application/json",
    )

    with pytest.raises(IdentityProviderUnavailable) as caught:
        make_provider().token()

    assert (
        f"answered HTTP 200 with a body larger than {MAX_RESPONSE_BYTES} bytes "
        "(application/json), not a JSON token response; check token-url"
    ) in str(caught.value)


def test_an_error_answer_over_the_cap_is_reported_without_its_oauth_error(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    body = {"error": "invalid_grant", "error_description": "x" * MAX_RESPONSE_BYTES}
    idp.fail(400, body=json.dumps(body).encode())

    with pytest.raises(AuthenticationFailed) as caught:
        make_provider().token()

    assert "for client sd-api and user alice (HTTP 400); fix the credentials" in str(caught.value)


def test_a_discovery_document_over_the_cap_is_not_read(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    document = {"token_endpoint": idp.token_endpoint, "padding": "x" * MAX_RESPONSE_BYTES}
    idp.return_garbage(
        json.dumps(document).encode(), content_type="application/json", endpoint="discovery"
    )

    with pytest.raises(IdentityProviderUnavailable) as caught:
        make_provider().token()

    assert (
        f"gave no usable token_endpoint (a body larger than {MAX_RESPONSE_BYTES} bytes "
        "(application/json))"
    ) in str(caught.value)
    assert idp.token_requests == []


def test_garbage_error_body_is_not_quoted(make_provider: MakeProvider, idp: OIDCStub) -> None:
    idp.fail(502, body=f"<html>proxy error {PASSWORD}</html>".encode())

    with pytest.raises(IdentityProviderUnavailable) as caught:
        make_provider().token()

    assert str(caught.value).endswith(
        "answered HTTP 502 to the password grant for client sd-api and user alice"
    )


def test_dropped_connection_is_identity_provider_unavailable(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    idp.drop_connections()

    with pytest.raises(IdentityProviderUnavailable, match=r"token request to .* failed"):
        make_provider().token()


def test_slow_idp_is_identity_provider_unavailable(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    provider = make_provider(timeout=0.1)
    provider.token()  # discovery done
    idp.delay = 0.5

    with pytest.raises(IdentityProviderUnavailable, match=r"timed out after 0\.1 s"):
        provider.token(force_refresh=True)


def test_unreachable_idp_is_identity_provider_unavailable(
    make_provider: MakeProvider, secret: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_secret(secret, {"oidc-server": None, "token-url": f"http://127.0.0.1:{port}/token"})

    refused = r"connection failed: \[Errno 111\] Connection refused"
    with pytest.raises(IdentityProviderUnavailable, match=refused):
        make_provider().token()


def test_failed_refresh_keeps_using_the_unexpired_token(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    provider = make_provider(refresh_margin=30)
    first = provider.token()
    idp.fail(503)

    clock.advance(280)  # inside the margin, before exp

    assert provider.token() == first


def test_failed_refresh_after_expiry_raises(
    make_provider: MakeProvider, idp: OIDCStub, clock: FakeClock
) -> None:
    provider = make_provider()
    provider.token()
    idp.fail(503)

    clock.advance(301)

    with pytest.raises(IdentityProviderUnavailable):
        provider.token()


def test_forced_refresh_failure_raises_even_with_an_unexpired_token(
    make_provider: MakeProvider, idp: OIDCStub
) -> None:
    provider = make_provider()
    provider.token()
    idp.fail(503)

    with pytest.raises(IdentityProviderUnavailable):
        provider.token(force_refresh=True)


# -- logging --------------------------------------------------------------------


def test_fetch_is_logged_at_info_without_secrets_or_tokens(
    make_provider: MakeProvider, idp: OIDCStub, secret: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    provider = make_provider()
    provider.token()
    write_secret(secret, {"client-id": "sd-private", "client-secret": USER_SECRET})
    provider.token(force_refresh=True)
    idp.users["alice"] = "changed"
    with pytest.raises(AuthenticationFailed):
        provider.token(force_refresh=True)

    infos = [r for r in caplog.records if r.name == "promotion_operator.clients.auth"]
    assert [r.levelno for r in infos] == [logging.INFO, logging.INFO]
    assert "instance test: fetched id_token with the password grant for client sd-api" in (
        infos[0].getMessage()
    )
    assert infos[0].getMessage().endswith("expires in 300 s")
    assert_no_secrets(caplog.text, idp)


# -- TLS ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    directory = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority(directory, "oidcstub-test")
    pair = ca.issue_serving("idp", ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    return ca.cert_path, context


@pytest.fixture
def tls_idp(tls_ca: tuple[Path, ssl.SSLContext], clock: FakeClock) -> Iterator[OIDCStub]:
    with OIDCStub(
        users={"alice": PASSWORD}, clients={"sd-api": None}, clock=clock, ssl_context=tls_ca[1]
    ) as stub:
        yield stub


def test_ca_crt_in_the_secret_verifies_the_idp(
    make_provider: MakeProvider,
    tls_idp: OIDCStub,
    secret: Path,
    tls_ca: tuple[Path, ssl.SSLContext],
) -> None:
    write_secret(secret, {"oidc-server": tls_idp.issuer, "ca.crt": tls_ca[0].read_text()})

    token = make_provider().token()

    assert tls_idp.decode(token)["preferred_username"] == "alice"


def test_unknown_idp_certificate_is_identity_provider_unavailable(
    make_provider: MakeProvider, tls_idp: OIDCStub, secret: Path
) -> None:
    write_secret(secret, {"oidc-server": tls_idp.issuer})

    with pytest.raises(IdentityProviderUnavailable, match="failed TLS verification"):
        make_provider().token()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_tls_false_also_skips_idp_verification(
    make_provider: MakeProvider, tls_idp: OIDCStub, secret: Path
) -> None:
    write_secret(secret, {"oidc-server": tls_idp.issuer})

    token = make_provider(verify_tls=False).token()

    assert tls_idp.decode(token)["preferred_username"] == "alice"


# -- one provider per instance ----------------------------------------------------


def providers_for(secret: Path) -> TokenProviders:
    def instance(name: str) -> InstanceSettings:
        return InstanceSettings(name=name, url="https://sd.example/api", credentials_dir=secret)

    return TokenProviders(
        Settings(instances={"default": instance("default"), "prod": instance("prod")})
    )


def test_providers_give_one_shared_provider_per_instance(secret: Path) -> None:
    providers = providers_for(secret)

    assert providers.for_instance("prod") is providers.for_instance("prod")
    assert providers.for_instance(None) is providers.for_instance("default")
    assert providers.for_instance("prod") is not providers.for_instance("default")
    assert providers.for_instance("prod").instance.name == "prod"
    providers.close()


def test_providers_refuse_an_unknown_instance(secret: Path) -> None:
    providers = providers_for(secret)

    with pytest.raises(PromotionError, match="unknown Seldon Deploy instance 'staging'"):
        providers.for_instance("staging")
    providers.close()


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.methods: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.methods.append(str(method))
        return super().request(method, url, *args, **kwargs)


def test_provider_uses_the_given_session(secret: Path, idp: OIDCStub) -> None:
    session = CountingSession()
    instance = InstanceSettings(name="x", url="https://sd.example/api", credentials_dir=secret)

    TokenProvider(instance, session=session).token()

    assert session.methods == ["GET", "POST"]
