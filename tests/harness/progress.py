"""Progress lines for long harness work (builds, downloads, start-up)."""

from __future__ import annotations

import sys
import time


def say(message: str) -> None:
    """Print one progress line to stderr, where pytest's capture does not hide it."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[harness {stamp}] {message}", file=sys.stderr, flush=True)
