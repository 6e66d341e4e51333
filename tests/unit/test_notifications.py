"""Notifications on promotion events, delivered to a real webhook receiver on loopback.

The receiver (``tests.harness.receiver``) records every request and answers as each
test scripts it; nothing in ``requests`` is patched. Waiting is done on the
receiver's arrivals, on Events a held answer waits for, and on ``Notifier.close``
(which drains the queue), never on sleeps.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from promotion_operator.clients.notifications import (
    CLOUDEVENTS_CONTENT_TYPE,
    NOTICE_KINDS,
    Notice,
    NoticeKind,
    Notifier,
    cloudevent,
    cloudevent_type,
    notice_data,
    slack_message,
)
from promotion_operator.config.settings import NotificationSink, SinkKind
from promotion_operator.control.metrics import Metrics
from tests.harness.receiver import Answer, Receiver, refused_url
from tests.unit.test_seldon_client import Canned, FakeSeldon

UID = "6f1c2b9e-4d3a-4c1e-9a57-0f2e8d7c6b5a"
AT = datetime(2025, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
# Recognisable pieces of a webhook URL, in its path, its query and its user info.
TOKEN = "XoXbT0kEn5ecReT9f8e7d6c5"
QUERY_TOKEN = "sig-Q7u3rYt0k3n-2a4b6c8d"
LOGGER = "promotion_operator.clients.notifications"


def notice(kind: NoticeKind = "Succeeded", generation: int = 1, **changes: Any) -> Notice:
    values: dict[str, Any] = {
        "kind": kind,
        "namespace": "production",
        "name": "iris-to-production",
        "uid": UID,
        "generation": generation,
        "retry": 0,
        "phase": "Succeeded",
        "reason": "Succeeded",
        "message": "production/iris is Available",
        "source": "staging/iris",
        "target": "production/iris",
        "at": AT,
    }
    values.update(changes)
    return Notice(**values)


def write_url(path: Path, url: str) -> Path:
    path.write_text(url + "\n")
    return path


def sample(metrics: Metrics, sink: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "modelpromotion_notifications_total", {"sink": sink, "result": result}
    )
    return value or 0.0


def generations(requests: list[Any]) -> list[int]:
    """The notices' generations, in the order the receiver got them (either body shape)."""
    found = []
    for request in requests:
        body = request.json()
        if "data" in body:
            found.append(body["data"]["generation"])
        else:
            found.append(int(re.search(r"\(generation (\d+)", body["text"]).group(1)))  # type: ignore[union-attr]
    return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


NotifierFactory = Callable[..., Notifier]


@pytest.fixture
def make_notifier(metrics: Metrics) -> Iterator[NotifierFactory]:
    """Builds Notifiers with short backoffs, counted in ``metrics``; closes them all after."""
    made: list[Notifier] = []

    def make(*sinks: NotificationSink, **options: Any) -> Notifier:
        options = {
            "observer": metrics.notification_observer(),
            "backoff": 0.01,
            "timeout": 5.0,
            **options,
        }
        notifier = Notifier(sinks, **options)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close(timeout=1)


@pytest.fixture
def sink_for(tmp_path: Path) -> Callable[..., NotificationSink]:
    def make(url: str, kind: SinkKind = "slack", name: str | None = None) -> NotificationSink:
        name = name or kind
        return NotificationSink(name, kind, write_url(tmp_path / f"{name}-url", url))

    return make


# -- what is sent ----------------------------------------------------------------------------


def test_a_path_runs_notice_names_its_stage_and_path() -> None:
    staged = notice(path="iris", stage="staging")

    assert (
        slack_message(staged)["text"]
        .splitlines()[0]
        .endswith("; stage staging of PromotionPath production/iris")
    )
    assert (notice_data(staged)["path"], notice_data(staged)["stage"]) == ("iris", "staging")


def test_a_notice_of_a_promotion_of_its_own_has_no_path_or_stage() -> None:
    data = notice_data(notice())

    assert "path" not in data and "stage" not in data
    assert "PromotionPath" not in slack_message(notice())["text"]


def test_slack_text_names_the_promotion_the_move_phase_reason_and_message() -> None:
    message = slack_message(notice(retry=2, generation=3))

    assert message["text"] == (
        "ModelPromotion production/iris-to-production succeeded: "
        "staging/iris → production/iris (generation 3, retry 2)\n"
        "Phase Succeeded, reason Succeeded: production/iris is Available"
    )
    [attachment] = message["attachments"]
    assert attachment["color"] == "#2eb886"
    assert attachment["fallback"] == message["text"].split("\n")[0]
    assert {f["title"]: f["value"] for f in attachment["fields"]} == {
        "Source": "staging/iris",
        "Target": "production/iris",
        "Phase": "Succeeded",
        "Reason": "Succeeded",
    }
    assert attachment["ts"] == int(AT.timestamp())
    assert set(message) == {"text", "attachments"}


