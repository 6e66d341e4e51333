"""Reads of SeldonDeployments (and Pipelines) shared between runs: one list of a namespace answers
every run reading there, instead of one GET per run.

When few runs read a namespace, each read is a GET. When ``list_from`` or more
runs have an interest in it, a read is answered from the newest list of the
namespace if that list is fresh enough for the asking run, and otherwise starts
the next list (runs asking while a list is under way wait for it, and take it if
it is fresh enough for them, else the one after it: a burst of reads costs a
handful of lists). Fresh enough means: started after
the run's own last write to that deployment (so a run never takes the state
before its write for the state after it), after the list the run read last time
(so a poll always learns something new), and at most ``max_age`` seconds ago.

Every list is also news for the runs that are waiting: a run whose deployment
looks different from what its last pass read is woken (``on_change``), so it
does not wait out a long poll interval past its rollout. Runs reading at that
moment are not woken: they take the list in the pass they are in.

Pipelines are shared the same way, by namespace and kind; Models are always read
one by one, as Seldon Deploy's API cannot list them.

Thread-safe: passes run in worker threads.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from promotion_operator.core.kinds import KINDS
from promotion_operator.core.spec import DeploymentRef, Kind
from promotion_operator.errors import PromotionError

log = logging.getLogger(__name__)

#: Seconds a list may be old and still answer a run that has not read it yet.
DEFAULT_MAX_AGE = 1.0
#: Runs interested in a namespace from which its reads become lists.
DEFAULT_LIST_FROM = 3

_Namespace = tuple[str | None, Kind, str]  # (instance, kind, namespace)


class Reader(Protocol):
    """The Seldon Deploy calls shared reads use (``SeldonDeployClient`` is the real one)."""

    def find(self, namespace: str, name: str, *, kind: Kind = ...) -> dict[str, Any] | None: ...

    def list(self, namespace: str, *, kind: Kind = ...) -> list[dict[str, Any]]: ...


@dataclass
class _Listing:
    """What is known of one namespace: its newest list, and the one under way."""

    watchers: set[str] = field(default_factory=set)
    items: dict[str, dict[str, Any]] | None = None
    taken_at: float = -math.inf  # when the newest list was asked for
    failure: PromotionError | None = None  # the newest list failed (with taken_at)
    listing_since: float | None = None  # a list under way, asked for then
    ready: threading.Condition = field(default_factory=threading.Condition)


class SharedReads:
    """The reads of every run, shared by namespace (see the module's docstring)."""

    def __init__(
        self,
        reader: Callable[[str | None], Reader],
        *,
        max_age: float = DEFAULT_MAX_AGE,
        list_from: int = DEFAULT_LIST_FROM,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._max_age = max_age
        self._list_from = list_from
        self._clock = clock
        self._lock = threading.Lock()
        self._listings: dict[_Namespace, _Listing] = {}
        self._interest: dict[str, tuple[DeploymentRef, ...]] = {}
        # Per run and deployment: the list it read last (time), what it saw, and its
        # last write (reads must come from after it).
        self._read_at: dict[tuple[str, DeploymentRef], float] = {}
        self._seen: dict[tuple[str, DeploymentRef], str] = {}
        self._written_at: dict[tuple[str, DeploymentRef], float] = {}
        self._reading: Counter[str] = Counter()  # runs inside find() now
        #: Called (from a worker thread) with a run whose deployment changed.
        self.on_change: Callable[[str], None] | None = None

    # -- interest ----------------------------------------------------------------------------

    def watch(self, run: str, refs: Iterable[DeploymentRef]) -> None:
        """``run`` reads ``refs`` while it works (its source and target)."""
        refs = tuple(dict.fromkeys(refs))
        with self._lock:
            if self._interest.get(run) == refs:
                return
            self._drop(run)
            self._interest[run] = refs
            for ref in refs:
                self._listing(ref).watchers.add(run)

    def unwatch(self, run: str) -> None:
        """``run`` reads nothing more (it ended, or its resource was deleted)."""
        with self._lock:
            self._drop(run)

    def written(self, run: str, ref: DeploymentRef) -> None:
        """``run`` just wrote ``ref``: its next read must come from after now."""
        with self._lock:
            self._written_at[(run, ref)] = self._clock()

    # -- reading -------------------------------------------------------------------------------

    def find(self, run: str, ref: DeploymentRef) -> dict[str, Any] | None:
        """``ref`` as Seldon Deploy has it (None: it does not exist), for ``run``."""
        with self._lock:
            listing = self._listing(ref)
            # Models cannot be listed: each is read on its own.
            shared = len(listing.watchers) >= self._list_from and KINDS[ref.kind].listable
            fresh_after = max(
                self._written_at.get((run, ref), -math.inf),
                math.nextafter(self._read_at.get((run, ref), -math.inf), math.inf),
                self._clock() - self._max_age,
            )
        if not shared:
            asked = self._clock()
            found = self._reader(ref.instance).find(ref.namespace, ref.name, kind=ref.kind)
            self._saw(run, ref, asked, found)
            return found
        with self._lock:
            self._reading[run] += 1
        try:
            items, taken_at = self._fresh_list(ref, listing, fresh_after)
            found = items.get(ref.name)
            self._saw(run, ref, taken_at, found)
        finally:
            with self._lock:
                self._reading[run] -= 1
                if not self._reading[run]:
                    del self._reading[run]
        return copy.deepcopy(found)

    def _fresh_list(
        self, ref: DeploymentRef, listing: _Listing, fresh_after: float
    ) -> tuple[dict[str, dict[str, Any]], float]:
        with listing.ready:
            while True:
                if listing.taken_at >= fresh_after:
                    if listing.failure is not None:
                        raise listing.failure
                    assert listing.items is not None
                    return listing.items, listing.taken_at
                if listing.listing_since is None:
                    break
                listing.ready.wait()  # this list, or the one after it, will do
            asked = listing.listing_since = self._clock()
        items: dict[str, dict[str, Any]] | None = None
        failure: PromotionError | None = None
        try:
            listed = self._reader(ref.instance).list(ref.namespace, kind=ref.kind)
            items = {str(item["metadata"]["name"]): item for item in listed}
        except PromotionError as error:
            failure = error
        finally:
            with listing.ready:
                listing.listing_since = None
                listing.taken_at = asked
                listing.items, listing.failure = items, failure
                listing.ready.notify_all()
        if failure is not None:
            raise failure
        assert items is not None
        self._wake_changed(ref, items)
        return items, asked

    def _wake_changed(self, ref: DeploymentRef, items: Mapping[str, dict[str, Any]]) -> None:
        key = _namespace(ref)
        with self._lock:
            changed = {
                run
                for (run, seen_ref), seen in self._seen.items()
                if _namespace(seen_ref) == key
                and run not in self._reading
                and _fingerprint(items.get(seen_ref.name)) != seen
            }
        if self.on_change is not None:
            for run in changed:
                self.on_change(run)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _saw(
        self, run: str, ref: DeploymentRef, at: float, deployment: dict[str, Any] | None
    ) -> None:
        with self._lock:
            if run in self._interest:
                self._read_at[(run, ref)] = at
                self._seen[(run, ref)] = _fingerprint(deployment)

    def _listing(self, ref: DeploymentRef) -> _Listing:
        key = _namespace(ref)
        listing = self._listings.get(key)
        if listing is None:
            listing = self._listings[key] = _Listing()
        return listing

    def _drop(self, run: str) -> None:
        for ref in self._interest.pop(run, ()):
            listing = self._listings.get(_namespace(ref))
            if listing is not None:
                listing.watchers.discard(run)
                if not listing.watchers and listing.listing_since is None:
                    # Nobody reads there any more: keep no copy of the namespace.
                    del self._listings[_namespace(ref)]
            for memory in (self._read_at, self._seen, self._written_at):
                memory.pop((run, ref), None)


def _namespace(ref: DeploymentRef) -> _Namespace:
    return ref.instance, ref.kind, ref.namespace


def _fingerprint(deployment: Mapping[str, Any] | None) -> str:
    """What a run's decision depends on: generation, annotations, status."""
    if deployment is None:
        return "absent"
    metadata = deployment.get("metadata") or {}
    return json.dumps(
        [metadata.get("generation"), metadata.get("annotations"), deployment.get("status")],
        sort_keys=True,
        default=str,
    )
