"""``watch``: follow one object until what is watched for has happened.

A watch on the one object (field selector ``metadata.name``) from the version
just read; when the server ends the stream (its timeout) the watch resumes from
the last version seen, when the version has expired (410) the object is read
again, and when the watch is refused or the connection breaks it polls (GET
every few seconds) until the deadline.

What is followed is a :class:`Followed`: for a ModelPromotion (``watch``,
:class:`RunFollowed`) the run of its current generation, every change of phase,
Ready reason, run, canary step or weight printed as it is seen; for a
PromotionPath (``path watch``), its freight through the stages (``paths.py``).
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from promotion_operator.kubectl_plugin import render
from promotion_operator.kubectl_plugin.kube import Expired, PluginError, Unreachable
from promotion_operator.kubectl_plugin.resource import (
    ExitCode,
    Promotion,
    RetryWait,
    run_outcome,
)

#: The longest single watch request; the server closes it then and it is resumed.
WATCH_WINDOW = 300
#: How often to read the object when watching is not possible.
POLL_INTERVAL = 2.0


class Followed(Protocol):
    """What a watch prints of an object, and when it ends."""

    def key(self, body: Mapping[str, Any]) -> tuple[Any, ...]:
        """What a line is printed for when it changes."""

    def line(self, body: Mapping[str, Any], now: datetime.datetime) -> str:
        """The line printed for a change."""

    def outcome(self, body: Mapping[str, Any]) -> tuple[ExitCode, str] | None:
        """Once the watch ends: its exit code and last line (None: watch on)."""

    def waiting_for(self) -> str:
        """What the watch waits for, for the timeout line (``the run to end``)."""

    def where(self, body: Mapping[str, Any] | None) -> str:
        """Where the object is, for the timeout line (None: never read)."""


@dataclass(frozen=True)
class RunFollowed:
    """A ModelPromotion's run of its current generation (and the retry asked for)."""

    retry: RetryWait | None = None

    def key(self, body: Mapping[str, Any]) -> tuple[Any, ...]:
        return Promotion(body).change_key()

    def line(self, body: Mapping[str, Any], now: datetime.datetime) -> str:
        return render.watch_line(Promotion(body), now)

    def outcome(self, body: Mapping[str, Any]) -> tuple[ExitCode, str] | None:
        promotion = Promotion(body)
        code = run_outcome(promotion, self.retry)
        return None if code is None else (code, render.outcome_line(promotion, code))

    def waiting_for(self) -> str:
        return "the run to end"

    def where(self, body: Mapping[str, Any] | None) -> str:
        last = None if body is None else Promotion(body)
        if last is None or last.observed_generation is None:
            return "the operator has not written a status yet"
        if not last.current:
            return (
                f"the run of generation {last.generation} has not started "
                f"(the status is of generation {last.observed_generation})"
            )
        where = f"run {last.run_label} is {last.phase or '<none>'}"
        if last.pending_retry:
            return f"{where}; retry {last.pending_retry} has not started yet"
        if self.retry is not None and last.last_retry != self.retry.token:
            return f"{where}; retry {self.retry.token} has not started yet"
        return where


class Api(Protocol):
    """What ``watch`` needs of the API (:class:`~.kube.Kube`, or a fake in tests)."""

    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def watch(
        self, namespace: str, name: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]: ...


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Watcher:
    """One ``watch`` of ``namespace/name`` for at most ``timeout`` seconds, following
    what ``follow`` says (default: a ModelPromotion's run)."""

    api: Api
    namespace: str
    name: str
    timeout: float
    follow: Followed = field(default_factory=RunFollowed)
    out: Callable[[str], None] = print
    note: Callable[[str], None] = print
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime.datetime] = _utcnow
    _last_key: tuple[Any, ...] | None = field(default=None, init=False)
    _last: Mapping[str, Any] | None = field(default=None, init=False)

    def _see(self, body: dict[str, Any]) -> ExitCode | None:
        """Print the object's state if it changed; the exit code once the watch ends."""
        self._last = body
        key = self.follow.key(body)
        if key != self._last_key:
            self._last_key = key
            self.out(self.follow.line(body, self.now()))
        ended = self.follow.outcome(body)
        if ended is None:
            return None
        code, last_line = ended
        self.out(last_line)
        return code

    def run(self) -> ExitCode:
        """Watch until the end (its exit code) or the deadline (``TIMED_OUT``)."""
        deadline = self.monotonic() + self.timeout
        body = self.api.get(self.namespace, self.name)  # errors here end the command
        if (code := self._see(body)) is not None:
            return code
        version = _version(body)
        watching = True
        while True:
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return self._timed_out()
            if watching:
                try:
                    window = max(1, math.ceil(min(remaining, WATCH_WINDOW)))
                    for event in self.api.watch(self.namespace, self.name, version, window):
                        kind, obj = event.get("type"), event.get("object")
                        if not isinstance(obj, dict):
                            continue
                        version = _version(obj) or version
                        if kind == "BOOKMARK":
                            continue
                        if kind == "DELETED":
                            raise PluginError(
                                f"error: {self.namespace}/{self.name} was deleted",
                                ExitCode.NOT_FOUND,
                            )
                        if (code := self._see(obj)) is not None:
                            return code
                        if self.monotonic() >= deadline:
                            break
                    continue  # the server ended this watch: resume from `version`
                except Expired:
                    pass  # read the object again, then watch from its version
                except Unreachable as error:
                    self.note(f"{error.message}; trying again")
                    self.sleep(min(POLL_INTERVAL, max(0.0, deadline - self.monotonic())))
                except PluginError as error:
                    if error.exit_code == ExitCode.NOT_FOUND:
                        raise
                    self.note(f"{error.message}; polling every {POLL_INTERVAL:g}s instead")
                    watching = False
            else:
                self.sleep(min(POLL_INTERVAL, max(0.0, deadline - self.monotonic())))
            try:
                body = self.api.get(self.namespace, self.name)
            except Unreachable as error:
                self.note(f"{error.message}; trying again")
                continue
            if (code := self._see(body)) is not None:
                return code
            version = _version(body) or version

    def _timed_out(self) -> ExitCode:
        self.out(
            f"{self.namespace}/{self.name}: timed out after {_duration(self.timeout)} "
            f"waiting for {self.follow.waiting_for()}: {self.follow.where(self._last)}"
        )
        return ExitCode.TIMED_OUT


def _version(body: Mapping[str, Any]) -> str:
    version = (body.get("metadata") or {}).get("resourceVersion")
    return version if isinstance(version, str) else ""


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        hours, minutes = divmod(int(seconds // 60), 60)
        if not hours:
            return f"{minutes}m"
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{seconds:g}s"
