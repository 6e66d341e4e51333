"""Notifications on promotion events, POSTed to webhook sinks in the background.

A :class:`Notice` says what happened to one run of a ModelPromotion (it started,
waits for approval, or ended). :meth:`Notifier.notify` hands it over and returns at
once: it never blocks the controller's pass thread and never raises. One daemon
thread delivers the notices, oldest first, to every configured sink in the
configured order, so one sink receives notices in the order they were notified.

Sink kinds (:class:`~promotion_operator.config.settings.NotificationSink`):

``slack``
    A Slack-compatible incoming webhook: ``POST`` JSON ``{"text": ..., "attachments":
    [{"color": ..., ...}]}`` (:func:`slack_message`). The text names the promotion,
    source → target, phase, reason and message; the attachment's colour says the
    outcome (green succeeded, red failed or rolled back, grey aborted, amber awaiting
    approval, blue started).
``cloudevents``
    One CloudEvent 1.0 in HTTP structured content mode (:func:`cloudevent`):
    ``Content-Type: application/cloudevents+json; charset=utf-8`` and the event as
    JSON, with

    ===================  ==========================================================
    ``specversion``      ``1.0``
    ``id``               a UUID4, the same on every retry of one delivery (so a
                         receiver can drop duplicates by ``source`` + ``id``)
    ``source``           ``/apis/deploy.mlops.dev/v1alpha1/namespaces/NS/``
                         ``modelpromotions/NAME``
    ``type``             ``dev.mlops.deploy.modelpromotion.<kind, lowercased>``:
                         ``...runstarted``, ``...awaitingapproval``,
                         ``...succeeded``, ``...failed``, ``...rolledback``,
                         ``...aborted`` (:func:`cloudevent_type`)
    ``subject``          the target, ``namespace/name``
    ``time``             the notice's ``at``, RFC 3339 in UTC
    ``datacontenttype``  ``application/json``
    ``data``             the notice, camelCase keys (:func:`notice_data`)
    ===================  ==========================================================

Delivery: each attempt reads the sink's URL from its file (a rotated Secret is used
at once) and POSTs with a timeout. A 2xx is delivered. A connection failure, a
timeout, 408, 429 or 5xx is retried with a doubling backoff, or after the server's
Retry-After when it asks for longer (bounded by ``max_retry_after``), up to
``attempts`` attempts in all; any other status (a revoked webhook's 404, a 400, a
redirect) is not retried. Each attempt is one
:func:`~promotion_operator.clients.transport.exchange`: a 2xx's body is not read, and
of any other answer only the first 4 KiB (to quote it); an answer that breaks while
it is read is judged by its status and headers alone. A notice given up on is one
WARNING line naming the sink, the notice and the last problem. When notices come
faster than they can be delivered, the queue (bounded) drops the oldest, with a
WARNING line each.

Webhook URLs carry tokens: no log line, exception text or metric label built here
contains the URL or any part of it. Sinks are named by their configured name, and
problems are status codes, transport problems
(:func:`~promotion_operator.clients.http_failures.transport_problem`) and a short, redacted
quote of the receiver's answer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, NamedTuple, assert_never, get_args
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import requests

from promotion_operator.clients.http_failures import (
    is_unavailable,
    redact,
    retry_after,
    transport_problem,
)
from promotion_operator.clients.transport import (
    Reply,
    UnreadableBody,
    exchange,
    new_session,
    reason_phrase,
)
from promotion_operator.config.settings import NotificationSink, read_notification_url
from promotion_operator.errors import SettingsError

__all__ = [
    "CLOUDEVENTS_CONTENT_TYPE",
    "CLOUDEVENT_TYPE_PREFIX",
    "DEFAULT_ATTEMPTS",
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_TIMEOUT",
    "NOTICE_KINDS",
    "DeliveryObserver",
    "Notice",
    "NoticeKind",
    "Notifier",
    "cloudevent",
    "cloudevent_source",
    "cloudevent_type",
    "notice_data",
    "slack_message",
]

log = logging.getLogger(__name__)

NoticeKind = Literal[
    "RunStarted", "AwaitingApproval", "Succeeded", "Failed", "RolledBack", "Aborted"
]
NOTICE_KINDS: tuple[NoticeKind, ...] = get_args(NoticeKind)

#: Called once per notice and sink with the sink's name, the result ("delivered",
#: "failed" or "dropped") and, for delivered and failed, the seconds from
#: :meth:`Notifier.notify` to that result (queueing and retries included).
DeliveryObserver = Callable[[str, str, float | None], None]

#: Notices waiting at most; one more drops the oldest.
DEFAULT_QUEUE_SIZE = 1000
#: Attempts per notice and sink, the first included.
DEFAULT_ATTEMPTS = 4
#: Seconds before the first retry; doubled before each next one.
DEFAULT_BACKOFF = 0.5
#: Longest wait a server's Retry-After can ask for.
DEFAULT_MAX_RETRY_AFTER = 30.0
#: Seconds per request (connect and read).
DEFAULT_TIMEOUT = 5.0

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
CLOUDEVENT_TYPE_PREFIX = "dev.mlops.deploy.modelpromotion."
_API_PREFIX = "/apis/deploy.mlops.dev/v1alpha1"
_JSON = "application/json"
_USER_AGENT = "seldon-promotion-operator"
# Longest part of a receiver's answer read, and quoted in a log line.
_MAX_ANSWER_BYTES = 4096
_MAX_ANSWER_CHARS = 120
# Parts of a URL at least this long are hidden wherever a receiver's text quotes them.
_MIN_SECRET_CHARS = 4

# The delivery thread's name; urllib3's log lines from it are kept out (see _QuietDelivery).
_THREAD_NAME = "promotion-notifier"
# urllib3's loggers that quote a request's URL (path and query) in some of their lines.
_URLLIB3_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)

# What the Slack text says happened, and the attachment's colour.
_HEADLINES: dict[str, tuple[str, str]] = {
    "RunStarted": ("started a run", "#439fe0"),
    "AwaitingApproval": ("is awaiting approval", "#daa038"),
    "Succeeded": ("succeeded", "#2eb886"),
    "Failed": ("failed", "#a30200"),
    "RolledBack": ("failed and was rolled back", "#a30200"),
    "Aborted": ("was aborted", "#808080"),
}


@dataclass(frozen=True)
class Notice:
    """What happened to one run of a ModelPromotion.

    ``reason`` and ``message`` are the Ready condition's (already secret-free);
    ``source`` and ``target`` are ``namespace/name``; ``at`` is when it happened
    (UTC; a naive datetime is taken as UTC); ``path`` and ``stage`` name the
    PromotionPath stage the run is (empty for a ModelPromotion of its own).
    """

    kind: NoticeKind
    namespace: str
    name: str
    uid: str
    generation: int
    retry: int
    phase: str
    reason: str
    message: str
    source: str
    target: str
    at: datetime
    path: str = ""
    stage: str = ""

    def describe(self) -> str:
        """Which notice this is, for a log line: ``Succeeded of NS/NAME (generation 3)``."""
        retry = f", retry {self.retry}" if self.retry else ""
        return f"{self.kind} of {self.namespace}/{self.name} (generation {self.generation}{retry})"


# -- what is sent ------------------------------------------------------------------------------


def cloudevent_type(kind: str) -> str:
    """The CloudEvent ``type`` of a notice kind: ``dev.mlops.deploy.modelpromotion.<kind>``."""
    return CLOUDEVENT_TYPE_PREFIX + kind.lower()


def cloudevent_source(namespace: str, name: str) -> str:
    """The CloudEvent ``source``: the ModelPromotion's API path (a URI reference)."""
    return (
        f"{_API_PREFIX}/namespaces/{quote(namespace, safe='')}"
        f"/modelpromotions/{quote(name, safe='')}"
    )


