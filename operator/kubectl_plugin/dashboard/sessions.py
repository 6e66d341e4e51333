"""Server-side state that ends: the signed-in sessions and the sign-ins under way.

The browser holds only a random id (a cookie); what it stands for, and when it
ends, stays here. An id past its end is gone: found no more, and handed back by
:meth:`Expiring.expired` so that what it held (a user's watches) can be stopped.
Pure: the time is given.
"""

from __future__ import annotations

import datetime
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    value: T
    ends: datetime.datetime


class Expiring(Generic[T]):
    """Values under random ids, each for ``ttl``; at most ``limit`` (the oldest goes
    first), so that requests without a session cannot fill the memory."""

    def __init__(self, ttl: datetime.timedelta, limit: int) -> None:
        self.ttl = ttl
        self._limit = limit
        self._entries: OrderedDict[str, Entry[T]] = OrderedDict()
        self._dropped: list[Entry[T]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, value: T, now: datetime.datetime) -> tuple[str, Entry[T]]:
        """A new id (a fresh random one: never one the browser brought) for ``value``."""
        key = secrets.token_urlsafe(32)
        entry = Entry(value, now + self.ttl)
        self._entries[key] = entry
        while len(self._entries) > self._limit:
            self._dropped.append(self._entries.popitem(last=False)[1])
        return key, entry

    def find(self, key: str | None, now: datetime.datetime) -> Entry[T] | None:
        """The entry of ``key`` while it lasts (None: no such id, or it ended)."""
        if not key:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.ends:
            self._dropped.append(self._entries.pop(key))
            return None
        return entry

    def pop(self, key: str | None) -> Entry[T] | None:
        """End ``key`` now; its entry (None: there was none)."""
        return self._entries.pop(key, None) if key else None

    def expired(self, now: datetime.datetime) -> list[Entry[T]]:
        """Remove every entry past its end; those, and any dropped since the last call."""
        for key in [k for k, e in self._entries.items() if now >= e.ends]:
            self._dropped.append(self._entries.pop(key))
        dropped, self._dropped = self._dropped, []
        return dropped
