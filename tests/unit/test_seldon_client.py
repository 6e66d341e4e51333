"""SeldonDeployClient against a real HTTP(S) server on loopback, scripted per test.

The server answers each request with the next canned response and records what it
received (method, path, query, headers, body); nothing in ``requests`` is patched.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from seldon_deploy_sdk import ExperimentsApi

from promotion_operator.clients.seldon import (
    DEFAULT_MAX_RESPONSE_BYTES,
    SHADOW_EXPERIMENT,
    SeldonDeployClient,
)
from promotion_operator.config.replica import THIS_REPLICA
from promotion_operator.config.settings import InstanceSettings
from promotion_operator.errors import (
    AuthenticationFailed,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    NotLeading,
    PromotionError,
    SeldonDeployUnavailable,
    UnexpectedResponse,
)

BASE = "/seldon-deploy/api/v1alpha1"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.first-token-signature"
NEW_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.second-token-signature"
SDEP: dict[str, Any] = {
    "apiVersion": "machinelearning.seldon.io/v1",
    "kind": "SeldonDeployment",
    "metadata": {"name": "iris", "namespace": "staging"},
    "spec": {"predictors": [{"name": "default", "replicas": 1}]},
}


# -- the scripted server ---------------------------------------------------------------------


@dataclass
class Canned:
    """One response: JSON-encoded unless ``body`` is bytes."""

    status: int = 200
    body: Any = None
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # Send this many bytes with no Content-Length, then close the connection.
    stream_bytes: int | None = None


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # many client threads connect at once

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.canned: collections.deque[Canned] = collections.deque()
        self.recorded: list[Recorded] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts, oversized bodies) are expected here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        with self.server.lock:
            self.server.recorded.append(
                Recorded(self.command, url.path, parse_qs(url.query), dict(self.headers), body)
            )
            canned = (
                self.server.canned.popleft()
                if self.server.canned
                else Canned(500, {"code": 500, "message": "no canned response left"})
            )
        if canned.delay:
            time.sleep(canned.delay)
        try:
            self._respond(canned)
        except OSError:
            self.close_connection = True

    def _respond(self, canned: Canned) -> None:
        self.send_response(canned.status)
        if canned.content_type:
            self.send_header("Content-Type", canned.content_type)
        for name, value in canned.headers.items():
            self.send_header(name, value)
        if canned.stream_bytes is not None:
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunk = b" " * (1024 * 1024)
            left = canned.stream_bytes
            while left > 0:
                self.wfile.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
            return
        if canned.body is None:
            payload = b""
        elif isinstance(canned.body, bytes):
            payload = canned.body
        else:
            payload = json.dumps(canned.body).encode()
        if "Content-Length" not in canned.headers:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class FakeSeldon:
    """A loopback HTTP(S) server that plays back canned responses."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server()
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}{BASE}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def reply(self, *canned: Canned) -> None:
        with self._server.lock:
            self._server.canned.extend(canned)

    @property
    def requests(self) -> list[Recorded]:
        with self._server.lock:
            return list(self._server.recorded)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class FakeTokens:
    """Hands out ``tokens[0]``; a forced refresh moves on to the next one."""

    def __init__(self, *tokens: str) -> None:
        self._tokens = list(tokens) or [TOKEN]
        self.calls: list[bool] = []
        self.stale: list[str | None] = []

    def token(self, *, force_refresh: bool = False, stale: str | None = None) -> str:
        self.calls.append(force_refresh)
        self.stale.append(stale)
        if force_refresh and len(self._tokens) > 1:
            self._tokens.pop(0)
        return self._tokens[0]


def instance(url: str, tmp_path: Path, **kwargs: Any) -> InstanceSettings:
    return InstanceSettings(name="test", url=url, credentials_dir=tmp_path, **kwargs)


def error(status: int, message: str) -> Canned:
    return Canned(status, {"code": status, "message": message})


@pytest.fixture
def seldon() -> Iterator[FakeSeldon]:
    server = FakeSeldon()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tokens() -> FakeTokens:
    return FakeTokens(TOKEN, NEW_TOKEN)


