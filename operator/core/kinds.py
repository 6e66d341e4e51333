"""What differs between the kinds of resource a ModelPromotion promotes, in one table
(:data:`KINDS`): the API version a write carries, where Seldon Deploy's API keeps
the kind, whether it can list the kind and validate a body before a write, how
a resource's status says it is ready, which overrides apply to it, and what it
brings along (a Pipeline, the Models its steps name).

SeldonDeployments (Seldon Core v1) report ``status.state`` (``Available``,
``Failed``, or a state on the way). Models and Pipelines (Seldon Core v2) report
Kubernetes-style conditions: ``Ready`` is True once the resource serves, and a
condition whose reason ends in ``Failed`` (``ModelFailed``, ``ScheduleFailed``,
``PipelineFailed``) says it never will.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from promotion_operator.core.overrides import (
    Carried,
    model_overrides,
    pipeline_overrides,
    seldon_deployment_overrides,
)
from promotion_operator.core.spec import Kind, Overrides


@dataclass(frozen=True)
class Readiness:
    """What a resource's status says about serving its latest observed spec."""

    ready: bool
    failed: bool
    state: str  # as the status names it, for messages: "Creating", "ModelProgressing" ...
    observed_generation: int | None = None
    description: str | None = None


def _state_readiness(status: Mapping[str, Any]) -> Readiness:
    """A SeldonDeployment's ``status.state``."""
    state = status.get("state")
    return Readiness(
        ready=state == "Available",
        failed=state == "Failed",
        state=str(state) if state else "",
        observed_generation=_integer(status.get("observedGeneration")),
        description=status.get("description") or None,
    )


def _conditions_readiness(status: Mapping[str, Any]) -> Readiness:
    """A Model's or a Pipeline's conditions: a failed one, else ``Ready``."""
    generation = _integer(status.get("observedGeneration"))
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


@dataclass(frozen=True)
class KindFacts:
    """Everything the operator knows about one kind of resource."""

    #: ``apiVersion`` of a body written.
    api_version: str
    #: Path templates in Seldon Deploy's API (``{namespace}``, ``{name}``), exactly as
    #: ``seldon-deploy-sdk`` names them: the collection (create, list) and one item.
    collection_path: str
    item_path: str
    #: Whether the collection can be read in one call.
    listable: bool
    #: Whether Seldon Deploy can validate a body without writing it.
    server_validates: bool
    #: The state a promoted resource is verified to reach, as its API names it.
    ready_word: str
    #: Reads a resource's ``status`` (a mapping) into a :class:`Readiness`.
    read_status: Callable[[Mapping[str, Any]], Readiness]
    #: Applies the overrides that fit this kind to a promoted spec, in place.
    apply_overrides: Callable[[dict[str, Any], Overrides], Carried]
    #: Whether a promotion of it also writes the Models its steps name (a Pipeline).
    brings_models: bool = False


_CORE_V2 = "mlops.seldon.io/v1alpha1"

#: The kinds, one row each.
KINDS: Mapping[Kind, KindFacts] = MappingProxyType(
    {
        Kind.SELDON_DEPLOYMENT: KindFacts(
            api_version="machinelearning.seldon.io/v1",
            collection_path="/namespaces/{namespace}/seldondeployments",
            item_path="/namespaces/{namespace}/seldondeployments/{name}",
            listable=True,
            server_validates=True,
            ready_word="Available",
            read_status=_state_readiness,
            apply_overrides=seldon_deployment_overrides,
        ),
        Kind.MODEL: KindFacts(
            api_version=_CORE_V2,
            # POST only: the API cannot list Models.
            collection_path="/namespaces/{namespace}/models",
            item_path="/namespaces/{namespace}/models/{name}",
            listable=False,
            # The API has no validation endpoint for Core v2.
            server_validates=False,
            ready_word="Ready",
            read_status=_conditions_readiness,
            apply_overrides=model_overrides,
        ),
        Kind.PIPELINE: KindFacts(
            api_version=_CORE_V2,
            collection_path="/namespaces/{namespace}/pipelines",
            item_path="/namespaces/{namespace}/pipelines/{name}",
            listable=True,
            server_validates=False,
            ready_word="Ready",
            read_status=_conditions_readiness,
            apply_overrides=pipeline_overrides,
            brings_models=True,
        ),
    }
)

#: The ``apiVersion`` of each kind (read from :data:`KINDS`).
API_VERSIONS: Mapping[Kind, str] = MappingProxyType(
    {kind: facts.api_version for kind, facts in KINDS.items()}
)


def server_validates(kind: Kind) -> bool:
    """Whether Seldon Deploy can validate a body of ``kind`` without writing it
    (only SeldonDeployments: the API has no validation endpoint for Core v2)."""
    return KINDS[kind].server_validates


def ready_word(kind: Kind) -> str:
    """The state a promoted resource of ``kind`` is verified to reach, as its API names it."""
    return KINDS[kind].ready_word


def readiness(kind: Kind, resource: Mapping[str, Any]) -> Readiness:
    """How far ``resource`` (of ``kind``, as Seldon Deploy returned it) is from serving."""
    status = resource.get("status") or {}
    if not isinstance(status, Mapping):
        return Readiness(False, False, "unknown")
    return KINDS[kind].read_status(status)


def _failed(condition: Mapping[str, Any]) -> bool:
    reason = condition.get("reason")
    return (
        condition.get("status") == "False" and isinstance(reason, str) and reason.endswith("Failed")
    )


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
