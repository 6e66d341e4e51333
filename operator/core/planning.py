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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.core.kinds import API_VERSIONS
from promotion_operator.core.promotion import ANNOTATION_PREFIX, PromotionRef
from promotion_operator.core.spec import (
    ComponentOverride,
    DeploymentRef,
    Kind,
    ModelOverride,
    PromotionSpec,
)

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
    kind = spec.target.kind
    body = promoted(source, spec.target, spec, promotion)
    target_spec = body["spec"]
    if kind is Kind.SELDON_DEPLOYMENT:
        if spec.overrides.replicas is not None:
            for predictor in target_spec.get("predictors") or ():
                predictor["replicas"] = spec.overrides.replicas
        for override in spec.overrides.components:
            _apply_component(target_spec, override)
        images = tuple(sorted(set(_images(target_spec))))
        model_uris = tuple(sorted(set(_model_uris(target_spec))))
    elif kind is Kind.MODEL:
        _apply_model(target_spec, spec.overrides.model, spec.overrides.replicas)
        images, model_uris = (), _storage_uri(target_spec)
    else:
        images, model_uris = (), ()
    return Plan(body, spec_hash(source.get("spec") or {}), images, model_uris)


def plan_model(
    source: Mapping[str, Any], spec: PromotionSpec, promotion: PromotionRef
) -> dict[str, Any]:
    """A Model a promoted Pipeline's step names, as it is written beside the target
    (same name, the target's namespace and instance), with its override applied."""
    name = str((source.get("metadata") or {}).get("name"))
    body = promoted(source, spec.target.model(name), spec, promotion, spec.source.model(name))
    override = next((o for o in spec.overrides.models if o.name == name), None)
    _apply_model(body["spec"], override, None)
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
        SOURCE_ANNOTATION: str(origin or spec.source),
        SOURCE_HASH_ANNOTATION: spec_hash(source.get("spec") or {}),
    }
    body.setdefault("apiVersion", API_VERSIONS[target.kind])
    body.setdefault("kind", str(target.kind))
    body.setdefault("spec", {})
    return body


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


def _apply_model(
    spec: dict[str, Any], override: ModelOverride | None, replicas: int | None
) -> None:
    if override is not None and override.storage_uri is not None:
        spec["storageUri"] = override.storage_uri
    if override is not None and override.requirements is not None:
        spec["requirements"] = list(override.requirements)
    wanted = (
        override.replicas if override is not None and override.replicas is not None else replicas
    )
    if wanted is not None:
        spec["replicas"] = wanted


def storage_uris(models: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The storage URIs of Core v2 Models, sorted, each once."""
    return tuple(sorted({uri for m in models for uri in _storage_uri(m.get("spec") or {})}))


def _storage_uri(spec: Mapping[str, Any]) -> tuple[str, ...]:
    uri = spec.get("storageUri")
    return (str(uri),) if uri else ()


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
