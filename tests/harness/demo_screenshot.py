"""``make demo SCREENSHOT=FILE``: the dashboard's page of the demo's canary as a real
Chromium draws it (the picture in the README), taken while the canary runs, once its
analysis has measurements to plot.

The dashboard is ``kubectl promotion dashboard --read-only`` with the demo's
kubeconfig, as a user would run it; the browser is the browser tests' headless
Chromium (``make browser-tools``), so ``make demo`` without ``SCREENSHOT`` needs
neither.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.harness.stack import Stack

#: Measurements the canary has before the page is taken: enough for a plot to read.
MEASUREMENTS = 3
#: Tall enough for the overview, the plots and the start of the measurements table.
WINDOW = (1280, 1500)
_DRAWN_TIMEOUT = 15.0
_POINTS = "return document.querySelectorAll('svg g.point').length"


class CanaryScreenshot:
    """Takes the page of the first canary that has :data:`MEASUREMENTS` measurements
    (or has ended) as ``path``; use as a context manager around the canary round."""

    def __init__(self, stack: Stack, namespace: str, path: Path) -> None:
        self.path = path
        self.taken = False
        self._stack = stack
        self._namespace = namespace
        self._exits = contextlib.ExitStack()
        self._url = ""
        self._driver: Any = None

    def __enter__(self) -> CanaryScreenshot:
        # Imported here: Selenium is a test dependency the plain demo does not load.
        from tests.harness.browser import chromium
        from tests.harness.dashboard import dashboard

        served = self._exits.enter_context(
            dashboard(self._stack.control_plane.kubeconfig, self._namespace, "--read-only")
        )
        self._url = served.url.rstrip("/")
        self._driver = chromium(WINDOW)
        self._exits.callback(self._driver.quit)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._exits.close()

    def offer(self, item: dict[str, Any]) -> None:
        """Take ``item``'s page if it is the canary to show and none was taken yet."""
        if self.taken:
            return
        status = item.get("status") or {}
        measured = len((status.get("canary") or {}).get("measurements") or [])
        ended = status.get("phase") in ("Succeeded", "Failed", "RolledBack", "Aborted")
        if measured < MEASUREMENTS and not (ended and measured):
            return
        metadata = item["metadata"]
        self._driver.get(f"{self._url}/promotions/{metadata['namespace']}/{metadata['name']}")
        deadline = time.monotonic() + _DRAWN_TIMEOUT
        while time.monotonic() < deadline:
            if self._driver.execute_script(_POINTS):
                break
            time.sleep(0.2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._driver.save_screenshot(str(self.path))
        self.taken = True
        print(f"  dashboard page of {metadata['name']} saved as {self.path}")
