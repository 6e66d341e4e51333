"""The objects of one kind the user can see (the ModelPromotions, the
PromotionPaths), kept current by a watch in a thread.

The plugin's client is blocking, so a thread lists and then watches (resuming
after each server timeout, listing again when the version expired), and hands
each change to the event loop; the open pages wait for :meth:`Feed.changed`.
When the user cannot list across namespaces, the feed watches the context's
namespace (or ``-n``) alone and says so; or, given ``fallbacks`` (sign-in mode's
``--user-namespaces``), each of those the user may list, a thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from promotion_operator.kubectl_plugin.dashboard.pages import Scope
from promotion_operator.kubectl_plugin.kube import Expired, Kube, PluginError
from promotion_operator.kubectl_plugin.resource import PLURAL, Promotion

# The server ends each watch after this long; the feed resumes from the last version.
WATCH_SECONDS = 300
# After a failure (the API server unreachable, a refusal), the feed tries again after this.
RETRY_SECONDS = 2.0
# A namespace of the fallbacks that the user may not list is asked again after this.
FORBIDDEN_RETRY_SECONDS = 30.0

Key = tuple[str, str]


def _key(body: dict[str, Any]) -> Key:
    metadata = body.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _version(body: dict[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


class Feed:
    """The latest object of each one of ``plural`` in scope, and a counter of changes."""

    def __init__(
        self,
        kube: Kube,
        namespace: str | None,
        loop: asyncio.AbstractEventLoop,
        plural: str = PLURAL,
        fallbacks: Sequence[str] = (),
    ) -> None:
        self._kube = kube
        self._fallbacks = tuple(fallbacks)
        self._asked = namespace
        self._loop = loop
        self._plural = plural
        self.scope = Scope(namespace)
        self.objects: dict[Key, dict[str, Any]] = {}
        self.error = ""
        self.version = 0
        self._event = asyncio.Event()
        self._listed = asyncio.Event()  # set once the first listing (or failure) is in
        self._stopped = threading.Event()
        self._started = False

    # --- the loop's side -------------------------------------------------------------
    def promotions(self) -> list[Promotion]:
        return [Promotion(body) for body in self.objects.values()]

    def get(self, namespace: str, name: str) -> Promotion | None:
        body = self.objects.get((namespace, name))
        return Promotion(body) if body is not None else None

    def bodies(self) -> list[dict[str, Any]]:
        """The objects as the API returned them (the feed of another kind than
        ModelPromotions)."""
        return list(self.objects.values())

    async def listed(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the first listing, so that a page
        opened right after start shows what exists rather than an empty list."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listed.wait(), timeout)

    async def changed(self, seen: int) -> int:
        """Wait until the version differs from ``seen``; the new version."""
        while self.version == seen:
            await self._event.wait()
        return self.version

    def _bump(self) -> None:
        self._listed.set()
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    def _apply(self, change: Callable[[], None]) -> None:
        def run() -> None:
            change()
            self._bump()

        self._loop.call_soon_threadsafe(run)

    # --- the thread's side --------------------------------------------------------
    def start(self) -> None:
        """Start the watch's thread (once: a later call does nothing)."""
        if self._started:
            return
        self._started = True
        threading.Thread(
            target=self._run, name=f"dashboard-watch-{self._plural}", daemon=True
        ).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        namespace = self._asked
        while not self._stopped.is_set():
            try:
                listed = self._kube.list(namespace, plural=self._plural)
            except PluginError as error:
                if namespace is None and "(Forbidden)" in error.message and self._fallbacks:
                    self._watch_each(self._fallbacks)
                    return
                if namespace is None and "(Forbidden)" in error.message:
                    # Not allowed across namespaces: the context's own, as kubectl would.
                    namespace = self._kube.default_namespace
                    note = (
                        f"You may not list across namespaces; showing {namespace} "
                        "(-n picks another)."
                    )
                    self._apply(functools.partial(self._set_scope, Scope(namespace, note)))
                    continue
                self._failed(error.message)
                continue
            items = {_key(o): o for o in listed.get("items") or [] if isinstance(o, dict)}
            self._apply(functools.partial(self._replace, items))
            metadata = listed.get("metadata") or {}
            self._follow(namespace, str(metadata.get("resourceVersion") or ""))

    def _watch_each(self, namespaces: Sequence[str]) -> None:
        """Watch each of ``namespaces`` that the user may list, in a thread of its own."""
        note = (
            "You may not list across namespaces; showing those of "
            f"{', '.join(namespaces)} that you may list."
        )
        scope = Scope(", ".join(namespaces), note)
        self._apply(functools.partial(self._set_scope, scope))
        for namespace in namespaces:
            threading.Thread(
                target=self._run_in,
                args=(namespace,),
                name=f"dashboard-watch-{self._plural}-{namespace}",
                daemon=True,
            ).start()

    def _run_in(self, namespace: str) -> None:
        """List and watch one namespace; a refusal hides it (and is asked again later:
        a binding may be added)."""
        while not self._stopped.is_set():
            try:
                listed = self._kube.list(namespace, plural=self._plural)
            except PluginError as error:
                if "(Forbidden)" in error.message:
                    self._apply(functools.partial(self._replace_in, namespace, {}))
                    self._stopped.wait(FORBIDDEN_RETRY_SECONDS)
                else:
                    self._failed(error.message)
                continue
            items = {_key(o): o for o in listed.get("items") or [] if isinstance(o, dict)}
            self._apply(functools.partial(self._replace_in, namespace, items))
            metadata = listed.get("metadata") or {}
            self._follow(namespace, str(metadata.get("resourceVersion") or ""))

    def _replace_in(self, namespace: str, items: dict[Key, dict[str, Any]]) -> None:
        kept = {key: body for key, body in self.objects.items() if key[0] != namespace}
        self.objects = {**kept, **items}
        self.error = ""

    def _set_scope(self, scope: Scope) -> None:
        self.scope = scope

    def _store(self, key: Key, body: dict[str, Any] | None) -> None:
        if body is None:
            self.objects.pop(key, None)
        else:
            self.objects[key] = body

    def _replace(self, items: dict[Key, dict[str, Any]]) -> None:
        self.objects = items
        self.error = ""

    def _failed(self, message: str) -> None:
        def record() -> None:
            self.error = message

        self._apply(record)
        time.sleep(RETRY_SECONDS)

    def _follow(self, namespace: str | None, version: str) -> None:
        """Watch from ``version`` until it expires or fails (then the caller lists again)."""
        while not self._stopped.is_set():
            try:
                events = self._kube.watch_list(
                    namespace, version, WATCH_SECONDS, plural=self._plural
                )
                for event in events:
                    body = event.get("object") or {}
                    if not isinstance(body, dict):
                        continue
                    version = _version(body) or version
                    kind = event.get("type")
                    if kind == "BOOKMARK":
                        continue
                    key = _key(body)
                    self._apply(
                        functools.partial(self._store, key, None if kind == "DELETED" else body)
                    )
                    if self._stopped.is_set():
                        return
            except Expired:
                return
            except PluginError as error:
                self._failed(error.message)
                return
