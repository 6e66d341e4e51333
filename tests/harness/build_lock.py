"""One builder at a time per cached artifact, across processes.

On a fresh machine `make test` builds some artifacts in a background process while
the first tests run (tests/harness/late_builds.py); a test that needs one of them
before it is done waits here for that build instead of starting a second one.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.harness.cache import cache_root
from tests.harness.progress import say

_PROGRESS_EVERY = 30.0


@contextmanager
def build_lock(name: str) -> Iterator[None]:
    """Hold the lock of artifact ``name`` (check whether it exists, and build it, inside)."""
    directory = cache_root() / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait(handle.fileno(), name)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait(descriptor: int, name: str) -> None:
    say(f"waiting for another process that is building {name}")
    started = time.monotonic()
    report_at = started + _PROGRESS_EVERY
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(1.0)
        if time.monotonic() >= report_at:
            say(f"  ... still waiting for {name} ({time.monotonic() - started:.0f}s)")
            report_at += _PROGRESS_EVERY
    say(f"{name} is ready after waiting {time.monotonic() - started:.0f}s")
