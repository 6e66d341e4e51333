"""Planning: the deployment the operator will write to the target.

The promoted deployment is the source's, with the fields the server owns
removed, the target's name and namespace, the overrides applied and provenance
annotations that let a restarted operator recognise its own write.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.core.spec import ComponentOverride, PromotionSpec

ANNOTATION_PREFIX = "deploy.mlops.dev"
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


class PlanningError(ValueError):
    """The overrides do not fit the source deployment (a user error: reason Invalid)."""


@dataclass(frozen=True)
class PromotionRef:
    """The ModelPromotion a write belongs to."""

    namespace: str
    name: str
    uid: str
    generation: int
    retry: int = 0  # the run of this generation: 0, then one more per retry request

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def run(self) -> str:
        """The run a write belongs to, as its annotation says: ``3``, or ``3.1`` for a retry."""
        return f"{self.generation}.{self.retry}" if self.retry else str(self.generation)


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
    """The deployment to write to the target for ``promotion``."""
    source_spec = source.get("spec") or {}
    source_hash = spec_hash(source_spec)
    body = strip_server_fields(source)
    metadata = body["metadata"]
    metadata["name"] = spec.target.name
    metadata["namespace"] = spec.target.namespace
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
        SOURCE_ANNOTATION: str(spec.source),
        SOURCE_HASH_ANNOTATION: source_hash,
    }
    body.setdefault("apiVersion", "machinelearning.seldon.io/v1")
    body.setdefault("kind", "SeldonDeployment")
    target_spec = body.setdefault("spec", {})
    if spec.overrides.replicas is not None:
        for predictor in target_spec.get("predictors") or ():
            predictor["replicas"] = spec.overrides.replicas
    for override in spec.overrides.components:
        _apply_component(target_spec, override)
    return Plan(
        deployment=body,
        source_spec_hash=source_hash,
        images=tuple(sorted(set(_images(target_spec)))),
        model_uris=tuple(sorted(set(_model_uris(target_spec)))),
    )


def written_by(deployment: Mapping[str, Any], promotion: PromotionRef) -> bool:
    """Whether ``deployment`` carries this promotion run's own write (one write per run)."""
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(PROMOTION_UID_ANNOTATION) == promotion.uid
        and annotations.get(GENERATION_ANNOTATION) == promotion.run
    )


def _predictors(spec: Mapping[str, Any], name: str | None) -> Iterator[dict[str, Any]]:
    for predictor in spec.get("predictors") or ():
        if name is None or predictor.get("name") == name:
            yield predictor


def _graph_nodes(node: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    if not node:
        return
    yield node
    for child in node.get("children") or ():
        yield from _graph_nodes(child)


def _containers(predictor: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for component in predictor.get("componentSpecs") or ():
        yield from ((component.get("spec") or {}).get("containers") or ())


def _apply_component(spec: dict[str, Any], override: ComponentOverride) -> None:
    matched = False
    for predictor in _predictors(spec, override.predictor):
        if override.image is not None:
            for container in _containers(predictor):
                if container.get("name") == override.name:
                    container["image"] = override.image
                    matched = True
        if override.model_uri is not None:
            for node in _graph_nodes(predictor.get("graph")):
                if node.get("name") == override.name:
                    node["modelUri"] = override.model_uri
                    matched = True
    if not matched:
        where = f"predictor {override.predictor!r}" if override.predictor else "any predictor"
        raise PlanningError(
            f"spec.overrides.components: no container or graph node named {override.name!r} "
            f"in {where} of the source deployment"
        )


def _images(spec: Mapping[str, Any]) -> Iterator[str]:
    for predictor in _predictors(spec, None):
        for container in _containers(predictor):
            if container.get("image"):
                yield str(container["image"])


def _model_uris(spec: Mapping[str, Any]) -> Iterator[str]:
    for predictor in _predictors(spec, None):
        for node in _graph_nodes(predictor.get("graph")):
            if node.get("modelUri"):
                yield str(node["modelUri"])