def notice_data(notice: Notice) -> dict[str, Any]:
    """The notice as JSON-ready data, camelCase keys, ``at`` in RFC 3339."""
    data: dict[str, Any] = {}
    for item in dataclasses.fields(notice):
        value = getattr(notice, item.name)
        if item.name in ("path", "stage") and not value:
            continue  # not a path's run: the notice is as it always was
        data[_camel(item.name)] = _rfc3339(value) if isinstance(value, datetime) else value
    return data


def cloudevent(notice: Notice, *, event_id: str | None = None) -> dict[str, Any]:
    """The notice as a CloudEvent 1.0 in the JSON event format (structured mode)."""
    return {
        "specversion": "1.0",
        "id": event_id if event_id is not None else str(uuid.uuid4()),
        "source": cloudevent_source(notice.namespace, notice.name),
        "type": cloudevent_type(notice.kind),
        "subject": notice.target,
        "time": _rfc3339(notice.at),
        "datacontenttype": _JSON,
        "data": notice_data(notice),
    }


def slack_message(notice: Notice) -> dict[str, Any]:
    """The notice as a Slack-compatible incoming-webhook message: text and one attachment."""
    headline, color = _HEADLINES.get(notice.kind, (notice.kind, "#808080"))
    retry = f", retry {notice.retry}" if notice.retry else ""
    first = (
        f"ModelPromotion {notice.namespace}/{notice.name} {headline}: "
        f"{notice.source} → {notice.target} (generation {notice.generation}{retry})"
    )
    if notice.path:
        first += f"; stage {notice.stage} of PromotionPath {notice.namespace}/{notice.path}"
    second = f"Phase {notice.phase}, reason {notice.reason}"
    if notice.message:
        second += f": {notice.message}"
    return {
        "text": _slack_escape(f"{first}\n{second}"),
        "attachments": [
            {
                "color": color,
                "fallback": _slack_escape(first),
                "fields": [
                    {"title": title, "value": _slack_escape(value), "short": True}
                    for title, value in (
                        ("Source", notice.source),
                        ("Target", notice.target),
                        ("Phase", notice.phase),
                        ("Reason", notice.reason),
                    )
                ],
                "ts": int(_utc(notice.at).timestamp()),
            }
        ],
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _rfc3339(at: datetime) -> str:
    return _utc(at).isoformat().replace("+00:00", "Z")


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions (<!channel>); & starts an entity.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- delivery --------------------------------------------------------------------------------


class _QuietDelivery(logging.Filter):
    """Drops urllib3's own lines about the delivery thread's requests.

    With debug logging on, urllib3 logs every request's path and query, and that
    is where a webhook URL carries its token. The notifier logs each delivery's
    outcome itself, naming the sink instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith(_THREAD_NAME)


_QUIET_DELIVERY = _QuietDelivery()


def _quiet_urllib3() -> None:
    for name in _URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        if _QUIET_DELIVERY not in logger.filters:
            logger.addFilter(_QUIET_DELIVERY)


class _Queued(NamedTuple):
    notice: Notice
    # time.monotonic() when it was notified.
    since: float


class _Request(NamedTuple):
    body: bytes
    content_type: str


class _Outcome(NamedTuple):
    delivered: bool
    # What went wrong (secret-free); "" when delivered.
    problem: str = ""
    retryable: bool = False
    # Seconds the server asked to wait, if it did.
    retry_after: float | None = None


class Notifier:
    """Delivers notices to webhook sinks on one background thread; never blocks, never raises.

    With no sinks it does nothing (no thread, nothing queued).
    """

    def __init__(
        self,
        sinks: Sequence[NotificationSink],
        *,
        observer: DeliveryObserver | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if queue_size < 1 or attempts < 1:
            raise ValueError("queue_size and attempts must be at least 1")
        if backoff < 0 or max_retry_after < 0 or timeout <= 0:
            raise ValueError("backoff and max_retry_after must be >= 0, timeout > 0")
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"notification sink names must be unique: {', '.join(names)}")
        self._sinks = tuple(sinks)
        self._observer = observer
        self._queue_size = queue_size
        self._attempts = attempts
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._timeout = timeout
        self._queue: deque[_Queued] = deque()
        self._lock = threading.Condition()
        self._closing = False
        # Set when close() runs out of time: stop waiting, retrying and delivering.
        self._abandon = threading.Event()
        self._session = new_session()
        self._thread: threading.Thread | None = None
        if self._sinks:
            _quiet_urllib3()
            self._thread = threading.Thread(target=self._serve, name=_THREAD_NAME, daemon=True)
            self._thread.start()

    @property
    def sinks(self) -> tuple[NotificationSink, ...]:
        return self._sinks

    def notify(self, notice: Notice) -> None:
        """Queue ``notice`` for every sink and return at once; never raises."""
        if not self._sinks:
            return
        try:
            self._enqueue(notice)
        except Exception as exc:  # the caller's run must never fail because of a notice
            log.warning(
                "notifications: could not queue a notice (%s); it is not delivered",
                type(exc).__name__,
            )

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued within ``timeout`` seconds, then stop the thread.

        Returns whether everything queued was dealt with (delivered or given up on) in
        time; what was not is dropped (logged and counted). Notices notified after
        ``close`` are dropped. Calling it again does no harm.
        """
        if self._thread is None:
            return True
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join(max(timeout, 0.0))
        if not self._thread.is_alive():
            return True
        # Out of time: the thread finishes its current request (bounded by the request
        # timeout) and exits; everything still queued is dropped now.
        self._abandon.set()
        with self._lock:
            left = list(self._queue)
            self._queue.clear()
        if left:
            log.warning(
                "notifications: stopped after %g s with %d notice(s) not delivered",
                timeout,
                len(left),
            )
            for item in left:
                self._count_dropped(item.notice, self._sinks)
        return False

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Notifier(sinks={[sink.name for sink in self._sinks]})"

    # -- the queue ---------------------------------------------------------------------------

    def _enqueue(self, notice: Notice) -> None:
        dropped: _Queued | None = None
        with self._lock:
            closed = self._closing
            if not closed:
                if len(self._queue) >= self._queue_size:
                    dropped = self._queue.popleft()
                self._queue.append(_Queued(notice, time.monotonic()))
                self._lock.notify()
        if closed:
            log.warning("notifications: the notifier is closed; dropped %s", notice.describe())
            self._count_dropped(notice, self._sinks)
        if dropped is not None:
            log.warning(
                "notifications: queue full (%d notices waiting); dropped the oldest, %s",
                self._queue_size,
                dropped.notice.describe(),
            )
            self._count_dropped(dropped.notice, self._sinks)

    def _count_dropped(self, notice: Notice, sinks: Iterable[NotificationSink]) -> None:
        for sink in sinks:
            self._observe(sink.name, "dropped", None)

    def _observe(self, sink: str, result: str, seconds: float | None) -> None:
        if self._observer is None:
            return
        try:
            self._observer(sink, result, seconds)
        except Exception as exc:
            log.warning("notifications: the delivery observer failed (%s)", type(exc).__name__)

    def _serve(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._lock.wait()
                    if not self._queue:
                        return
                    item = self._queue.popleft()
                for index, sink in enumerate(self._sinks):
                    if self._abandon.is_set():
                        self._count_dropped(item.notice, self._sinks[index:])
                        break
                    self._deliver_safely(sink, item)
        finally:
            self._session.close()

    # -- one notice to one sink --------------------------------------------------------------

    def _deliver_safely(self, sink: NotificationSink, item: _Queued) -> None:
        try:
            self._deliver(sink, item)
        except Exception as exc:
            # Only the type: an exception's text may quote the URL.
            log.warning(
                "notification sink %s: gave up on %s: unexpected %s",
                sink.name,
                item.notice.describe(),
                type(exc).__name__,
            )
            self._observe(sink.name, "failed", time.monotonic() - item.since)

    def _deliver(self, sink: NotificationSink, item: _Queued) -> None:
        # Rendered once: every retry sends the same body (and the same CloudEvent id).
        request = _render(sink, item.notice)
        attempt = 0
        while True:
            attempt += 1
            outcome = self._attempt(sink, request)
            if outcome.delivered:
                log.debug(
                    "notification sink %s: delivered %s (attempt %d)",
                    sink.name,
                    item.notice.describe(),
                    attempt,
                )
                self._observe(sink.name, "delivered", time.monotonic() - item.since)
                return
            if not outcome.retryable or attempt >= self._attempts or self._abandon.is_set():
                break
            delay = self._backoff * 2 ** (attempt - 1)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, self._max_retry_after))
            log.debug(
                "notification sink %s: attempt %d of %d for %s failed (%s); retrying in %.3g s",
                sink.name,
                attempt,
                self._attempts,
                item.notice.describe(),
                outcome.problem,
                delay,
            )
            if self._abandon.wait(delay):
                break
        log.warning(
            "notification sink %s: gave up on %s after %d attempt%s: %s",
            sink.name,
            item.notice.describe(),
            attempt,
            "" if attempt == 1 else "s",
            outcome.problem,
        )
        self._observe(sink.name, "failed", time.monotonic() - item.since)

    def _attempt(self, sink: NotificationSink, request: _Request) -> _Outcome:
        try:
            url = read_notification_url(sink.url_file)
        except SettingsError as exc:
            # Names the file only. Retried: a Secret being rotated can be briefly unreadable.
            return _Outcome(False, exc.problems[0], retryable=True)
        secrets = _url_secrets(url)
        try:
            reply = exchange(
                self._session,
                "POST",
                url,
                data=request.body,
                headers={
                    "Content-Type": request.content_type,
                    "Accept": "application/json, text/plain;q=0.9, */*;q=0.1",
                    "User-Agent": _USER_AGENT,
                },
                timeout=self._timeout,
                verify=True,
                # A 2xx is not read; of anything else, only the start is quoted.
                success_cap=0,
                error_cap=_MAX_ANSWER_BYTES,
                truncate=True,
                label=f"notification sink {sink.name}",
                # _deliver logs each delivery's outcome, naming the sink and the notice.
                log=None,
            )
        except UnreadableBody as exc:
            # The status says enough: judged without a quote of the answer.
            reply = Reply(exc.status, exc.headers, b"")
        except requests.RequestException as exc:
            return _Outcome(
                False, redact(transport_problem(exc, self._timeout), secrets), retryable=True
            )
        status = reply.status
        if 200 <= status < 300:
            return _Outcome(True)
        problem = f"HTTP {status}"
        if phrase := reason_phrase(status):
            problem += f" {phrase}"
        if 300 <= status < 400:
            problem += " (redirects are not followed)"
        elif said := _answer(reply.body or b"", secrets):
            problem += f": {said}"
        if is_unavailable(status):
            return _Outcome(False, problem, retryable=True, retry_after=retry_after(reply.headers))
        return _Outcome(False, problem)


