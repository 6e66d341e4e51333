"""The operator's own watch of ModelPromotions against the real kube-apiserver, as the
operator's ServiceAccount: a list in pages, then the watch's events from its version."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from kubernetes import client, config

from promotion_operator.control.kube_api import KubeApi
from promotion_operator.handlers.watching import PromotionWatch, WatchEvent
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import Promotions

pytestmark = pytest.mark.e2e


class Seen:
    """What the watch handed over, by type, in order (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[tuple[str | None, str]] = []
        self.pages: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, events: Sequence[WatchEvent]) -> None:
        with self._lock:
            if events and events[0][0] is None:
                self.pages.append(len(events))
            self.events += [(kind, str(body["metadata"].get("name"))) for kind, body in events]

    def wait_for(self, event: tuple[str | None, str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if event in self.events:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{event} not seen; seen: {self.events}")


_load_kubeconfig: Callable[..., None] = config.load_kube_config  # untyped library


def _api(kubeconfig: Path) -> KubeApi:
    configuration = client.Configuration()
    _load_kubeconfig(config_file=str(kubeconfig), client_configuration=configuration)
    return KubeApi(client.ApiClient(configuration), identity="e2e")


def test_the_watch_lists_in_pages_then_hands_over_adds_changes_and_deletions(
    control_plane: ControlPlane,
    promotions: Promotions,
    namespace: str,
    operator_kubeconfig: Path,
) -> None:
    for i in range(5):
        promotions.apply(f"listed-{i}", PROMOTE_IRIS)
    seen, stopped = Seen(), threading.Event()
    watch = PromotionWatch(_api(operator_kubeconfig), namespace, seen, page_size=2)
    thread = threading.Thread(target=watch.run, args=(stopped,), daemon=True)
    thread.start()
    try:
        seen.wait_for((None, "listed-4"))
        promotions.apply("added", PROMOTE_IRIS)
        seen.wait_for(("ADDED", "added"))
        promotions.patch_spec("added", {"dryRun": True})
        seen.wait_for(("MODIFIED", "added"))
        control_plane.kubectl("delete", "mp", "added", "-n", namespace)
        seen.wait_for(("DELETED", "added"))
    finally:
        stopped.set()

    assert seen.pages == [2, 2, 1]
    assert sorted(name for kind, name in seen.events if kind is None) == [
        f"listed-{i}" for i in range(5)
    ]
