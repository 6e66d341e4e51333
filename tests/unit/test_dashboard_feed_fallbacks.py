"""A person who may not list across namespaces sees, of the dashboard's
``--user-namespaces``, those they may list, and nothing of the others."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any, cast

from promotion_operator.kubectl_plugin.dashboard.feed import Feed
from promotion_operator.kubectl_plugin.kube import Kube, PluginError
from promotion_operator.kubectl_plugin.resource import PLURAL
from tests.unit.test_dashboard_server import promotion


class OneNamespaceKube:
    """May list ModelPromotions in ``team-a`` only."""

    default_namespace = "default"

    def __init__(self) -> None:
        self.stop = threading.Event()

    def list(self, namespace: str | None, *, plural: str = PLURAL) -> dict[str, Any]:
        if namespace != "team-a":
            where = "at the cluster scope" if namespace is None else f'in "{namespace}"'
            raise PluginError(f"Error from server (Forbidden): cannot list {where}")
        body = promotion("Analyzing", 10, 1)
        body["metadata"]["namespace"] = "team-a"
        return {"items": [body], "metadata": {"resourceVersion": "1"}}

    def watch_list(
        self, namespace: str | None, version: str, timeout_seconds: int, *, plural: str = PLURAL
    ) -> Iterator[dict[str, Any]]:
        self.stop.wait(5)
        return iter(())


def test_only_the_fallback_namespaces_the_user_may_list_are_shown() -> None:
    async def check() -> tuple[set[tuple[str, str]], str, str]:
        kube = OneNamespaceKube()
        feed = Feed(
            cast(Kube, kube), None, asyncio.get_running_loop(), fallbacks=("team-a", "team-b")
        )
        feed.start()
        try:
            for _ in range(50):
                if feed.objects:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # team-b's refusal is in too
            return set(feed.objects), feed.scope.note, feed.error
        finally:
            feed.stop()
            kube.stop.set()

    keys, note, error = asyncio.run(check())
    assert keys == {("team-a", "iris")}
    assert "team-a, team-b" in note and "may not list across namespaces" in note
    assert error == ""
