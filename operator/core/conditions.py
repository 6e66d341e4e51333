"""Status conditions in the Kubernetes shape (type, status, reason, message, times)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def set_condition(
    conditions: Sequence[dict[str, Any]],
    *,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Conditions with ``type_`` set; ``lastTransitionTime`` moves only when status flips."""
    value = "True" if status else "False"
    previous = find_condition(conditions, type_)
    unchanged = previous is not None and previous.get("status") == value
    condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": previous.get("lastTransitionTime", now)
        if previous is not None and unchanged
        else now,
    }
    if previous is None:
        return [*(dict(c) for c in conditions), condition]
    return [condition if c is previous else dict(c) for c in conditions]


def find_condition(conditions: Sequence[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    """The condition of ``type_``, if present."""
    return next((c for c in conditions if c.get("type") == type_), None)