@pytest.fixture
def client(seldon: FakeSeldon, tokens: FakeTokens, tmp_path: Path) -> Iterator[SeldonDeployClient]:
    with SeldonDeployClient(instance(seldon.url, tmp_path, request_timeout=2.0), tokens) as c:
        yield c


def raised(exc_type: type[PromotionError], call: Any) -> PromotionError:
    with pytest.raises(exc_type) as info:
        call()
    return info.value


# -- requests on the wire --------------------------------------------------------------------


def test_read_sends_bearer_token_and_accepts_json(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, SDEP))

    assert client.read("staging", "iris") == SDEP

    (request,) = seldon.requests
    assert request.method == "GET"
    assert request.path == f"{BASE}/namespaces/staging/seldondeployments/iris"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert request.body == b""


def test_create_posts_json_body_with_action_and_message(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, SDEP))

    assert client.create("prod", SDEP, action="promote", message="promote iris") == SDEP

    (request,) = seldon.requests
    assert (request.method, request.path) == ("POST", f"{BASE}/namespaces/prod/seldondeployments")
    assert request.query == {"action": ["promote"], "message": ["promote iris"]}
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == SDEP


def test_update_puts_to_the_named_deployment_with_action_and_message(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, SDEP))

    client.update("prod", "iris", SDEP, action="promote", message="v2 & more")

    (request,) = seldon.requests
    assert (request.method, request.path) == (
        "PUT",
        f"{BASE}/namespaces/prod/seldondeployments/iris",
    )
    assert request.query == {"action": ["promote"], "message": ["v2 & more"]}
    assert request.json() == SDEP


def test_delete_sends_action_and_message(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(Canned(200, {}))

    client.delete("prod", "iris", action="rollback", message="undo")

    (request,) = seldon.requests
    assert (request.method, request.path) == (
        "DELETE",
        f"{BASE}/namespaces/prod/seldondeployments/iris",
    )
    assert request.query == {"action": ["rollback"], "message": ["undo"]}


def test_validate_sends_get_with_the_deployment_as_json_body(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, {"code": 200, "message": "valid"}))

    assert client.validate("prod", SDEP) == {"code": 200, "message": "valid"}

    (request,) = seldon.requests
    assert (request.method, request.path) == (
        "GET",
        f"{BASE}/namespaces/prod/seldondeployments/validate",
    )
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == SDEP


# -- a Pipeline's experiments: the canary and the shadow --------------------------------------

EXPERIMENT_CALLS = [
    pytest.param("create_shadow", "POST", "shadow", id="create-shadow"),
    pytest.param("promote_shadow", "PUT", "shadow", id="promote-shadow"),
    pytest.param("remove_shadow", "DELETE", "shadow", id="remove-shadow"),
    pytest.param("promote_canary", "PUT", "canary", id="promote-canary"),
    pytest.param("remove_canary", "DELETE", "canary", id="remove-canary"),
]


@pytest.mark.parametrize(("method_name", "method", "experiment"), EXPERIMENT_CALLS)
def test_an_experiment_call_goes_to_its_path_with_action_and_message_and_no_body(
    seldon: FakeSeldon,
    client: SeldonDeployClient,
    method_name: str,
    method: str,
    experiment: str,
) -> None:
    seldon.reply(Canned(200, {"code": 200, "message": "done"}))

    getattr(client, method_name)("prod", "chain", action="Promote", message="v2 & more")

    (request,) = seldon.requests
    assert (request.method, request.path) == (
        method,
        f"{BASE}/namespaces/prod/pipelines/chain/experiment/{experiment}",
    )
    assert request.query == {"action": ["Promote"], "message": ["v2 & more"]}
    assert request.body == b""


def test_the_canary_weight_is_a_query_parameter(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, {"code": 200, "message": "set"}))

    client.set_canary_weight("prod", "chain", 20, action="Promote", message="m")

    (request,) = seldon.requests
    assert (request.method, request.path) == (
        "POST",
        f"{BASE}/namespaces/prod/pipelines/chain/experiment/canary",
    )
    assert request.query == {"weight": ["20"], "action": ["Promote"], "message": ["m"]}


