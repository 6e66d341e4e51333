"""A local OpenID Connect provider on 127.0.0.1 for fast tests of token clients.

Real HTTP on a free port, served from a background thread. It speaks the subset of
Keycloak's protocol the operator uses:

- ``GET {issuer}/.well-known/openid-configuration``: the discovery document;
- ``GET {issuer}/protocol/openid-connect/certs``: the JWKS (one RS256 key);
- ``POST {issuer}/protocol/openid-connect/token``: the password and
  client-credentials grants, checked against the configured users and clients,
  answering RS256-signed JWTs (an ``id_token`` only when ``scope`` has ``openid``).

Wrong credentials get Keycloak's answers (401 ``invalid_grant`` / ``invalid_client``
/ ``unauthorized_client``). Faults can be injected per endpoint (an HTTP status, a
garbage body, a dropped connection, a delay), and every token request is recorded
with all its form fields, secrets included: this is a test server, and tests
assert that the *client* does not leak what it sent.

Usage::

    with OIDCStub(users={"alice": "pw"}, clients={"sd-api": None}) as idp:
        ...  # idp.issuer, idp.token_endpoint, idp.token_requests
"""

from __future__ import annotations

import base64
import itertools
import json
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

Endpoint = Literal["token", "discovery"]

_KEY_LOCK = threading.Lock()
_SHARED_KEY: rsa.RSAPrivateKey | None = None
_KID = "oidcstub-key-1"