@pytest.mark.parametrize(
    ("kind", "phase", "headline", "color"),
    [
        ("RunStarted", "Validating", "started a run", "#439fe0"),
        ("AwaitingApproval", "AwaitingApproval", "is awaiting approval", "#daa038"),
        ("Succeeded", "Succeeded", "succeeded", "#2eb886"),
        ("Failed", "Failed", "failed", "#a30200"),
        ("RolledBack", "RolledBack", "failed and was rolled back", "#a30200"),
        ("Aborted", "Failed", "was aborted", "#808080"),
    ],
)
def test_slack_headline_and_colour_follow_the_kind(
    kind: NoticeKind, phase: str, headline: str, color: str
) -> None:
    message = slack_message(notice(kind, phase=phase, reason=kind))

    assert message["text"].startswith(f"ModelPromotion production/iris-to-production {headline}: ")
    assert f"Phase {phase}, reason {kind}: " in message["text"]
    assert message["attachments"][0]["color"] == color


def test_slack_text_escapes_what_slack_reads_as_markup() -> None:
    message = slack_message(notice(message="image <!channel> & <https://x|y>"))

    assert message["text"].endswith("image &lt;!channel&gt; &amp; &lt;https://x|y&gt;")


def test_slack_text_without_a_message_ends_at_the_reason() -> None:
    assert slack_message(notice(message=""))["text"].endswith("Phase Succeeded, reason Succeeded")


def test_cloudevent_has_the_required_and_optional_attributes() -> None:
    event = cloudevent(notice("RolledBack", generation=4, phase="RolledBack", reason="RolledBack"))

    assert event["specversion"] == "1.0"
    assert uuid.UUID(event["id"]).version == 4
    assert event["source"] == (
        "/apis/deploy.mlops.dev/v1alpha1/namespaces/production/modelpromotions/iris-to-production"
    )
    assert event["type"] == "dev.mlops.deploy.modelpromotion.rolledback"
    assert event["subject"] == "production/iris"
    assert event["time"] == "2025-03-14T15:09:26.535000Z"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {
        "kind": "RolledBack",
        "namespace": "production",
        "name": "iris-to-production",
        "uid": UID,
        "generation": 4,
        "retry": 0,
        "phase": "RolledBack",
        "reason": "RolledBack",
        "message": "production/iris is Available",
        "source": "staging/iris",
        "target": "production/iris",
        "at": "2025-03-14T15:09:26.535000Z",
    }


def test_every_cloudevent_has_its_own_id() -> None:
    assert cloudevent(notice())["id"] != cloudevent(notice())["id"]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("RunStarted", "dev.mlops.deploy.modelpromotion.runstarted"),
        ("AwaitingApproval", "dev.mlops.deploy.modelpromotion.awaitingapproval"),
        ("Succeeded", "dev.mlops.deploy.modelpromotion.succeeded"),
        ("Failed", "dev.mlops.deploy.modelpromotion.failed"),
        ("RolledBack", "dev.mlops.deploy.modelpromotion.rolledback"),
        ("Aborted", "dev.mlops.deploy.modelpromotion.aborted"),
    ],
)
def test_cloudevent_type_is_the_kind_lowercased(kind: NoticeKind, expected: str) -> None:
    assert cloudevent_type(kind) == expected
    assert cloudevent(notice(kind))["type"] == expected


def test_every_kind_has_a_type() -> None:
    assert len({cloudevent_type(kind) for kind in NOTICE_KINDS}) == 6


@pytest.mark.parametrize(
    "at",
    [
        datetime(2025, 3, 14, 17, 9, 26, tzinfo=timezone(timedelta(hours=2))),
        datetime(2025, 3, 14, 15, 9, 26),  # naive: taken as UTC
    ],
)
def test_times_are_rfc3339_in_utc(at: datetime) -> None:
    assert cloudevent(notice(at=at))["time"] == "2025-03-14T15:09:26Z"
    assert notice_data(notice(at=at))["at"] == "2025-03-14T15:09:26Z"


# -- delivery --------------------------------------------------------------------------------


