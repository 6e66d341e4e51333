"""PrometheusClient against a real HTTP(S) server on loopback, scripted per test.

The server is the Seldon Deploy client tests' (``FakeSeldon``): it answers each
request with the next canned answer and records what it received; nothing in
``requests`` is patched. The answers are shaped like Prometheus' query API.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from promotion_operator.clients.prometheus import (
    MAX_QUERY_CHARS,
    MAX_SERIES,
    QUERY_PATH,
    PrometheusClient,
    QueryObserver,
    firing_alerts_query,
)
from promotion_operator.config.settings import PrometheusSettings
from promotion_operator.control.metrics import Metrics
from promotion_operator.errors import (
    AnalysisInconclusive,
    AuthenticationFailed,
    InvalidQuery,
    MetricsUnavailable,
    PromotionError,
    UnexpectedResponse,
)
from tests.harness.certs import CertificateAuthority
from tests.unit.test_seldon_client import BASE, Canned, FakeSeldon, Recorded

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9tZXRoZXVzIn0.first-prometheus-signature"
NEW_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9tZXRoZXVzIn0.second-prometheus-signature"
# Shaped like nothing the redaction recognises: only knowing the token can hide it.
OPAQUE_TOKEN = "opaque-7f3b9c2d1e0a4b5c-prometheus-token"
QUERY = 'sum(rate(seldon_api_executor_server_requests_seconds_count{deployment_name="iris"}[30s]))'
BY_CLASS = 'sum by (class) (increase(predictions_total{deployment_name="iris"}[1m]))'
TS = 1_700_000_000.123


# -- Prometheus-shaped answers -----------------------------------------------------------------


def success(data: dict[str, Any], **extra: Any) -> Canned:
    return Canned(200, {"status": "success", "data": data, **extra})


def scalar(value: str) -> Canned:
    return success({"resultType": "scalar", "result": [TS, value]})


def vector(*samples: tuple[dict[str, str], str]) -> Canned:
    result = [{"metric": labels, "value": [TS, value]} for labels, value in samples]
    return success({"resultType": "vector", "result": result})


def failure(status: int, error_type: str, error: str, **headers: str) -> Canned:
    body = {"status": "error", "errorType": error_type, "error": error}
    return Canned(status, body, headers=headers)


# -- fixtures --------------------------------------------------------------------------------


def server_url(server: FakeSeldon) -> str:
    """The server's root: FakeSeldon's URL carries the Seldon Deploy API path."""
    return server.url.removesuffix(BASE)


def free_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def prom() -> Iterator[FakeSeldon]:
    server = FakeSeldon()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(prom: FakeSeldon) -> PrometheusSettings:
    return PrometheusSettings(url=server_url(prom), timeout=2.0)


@pytest.fixture
def client(settings: PrometheusSettings) -> Iterator[PrometheusClient]:
    with PrometheusClient(settings) as c:
        yield c


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def raised(exc_type: type[PromotionError], call: Callable[[], object]) -> PromotionError:
    with pytest.raises(exc_type) as info:
        call()
    return info.value


def form(request: Recorded) -> dict[str, list[str]]:
    return parse_qs(request.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)


# -- one number ------------------------------------------------------------------------------


def test_scalar_is_its_number(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(scalar("0.25"))

    assert client.query("scalar(0.25)") == 0.25


def test_vector_of_one_sample_is_its_number(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(vector(({"deployment_name": "iris"}, "1.5e-3")))

    assert client.query(QUERY) == 0.0015


def test_query_is_posted_form_encoded_to_the_query_api(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(scalar("1"))

    client.query(QUERY)

    (request,) = prom.requests
    assert (request.method, request.path, request.query) == ("POST", QUERY_PATH, {})
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"
    assert "Authorization" not in request.headers


def test_braces_quotes_and_pipes_survive_the_form_encoding(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    promql = (
        'sum(rate(x{code!~"5..|429",path=~"/a|/b",q=\'it\\\'s\'}[1m])) / '
        'sum(rate(x{code=~".+"}[1m])) + 0 * count({__name__="up"}) & y'
    )
    prom.reply(scalar("1"))

    client.query(promql)

    (request,) = prom.requests
    assert form(request)["query"] == [promql]
    assert b"{" not in request.body and b"|" not in request.body and b'"' not in request.body


def test_prometheus_is_given_the_client_timeout(prom: FakeSeldon, tmp_path: Path) -> None:
    prom.reply(scalar("1"))
    with PrometheusClient(PrometheusSettings(url=server_url(prom), timeout=2.5)) as c:
        c.query("up")

    assert form(prom.requests[0])["timeout"] == ["2.5"]


def test_a_path_prefix_in_the_url_is_kept(prom: FakeSeldon) -> None:
    prom.reply(scalar("1"))
    with PrometheusClient(PrometheusSettings(url=prom.url + "/")) as c:
        c.query("up")

    assert prom.requests[0].path == BASE + QUERY_PATH


def test_zero_and_negative_numbers_are_numbers(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(scalar("0"), vector(({}, "-2")))

    assert [client.query("a"), client.query("b")] == [0.0, -2.0]


# -- a success that is not one number: inconclusive ------------------------------------------


def test_empty_vector_is_no_data(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(vector())

    err = raised(AnalysisInconclusive, lambda: client.query(QUERY))

    assert (err.reason, err.retryable) == ("AnalysisInconclusive", True)
    assert "no data" in str(err)


def test_several_series_say_how_many_and_show_their_labels(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(
        vector(
            ({"predictor_name": "main", "code": "200"}, "1"),
            ({"predictor_name": "canary", "code": "200"}, "2"),
        )
    )

    err = raised(AnalysisInconclusive, lambda: client.query(QUERY))

    assert '2 series instead of one: {code="200", predictor_name="main"}, ' in str(err)
    assert '{code="200", predictor_name="canary"}' in str(err)


def test_many_series_show_only_the_first_few(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(vector(*(({"pod": f"pod-{i}"}, "1") for i in range(50))))

    err = raised(AnalysisInconclusive, lambda: client.query(QUERY))

    assert "50 series instead of one" in str(err)
    assert '{pod="pod-2"}, … (47 more)' in str(err)
    assert "pod-3" not in str(err)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (vector(({}, "NaN")), "NaN"),
        (scalar("NaN"), "NaN"),
        (vector(({}, "+Inf")), "+Inf"),
        (vector(({}, "-Inf")), "-Inf"),
    ],
    ids=["nan", "scalar-nan", "plus-inf", "minus-inf"],
)
def test_nan_and_infinities_are_inconclusive(
    prom: FakeSeldon, client: PrometheusClient, answer: Canned, expected: str
) -> None:
    prom.reply(answer)

    err = raised(AnalysisInconclusive, lambda: client.query(QUERY))

    assert f"HTTP 200 OK: {expected} (" in str(err)


def test_matrix_is_inconclusive(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(
        success(
            {
                "resultType": "matrix",
                "result": [{"metric": {}, "values": [[TS, "1"], [TS + 15, "2"]]}],
            }
        )
    )

    err = raised(AnalysisInconclusive, lambda: client.query("up[1m]"))

    assert "a range vector (matrix) instead of one number" in str(err)


def test_string_is_inconclusive(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(success({"resultType": "string", "result": [TS, "hello"]}))

    err = raised(AnalysisInconclusive, lambda: client.query('"hello"'))

    assert "a string instead of a number" in str(err)


def test_native_histogram_sample_is_inconclusive(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    histogram = {"count": "3", "sum": "1.5", "buckets": [[0, "0.5", "1", "3"]]}
    prom.reply(
        success({"resultType": "vector", "result": [{"metric": {}, "histogram": [TS, histogram]}]})
    )

    err = raised(AnalysisInconclusive, lambda: client.query("latency"))

    assert "a native histogram instead of a number" in str(err)


def test_execution_error_is_inconclusive_with_prometheus_message(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(failure(422, "execution", "found duplicate series for the match group"))

    err = raised(AnalysisInconclusive, lambda: client.query(QUERY))

    assert err.http_status == 422
    assert "execution: found duplicate series for the match group" in str(err)


def test_oversized_answer_is_inconclusive(prom: FakeSeldon, settings: PrometheusSettings) -> None:
    prom.reply(vector(*(({"pod": f"pod-{i}"}, "1") for i in range(100))))
    with PrometheusClient(settings, max_response_bytes=1000) as c:
        err = raised(AnalysisInconclusive, lambda: c.query(QUERY))

    assert "larger than 1000 bytes" in str(err)


# -- a refused query: invalid, with Prometheus' own words ------------------------------------


def test_bad_data_is_invalid_with_prometheus_message(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    message = '1:5: parse error: unexpected "}" in aggregation'
    prom.reply(failure(400, "bad_data", message))

    err = raised(InvalidQuery, lambda: client.query("sum(}"))

    assert (err.reason, err.retryable, err.http_status) == ("Invalid", False, 400)
    assert f"HTTP 400 Bad Request: bad_data: {message}" in str(err)


def test_long_prometheus_message_is_truncated(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(failure(400, "bad_data", "parse error: " + "x" * 5000))

    err = raised(InvalidQuery, lambda: client.query("sum(}"))

    assert "parse error: xxx" in str(err)
    assert str(err).endswith("…")
    assert len(str(err)) < 600


def test_empty_query_is_invalid_without_a_request(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    err = raised(InvalidQuery, lambda: client.query("  \n"))

    assert "the query is empty" in str(err)
    assert prom.requests == []


# -- Prometheus not answering well: unavailable --------------------------------------------------


def test_503_is_unavailable_with_retry_after(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(
        failure(503, "timeout", "query timed out in expression evaluation", **{"Retry-After": "7"})
    )

    err = raised(MetricsUnavailable, lambda: client.query(QUERY))

    assert (err.reason, err.retryable, err.http_status, err.retry_after) == (
        "MetricsUnavailable",
        True,
        503,
        7.0,
    )
    assert "HTTP 503 Service Unavailable: timeout: query timed out" in str(err)


def test_429_is_unavailable_with_retry_after(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(Canned(429, None, content_type=None, headers={"Retry-After": "30"}))

    err = raised(MetricsUnavailable, lambda: client.query(QUERY))

    assert (err.http_status, err.retry_after) == (429, 30.0)
    assert "HTTP 429 Too Many Requests" in str(err)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_errors_are_unavailable(
    prom: FakeSeldon, client: PrometheusClient, status: int
) -> None:
    prom.reply(failure(status, "internal", "storage failure"))

    err = raised(MetricsUnavailable, lambda: client.query(QUERY))

    assert err.http_status == status
    assert err.retry_after is None


def test_connection_refused_is_unavailable() -> None:
    url = free_port_url()
    with PrometheusClient(PrometheusSettings(url=url)) as c:
        err = raised(MetricsUnavailable, lambda: c.query(QUERY))

    assert err.http_status is None
    assert f"on Prometheus {url}: connection failed" in str(err)


def test_timeout_is_unavailable(prom: FakeSeldon) -> None:
    prom.reply(Canned(200, None, delay=0.6))
    with PrometheusClient(PrometheusSettings(url=server_url(prom), timeout=0.2)) as c:
        err = raised(MetricsUnavailable, lambda: c.query(QUERY))

    assert "timed out after 0.2 s" in str(err)


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("prometheus-tls"), "prometheus-test")


@pytest.fixture
def https_prom(ca: CertificateAuthority) -> Iterator[FakeSeldon]:
    pair = ca.issue_serving("prometheus", ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    server = FakeSeldon(context)
    try:
        yield server
    finally:
        server.stop()


def test_tls_with_the_configured_ca(https_prom: FakeSeldon, ca: CertificateAuthority) -> None:
    https_prom.reply(scalar("0.5"))
    settings = PrometheusSettings(url=server_url(https_prom), ca_file=ca.cert_path)
    with PrometheusClient(settings) as c:
        assert c.query(QUERY) == 0.5


def test_tls_with_an_unknown_ca_is_unavailable(https_prom: FakeSeldon) -> None:
    with PrometheusClient(PrometheusSettings(url=server_url(https_prom))) as c:
        err = raised(MetricsUnavailable, lambda: c.query(QUERY))

    assert "TLS error" in str(err)
    assert https_prom.requests == []


def test_tls_verification_can_be_turned_off(https_prom: FakeSeldon) -> None:
    https_prom.reply(scalar("1"))
    settings = PrometheusSettings(url=server_url(https_prom), verify_tls=False)
    with (
        PrometheusClient(settings) as c,
        pytest.warns(Warning, match="Unverified HTTPS request"),
    ):
        assert c.query(QUERY) == 1.0


# -- the bearer token --------------------------------------------------------------------------


def test_bearer_token_is_sent(prom: FakeSeldon, token_file: Path) -> None:
    prom.reply(scalar("1"))
    settings = PrometheusSettings(url=server_url(prom), bearer_token_file=token_file)
    with PrometheusClient(settings) as c:
        c.query(QUERY)

    assert prom.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_token_file_is_read_again_for_every_query(prom: FakeSeldon, token_file: Path) -> None:
    prom.reply(scalar("1"), scalar("1"))
    settings = PrometheusSettings(url=server_url(prom), bearer_token_file=token_file)
    with PrometheusClient(settings) as c:
        c.query(QUERY)
        token_file.write_text(NEW_TOKEN)
        c.query(QUERY)

    assert [r.headers["Authorization"] for r in prom.requests] == [
        f"Bearer {TOKEN}",
        f"Bearer {NEW_TOKEN}",
    ]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_authentication_failed(
    prom: FakeSeldon, token_file: Path, status: int
) -> None:
    prom.reply(Canned(status, b"denied", content_type="text/plain"))
    settings = PrometheusSettings(url=server_url(prom), bearer_token_file=token_file)
    with PrometheusClient(settings) as c:
        err = raised(AuthenticationFailed, lambda: c.query(QUERY))

    assert err.http_status == status
    assert "PROMETHEUS_BEARER_TOKEN_FILE" in str(err)
    assert len(prom.requests) == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "does not exist"), ("", "is empty"), ("two tokens", "has whitespace or control")],
)
def test_unusable_token_file_is_authentication_failed_before_sending(
    prom: FakeSeldon, tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    settings = PrometheusSettings(url=server_url(prom), bearer_token_file=path)
    with PrometheusClient(settings) as c:
        err = raised(AuthenticationFailed, lambda: c.query(QUERY))

    assert f"no bearer token to send: token file {path} {expected}" in str(err)
    assert "two" not in str(err).replace(str(path), "")
    assert prom.requests == []


def test_the_token_is_never_in_an_error_or_a_log(
    prom: FakeSeldon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Servers and proxies that quote the request back, in every place a message reads.
    path = tmp_path / "token"
    path.write_text(OPAQUE_TOKEN)
    prom.reply(
        failure(400, "bad_data", f"refused header Authorization: {OPAQUE_TOKEN}"),
        failure(503, "unavailable", f"upstream saw {OPAQUE_TOKEN}"),
        Canned(401, {"status": "error", "errorType": "auth", "error": f"bad {OPAQUE_TOKEN}"}),
        vector(({"token": OPAQUE_TOKEN}, "1"), ({"token": "other"}, "2")),
        success({"resultType": OPAQUE_TOKEN, "result": []}),
        success({"resultType": "scalar", "result": [TS, "1"]}, warnings=[f"echo {OPAQUE_TOKEN}"]),
    )
    errors: list[PromotionError] = []
    settings = PrometheusSettings(url=server_url(prom), bearer_token_file=path)
    with caplog.at_level(logging.DEBUG), PrometheusClient(settings) as c:
        for _ in range(5):
            with pytest.raises(PromotionError) as info:
                c.query(f"up{{a={OPAQUE_TOKEN!r}}}")
            errors.append(info.value)
        assert c.query("up") == 1.0
        assert OPAQUE_TOKEN not in repr(c)

    assert [type(e) for e in errors] == [
        InvalidQuery,
        MetricsUnavailable,
        AuthenticationFailed,
        AnalysisInconclusive,
        UnexpectedResponse,
    ]
    assert all(
        prom.requests[i].headers["Authorization"] == f"Bearer {OPAQUE_TOKEN}" for i in range(6)
    )
    for text in [str(e) for e in errors] + [r.getMessage() for r in caplog.records]:
        assert OPAQUE_TOKEN not in text
    assert any("[REDACTED]" in str(e) for e in errors)
    assert any("Prometheus warning: echo [REDACTED]" in r.getMessage() for r in caplog.records)


# -- what messages say ---------------------------------------------------------------------------


def test_message_names_the_url_the_status_and_the_query(
    prom: FakeSeldon, client: PrometheusClient, settings: PrometheusSettings
) -> None:
    prom.reply(vector())

    err = raised(AnalysisInconclusive, lambda: client.query(QUERY))

    assert str(err).startswith(f"query {QUERY!r} on Prometheus {settings.url}: HTTP 200 OK: ")


def test_long_query_is_shortened_in_messages_but_sent_whole(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    promql = "sum(\n  rate(requests_total[5m])\n)" + " + on() vector(0)" * 100
    prom.reply(vector())

    err = raised(AnalysisInconclusive, lambda: client.query(promql))

    quoted = str(err).split("'")[1]
    assert quoted.startswith("sum( rate(requests_total[5m]) ) + on() vector(0)")
    assert quoted.endswith("…")
    assert len(quoted) <= MAX_QUERY_CHARS
    assert form(prom.requests[0])["query"] == [promql]


def test_credentials_in_the_url_are_never_shown() -> None:
    url = free_port_url().replace("http://", "http://admin:s3cret-pw@")
    with PrometheusClient(PrometheusSettings(url=url)) as c:
        err = raised(MetricsUnavailable, lambda: c.query(QUERY))
        assert "s3cret-pw" not in repr(c)

    assert "s3cret-pw" not in str(err) and "admin" not in str(err)


# -- answers that are not Prometheus' ----------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Canned(200, b"<html>login</html>", content_type="text/html"), "content type 'text/html'"),
        (Canned(200, b"{not json"), "a body that is not valid JSON"),
        (Canned(200, [1, 2]), "a JSON list instead of an object"),
        (Canned(200, {"status": "success"}), "a success without a data object"),
        (Canned(200, {"status": "maybe", "data": {}}), "status is not success or error"),
        (success({"resultType": "vector", "result": {}}), "a vector whose result is not a list"),
        (success({"resultType": "scalar", "result": [TS, 1]}), 'not [timestamp, "value"]'),
        (success({"resultType": "scalar", "result": [TS, "one"]}), "not a number"),
        (success({"resultType": "histogram", "result": []}), "an unknown resultType"),
    ],
    ids=[
        "html",
        "not-json",
        "array",
        "no-data",
        "odd-status",
        "vector-not-list",
        "unquoted-value",
        "word-value",
        "unknown-type",
    ],
)
def test_malformed_success_is_unexpected_and_says_prometheus(
    prom: FakeSeldon, client: PrometheusClient, answer: Canned, expected: str
) -> None:
    prom.reply(answer)

    err = raised(UnexpectedResponse, lambda: client.query(QUERY))

    assert expected in str(err)
    assert "on Prometheus http://127.0.0.1:" in str(err)
    assert "Seldon" not in str(err)


def test_404_is_unexpected_and_points_at_the_url(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(Canned(404, b"404 page not found", content_type="text/plain"))

    err = raised(UnexpectedResponse, lambda: client.query(QUERY))

    assert err.http_status == 404
    assert "is PROMETHEUS_URL the base URL of a Prometheus server?" in str(err)


def test_redirect_is_not_followed(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(Canned(302, None, headers={"Location": "http://127.0.0.1:1/login"}))

    err = raised(UnexpectedResponse, lambda: client.query(QUERY))

    assert "redirects are not followed" in str(err)
    assert len(prom.requests) == 1


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("bad_data", InvalidQuery),
        ("execution", AnalysisInconclusive),
        ("timeout", MetricsUnavailable),
        ("unavailable", MetricsUnavailable),
        ("teapot", UnexpectedResponse),
    ],
)
def test_error_answer_with_a_2xx_is_sorted_by_its_error_type(
    prom: FakeSeldon, client: PrometheusClient, error_type: str, expected: type[PromotionError]
) -> None:
    prom.reply(failure(200, error_type, "from a proxy"))

    err = raised(expected, lambda: client.query(QUERY))

    assert f"{error_type}: from a proxy" in str(err)


# -- observer and metrics --------------------------------------------------------------------


def test_observer_sees_every_query_with_its_result(
    prom: FakeSeldon, settings: PrometheusSettings
) -> None:
    seen: list[tuple[str, float]] = []
    observer: QueryObserver = lambda result, seconds: seen.append((result, seconds))  # noqa: E731
    prom.reply(scalar("1"), failure(400, "bad_data", "x"), vector(), failure(503, "timeout", "t"))
    with PrometheusClient(settings, observer=observer) as c:
        c.query("a")
        for _ in range(3):
            with pytest.raises(PromotionError):
                c.query("b")

    assert [result for result, _ in seen] == [
        "ok",
        "Invalid",
        "AnalysisInconclusive",
        "MetricsUnavailable",
    ]
    assert all(seconds >= 0 for _, seconds in seen)


def test_observer_sees_a_connection_failure() -> None:
    seen: list[str] = []
    with PrometheusClient(
        PrometheusSettings(url=free_port_url()), observer=lambda r, _: seen.append(r)
    ) as c:
        raised(MetricsUnavailable, lambda: c.query(QUERY))

    assert seen == ["MetricsUnavailable"]


def test_a_failing_observer_does_not_fail_the_query(
    prom: FakeSeldon, settings: PrometheusSettings
) -> None:
    def broken(result: str, seconds: float) -> None:
        raise RuntimeError("observer bug")

    prom.reply(scalar("3"))
    with PrometheusClient(settings, observer=broken) as c:
        assert c.query(QUERY) == 3.0


def test_metrics_count_queries_by_result_and_time_them(
    prom: FakeSeldon, settings: PrometheusSettings
) -> None:
    metrics = Metrics()
    prom.reply(scalar("1"), scalar("2"), failure(400, "bad_data", "x"))
    with PrometheusClient(settings, observer=metrics.prometheus_observer()) as c:
        c.query("a")
        c.query("a")
        raised(InvalidQuery, lambda: c.query("a"))

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("prometheus_queries_total", result="ok") == 2
    assert sample("prometheus_queries_total", result="Invalid") == 1
    assert sample("prometheus_query_duration_seconds_count") == 3
    duration = sample("prometheus_query_duration_seconds_sum")
    assert duration is not None and math.isfinite(duration) and duration > 0


# -- numbers by a label (query_by) --------------------------------------------------------------


def by_class(*classes: tuple[str, str]) -> Canned:
    """A vector of one series per class, as ``sum by (class) (...)`` gives."""
    return vector(*(({"class": name}, value) for name, value in classes))


def test_query_by_reads_a_vector_into_numbers_by_the_label(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(by_class(("setosa", "12"), ("versicolor", "0"), ("virginica", "2.5e1")))

    assert client.query_by(BY_CLASS, "class") == {
        "setosa": 12.0,
        "versicolor": 0.0,
        "virginica": 25.0,
    }


def test_query_by_is_sent_like_query_with_the_bearer_token(
    prom: FakeSeldon, token_file: Path
) -> None:
    prom.reply(by_class(("setosa", "1")))
    settings = PrometheusSettings(url=server_url(prom), bearer_token_file=token_file, timeout=2.0)
    with PrometheusClient(settings) as c:
        c.query_by(BY_CLASS, "class")

    (request,) = prom.requests
    assert (request.method, request.path) == ("POST", QUERY_PATH)
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert form(request) == {"query": [BY_CLASS], "timeout": ["2"]}


def test_query_by_empty_vector_is_no_series(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(vector())

    err = raised(AnalysisInconclusive, lambda: client.query_by(BY_CLASS, "class"))

    assert err.retryable
    assert "no data (the query returned an empty vector: no series)" in str(err)


@pytest.mark.parametrize(
    "labels", [{"pod": "p-1"}, {"class": "", "pod": "p-1"}], ids=["absent", "empty"]
)
def test_query_by_series_without_the_label_is_refused_with_the_aggregate_hint(
    prom: FakeSeldon, client: PrometheusClient, labels: dict[str, str]
) -> None:
    prom.reply(vector(({"class": "setosa"}, "1"), (labels, "2")))

    err = raised(AnalysisInconclusive, lambda: client.query_by(BY_CLASS, "class"))

    assert "a series without the label class: {" in str(err)
    assert '"p-1"}; aggregate the query by (class) (e.g. sum by (class) (…))' in str(err)


def test_query_by_duplicate_label_values_are_refused_with_the_aggregate_hint(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(
        vector(
            ({"class": "setosa", "pod": "a"}, "1"),
            ({"class": "virginica", "pod": "a"}, "1"),
            ({"class": "setosa", "pod": "b"}, "2"),
        )
    )

    err = raised(AnalysisInconclusive, lambda: client.query_by(BY_CLASS, "class"))

    assert (
        '2 series with class="setosa": {class="setosa", pod="a"}, {class="setosa", pod="b"}; '
        "aggregate the query by (class) (e.g. sum by (class) (…))"
    ) in str(err)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (scalar("3"), "a scalar instead of an instant vector of series told apart by a label"),
        (
            success(
                {
                    "resultType": "matrix",
                    "result": [{"metric": {"class": "setosa"}, "values": [[TS, "1"]]}],
                }
            ),
            "a range vector (matrix) instead of an instant vector",
        ),
        (success({"resultType": "string", "result": [TS, "x"]}), "a string instead of"),
    ],
    ids=["scalar", "matrix", "string"],
)
def test_query_by_refuses_what_is_not_an_instant_vector(
    prom: FakeSeldon, client: PrometheusClient, answer: Canned, expected: str
) -> None:
    prom.reply(answer)

    err = raised(AnalysisInconclusive, lambda: client.query_by(BY_CLASS, "class"))

    assert expected in str(err)


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
def test_query_by_non_finite_value_is_inconclusive_and_names_its_series(
    prom: FakeSeldon, client: PrometheusClient, value: str
) -> None:
    prom.reply(by_class(("setosa", "1"), ("virginica", value)))

    err = raised(AnalysisInconclusive, lambda: client.query_by(BY_CLASS, "class"))

    assert f'HTTP 200 OK: the series with class="virginica": {value} (' in str(err)


def test_query_by_native_histogram_is_inconclusive(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    histogram = {"count": "3", "sum": "1.5", "buckets": [[0, "0.5", "1", "3"]]}
    prom.reply(
        success(
            {
                "resultType": "vector",
                "result": [{"metric": {"class": "setosa"}, "histogram": [TS, histogram]}],
            }
        )
    )

    err = raised(AnalysisInconclusive, lambda: client.query_by(BY_CLASS, "class"))

    assert 'the series with class="setosa": a native histogram instead of a number' in str(err)


def test_query_by_too_many_series_is_inconclusive(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(by_class(*((f"c-{i}", "1") for i in range(MAX_SERIES + 1))))

    err = raised(AnalysisInconclusive, lambda: client.query_by(BY_CLASS, "class"))

    assert (
        f"{MAX_SERIES + 1} series, more than the {MAX_SERIES} a comparison by class reads: "
        "aggregate the query by (class) into fewer series"
    ) in str(err)
    assert "c-0" not in str(err)


def test_query_by_reads_as_many_series_as_the_cap(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(by_class(*((f"c-{i}", str(i)) for i in range(MAX_SERIES))))

    numbers = client.query_by(BY_CLASS, "class")

    assert len(numbers) == MAX_SERIES
    assert numbers[f"c-{MAX_SERIES - 1}"] == MAX_SERIES - 1


def test_query_by_oversized_answer_says_to_aggregate_by_the_label(
    prom: FakeSeldon, settings: PrometheusSettings
) -> None:
    prom.reply(by_class(*((f"c-{i}", "1") for i in range(100))))
    with PrometheusClient(settings, max_response_bytes=1000) as c:
        err = raised(AnalysisInconclusive, lambda: c.query_by(BY_CLASS, "class"))

    assert "larger than 1000 bytes, too many series to compare: aggregate the query by " in str(err)


def test_query_by_a_label_that_is_not_a_classic_name_is_quoted_in_the_hint(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(vector(({"pod": "a"}, "1")))

    err = raised(AnalysisInconclusive, lambda: client.query_by(BY_CLASS, "model.class"))

    assert 'aggregate the query by ("model.class")' in str(err)


def test_query_by_empty_label_is_invalid_without_a_request(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    err = raised(InvalidQuery, lambda: client.query_by(BY_CLASS, " "))

    assert "the label to tell series apart by is empty" in str(err)
    assert prom.requests == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (success({"resultType": "vector", "result": [1]}), "a vector sample that is not an object"),
        (
            success({"resultType": "vector", "result": [{"value": [TS, "1"]}]}),
            "a vector sample without a metric object",
        ),
        (
            success(
                {"resultType": "vector", "result": [{"metric": {"class": 7}, "value": [TS, "1"]}]}
            ),
            "a label value that is not a string",
        ),
        (by_class(("setosa", "one")), "a sample value that is not a number"),
        (success({"resultType": "histogram", "result": []}), "an unknown resultType"),
    ],
    ids=["sample-not-object", "no-metric", "value-not-string", "word-value", "unknown-type"],
)
def test_query_by_malformed_vector_is_unexpected(
    prom: FakeSeldon, client: PrometheusClient, answer: Canned, expected: str
) -> None:
    prom.reply(answer)

    err = raised(UnexpectedResponse, lambda: client.query_by(BY_CLASS, "class"))

    assert expected in str(err)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (failure(400, "bad_data", "parse error"), InvalidQuery),
        (failure(422, "execution", "duplicate series"), AnalysisInconclusive),
        (failure(503, "timeout", "query timed out", **{"Retry-After": "7"}), MetricsUnavailable),
        (Canned(401, b"denied", content_type="text/plain"), AuthenticationFailed),
        (Canned(404, b"404 page not found", content_type="text/plain"), UnexpectedResponse),
        (failure(200, "bad_data", "from a proxy"), InvalidQuery),
        (Canned(200, b"<html>login</html>", content_type="text/html"), UnexpectedResponse),
    ],
    ids=["400", "422", "503", "401", "404", "error-with-200", "html"],
)
def test_query_by_error_answer_maps_like_query(
    prom: FakeSeldon,
    client: PrometheusClient,
    answer: Canned,
    expected: type[PromotionError],
) -> None:
    prom.reply(answer, answer)

    by_query = raised(expected, lambda: client.query(BY_CLASS))
    by_label = raised(expected, lambda: client.query_by(BY_CLASS, "class"))

    assert str(by_label) == str(by_query)
    assert (by_label.http_status, by_label.retry_after) == (
        by_query.http_status,
        by_query.retry_after,
    )


def test_query_by_observer_sees_one_call_with_its_result(
    prom: FakeSeldon, settings: PrometheusSettings
) -> None:
    seen: list[str] = []
    prom.reply(by_class(("setosa", "1")), vector(), failure(400, "bad_data", "x"))
    with PrometheusClient(settings, observer=lambda result, _: seen.append(result)) as c:
        c.query_by(BY_CLASS, "class")
        assert seen == ["ok"]
        raised(AnalysisInconclusive, lambda: c.query_by(BY_CLASS, "class"))
        raised(InvalidQuery, lambda: c.query_by(BY_CLASS, "class"))

    assert seen == ["ok", "AnalysisInconclusive", "Invalid"]


def test_query_by_never_shows_the_token_in_label_values(
    prom: FakeSeldon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    path.write_text(OPAQUE_TOKEN)
    prom.reply(
        vector(({"class": OPAQUE_TOKEN, "pod": "a"}, "1"), ({"class": OPAQUE_TOKEN}, "2")),
        vector(({"pod": OPAQUE_TOKEN}, "1")),
        by_class((OPAQUE_TOKEN, "NaN")),
    )
    settings = PrometheusSettings(url=server_url(prom), bearer_token_file=path)
    with caplog.at_level(logging.DEBUG), PrometheusClient(settings) as c:
        errors = [raised(AnalysisInconclusive, lambda: c.query_by("x", "class")) for _ in range(3)]

    for text in [str(e) for e in errors] + [r.getMessage() for r in caplog.records]:
        assert OPAQUE_TOKEN not in text
    assert all("[REDACTED]" in str(e) for e in errors)


# -- firing alerts ---------------------------------------------------------------------------

ERROR_RATE_ALERT = {
    "__name__": "ALERTS",
    "alertname": "PredictorErrorRateHigh",
    "alertstate": "firing",
    "namespace": "production",
    "deployment_name": "iris",
    "predictor_name": "main",
}


def test_no_alert_firing_is_an_empty_list(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(vector())

    assert client.firing_alerts({"namespace": "production"}) == []


def test_firing_alerts_are_their_label_sets_without_the_metric_name(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    other = {**ERROR_RATE_ALERT, "alertname": "LatencyHigh"}
    prom.reply(vector((ERROR_RATE_ALERT, "1"), (other, "1")))

    alerts = client.firing_alerts({"deployment_name": "iris"})

    assert [a["alertname"] for a in alerts] == ["LatencyHigh", "PredictorErrorRateHigh"]
    assert alerts[1] == {k: v for k, v in ERROR_RATE_ALERT.items() if k != "__name__"}


def test_firing_alerts_selects_firing_alerts_by_the_labels_in_one_instant_query(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(vector())

    client.firing_alerts({"namespace": "production", "deployment_name": "iris"})

    (request,) = prom.requests
    assert (request.method, request.path) == ("POST", QUERY_PATH)
    assert form(request)["query"] == [
        'ALERTS{alertstate="firing", namespace="production", deployment_name="iris"}'
    ]


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("two\nlines\ttab", '"two\\nlines\\ttab"'),
        ("bell\x07", '"bell\\u0007"'),
        ('"}, up{a="', '"\\"}, up{a=\\""'),
        ("grüße", '"grüße"'),
    ],
    ids=["quotes", "backslash", "line-breaks", "control", "injection", "unicode"],
)
def test_alert_label_values_are_escaped_as_promql_strings(value: str, literal: str) -> None:
    assert firing_alerts_query({"team": value}) == f'ALERTS{{alertstate="firing", team={literal}}}'


@pytest.mark.parametrize(
    "name", ["predictor-name", "0day", "", "alertstate", "__name__", "a b"], ids=repr
)
def test_a_label_name_that_cannot_be_matched_is_invalid_without_a_request(
    prom: FakeSeldon, client: PrometheusClient, name: str
) -> None:
    err = raised(InvalidQuery, lambda: client.firing_alerts({"namespace": "production", name: "x"}))

    assert (err.reason, err.retryable) == ("Invalid", False)
    assert "alerts query on Prometheus" in str(err)
    assert prom.requests == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (failure(400, "bad_data", "parse error"), InvalidQuery),
        (failure(503, "timeout", "query timed out", **{"Retry-After": "7"}), MetricsUnavailable),
        (Canned(401, b"denied", content_type="text/plain"), AuthenticationFailed),
        (Canned(404, b"404 page not found", content_type="text/plain"), UnexpectedResponse),
        (failure(200, "execution", "from a proxy"), AnalysisInconclusive),
        (Canned(200, b"<html>login</html>", content_type="text/html"), UnexpectedResponse),
    ],
    ids=["400", "503", "401", "404", "error-with-200", "html"],
)
def test_firing_alerts_errors_map_like_query(
    prom: FakeSeldon,
    client: PrometheusClient,
    answer: Canned,
    expected: type[PromotionError],
) -> None:
    prom.reply(answer)

    err = raised(expected, lambda: client.firing_alerts({"namespace": "production"}))

    assert "ALERTS{alertstate" in str(err) and server_url(prom) in str(err)
    if expected is MetricsUnavailable:
        assert (err.http_status, err.retry_after) == (503, 7.0)


def test_firing_alerts_connection_refused_is_unavailable() -> None:
    with PrometheusClient(PrometheusSettings(url=free_port_url(), timeout=2.0)) as c:
        err = raised(MetricsUnavailable, lambda: c.firing_alerts({"namespace": "production"}))

    assert err.retryable


def test_firing_alerts_that_are_not_a_vector_are_inconclusive(
    prom: FakeSeldon, client: PrometheusClient
) -> None:
    prom.reply(scalar("1"), success({"resultType": "vector", "result": [{"value": [TS, "1"]}]}))

    raised(AnalysisInconclusive, lambda: client.firing_alerts({"namespace": "production"}))
    raised(UnexpectedResponse, lambda: client.firing_alerts({"namespace": "production"}))


def test_firing_alerts_are_seen_by_the_observer(
    prom: FakeSeldon, settings: PrometheusSettings
) -> None:
    seen: list[str] = []
    prom.reply(vector((ERROR_RATE_ALERT, "1")), failure(503, "unavailable", "down"))
    with PrometheusClient(settings, observer=lambda result, _: seen.append(result)) as c:
        c.firing_alerts({"namespace": "production"})
        raised(MetricsUnavailable, lambda: c.firing_alerts({"namespace": "production"}))
        raised(InvalidQuery, lambda: c.firing_alerts({"bad-name": "x"}))

    assert seen == ["ok", "MetricsUnavailable", "Invalid"]


# -- sharing ---------------------------------------------------------------------------------


def test_one_client_serves_many_threads_at_once(prom: FakeSeldon, client: PrometheusClient) -> None:
    prom.reply(*(scalar("4") for _ in range(16)))
    results: list[float] = []
    threads = [
        threading.Thread(target=lambda: results.append(client.query(QUERY))) for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert results == [4.0] * 16
    assert len(prom.requests) == 16