def signing_key() -> rsa.RSAPrivateKey:
    """The RSA key every stub signs with (generated once per process: keygen is slow)."""
    global _SHARED_KEY
    with _KEY_LOCK:
        if _SHARED_KEY is None:
            _SHARED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _SHARED_KEY


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stub received on its token endpoint."""

    path: str
    form: Mapping[str, str]
    authorization: str | None
    at: float


@dataclass
class Fault:
    """What to answer instead of the real thing; ``remaining=None`` means until cleared."""

    status: int = 503
    body: bytes = b'{"error":"temporarily_unavailable","error_description":"try later"}'
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    drop_connection: bool = False
    remaining: int | None = None


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def _json(status: int, document: Mapping[str, Any]) -> _Answer:
    return _Answer(status, json.dumps(document).encode())


def _oauth_error(status: int, error: str, description: str) -> _Answer:
    return _json(status, {"error": error, "error_description": description})


class OIDCStub:
    """An identity provider with configurable users, clients, lifetimes and faults.

    ``users`` maps user names to passwords; ``clients`` maps client ids to secrets
    (``None``: a public client, which may use the password grant but not
    client credentials). ``clock`` stamps ``iat``/``exp`` (share a fake clock with
    the client under test to control expiry without sleeping). ``user_claims``
    adds claims per subject (user name, or client id for client credentials);
    ``claims`` adds claims to every token. Mutating ``users``/``clients`` and the
    public knobs while the stub runs is fine (that is how tests rotate secrets).
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        clients: Mapping[str, str | None] | None = None,
        lifetime: float = 300.0,
        clock: Callable[[], float] = time.time,
        realm: str = "test",
        claims: Mapping[str, Any] | None = None,
        user_claims: Mapping[str, Mapping[str, Any]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.users: dict[str, str] = dict(users or {})
        self.clients: dict[str, str | None] = dict(clients or {})
        self.lifetime = lifetime
        self.clock = clock
        self.realm = realm
        self.claims: dict[str, Any] = dict(claims or {})
        self.user_claims: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in (user_claims or {}).items()
        }
        # Knobs for response shapes.
        self.delay = 0.0
        self.issue_id_token = True
        self.issue_access_token = True
        self.exp_claim = True
        self.expires_in = True
        self.opaque_access_token = False
        self.token_endpoint_override: str | None = None

        self._key = signing_key()
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._faults: dict[Endpoint, Fault] = {}
        self._token_requests: list[RecordedRequest] = []
        self._discovery_requests = 0
        self._issued: list[str] = []
        self._jti = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> OIDCStub:
        """Listen on a free 127.0.0.1 port and serve from a daemon thread."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        server.stub = self  # type: ignore[attr-defined]
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.name = f"oidcstub-{self._port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> OIDCStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (still known after stop: a request the stub was
        slow to answer on purpose may finish after the test stopped it)."""
        if not self._port:
            raise RuntimeError("the stub was never started")
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def issuer(self) -> str:
        """The issuer URL (what a credentials Secret's ``oidc-server`` holds)."""
        return f"{self.base_url}/realms/{self.realm}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    # -- faults ---------------------------------------------------------------

    def inject(self, fault: Fault, endpoint: Endpoint = "token") -> None:
        """Answer requests on ``endpoint`` with ``fault`` (until cleared or used up)."""
        with self._lock:
            self._faults[endpoint] = fault

    def fail(
        self,
        status: int = 503,
        *,
        retry_after: str | None = None,
        times: int | None = None,
        endpoint: Endpoint = "token",
        body: bytes | None = None,
    ) -> None:
        """Answer with an HTTP error status (default 503, with an OAuth-style JSON body)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        fault = Fault(status=status, headers=headers, remaining=times)
        if body is not None:
            fault.body = body
        self.inject(fault, endpoint)

    def return_garbage(
        self,
        body: bytes = b"<html><body>Bad Gateway, but with a 200</body></html>",
        *,
        status: int = 200,
        content_type: str = "text/html",
        times: int | None = None,
        endpoint: Endpoint = "token",
    ) -> None:
        """Answer with a body that is not what the protocol says (HTML by default)."""
        self.inject(
            Fault(status=status, body=body, content_type=content_type, remaining=times), endpoint
        )

    def drop_connections(self, *, times: int | None = None, endpoint: Endpoint = "token") -> None:
        """Close the connection without answering."""
        self.inject(Fault(drop_connection=True, remaining=times), endpoint)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self.delay = 0.0

    def _take_fault(self, endpoint: Endpoint) -> Fault | None:
        with self._lock:
            fault = self._faults.get(endpoint)
            if fault is None:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[endpoint]
            return fault

    # -- records --------------------------------------------------------------

    @property
    def token_requests(self) -> list[RecordedRequest]:
        """Every request to the token endpoint so far, oldest first (a copy)."""
        with self._lock:
            return list(self._token_requests)

    @property
    def discovery_requests(self) -> int:
        with self._lock:
            return self._discovery_requests

    @property
    def issued_tokens(self) -> list[str]:
        """Every token (id and access) issued so far."""
        with self._lock:
            return list(self._issued)

    def reset_records(self) -> None:
        with self._lock:
            self._token_requests.clear()
            self._issued.clear()
            self._discovery_requests = 0

    def decode(self, token: str) -> dict[str, Any]:
        """Verify ``token``'s signature against the stub's key and return its claims."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_exp": False},
        )
        return claims

    # -- protocol -------------------------------------------------------------

    def _discovery(self) -> _Answer:
        with self._lock:
            self._discovery_requests += 1
        return _json(
            200,
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/protocol/openid-connect/auth",
                "token_endpoint": self.token_endpoint_override or self.token_endpoint,
                "jwks_uri": self.jwks_uri,
                "grant_types_supported": ["password", "client_credentials"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
            },
        )

    def _jwks(self) -> _Answer:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": _KID, "use": "sig", "alg": "RS256"})
        return _json(200, {"keys": [jwk]})

    def _token(self, form: Mapping[str, str], authorization: str | None) -> _Answer:
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
                basic_id, _, basic_secret = decoded.partition(":")
                client_id, client_secret = unquote(basic_id), unquote(basic_secret)
            except (ValueError, UnicodeDecodeError):
                return _oauth_error(401, "invalid_client", "Malformed Basic authorization")
        if not client_id or client_id not in self.clients:
            return _oauth_error(
                401, "invalid_client", "Invalid client or Invalid client credentials"
            )
        expected_secret = self.clients[client_id]
        if expected_secret is not None and client_secret != expected_secret:
            return _oauth_error(
                401, "unauthorized_client", "Invalid client or Invalid client credentials"
            )

        grant = form.get("grant_type")
        subject_claims: dict[str, Any]
        if grant == "password":
            username, password = form.get("username"), form.get("password")
            if not username or self.users.get(username) != password or password is None:
                return _oauth_error(401, "invalid_grant", "Invalid user credentials")
            subject = username
            subject_claims = {
                "preferred_username": username,
                "email": f"{username}@example.com",
                "groups": [],
            }
        elif grant == "client_credentials":
            if expected_secret is None:
                return _oauth_error(
                    401,
                    "unauthorized_client",
                    "Public client not allowed to retrieve service account",
                )
            subject = client_id
            subject_claims = {"preferred_username": f"service-account-{client_id}", "groups": []}
        else:
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")

        scope = form.get("scope", "")
        now = self.clock()
        lifetime = self.lifetime
        base: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "azp": client_id,
            "iat": int(now),
            "scope": scope,
        }
        if self.exp_claim:
            base["exp"] = int(now + lifetime)
        base.update(subject_claims)
        base.update(self.claims)
        base.update(self.user_claims.get(subject, {}))

        body: dict[str, Any] = {"token_type": "Bearer", "scope": scope, "not-before-policy": 0}
        issued: list[str] = []
        if self.expires_in:
            body["expires_in"] = int(lifetime)
        if self.issue_access_token:
            if self.opaque_access_token:
                access = f"opaque-{next(self._jti)}-{client_id}"
            else:
                access = self._sign({**base, "typ": "Bearer", "aud": "account"})
            body["access_token"] = access
            issued.append(access)
        if self.issue_id_token and "openid" in scope.split():
            id_token = self._sign({**base, "typ": "ID", "aud": client_id})
            body["id_token"] = id_token
            issued.append(id_token)
        with self._lock:
            self._issued.extend(issued)
        return _json(200, body)

    def _sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            {**claims, "jti": f"jti-{next(self._jti)}"},
            self._key,
            algorithm="RS256",
            headers={"kid": _KID},
        )

    def _route(self, method: str, path: str) -> tuple[Endpoint | Literal["jwks"], bool] | None:
        prefix = f"/realms/{self.realm}"
        if method == "GET" and path == f"{prefix}/.well-known/openid-configuration":
            return "discovery", True
        if method == "GET" and path == f"{prefix}/protocol/openid-connect/certs":
            return "jwks", True
        if path == f"{prefix}/protocol/openid-connect/token":
            return "token", method == "POST"
        return None

    def _handle(self, handler: _Handler, method: str) -> None:
        path = urlsplit(handler.path).path
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        route = self._route(method, path)
        if route is None:
            handler.answer(_json(404, {"error": "not_found"}))
            return
        endpoint, method_ok = route
        form: dict[str, str] = {}
        if endpoint == "token":
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            with self._lock:
                self._token_requests.append(
                    RecordedRequest(path, form, handler.headers.get("Authorization"), self.clock())
                )
        if self.delay > 0:
            time.sleep(self.delay)
        fault = self._take_fault(endpoint) if endpoint != "jwks" else None
        if fault is not None:
            if fault.drop_connection:
                handler.close_connection = True
                return
            handler.answer(_Answer(fault.status, fault.body, fault.content_type, fault.headers))
            return
        if not method_ok:
            handler.answer(_json(405, {"error": "method_not_allowed"}))
        elif endpoint == "discovery":
            handler.answer(self._discovery())
        elif endpoint == "jwks":
            handler.answer(self._jwks())
        else:
            handler.answer(self._token(form, handler.headers.get("Authorization")))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        self._stub()._handle(self, "GET")

    def do_POST(self) -> None:
        self._stub()._handle(self, "POST")

    def _stub(self) -> OIDCStub:
        stub: OIDCStub = self.server.stub  # type: ignore[attr-defined]
        return stub

    def answer(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (the slow-answer tests make it)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""