def _render(sink: NotificationSink, notice: Notice) -> _Request:
    match sink.kind:
        case "slack":
            return _Request(_dumps(slack_message(notice)), f"{_JSON}; charset=utf-8")
        case "cloudevents":
            return _Request(_dumps(cloudevent(notice)), CLOUDEVENTS_CONTENT_TYPE)
        case _:
            assert_never(sink.kind)


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _url_secrets(url: str) -> list[str]:
    """The URL and every part of it that may be a token, longest first, for :func:`redact`."""
    parts = urlsplit(url)
    found = {url, url.rstrip("/"), parts.path, parts.query, parts.netloc}
    found.update(p for p in (parts.username, parts.password) if p)
    for segment in parts.path.split("/"):
        found.update((segment, unquote(segment)))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        found.update((key, value))
    return sorted((s for s in found if len(s) >= _MIN_SECRET_CHARS), key=len, reverse=True)


def _answer(body: bytes, secrets: list[str]) -> str:
    """The start of the receiver's answer (Slack says e.g. ``no_service``), made safe to show."""
    text = body.decode("utf-8", errors="replace")
    if len(body) >= _MAX_ANSWER_BYTES:
        # Cut short: a token may straddle the cut, where no whole secret matches it.
        text = text[: max(0, len(text) - max((len(s) for s in secrets), default=0))]
    return redact(text, secrets, limit=_MAX_ANSWER_CHARS)
