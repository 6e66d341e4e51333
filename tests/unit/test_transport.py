"""One HTTP exchange as every client makes it: the body read up to a cap, the reason
phrase, the debug line and the observer, against a loopback server."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests

from promotion_operator.clients.transport import (
    Reply,
    UnreadableBody,
    exchange,
    pooled_session,
    reason_phrase,
)
from tests.unit.test_seldon_client import Canned, FakeSeldon

log = logging.getLogger("tests.transport")


@pytest.fixture
def server() -> Iterator[FakeSeldon]:
    fake = FakeSeldon()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with pooled_session(pool_connections=1, pool_maxsize=2) as pooled:
        yield pooled


def get(
    session: requests.Session,
    url: str,
    *,
    success_cap: int = 100,
    error_cap: int = 10,
    seen: list[tuple[int | None, float]] | None = None,
    truncate: bool = False,
    logger: logging.Logger | None = log,
) -> Reply:
    return exchange(
        session,
        "GET",
        url,
        headers={"Accept": "application/json"},
        timeout=2.0,
        verify=True,
        success_cap=success_cap,
        error_cap=error_cap,
        label="GET /thing",
        log=logger,
        observer=None if seen is None else lambda status, seconds: seen.append((status, seconds)),
        truncate=truncate,
    )


def test_a_body_as_long_as_the_cap_is_read_whole(
    server: FakeSeldon, session: requests.Session
) -> None:
    server.reply(Canned(200, b"x" * 100))

    reply = get(session, server.url)

    assert (reply.status, reply.body) == (200, b"x" * 100)


def test_a_body_one_byte_over_the_cap_is_none(
    server: FakeSeldon, session: requests.Session
) -> None:
    server.reply(Canned(200, b"x" * 101))

    assert get(session, server.url).body is None


def test_a_body_without_content_length_is_cut_off_once_past_the_cap(
    server: FakeSeldon, session: requests.Session
) -> None:
    server.reply(Canned(200, stream_bytes=5 * 1024 * 1024))

    assert get(session, server.url, success_cap=1024).body is None


def test_an_error_answer_is_read_with_the_error_cap(
    server: FakeSeldon, session: requests.Session
) -> None:
    server.reply(Canned(503, b"0123456789"), Canned(503, b"0123456789!"))

    assert get(session, server.url).body == b"0123456789"
    assert get(session, server.url).body is None


def test_truncate_reads_the_start_of_a_long_body(
    server: FakeSeldon, session: requests.Session
) -> None:
    server.reply(Canned(503, b"0123456789!"), Canned(503, b"0123"))

    assert get(session, server.url, truncate=True).body == b"0123456789"
    assert get(session, server.url, truncate=True).body == b"0123"


def test_truncate_stops_reading_at_the_cap_of_an_endless_body(
    server: FakeSeldon, session: requests.Session
) -> None:
    server.reply(Canned(500, stream_bytes=5 * 1024 * 1024))

    assert get(session, server.url, truncate=True, error_cap=4096).body == b" " * 4096


def test_truncate_with_a_cap_of_zero_reads_nothing(
    server: FakeSeldon, session: requests.Session
) -> None:
    server.reply(Canned(200, b"ok"))

    assert get(session, server.url, success_cap=0, truncate=True).body == b""


def test_a_broken_body_raises_unreadable_body_with_the_status_and_headers(
    server: FakeSeldon, session: requests.Session
) -> None:
    # Promises 100 bytes, sends none and hangs up.
    headers = {"Retry-After": "7", "Content-Length": "100", "Connection": "close"}
    server.reply(Canned(503, headers=headers))

    with pytest.raises(UnreadableBody) as caught:
        get(session, server.url, error_cap=1000, truncate=True)

    assert (caught.value.status, caught.value.headers["Retry-After"]) == (503, "7")
    assert isinstance(caught.value.error, requests.RequestException)


def test_without_a_log_there_is_no_debug_line_and_a_failing_observer_is_still_logged(
    server: FakeSeldon, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    server.reply(Canned(200, b"ok"))

    def broken(status: int | None, seconds: float) -> None:
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.DEBUG):
        reply = exchange(
            session,
            "GET",
            server.url,
            headers={},
            timeout=2.0,
            verify=True,
            success_cap=10,
            error_cap=10,
            label="GET /thing",
            log=None,
            observer=broken,
        )

    assert reply.body == b"ok"
    lines = [
        (r.name, r.getMessage())
        for r in caplog.records
        if r.name.startswith(("promotion_operator", "tests"))
    ]
    assert lines == [
        ("promotion_operator.clients.transport", "request observer failed for GET /thing")
    ]


def test_redirects_are_not_followed(server: FakeSeldon, session: requests.Session) -> None:
    server.reply(Canned(302, headers={"Location": server.url + "/elsewhere"}))

    assert get(session, server.url).status == 302
    assert len(server.requests) == 1


def test_the_observer_gets_the_status_and_the_seconds_and_the_log_names_the_label(
    server: FakeSeldon, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    server.reply(Canned(404, {"message": "no such thing"}))
    seen: list[tuple[int | None, float]] = []

    with caplog.at_level(logging.DEBUG, logger=log.name):
        get(session, server.url, seen=seen)

    assert [status for status, _ in seen] == [404]
    assert seen[0][1] >= 0
    assert any(r.getMessage().startswith("GET /thing -> 404 in ") for r in caplog.records)


def test_no_answer_raises_what_requests_raised_and_the_observer_sees_no_status(
    session: requests.Session,
) -> None:
    seen: list[tuple[int | None, float]] = []

    with pytest.raises(requests.ConnectionError):
        get(session, "http://127.0.0.1:9", seen=seen)

    assert [status for status, _ in seen] == [None]


def test_a_failing_observer_is_logged_and_the_reply_still_returned(
    server: FakeSeldon, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    server.reply(Canned(200, b"ok"))

    def broken(status: int | None, seconds: float) -> None:
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.ERROR, logger=log.name):
        reply = exchange(
            session,
            "GET",
            server.url,
            headers={},
            timeout=2.0,
            verify=True,
            success_cap=10,
            error_cap=10,
            label="GET /thing",
            log=log,
            observer=broken,
        )

    assert reply.body == b"ok"
    assert [r.getMessage() for r in caplog.records] == ["request observer failed for GET /thing"]


@pytest.mark.parametrize(
    ("status", "phrase"),
    [(200, "OK"), (404, "Not Found"), (429, "Too Many Requests"), (299, ""), (599, "")],
)
def test_the_reason_phrase_is_the_standard_one_or_empty(status: int, phrase: str) -> None:
    assert reason_phrase(status) == phrase
