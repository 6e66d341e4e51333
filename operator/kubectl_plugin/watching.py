"""``watch``: follow one ModelPromotion until the run of its current generation ends.

A watch on the one object (field selector ``metadata.name``) from the version
just read; when the server ends the stream (its timeout) the watch resumes from
the last version seen, when the version has expired (410) the object is read
again, and when the watch is refused or the connection breaks it polls (GET
every few seconds) until the deadline. Every change of phase, Ready reason,
run, canary step or weight is printed as it is seen.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable, Iterator
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
    """One ``watch`` of ``namespace/name`` for at most ``timeout`` seconds."""

    api: Api
    namespace: str
    name: str
    timeout: float
    waiting_for: RetryWait | None = None
    out: Callable[[str], None] = print
    note: Callable[[str], None] = print
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime.datetime] = _utcnow
    _last_key: tuple[Any, ...] | None = field(default=None, init=False)
    _last: Promotion | None = field(default=None, init=False)

    def _see(self, body: dict[str, Any]) -> ExitCode | None:
        """Print the object's state if it changed; the exit code once the run ended."""
        promotion = Promotion(body)
        self._last = promotion
        key = promotion.change_key()
        if key != self._last_key:
            self._last_key = key
            self.out(render.watch_line(promotion, self.now()))
        code = run_outcome(promotion, self.waiting_for)
        if code is not None:
            self.out(render.outcome_line(promotion, code))
        return code

    def run(self) -> ExitCode:
        """Watch until the run ends (its exit code) or the deadline (``TIMED_OUT``)."""
        deadline = self.monotonic() + self.timeout
        body = self.api.get(self.namespace, self.name)  # errors here end the command
        if (code := self._see(body)) is not None:
            return code
        version = Promotion(body).resource_version
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
                        version = Promotion(obj).resource_version or version
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
            version = Promotion(body).resource_version or version

    def _timed_out(self) -> ExitCode:
        self.out(
            f"{self.namespace}/{self.name}: timed out after {_duration(self.timeout)} "
            f"waiting for the run to end: {self._where()}"
        )
        return ExitCode.TIMED_OUT

    def _where(self) -> str:
        last = self._last
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
        waiting = self.waiting_for
        if waiting is not None and last.last_retry != waiting.token:
            return f"{where}; retry {waiting.token} has not started yet"
        return where


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        hours, minutes = divmod(int(seconds // 60), 60)
        if not hours:
            return f"{minutes}m"
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{seconds:g}s"
