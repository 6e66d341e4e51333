"""What differs between the kinds of resource a ModelPromotion promotes: the API
version a write carries, whether Seldon Deploy validates a body before a write, and
how a resource's status says it is ready.

SeldonDeployments (Seldon Core v1) report ``status.state`` (``Available``,
``Failed``, or a state on the way). Models and Pipelines (Seldon Core v2) report
Kubernetes-style conditions: ``Ready`` is True once the resource serves, and a
condition whose reason ends in ``Failed`` (``ModelFailed``, ``ScheduleFailed``,
``PipelineFailed``) says it never will.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.core.spec import Kind

API_VERSIONS = {
    Kind.SELDON_DEPLOYMENT: "machinelearning.seldon.io/v1",
    Kind.MODEL: "mlops.seldon.io/v1alpha1",
    Kind.PIPELINE: "mlops.seldon.io/v1alpha1",
}


def server_validates(kind: Kind) -> bool:
    """Whether Seldon Deploy can validate a body of ``kind`` without writing it
    (only SeldonDeployments: the API has no validation endpoint for Core v2)."""
    return kind is Kind.SELDON_DEPLOYMENT


def ready_word(kind: Kind) -> str:
    """The state a promoted resource of ``kind`` is verified to reach, as its API names it."""
    return "Available" if kind is Kind.SELDON_DEPLOYMENT else "Ready"


@dataclass(frozen=True)
class Readiness:
    """What a resource's status says about serving its latest observed spec."""

    ready: bool
    failed: bool
    state: str  # as the status names it, for messages: "Creating", "ModelProgressing" ...
    observed_generation: int | None = None
    description: str | None = None


def readiness(kind: Kind, resource: Mapping[str, Any]) -> Readiness:
    """How far ``resource`` (of ``kind``, as Seldon Deploy returned it) is from serving."""
    status = resource.get("status") or {}
    if not isinstance(status, Mapping):
        return Readiness(False, False, "unknown")
    generation = _integer(status.get("observedGeneration"))
    if kind is Kind.SELDON_DEPLOYMENT:
        state = status.get("state")
        return Readiness(
            ready=state == "Available",
            failed=state == "Failed",
            state=str(state) if state else "",
            observed_generation=generation,
            description=status.get("description") or None,
        )
    conditions = [c for c in status.get("conditions") or () if isinstance(c, Mapping)]
    failed = next((c for c in conditions if _failed(c)), None)
    if failed is not None:
        return Readiness(
            False, True, str(failed.get("reason")), generation, failed.get("message") or None
        )
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return Readiness(False, False, "", generation)
    return Readiness(
        ready=ready.get("status") == "True",
        failed=False,
        state="Ready" if ready.get("status") == "True" else str(ready.get("reason") or "NotReady"),
        observed_generation=generation,
        description=ready.get("message") or None,
    )


def _failed(condition: Mapping[str, Any]) -> bool:
    reason = condition.get("reason")
    return (
        condition.get("status") == "False" and isinstance(reason, str) and reason.endswith("Failed")
    )


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
