"""Questions the end-to-end tests ask of the simulator's request log."""

from __future__ import annotations

from tests.harness.simulator import Simulator

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})


def writes(simulator: Simulator, namespace: str | None = None) -> list[tuple[str, str]]:
    """(method, path) of every successful write, optionally in one namespace, oldest first."""
    return [
        (entry["method"], entry["path"])
        for entry in simulator.control.requests_log()
        if entry["method"] in WRITE_METHODS
        and entry["status"] is not None
        and entry["status"] < 300
        and (namespace is None or f"/namespaces/{namespace}/" in entry["path"])
    ]


def creates(simulator: Simulator, namespace: str) -> int:
    """How many creates in ``namespace`` succeeded."""
    return sum(1 for method, _ in writes(simulator, namespace) if method == "POST")
