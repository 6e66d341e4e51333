"""A webhook receiver on loopback: records what is POSTed to it and answers as scripted.

Tests of anything that calls webhooks run one per test::

    with Receiver() as receiver:
        receiver.script(Answer(500), Answer(429, headers={"Retry-After": "1"}))
        ...                                  # then every request gets 200 "ok"
        [first, second, third] = receiver.wait_for(3)

Every request is recorded when it has arrived, before it is answered, so a test
can see a request that an :class:`Answer` with ``hold`` keeps waiting. Nothing in
the client is patched: this is a real HTTP/1.0 server on ``127.0.0.1``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

#: Longest a held answer waits for its Event (so a failing test cannot hang forever).
MAX_HOLD_SECONDS = 30.0


@dataclass(frozen=True)
class Answer:
    """How to answer one request."""

    status: int = 200
    body: bytes = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Wait until this is set (at most MAX_HOLD_SECONDS) before answering.
    hold: threading.Event | None = None
    #: Close the connection without answering.
    drop: bool = False


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    #: The request target: path and query string.
    path: str
    headers: Mapping[str, str]
    body: bytes
    #: time.monotonic() when it had arrived.
    at: float

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name."""
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Condition()
        self.script: list[Answer] = []
        self.received: list[Received] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # the name http.server calls
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.received.append(
                Received(
                    method=self.command,
                    path=self.path,
                    headers=dict(self.headers.items()),
                    body=body,
                    at=time.monotonic(),
                )
            )
            answer = self.server.script.pop(0) if self.server.script else Answer()
            self.server.lock.notify_all()
        if answer.hold is not None:
            answer.hold.wait(MAX_HOLD_SECONDS)
        if answer.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests read what was recorded


class Receiver:
    """A webhook receiver on a free loopback port, in a background thread."""

    def __init__(self) -> None:
        self._server = _Server()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="receiver",
            daemon=True,
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        """The URL of ``path`` on this receiver (any path is accepted and recorded)."""
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *answers: Answer) -> None:
        """Answer the next requests with ``answers``, in order; then with 200 ``ok``."""
        with self._server.lock:
            self._server.script.extend(answers)

    @property
    def received(self) -> list[Received]:
        with self._server.lock:
            return list(self._server.received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The requests received, once there are at least ``count``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._server.lock:
            while len(self._server.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver got {len(self._server.received)} request(s) in "
                        f"{timeout:g} s, expected {count}"
                    )
                self._server.lock.wait(left)
            return list(self._server.received)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def refused_url(path: str = "/hook") -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
