"""A keyed, delaying work queue, after controller-runtime's: each key is worked on by
one worker at a time, and asking for a key again only moves its due time earlier.

Everything here runs on the event loop's thread; workers take keys with
:meth:`WorkQueue.get` and hand them back with :meth:`WorkQueue.done`. An observer,
if given, hears its size after every change and how late each key was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class QueueObserver(Protocol):
    """Hears what the queue does (for its metrics)."""

    def sized(self, waiting: int, working: int) -> None:
        """The queue now holds ``waiting`` keys and ``working`` keys are worked on."""

    def taken(self, late_seconds: float) -> None:
        """A key was handed out ``late_seconds`` after it was due."""


class WorkQueue(Generic[K]):
    """Keys due at a time; a key being worked on is not handed out again until done."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, observer: QueueObserver | None = None
    ) -> None:
        self._clock = clock
        self._observer = observer
        self._due: dict[K, float] = {}  # waiting keys and when they are due
        self._heap: list[tuple[float, int, K]] = []  # may hold outdated entries
        self._order = itertools.count()
        self._working: set[K] = set()
        self._again: dict[K, float] = {}  # asked for while being worked on
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due) + len(self._again)

    def add(self, key: K, delay: float = 0.0) -> None:
        """Have ``key`` worked on after ``delay`` seconds (or sooner, if already due sooner)."""
        due = self._clock() + max(0.0, delay)
        if key in self._working:
            self._again[key] = min(due, self._again.get(key, due))
            self._sized()
            return
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        self._changed.set()
        self._sized()

    def forget(self, key: K) -> None:
        """Drop ``key``'s pending work (a worker on it may still finish)."""
        self._due.pop(key, None)
        self._again.pop(key, None)
        self._sized()

    def pending(self) -> list[K]:
        """The keys waiting (not those being worked on)."""
        return list(self._due)

    async def get(self) -> K:
        """The next due key, waiting for one; it counts as worked on until :meth:`done`."""
        while True:
            while self._heap:
                due, _, key = self._heap[0]
                if self._due.get(key) != due:  # moved or forgotten since pushed
                    heapq.heappop(self._heap)
                    continue
                wait = due - self._clock()
                if wait > 0:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                self._working.add(key)
                if self._observer is not None:
                    self._observer.taken(-wait)
                self._sized()
                return key
            else:
                wait = None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    def done(self, key: K) -> None:
        """The worker is finished with ``key``; work asked for meanwhile becomes due."""
        self._working.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            self.add(key, again - self._clock())
        self._sized()

    def _sized(self) -> None:
        if self._observer is not None:
            self._observer.sized(len(self), len(self._working))
