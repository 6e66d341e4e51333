"""Durations as the spec writes them (Go style: ``90s``, ``10m``, ``1h30m``), and the
wait that has no deadline."""

from __future__ import annotations

import datetime
import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

#: A wait for a person (approval, a pause without duration) has no deadline.
NEVER = datetime.timedelta(days=365 * 100)


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``10m`` or ``1h30m``."""
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{text!r} is not a duration like 90s, 10m or 1h30m")
    return total
