"""The one place that sorts HTTP answers into errors, reads Retry-After and redacts text."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from promotion_operator.clients.http_failures import (
    IDENTITY_PROVIDER,
    MAX_RETRY_AFTER_SECONDS,
    SELDON_DEPLOY,
    error_class,
    error_for_status,
    redact,
    retry_after,
    transport_problem,
)
from promotion_operator.errors import (
    AuthenticationFailed,
    Conflict,
    Forbidden,
    IdentityProviderUnavailable,
    Invalid,
    NotFound,
    PromotionError,
    SeldonDeployUnavailable,
    UnexpectedResponse,
)

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, Invalid),
        (401, AuthenticationFailed),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (422, Invalid),
        (408, SeldonDeployUnavailable),
        (429, SeldonDeployUnavailable),
        (500, SeldonDeployUnavailable),
        (503, SeldonDeployUnavailable),
        (302, UnexpectedResponse),
        (405, UnexpectedResponse),
        (415, UnexpectedResponse),
    ],
)
def test_seldon_deploy_statuses_sort_into_errors(
    status: int, expected: type[PromotionError]
) -> None:
    assert error_class(SELDON_DEPLOY, status) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, AuthenticationFailed),
        (401, AuthenticationFailed),
        (403, AuthenticationFailed),
        (429, IdentityProviderUnavailable),
        (503, IdentityProviderUnavailable),
        (404, IdentityProviderUnavailable),
    ],
)
def test_identity_provider_statuses_sort_into_errors(
    status: int, expected: type[PromotionError]
) -> None:
    assert error_class(IDENTITY_PROVIDER, status) is expected


def test_unavailable_answers_carry_retry_after() -> None:
    error = error_for_status(SELDON_DEPLOY, 429, "slow down", {"Retry-After": "7"})

    assert (type(error), error.retry_after, error.http_status) == (
        SeldonDeployUnavailable,
        7.0,
        429,
    )


def test_refusals_ignore_retry_after() -> None:
    error = error_for_status(IDENTITY_PROVIDER, 401, "refused", {"Retry-After": "7"})

    assert error.retry_after is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 12 ", 12.0), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_reads_seconds_and_dates(header: str, seconds: float) -> None:
    assert retry_after({"Retry-After": header}) == seconds


def test_retry_after_date_in_the_future_is_the_time_until_it() -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")

    seconds = retry_after({"Retry-After": header})

    assert seconds is not None and 110 <= seconds <= 121


@pytest.mark.parametrize("header", ["86400", "99999999999999999999999"])
def test_retry_after_is_bounded(header: str) -> None:
    assert retry_after({"Retry-After": header}) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("header", ["", "soon", "-5", "1.5", "NaN"])
def test_unreadable_retry_after_is_none(header: str) -> None:
    assert retry_after({"Retry-After": header}) is None


def test_no_retry_after_header_is_none() -> None:
    assert retry_after({}) is None


def test_redact_replaces_given_secrets() -> None:
    assert redact("bad password hunter2!", ["hunter2!"]) == "bad password [REDACTED]"


def test_redact_replaces_jwts_and_bearer_credentials() -> None:
    text = redact(f"token {JWT} refused; header Bearer opaque-credential-123")

    assert JWT not in text and "opaque-credential-123" not in text
    assert text == "token [REDACTED] refused; header Bearer [REDACTED]"


def test_redact_makes_one_printable_line() -> None:
    assert redact("line one\n\x00line\ttwo  ") == "line one line two"


def test_redact_truncates_long_text() -> None:
    text = redact("x" * 5000 + "tail", limit=50)

    assert text == "x" * 49 + "…"


def test_transport_problem_of_a_timeout_names_the_timeout() -> None:
    assert transport_problem(requests.Timeout("read timed out"), 2.5) == "timed out after 2.5 s"


def test_transport_problem_of_a_refused_connection_quotes_the_errno() -> None:
    error = requests.ConnectionError(
        "HTTPConnectionPool(host='x', port=1): Max retries exceeded "
        "(Caused by NewConnectionError('[Errno 111] Connection refused'))"
    )

    assert transport_problem(error, 1) == "connection failed: [Errno 111] Connection refused"


def test_transport_problem_of_a_tls_failure_says_why() -> None:
    error = requests.exceptions.SSLError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"
    )

    assert transport_problem(error, 1) == (
        "TLS error: certificate verify failed: self-signed certificate"
    )
