"""Planning: the resource the operator will write to the target.

The promoted resource is the source's, with the fields the server owns
removed, the target's name and namespace, the overrides applied and provenance
annotations that let a restarted operator recognise its own write. A promoted
Pipeline brings the Models its steps name, planned the same way.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.core.kinds import API_VERSIONS, KINDS
from promotion_operator.core.overrides import PlanningError as PlanningError
from promotion_operator.core.overrides import apply_model_override
from promotion_operator.core.overrides import storage_uris as storage_uris
from promotion_operator.core.promotion import ANNOTATION_PREFIX, PromotionRef
from promotion_operator.core.spec import DeploymentRef, PromotionSpec

PROMOTION_ANNOTATION = f"{ANNOTATION_PREFIX}/promotion"
PROMOTION_UID_ANNOTATION = f"{ANNOTATION_PREFIX}/promotion-uid"
GENERATION_ANNOTATION = f"{ANNOTATION_PREFIX}/promotion-generation"
SOURCE_ANNOTATION = f"{ANNOTATION_PREFIX}/source"
SOURCE_HASH_ANNOTATION = f"{ANNOTATION_PREFIX}/source-spec-hash"

# Set by the server (or by the cluster) and meaningless on another deployment.
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "selfLink",
    "finalizers",
)
_STALE_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


@dataclass(frozen=True)
class Plan:
    """The deployment to write and a summary of what it carries."""

    deployment: dict[str, Any]
    source_spec_hash: str
    images: tuple[str, ...]
    model_uris: tuple[str, ...]


def spec_hash(spec: Mapping[str, Any]) -> str:
    """A stable short hash of a deployment spec (key order does not matter)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def strip_server_fields(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``deployment`` without status and server-set metadata."""
    clean = copy.deepcopy(dict(deployment))
    clean.pop("status", None)
    metadata = clean.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations") or {}
    for key in _STALE_ANNOTATIONS:
        annotations.pop(key, None)
    return clean


def plan_promotion(source: Mapping[str, Any], spec: PromotionSpec, promotion: PromotionRef) -> Plan:
    """The resource to write to the target for ``promotion`` (a Pipeline's alone: the
    Models its steps name are planned by :func:`plan_model`)."""
    body = promoted(source, spec.target, spec, promotion)
    images, model_uris = KINDS[spec.target.kind].apply_overrides(body["spec"], spec.overrides)
    return Plan(body, spec_hash(source.get("spec") or {}), images, model_uris)


def plan_model(
    source: Mapping[str, Any], spec: PromotionSpec, promotion: PromotionRef
) -> dict[str, Any]:
    """A Model a promoted Pipeline's step names, as it is written beside the target
    (same name, the target's namespace and instance), with its override applied."""
    name = str((source.get("metadata") or {}).get("name"))
    body = promoted(source, spec.target.model(name), spec, promotion, spec.source.model(name))
    override = next((o for o in spec.overrides.models if o.name == name), None)
    apply_model_override(body["spec"], override, None)
    return body


def check_model_overrides(spec: PromotionSpec, names: Iterable[str]) -> None:
    """Refuse ``spec.overrides.models`` entries naming no model of the source Pipeline."""
    known = list(names)
    unknown = [o.name for o in spec.overrides.models if o.name not in known]
    if unknown:
        raise PlanningError(
            f"spec.overrides.models: no model named {', '.join(map(repr, unknown))} among the "
            f"models the steps of {spec.source.described} name ({', '.join(known) or 'none'})"
        )


def promoted(
    source: Mapping[str, Any],
    target: DeploymentRef,
    spec: PromotionSpec,
    promotion: PromotionRef,
    origin: DeploymentRef | None = None,
) -> dict[str, Any]:
    """``source`` as ``target``: server fields stripped, renamed, labelled and annotated
    with this run's provenance (``origin``: where it came from, by default the spec's source)."""
    body = strip_server_fields(source)
    metadata = body["metadata"]
    metadata["name"] = target.name
    metadata["namespace"] = target.namespace
    metadata["labels"] = {**(metadata.get("labels") or {}), **spec.overrides.labels}
    metadata["annotations"] = {
        **{
            k: v
            for k, v in (metadata.get("annotations") or {}).items()
            if not k.startswith(f"{ANNOTATION_PREFIX}/")
        },
        **spec.overrides.annotations,
        PROMOTION_ANNOTATION: str(promotion),
        PROMOTION_UID_ANNOTATION: promotion.uid,
        GENERATION_ANNOTATION: promotion.run,
        SOURCE_ANNOTATION: str(origin) if origin else _source_named(spec),
        SOURCE_HASH_ANNOTATION: spec_hash(source.get("spec") or {}),
    }
    body.setdefault("apiVersion", API_VERSIONS[target.kind])
    body.setdefault("kind", str(target.kind))
    body.setdefault("spec", {})
    return body


def _source_named(spec: PromotionSpec) -> str:
    """Where the promoted spec came from, as the target's source annotation says."""
    return spec.registry.described if spec.registry is not None else str(spec.source)


def written_by(deployment: Mapping[str, Any], promotion: PromotionRef) -> bool:
    """Whether ``deployment`` carries this promotion run's own write (one write per run)."""
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(PROMOTION_UID_ANNOTATION) == promotion.uid
        and annotations.get(GENERATION_ANNOTATION) == promotion.run
    )
