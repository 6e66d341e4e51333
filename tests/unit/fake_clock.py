"""A monotonic clock the test moves by hand."""

from __future__ import annotations


class Clock:
    """Callable like ``time.monotonic``; set or advance ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