@pytest.mark.parametrize(
    ("status", "exc_type"), [(404, NotFound), (409, Conflict), (503, SeldonDeployUnavailable)]
)
def test_a_refused_shadow_is_sorted_and_names_its_path(
    seldon: FakeSeldon,
    client: SeldonDeployClient,
    status: int,
    exc_type: type[PromotionError],
) -> None:
    seldon.reply(error(status, "pipeline prod/chain has an experiment that is not a shadow"))

    err = raised(
        exc_type, lambda: client.create_shadow("prod", "chain", action="Promote", message="m")
    )

    assert err.http_status == status
    assert "POST /namespaces/prod/pipelines/chain/experiment/shadow" in str(err)
    assert "not a shadow" in str(err)


def test_the_observer_names_the_shadow_calls_by_their_path_template(
    seldon: FakeSeldon, tokens: FakeTokens, tmp_path: Path
) -> None:
    seen: list[tuple[str, str, int | None, float]] = []
    seldon.reply(*(Canned(200, {"code": 200, "message": "ok"}) for _ in range(3)))
    with SeldonDeployClient(
        instance(seldon.url, tmp_path), tokens, observer=lambda *a: seen.append(a)
    ) as c:
        c.create_shadow("prod", "chain", action="Promote", message="m")
        c.promote_shadow("prod", "chain", action="Promote", message="m")
        c.remove_shadow("prod", "chain", action="Rollback", message="m")

    template = "/namespaces/{namespace}/pipelines/{name}/experiment/shadow"
    assert [(m, p, s) for m, p, s, _ in seen] == [
        ("POST", template, 200),
        ("PUT", template, 200),
        ("DELETE", template, 200),
    ]


