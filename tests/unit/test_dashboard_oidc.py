"""The ID token check of sign-in mode, against a small provider on loopback that
serves its keys (JWKS) and answers the code exchange with a token it signed: what
is refused (another key, another audience or issuer, an old token, another nonce,
a shared-secret algorithm) and what the exchange sends (the code, the PKCE
verifier, the client's credentials)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from promotion_operator.kubectl_plugin.dashboard import oidc

ISSUER = "https://idp.example/realms/r"
CLIENT = "promotion-dashboard"
SIGNING = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Idp:
    """What the provider answers, and what it was sent."""

    def __init__(self) -> None:
        self.id_token = ""
        self.token_requests: list[tuple[dict[str, list[str]], str]] = []


def _handler(idp: Idp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _json(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING.public_key()))
            self._json({"keys": [{**key, "kid": "k1", "use": "sig", "alg": "RS256"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            idp.token_requests.append((form, self.headers.get("Authorization", "")))
            self._json({"id_token": idp.id_token, "access_token": "a", "token_type": "Bearer"})

    return Handler


@pytest.fixture
def idp() -> Iterator[tuple[Idp, oidc.Client]]:
    state = Idp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    provider = oidc.Provider(ISSUER, f"{base}/auth", f"{base}/token", f"{base}/certs", ("RS256",))
    client = oidc.Client(provider, CLIENT, "client-secret", "https://p.example/signin/callback")
    try:
        yield state, client
    finally:
        server.shutdown()
        server.server_close()


def token(key: Any = SIGNING, algorithm: str = "RS256", **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": CLIENT, "sub": "u-1", "iat": now, "exp": now + 300,
        "nonce": "n-1", "email": "ana@example.com", "email_verified": True,
        "groups": ["release-managers"],
    }  # fmt: skip
    claims.update(changes)
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": "k1"})


ATTEMPT = oidc.Attempt(state="s-1", nonce="n-1", verifier="v" * 64, next_path="/")


def test_a_token_signed_by_the_issuer_names_the_user_and_groups(
    idp: tuple[Idp, oidc.Client],
) -> None:
    state, client = idp
    state.id_token = token()
    identity = client.sign_in("the-code", ATTEMPT)
    assert identity == oidc.Identity("oidc:ana@example.com", ("oidc:release-managers",))


def test_the_exchange_sends_the_code_the_verifier_and_the_clients_credentials(
    idp: tuple[Idp, oidc.Client],
) -> None:
    state, client = idp
    state.id_token = token()
    client.sign_in("the-code", ATTEMPT)
    ((form, authorization),) = state.token_requests
    assert form["grant_type"] == ["authorization_code"] and form["code"] == ["the-code"]
    assert form["code_verifier"] == [ATTEMPT.verifier]
    assert form["redirect_uri"] == ["https://p.example/signin/callback"]
    assert (
        authorization == "Basic " + base64.b64encode(b"promotion-dashboard:client-secret").decode()
    )


@pytest.mark.parametrize(
    ("made", "says"),
    [
        (lambda: token(key=OTHER), "InvalidSignatureError"),
        (lambda: token(aud="another-client"), "InvalidAudienceError"),
        (lambda: token(iss="https://elsewhere.example"), "InvalidIssuerError"),
        (lambda: token(exp=int(time.time()) - 120), "ExpiredSignatureError"),
        (lambda: token(nonce="n-2"), "nonce differs"),
        (lambda: token(key="a-shared-secret-of-32-bytes-long!", algorithm="HS256"), "not valid"),
    ],
)
def test_a_token_that_fails_a_check_signs_nobody_in(
    idp: tuple[Idp, oidc.Client], made: Any, says: str
) -> None:
    state, client = idp
    state.id_token = made()
    with pytest.raises(oidc.SignInError, match=says) as refused:
        client.sign_in("the-code", ATTEMPT)
    assert state.id_token not in str(refused.value)
