"""How soon the operator is back after a control-plane fault: a probe run.

The moment a fault clears (the apiserver answers ``/readyz`` again), a new
ModelPromotion is applied; the operator's recovery is the time from that moment
until the run has its first status. Both halves must work again for that: the
watch (Kopf saw the new object) and the writes (the controller recorded a pass).
"""

from __future__ import annotations

import time
from typing import Any

from tests.harness.progress import say
from tests.harness.promotions import Promotions, manifest

#: The generous bound the tests hold recovery to: the watch's backoff cap (5 s), an
#: API call left hanging by the fault timing out (30 s), a pass, and slack for a
#: busy machine. docs/operations.md states the figures measured.
RECOVERY_BOUND_SECONDS = 60.0


def probe_spec(source: str, target_namespace: str, target: str) -> dict[str, Any]:
    """A Replace run of ``staging/<source>`` to ``<target_namespace>/<target>``."""
    return {
        "source": {"namespace": "staging", "name": source},
        "target": {"namespace": target_namespace, "name": target},
        "verification": {"timeout": "2m"},
    }


def seconds_to_first_status(
    promotions: Promotions,
    name: str,
    spec: dict[str, Any],
    cleared_at: float,
    timeout: float = 180.0,
) -> float:
    """Apply the probe run ``name``; the seconds from ``cleared_at`` (time.monotonic())
    until the operator wrote its first status."""
    apply_probe(promotions, name, spec, timeout)
    promotions.wait_for(name, has_a_status, "a first status", timeout)
    return time.monotonic() - cleared_at


def has_a_status(body: dict[str, Any]) -> bool:
    """Whether the operator wrote a status (a phase) for the run."""
    return bool((body.get("status") or {}).get("phase"))


def apply_probe(
    promotions: Promotions, name: str, spec: dict[str, Any], timeout: float = 180.0
) -> None:
    """Apply the probe, again while the apiserver refuses it: a restarted apiserver
    answers /readyz before its admission policies have read their parameters
    (PromotionPolicies), and until then refuses what they govern."""
    deadline = time.monotonic() + timeout
    while True:
        applied = promotions.kube.kubectl(
            "apply", "-n", promotions.namespace, "-f", "-",
            input_text=manifest(name, spec), check=False,
        )  # fmt: skip
        if applied.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the probe {name} was never admitted: {applied.stderr.strip()}")
        say(f"the probe {name} was refused, again in 0.5 s: {applied.stderr.strip()}")
        time.sleep(0.5)