class _RecordingApiClient:
    """Stands in for the SDK's ``ApiClient``: records each call's path and method."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def select_header_accept(self, accepts: list[str]) -> str:
        return accepts[0]

    def select_header_content_type(self, types: list[str]) -> str:
        return types[0]

    def call_api(self, resource_path: str, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, resource_path))


def test_the_shadow_calls_are_at_the_sdks_paths() -> None:
    recorder = _RecordingApiClient()
    experiments = ExperimentsApi(recorder)
    experiments.create_shadow_experiment("chain", "prod")
    experiments.promote_shadow("chain", "prod")
    experiments.remove_shadow("chain", "prod")

    assert recorder.calls == [
        ("POST", SHADOW_EXPERIMENT),
        ("PUT", SHADOW_EXPERIMENT),
        ("DELETE", SHADOW_EXPERIMENT),
    ]


def test_path_segments_are_url_quoted(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(Canned(200, SDEP))

    client.read("team a", "x/../y?z")

    assert seldon.requests[0].path == (
        f"{BASE}/namespaces/team%20a/seldondeployments/x%2F..%2Fy%3Fz"
    )


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_empty_or_dot_names_are_refused_before_sending(
    name: str, seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    with pytest.raises(ValueError):
        client.read("prod", name)
    assert seldon.requests == []


# -- 401 and the token -----------------------------------------------------------------------


def test_unauthorized_forces_one_token_refresh_then_succeeds(
    seldon: FakeSeldon, tokens: FakeTokens, client: SeldonDeployClient
) -> None:
    seldon.reply(error(401, "token expired"), Canned(200, SDEP))

    assert client.read("prod", "iris") == SDEP

    assert tokens.calls == [False, True]
    assert tokens.stale == [None, TOKEN]  # only the refused token is replaced
    first, second = seldon.requests
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert second.headers["Authorization"] == f"Bearer {NEW_TOKEN}"


def test_write_is_resent_with_the_same_body_after_a_refresh(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(error(401, "token expired"), Canned(200, SDEP))

    client.update("prod", "iris", SDEP, action="promote", message="m")

    first, second = seldon.requests
    assert second.body == first.body
    assert second.query == first.query


def test_unauthorized_twice_is_authentication_failed(
    seldon: FakeSeldon, tokens: FakeTokens, client: SeldonDeployClient
) -> None:
    seldon.reply(error(401, "bad token"), error(401, "bad token"))

    err = raised(AuthenticationFailed, lambda: client.read("prod", "iris"))

    assert err.http_status == 401
    assert tokens.calls == [False, True]
    assert len(seldon.requests) == 2


def test_malformed_token_is_authentication_failed_without_echoing_it(
    seldon: FakeSeldon, tmp_path: Path
) -> None:
    bad = "secret-part\r\nX-Injected: 1"
    with SeldonDeployClient(instance(seldon.url, tmp_path), FakeTokens(bad)) as c:
        err = raised(AuthenticationFailed, lambda: c.read("prod", "iris"))

    assert "secret-part" not in str(err)
    assert seldon.requests == []


# -- error sorting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, Invalid),
        (403, Forbidden),
        (404, NotFound),
        (405, UnexpectedResponse),
        (409, Conflict),
        (422, Invalid),
        (429, SeldonDeployUnavailable),
        (500, SeldonDeployUnavailable),
        (502, SeldonDeployUnavailable),
        (503, SeldonDeployUnavailable),
    ],
)
def test_status_is_sorted_into_its_error(
    status: int,
    expected: type[PromotionError],
    seldon: FakeSeldon,
    client: SeldonDeployClient,
) -> None:
    seldon.reply(error(status, "nope"))

    err = raised(expected, lambda: client.read("prod", "iris"))

    assert type(err) is expected
    assert err.http_status == status


def test_retryable_statuses_are_marked_retryable(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(error(409, "changed"), error(503, "down"), error(422, "bad"))

    assert raised(Conflict, lambda: client.read("p", "n")).retryable
    assert raised(SeldonDeployUnavailable, lambda: client.read("p", "n")).retryable
    assert not raised(Invalid, lambda: client.read("p", "n")).retryable


def test_429_retry_after_seconds_is_parsed(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(Canned(429, {"message": "slow down"}, headers={"Retry-After": "7"}))

    err = raised(SeldonDeployUnavailable, lambda: client.read("prod", "iris"))

    assert err.retry_after == 7.0


def test_find_returns_none_on_404(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(error(404, "not found"))

    assert client.find("prod", "iris") is None


def test_find_returns_the_deployment(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(Canned(200, SDEP))

    assert client.find("prod", "iris") == SDEP


def test_connection_refused_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}{BASE}"
    with SeldonDeployClient(instance(url, tmp_path), FakeTokens()) as c:
        err = raised(SeldonDeployUnavailable, lambda: c.read("prod", "iris"))

    assert err.http_status is None
    assert "GET /namespaces/prod/seldondeployments/iris" in str(err)
    assert "connection failed" in str(err)


def test_timeout_is_unavailable(seldon: FakeSeldon, tmp_path: Path) -> None:
    seldon.reply(Canned(200, SDEP, delay=0.6))
    with SeldonDeployClient(instance(seldon.url, tmp_path, request_timeout=0.2), FakeTokens()) as c:
        err = raised(SeldonDeployUnavailable, lambda: c.read("prod", "iris"))

    assert "timed out after 0.2 s" in str(err)


def test_every_request_names_the_operator_version_and_replica(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, SDEP), Canned(200, SDEP))

    client.read("prod", "iris")
    client.update("prod", "iris", SDEP, action="promote", message="m")

    agents = {request.headers["User-Agent"] for request in seldon.requests}
    assert agents == {THIS_REPLICA.user_agent}
    assert THIS_REPLICA.name in THIS_REPLICA.user_agent
    assert THIS_REPLICA.user_agent.startswith("seldon-promotion-operator/")


# -- the fence: no write unless this replica leads -------------------------------------------


def test_a_write_is_not_sent_without_time_left_on_the_lease(
    seldon: FakeSeldon, tmp_path: Path
) -> None:
    settings = instance(seldon.url, tmp_path)
    with SeldonDeployClient(settings, FakeTokens(), fence=lambda: 0.5) as c:
        with pytest.raises(NotLeading, match="does not hold the Lease"):
            c.update("prod", "iris", SDEP, action="promote", message="m")
        with pytest.raises(NotLeading):
            c.delete("prod", "iris", action="rollback", message="m")

    assert seldon.requests == []


def test_a_read_is_sent_whatever_the_lease(seldon: FakeSeldon, tmp_path: Path) -> None:
    seldon.reply(Canned(200, SDEP))
    with SeldonDeployClient(instance(seldon.url, tmp_path), FakeTokens(), fence=lambda: 0.0) as c:
        assert c.read("prod", "iris") == SDEP


def test_a_write_times_out_inside_the_time_left_on_the_lease(
    seldon: FakeSeldon, tmp_path: Path
) -> None:
    seldon.reply(Canned(200, SDEP, delay=2.0))
    settings = instance(seldon.url, tmp_path, request_timeout=10.0)
    with SeldonDeployClient(settings, FakeTokens(), fence=lambda: 1.2) as c:
        err = raised(
            SeldonDeployUnavailable,
            lambda: c.update("prod", "iris", SDEP, action="promote", message="m"),
        )

    assert "timed out after 1.2 s" in str(err)


def test_redirect_is_not_followed(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(Canned(302, None, headers={"Location": "http://127.0.0.1:1/login"}))

    err = raised(UnexpectedResponse, lambda: client.read("prod", "iris"))

    assert err.http_status == 302
    assert len(seldon.requests) == 1


# -- unexpected 2xx --------------------------------------------------------------------------


def test_non_json_200_is_unexpected_response(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, b"{not json", content_type="application/json"))

    err = raised(UnexpectedResponse, lambda: client.read("prod", "iris"))

    assert "not valid JSON" in str(err)
    assert "{not json" not in str(err)


@pytest.mark.parametrize(
    "body",
    [{"unexpected": True}, {"metadata": {"name": "iris"}}, {"metadata": {}, "spec": {}}],
    ids=["neither", "no-spec", "no-name"],
)
def test_deployment_without_metadata_or_spec_is_unexpected_response(
    seldon: FakeSeldon, client: SeldonDeployClient, body: dict[str, Any]
) -> None:
    seldon.reply(Canned(200, body))

    err = raised(UnexpectedResponse, lambda: client.read("prod", "iris"))

    assert "without metadata.name or spec" in str(err)


def test_html_200_is_unexpected_response(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(Canned(200, b"<html>login</html>", content_type="text/html; charset=utf-8"))

    err = raised(UnexpectedResponse, lambda: client.read("prod", "iris"))

    assert "text/html" in str(err)


def test_read_of_a_json_array_is_unexpected_response(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, [SDEP]))

    raised(UnexpectedResponse, lambda: client.read("prod", "iris"))


def test_validate_message_with_an_error_code_is_invalid(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(200, {"code": 400, "message": "spec.predictors is required"}))

    err = raised(Invalid, lambda: client.validate("prod", SDEP))

    assert "spec.predictors is required" in str(err)


def test_huge_body_is_unexpected_response(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(Canned(200, stream_bytes=DEFAULT_MAX_RESPONSE_BYTES + 1))

    err = raised(UnexpectedResponse, lambda: client.read("prod", "iris"))

    assert "larger than" in str(err)


def test_declared_length_over_the_cap_is_refused_unread(
    seldon: FakeSeldon, tokens: FakeTokens, tmp_path: Path
) -> None:
    seldon.reply(Canned(200, {**SDEP, "padding": "x" * 2000}))
    with SeldonDeployClient(instance(seldon.url, tmp_path), tokens, max_response_bytes=1000) as c:
        raised(UnexpectedResponse, lambda: c.read("prod", "iris"))


# -- what errors and logs say ----------------------------------------------------------------


def test_error_names_method_path_status_and_server_message_but_not_the_token(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(error(409, f"deployment iris was modified (request by Bearer {TOKEN})"))

    err = raised(
        Conflict, lambda: client.update("prod", "iris", SDEP, action="promote", message="m")
    )

    text = str(err)
    assert "PUT /namespaces/prod/seldondeployments/iris" in text
    assert "409" in text
    assert "deployment iris was modified" in text
    assert TOKEN not in text
    assert "first-token-signature" not in text


def test_server_message_is_truncated(seldon: FakeSeldon, client: SeldonDeployClient) -> None:
    seldon.reply(error(400, "field invalid: " + "x" * 5000))

    err = raised(Invalid, lambda: client.read("prod", "iris"))

    assert "field invalid: xxx" in str(err)
    assert len(str(err)) < 500


def test_error_without_json_body_says_only_the_status(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(Canned(502, b"<html>upstream secret-ish page</html>", content_type="text/html"))

    err = raised(SeldonDeployUnavailable, lambda: client.read("prod", "iris"))

    assert str(err).endswith("HTTP 502 Bad Gateway")


def test_observer_is_called_with_the_path_template(
    seldon: FakeSeldon, tokens: FakeTokens, tmp_path: Path
) -> None:
    seen: list[tuple[str, str, int | None, float]] = []
    seldon.reply(error(401, "expired"), Canned(200, SDEP))
    with SeldonDeployClient(
        instance(seldon.url, tmp_path), tokens, observer=lambda *a: seen.append(a)
    ) as c:
        c.read("prod", "iris")

    template = "/namespaces/{namespace}/seldondeployments/{name}"
    assert [(m, p, s) for m, p, s, _ in seen] == [("GET", template, 401), ("GET", template, 200)]
    assert all(seconds >= 0 for *_, seconds in seen)


def test_observer_sees_no_status_on_connection_error(tmp_path: Path) -> None:
    seen: list[tuple[str, str, int | None, float]] = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}{BASE}"
    with SeldonDeployClient(
        instance(url, tmp_path), FakeTokens(), observer=lambda *a: seen.append(a)
    ) as c:
        raised(SeldonDeployUnavailable, lambda: c.read("prod", "iris"))

    assert [(m, p, s) for m, p, s, _ in seen] == [
        ("GET", "/namespaces/{namespace}/seldondeployments/{name}", None)
    ]


def test_debug_log_names_the_request_but_not_the_token(
    seldon: FakeSeldon, client: SeldonDeployClient, caplog: pytest.LogCaptureFixture
) -> None:
    seldon.reply(Canned(200, SDEP))
    with caplog.at_level(logging.DEBUG):
        client.read("prod", "iris")

    ours = [r.getMessage() for r in caplog.records if r.name == "promotion_operator.clients.seldon"]
    assert any("GET /namespaces/prod/seldondeployments/iris -> 200" in m for m in ours)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


# -- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    ca_file: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return Tls(context, cert_file)


@pytest.fixture
def https_seldon(tls: Tls) -> Iterator[FakeSeldon]:
    server = FakeSeldon(tls.server)
    try:
        yield server
    finally:
        server.stop()


def test_ca_file_is_trusted(https_seldon: FakeSeldon, tls: Tls, tmp_path: Path) -> None:
    https_seldon.reply(Canned(200, SDEP))
    settings = instance(https_seldon.url, tmp_path, ca_file=tls.ca_file)
    with SeldonDeployClient(settings, FakeTokens()) as c:
        assert c.read("prod", "iris") == SDEP


def test_unknown_certificate_is_unavailable_with_a_tls_reason(
    https_seldon: FakeSeldon, tmp_path: Path
) -> None:
    with SeldonDeployClient(instance(https_seldon.url, tmp_path), FakeTokens()) as c:
        err = raised(SeldonDeployUnavailable, lambda: c.read("prod", "iris"))

    assert "TLS error" in str(err)
    assert https_seldon.requests == []


def test_verification_can_be_turned_off(https_seldon: FakeSeldon, tmp_path: Path) -> None:
    https_seldon.reply(Canned(200, SDEP))
    settings = instance(https_seldon.url, tmp_path, verify_tls=False)
    with (
        SeldonDeployClient(settings, FakeTokens()) as c,
        pytest.warns(Warning, match="Unverified HTTPS request"),
    ):
        assert c.read("prod", "iris") == SDEP


# -- sharing -------------------------------------------------------------------------------


def test_one_client_serves_many_threads_at_once(
    seldon: FakeSeldon, client: SeldonDeployClient
) -> None:
    seldon.reply(*(Canned(200, SDEP, delay=0.05) for _ in range(16)))
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: results.append(client.read("prod", "iris")))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert results == [SDEP] * 16
    assert len(seldon.requests) == 16