def test_slack_sink_posts_the_message_as_json(
    receiver: Receiver, make_notifier: NotifierFactory, sink_for: Callable[..., NotificationSink]
) -> None:
    notifier = make_notifier(sink_for(receiver.url("/services/T1/B2/" + TOKEN)))

    notifier.notify(notice())
    assert notifier.close(timeout=10)

    [request] = receiver.received
    assert (request.method, request.path) == ("POST", "/services/T1/B2/" + TOKEN)
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    assert request.json() == slack_message(notice())


def test_cloudevents_sink_posts_a_structured_mode_event(
    receiver: Receiver, make_notifier: NotifierFactory, sink_for: Callable[..., NotificationSink]
) -> None:
    notifier = make_notifier(sink_for(receiver.url("/events"), "cloudevents"))

    notifier.notify(notice("RunStarted", phase="Validating", reason="Validating"))
    assert notifier.close(timeout=10)

    [request] = receiver.received
    assert request.method == "POST"
    assert request.header("Content-Type") == CLOUDEVENTS_CONTENT_TYPE
    assert CLOUDEVENTS_CONTENT_TYPE.startswith("application/cloudevents+json")
    event = request.json()
    for required in ("specversion", "id", "source", "type"):
        assert isinstance(event[required], str) and event[required]
    assert event["specversion"] == "1.0"
    assert event["type"] == "dev.mlops.deploy.modelpromotion.runstarted"
    assert event["datacontenttype"] == "application/json"
    assert event["time"] == "2025-03-14T15:09:26.535000Z"
    assert event["data"]["phase"] == "Validating"


def test_a_retried_cloudevent_keeps_its_id_and_the_next_gets_a_new_one(
    receiver: Receiver, make_notifier: NotifierFactory, sink_for: Callable[..., NotificationSink]
) -> None:
    receiver.script(Answer(503))
    notifier = make_notifier(sink_for(receiver.url("/events"), "cloudevents"))

    notifier.notify(notice(generation=1))
    notifier.notify(notice(generation=2))
    assert notifier.close(timeout=10)

    first, retried, second = (r.json() for r in receiver.received)
    assert first == retried
    assert second["id"] != first["id"]


def test_each_sink_gets_every_notice_in_the_order_notified(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
) -> None:
    # Every fifth request to each sink fails once: retries must not reorder anything.
    receiver.script(*[Answer(500) if i % 5 == 0 else Answer() for i in range(100)])
    notifier = make_notifier(
        sink_for(receiver.url("/slack")), sink_for(receiver.url("/events"), "cloudevents")
    )

    for generation in range(1, 101):
        notifier.notify(notice(generation=generation))
    assert notifier.close(timeout=30)

    delivered: dict[str, list[Any]] = {"/slack": [], "/events": []}
    for request in receiver.received:
        delivered[request.path].append(request)
    for path, requests in delivered.items():
        sent = generations(requests)
        # A retry repeats the notice just sent; nothing comes back after a later one.
        repeats_removed = [g for i, g in enumerate(sent) if i == 0 or g != sent[i - 1]]
        assert repeats_removed == list(range(1, 101)), path
    assert len(receiver.received) == 200 + 20  # the 20 failed requests were retried
    assert sample(metrics, "slack", "delivered") == 100
    assert sample(metrics, "cloudevents", "delivered") == 100


def test_notify_returns_while_the_receiver_is_still_answering(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
) -> None:
    release = threading.Event()
    receiver.script(Answer(hold=release))
    notifier = make_notifier(sink_for(receiver.url()))

    notifier.notify(notice(generation=1))
    # The first POST has arrived and is held: notify returned without waiting for it.
    receiver.wait_for(1)
    notifier.notify(notice(generation=2))
    assert not release.is_set()
    assert sample(metrics, "slack", "delivered") == 0
    assert len(receiver.received) == 1

    release.set()
    assert notifier.close(timeout=10)
    assert generations(receiver.received) == [1, 2]
    assert sample(metrics, "slack", "delivered") == 2


