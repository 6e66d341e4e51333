"""The ModelPromotions' watch: a paged list, then a watch from its resourceVersion.

The operator watches the ModelPromotions itself rather than through Kopf, so
that nothing is kept per object but the controller's small entry for a run at
rest: Kopf kept a memory, a worker and a processing task per object and
listed every object in one answer (see docs/performance.md). The loop is
client-go's reflector, reduced to what the controller needs:

- list in pages of ``page_size`` (one consistent snapshot: the pages share the
  first page's resourceVersion), handing each page to the controller before
  the next is read, so at most one page of bodies is alive;
- after a list, hand over a deletion for every object known before and not
  listed (deleted while the watch was down);
- watch from the newest resourceVersion seen (bookmarks move it too); a watch
  the server ends (its timeout) is opened again from there;
- a 410 (Gone: the version, or a page's continue token, has expired) lists
  again at once; any other failure waits (0.5, 1, 2, 4, then 5 s) and watches
  again from the last version, or lists again if there is none.

It runs in a thread of its own (the Kubernetes client blocks) until stopped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: The controller's view of an event: its type (None: listed) and the object.
WatchEvent = tuple[str | None, dict[str, Any]]
#: Hands events to the controller, returning once it has taken them in.
Deliver = Callable[[Sequence[WatchEvent]], None]

PAGE_SIZE = 500
WATCH_SECONDS = 120  # the server ends a watch after this; it is opened again at once
#: Waits after failed lists or watches, the last one repeated: capped at 5 s so that
#: a restarted kube-apiserver or etcd is seen again within 5 s of its return.
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 5.0)
GONE = 410


class PromotionSource(Protocol):
    """The list and watch calls (``control.kube_api.KubeApi``)."""

    def list_promotions(
        self, namespace: str | None, *, limit: int, continue_token: str = ""
    ) -> dict[str, Any]: ...

    def watch_promotions(
        self, namespace: str | None, resource_version: str, *, timeout_seconds: int
    ) -> Iterable[dict[str, Any]]: ...


class PathApi(Protocol):
    """The PromotionPaths' list and watch calls (``control.kube_api.KubeApi``)."""

    def list_paths(
        self, namespace: str | None, *, limit: int, continue_token: str = ""
    ) -> dict[str, Any]: ...

    def watch_paths(
        self, namespace: str | None, resource_version: str, *, timeout_seconds: int
    ) -> Iterable[dict[str, Any]]: ...


@dataclass(frozen=True)
class PathSource:
    """The PromotionPaths, listed and watched by the same loop as the ModelPromotions."""

    api: PathApi

    def list_promotions(
        self, namespace: str | None, *, limit: int, continue_token: str = ""
    ) -> dict[str, Any]:
        """One page of PromotionPaths."""
        return self.api.list_paths(namespace, limit=limit, continue_token=continue_token)

    def watch_promotions(
        self, namespace: str | None, resource_version: str, *, timeout_seconds: int
    ) -> Iterable[dict[str, Any]]:
        """The PromotionPaths' watch events."""
        return self.api.watch_paths(namespace, resource_version, timeout_seconds=timeout_seconds)


class Expired(Exception):
    """The resourceVersion or continue token is too old (410): list again."""


class WatchFailed(Exception):
    """The watch answered an ERROR event other than 410."""


@dataclass
class PromotionWatch:
    """List, then watch, the ModelPromotions (or, with a :class:`PathSource`, the
    PromotionPaths) of one namespace (None: all of them)."""

    source: PromotionSource
    namespace: str | None
    deliver: Deliver
    noun: str = "ModelPromotions"  # in log lines
    page_size: int = PAGE_SIZE
    watch_seconds: int = WATCH_SECONDS
    backoff: Sequence[float] = BACKOFF_SECONDS
    version: str = ""  # the newest resourceVersion seen; "" lists again
    known: set[str] = field(default_factory=set)  # uids handed over and not deleted

    def run(self, stopped: threading.Event) -> None:
        """List and watch until ``stopped`` is set; never raises."""
        failures = 0
        while not stopped.is_set():
            try:
                if not self.version:
                    self.relist()
                self.watch_once()
                failures = 0
            except Expired:
                log.info("the %s' watch expired (410); listing them again", self.noun)
                self.version = ""
            except Exception as error:
                delay = self.backoff[min(failures, len(self.backoff) - 1)]
                failures += 1
                log.warning(
                    "watching %s failed (%s); again in %g s", self.noun, _described(error), delay
                )
                stopped.wait(delay)

    def relist(self) -> None:
        """List every object, page by page, handing each page over; then the deletions."""
        listed: set[str] = set()
        version, token = "", ""
        while True:
            with _gone_is_expired():
                page = self.source.list_promotions(
                    self.namespace, limit=self.page_size, continue_token=token
                )
            metadata = page.get("metadata") or {}
            version = version or str(metadata.get("resourceVersion") or "")
            items: list[dict[str, Any]] = page.get("items") or []
            listed.update(_uid(item) for item in items)
            self.deliver([(None, item) for item in items])
            del page, items  # one page alive at a time
            token = str(metadata.get("continue") or "")
            if not token:
                break
        listed.discard("")
        gone, self.known = self.known - listed, listed
        if gone:
            self.deliver([("DELETED", {"metadata": {"uid": uid}}) for uid in sorted(gone)])
        self.version = version

    def watch_once(self) -> None:
        """Follow one watch from :attr:`version` until the server ends it."""
        with _gone_is_expired():
            for event in self.source.watch_promotions(
                self.namespace, self.version, timeout_seconds=self.watch_seconds
            ):
                self._take(event)

    def _take(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        body: dict[str, Any] = event.get("object") or {}
        if kind == "ERROR":
            if body.get("code") == GONE:
                raise Expired(body.get("message"))
            raise WatchFailed(str(body.get("message") or body))
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            uid = _uid(body)
            if kind == "DELETED":
                self.known.discard(uid)
            elif uid:
                self.known.add(uid)
            self.deliver([(kind, body)])
        # Bookmarks carry only a resourceVersion: the watch resumes from it.
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version:
            self.version = str(version)


def _uid(body: dict[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("uid") or "")


@contextlib.contextmanager
def _gone_is_expired() -> Iterator[None]:
    """A call answered 410 (its version or continue token expired) is :class:`Expired`."""
    try:
        yield
    except Exception as error:
        if getattr(error, "status", None) == GONE:
            raise Expired(str(error)) from None
        raise


def _described(error: BaseException) -> str:
    return str(error) or type(error).__name__
