"""Small helpers for tests of token clients: a fake clock and a Secret-like directory."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path


class FakeClock:
    """A clock that moves only when told to; share it between the stub and the client."""

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._now = float(int(time.time() if start is None else start))

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def write_secret(directory: Path, values: Mapping[str, str | None]) -> Path:
    """Write ``values`` as one file per key, like a mounted Secret; ``None`` deletes a key.

    Values are written with a trailing newline, as ``echo`` or an editor would.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in values.items():
        path = directory / key
        if value is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(value + "\n", encoding="utf-8")
    return directory