def test_a_receiver_that_is_down_is_retried_then_given_up_with_one_warning(
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = make_notifier(sink_for(refused_url()))

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        notifier.notify(notice(generation=7))
        assert notifier.close(timeout=10)

    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert [r.getMessage().split(" failed")[0] for r in retries] == [
        f"notification sink slack: attempt {n} of 4 for Succeeded of "
        "production/iris-to-production (generation 7)"
        for n in (1, 2, 3)
    ]
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.getMessage() == (
        "notification sink slack: gave up on Succeeded of production/iris-to-production "
        "(generation 7) after 4 attempts: connection failed: [Errno 111] Connection refused"
    )
    assert sample(metrics, "slack", "failed") == 1
    assert sample(metrics, "slack", "delivered") == 0


def test_dropped_connections_are_retried_as_many_times_as_allowed(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.script(*[Answer(drop=True)] * 3)
    notifier = make_notifier(sink_for(receiver.url()), attempts=3)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        notifier.notify(notice())
        assert notifier.close(timeout=10)

    assert len(receiver.received) == 3
    [warning] = caplog.records
    assert "after 3 attempts: connection failed" in warning.getMessage()
    assert sample(metrics, "slack", "failed") == 1


def test_500_twice_then_200_is_delivered_after_retries_with_backoff(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.script(Answer(500, b"boom"), Answer(500, b"boom"))
    notifier = make_notifier(sink_for(receiver.url()), backoff=0.1)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        notifier.notify(notice())
        assert notifier.close(timeout=10)

    first, second, third = receiver.received
    assert first.body == second.body == third.body
    # 0.1 s, then 0.2 s (lower bounds only: a slow machine only waits longer).
    assert second.at - first.at >= 0.1
    assert third.at - second.at >= 0.2
    assert caplog.records == []
    assert (sample(metrics, "slack", "delivered"), sample(metrics, "slack", "failed")) == (1, 0)
    histogram = metrics.registry.get_sample_value(
        "modelpromotion_notification_delivery_seconds_count", {"sink": "slack"}
    )
    assert histogram == 1


def test_429_retry_after_is_honoured(
    receiver: Receiver, make_notifier: NotifierFactory, sink_for: Callable[..., NotificationSink]
) -> None:
    receiver.script(Answer(429, headers={"Retry-After": "1"}))
    notifier = make_notifier(sink_for(receiver.url()), backoff=0.01)

    notifier.notify(notice())
    assert notifier.close(timeout=10)

    throttled, retried = receiver.received
    assert retried.at - throttled.at >= 0.95


def test_retry_after_is_bounded(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
) -> None:
    receiver.script(Answer(503, headers={"Retry-After": "3600"}))
    notifier = make_notifier(sink_for(receiver.url()), backoff=0.01, max_retry_after=0.2)

    notifier.notify(notice())
    # Delivered long before the hour the server asked for.
    assert notifier.close(timeout=10)

    throttled, retried = receiver.received
    assert retried.at - throttled.at >= 0.2
    assert sample(metrics, "slack", "delivered") == 1


def test_a_refusal_is_not_retried_and_the_answer_is_quoted(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.script(Answer(404, b"no_service"))
    notifier = make_notifier(sink_for(receiver.url()))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        notifier.notify(notice())
        assert notifier.close(timeout=10)

    assert len(receiver.received) == 1
    [warning] = caplog.records
    assert warning.getMessage().endswith("after 1 attempt: HTTP 404 Not Found: no_service")
    assert sample(metrics, "slack", "failed") == 1


def test_only_the_start_of_a_long_answer_is_quoted_and_a_token_cut_there_is_not(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Spaces collapse in the quote: the token's first characters, at the 4 KiB cut,
    # would be all it shows were the cut not trimmed.
    receiver.script(Answer(404, b" " * 4090 + TOKEN.encode() + b" " * 100_000))
    notifier = make_notifier(sink_for(receiver.url("/" + TOKEN)))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        notifier.notify(notice())
        assert notifier.close(timeout=10)

    [warning] = caplog.records
    assert warning.getMessage().endswith("after 1 attempt: HTTP 404 Not Found")
    assert TOKEN[:6] not in caplog.text


def test_an_answer_that_breaks_while_read_is_judged_by_its_status_and_retry_after(
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeSeldon()
    # Promises 100 bytes, sends none and hangs up; then takes the retry.
    broken = {"Retry-After": "1", "Content-Length": "100", "Connection": "close"}
    server.reply(Canned(503, headers=broken), Canned(200))
    try:
        notifier = make_notifier(sink_for(server.url), backoff=0.01)
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            notifier.notify(notice())
            assert notifier.close(timeout=10)
    finally:
        server.stop()

    assert len(server.requests) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.endswith("failed (HTTP 503 Service Unavailable); retrying in 1 s") for m in messages
    )
    assert messages[-1].startswith("notification sink slack: delivered ")


def test_a_redirect_is_not_followed(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.script(Answer(301, headers={"Location": receiver.url("/elsewhere")}))
    notifier = make_notifier(sink_for(receiver.url()))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        notifier.notify(notice())
        assert notifier.close(timeout=10)

    assert [r.path for r in receiver.received] == ["/hook"]
    assert (
        caplog.records[0]
        .getMessage()
        .endswith("HTTP 301 Moved Permanently (redirects are not followed)")
    )


def test_a_rotated_url_file_is_used_for_the_next_delivery(
    receiver: Receiver, make_notifier: NotifierFactory, sink_for: Callable[..., NotificationSink]
) -> None:
    sink = sink_for(receiver.url("/old-" + TOKEN))
    notifier = make_notifier(sink)

    notifier.notify(notice(generation=1))
    receiver.wait_for(1)
    write_url(sink.url_file, receiver.url("/new-" + TOKEN))
    notifier.notify(notice(generation=2))
    assert notifier.close(timeout=10)

    assert [r.path for r in receiver.received] == ["/old-" + TOKEN, "/new-" + TOKEN]


def test_a_url_rotated_between_retries_is_used_for_the_retry(
    receiver: Receiver, make_notifier: NotifierFactory, sink_for: Callable[..., NotificationSink]
) -> None:
    release = threading.Event()
    receiver.script(Answer(503, hold=release))
    sink = sink_for(receiver.url("/old"))
    notifier = make_notifier(sink)

    notifier.notify(notice())
    receiver.wait_for(1)
    write_url(sink.url_file, receiver.url("/new"))
    release.set()
    assert notifier.close(timeout=10)

    assert [r.path for r in receiver.received] == ["/old", "/new"]


def test_an_unreadable_url_file_is_retried_then_given_up_naming_the_file(
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = sink_for(refused_url())
    sink.url_file.unlink()
    notifier = make_notifier(sink, attempts=2)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        notifier.notify(notice())
        assert notifier.close(timeout=10)

    [warning] = caplog.records
    assert warning.getMessage().endswith(
        f"after 2 attempts: URL file {sink.url_file} does not exist"
    )
    assert sample(metrics, "slack", "failed") == 1


def test_one_sink_down_does_not_stop_the_other(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
) -> None:
    notifier = make_notifier(
        sink_for(refused_url()), sink_for(receiver.url("/events"), "cloudevents")
    )

    notifier.notify(notice(generation=1))
    notifier.notify(notice(generation=2))
    assert notifier.close(timeout=10)

    assert generations(receiver.received) == [1, 2]
    assert sample(metrics, "slack", "failed") == 2
    assert sample(metrics, "cloudevents", "delivered") == 2


def test_no_secret_reaches_a_log_line_or_a_metric(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    tmp_path: Path,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = f"/services/T0123/B4567/{TOKEN}?key=api&token={QUERY_TOKEN}"
    secret_url = f"http://hook-user:{TOKEN}@127.0.0.1:{receiver.port}{path}"
    # Answers that quote the URL and its token back, as a careless receiver might.
    receiver.script(
        Answer(500, f"no such hook {secret_url}".encode()),
        Answer(502, f"bad gateway for {path}".encode()),
        Answer(400, f"invalid_token {TOKEN} / {QUERY_TOKEN}".encode()),
        Answer(503, (" " * 4086 + TOKEN).encode()),  # the token across the reading limit
        Answer(drop=True),
        Answer(503),
    )
    sinks = [
        NotificationSink("slack", "slack", write_url(tmp_path / "slack-url", secret_url)),
        NotificationSink("cloudevents", "cloudevents", write_url(tmp_path / "ce-url", secret_url)),
        NotificationSink(
            "down", "slack", write_url(tmp_path / "down-url", refused_url(f"/x/{TOKEN}"))
        ),
    ]
    notifier = make_notifier(*sinks, attempts=2)

    with caplog.at_level(logging.DEBUG):
        notifier.notify(notice(generation=1))
        notifier.notify(notice(generation=2))
        assert notifier.close(timeout=20)

    assert len(receiver.received) >= 6
    assert receiver.received[0].header("Authorization") is not None  # user info was used
    assert "gave up" in caplog.text  # there was something to log
    shown = "\n".join(
        [caplog.text, *(str(r.args) for r in caplog.records), repr(notifier), repr(sinks)]
    )
    exposition = generate_latest(metrics.registry).decode()
    for secret in (TOKEN, TOKEN[:8], QUERY_TOKEN, "B4567", "hook-user"):
        assert secret not in shown
        assert secret not in exposition


def test_a_full_queue_drops_the_oldest_and_counts_it(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    receiver.script(Answer(hold=release))
    notifier = make_notifier(sink_for(receiver.url()), queue_size=3)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        notifier.notify(notice(generation=0))
        receiver.wait_for(1)  # generation 0 is in flight, out of the queue
        for generation in range(1, 6):
            notifier.notify(notice(generation=generation))
        dropped = [r.getMessage() for r in caplog.records]
        release.set()
        assert notifier.close(timeout=10)

    assert dropped == [
        "notifications: queue full (3 notices waiting); dropped the oldest, "
        f"Succeeded of production/iris-to-production (generation {g})"
        for g in (1, 2)
    ]
    assert generations(receiver.received) == [0, 3, 4, 5]
    assert sample(metrics, "slack", "dropped") == 2
    assert sample(metrics, "slack", "delivered") == 4


def test_close_drains_the_queue(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
) -> None:
    release = threading.Event()
    receiver.script(Answer(hold=release), Answer(500))
    notifier = make_notifier(sink_for(receiver.url()))
    for generation in range(1, 21):
        notifier.notify(notice(generation=generation))
    receiver.wait_for(1)
    threading.Timer(0.2, release.set).start()

    assert notifier.close(timeout=10)

    # Everything queued when close() was called was delivered before it returned.
    assert sorted(set(generations(receiver.received))) == list(range(1, 21))
    assert sample(metrics, "slack", "delivered") == 20


def test_close_gives_up_on_what_it_cannot_deliver_in_time(
    receiver: Receiver,
    make_notifier: NotifierFactory,
    sink_for: Callable[..., NotificationSink],
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    receiver.script(Answer(hold=release))
    notifier = make_notifier(sink_for(receiver.url()))
    for generation in range(1, 4):
        notifier.notify(notice(generation=generation))
    receiver.wait_for(1)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert notifier.close(timeout=0.1) is False
        notifier.notify(notice(generation=4))
    release.set()

    assert [r.getMessage() for r in caplog.records] == [
        "notifications: stopped after 0.1 s with 2 notice(s) not delivered",
        "notifications: the notifier is closed; dropped "
        "Succeeded of production/iris-to-production (generation 4)",
    ]
    assert sample(metrics, "slack", "dropped") == 3
    assert generations(receiver.received) == [1]


def test_a_notifier_without_sinks_does_nothing(metrics: Metrics) -> None:
    def notifier_threads() -> int:
        return sum(t.name == "promotion-notifier" for t in threading.enumerate())

    before = notifier_threads()
    notifier = Notifier([], observer=metrics.notification_observer())

    notifier.notify(notice())

    assert notifier_threads() <= before  # none started (one left by another test may end)
    assert notifier.close(timeout=0) is True
    assert (
        generate_latest(metrics.registry).decode().count("modelpromotion_notifications_total{") == 0
    )


def test_neither_a_failing_observer_nor_a_bad_notice_stops_delivery(
    receiver: Receiver, sink_for: Callable[..., NotificationSink], caplog: pytest.LogCaptureFixture
) -> None:
    def observer(sink: str, result: str, seconds: float | None) -> None:
        raise RuntimeError(f"observer broke on {sink}")

    notifier = Notifier([sink_for(receiver.url())], observer=observer, backoff=0.01)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        notifier.notify(notice(generation=1, at="yesterday"))  # not a datetime: cannot be sent
        notifier.notify(notice(generation=2))
        assert notifier.close(timeout=10)

    assert generations(receiver.received) == [2]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == (
        "notification sink slack: gave up on Succeeded of production/iris-to-production "
        "(generation 1): unexpected AttributeError"
    )
    assert "notifications: the delivery observer failed (RuntimeError)" in messages


def test_sink_names_must_be_unique(tmp_path: Path) -> None:
    sink = NotificationSink("slack", "slack", tmp_path / "url")

    with pytest.raises(ValueError, match="unique"):
        Notifier([sink, sink])


def test_metrics_observer_counts_each_result(metrics: Metrics) -> None:
    observe = metrics.notification_observer()

    observe("slack", "delivered", 0.3)
    observe("slack", "failed", 12.0)
    observe("cloudevents", "dropped", None)

    assert sample(metrics, "slack", "delivered") == 1
    assert sample(metrics, "slack", "failed") == 1
    assert sample(metrics, "cloudevents", "dropped") == 1
    assert (
        metrics.registry.get_sample_value(
            "modelpromotion_notification_delivery_seconds_sum", {"sink": "slack"}
        )
        == 0.3
    )
