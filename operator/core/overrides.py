"""What the overrides of a ModelPromotion do to the promoted spec, per kind of
resource: a SeldonDeployment takes ``replicas`` and ``components`` (a container's
image, a graph node's model URI), a Model takes ``model`` and ``replicas``, and a
Pipeline takes none itself (``models`` applies to the Models its steps name).

Each kind's function applies them in place and says what the spec then carries
(images, model URIs, for the status and the history); :data:`kinds.KINDS` names
the function of each kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from promotion_operator.core.spec import ComponentOverride, ModelOverride, Overrides


class PlanningError(ValueError):
    """The overrides do not fit the source deployment (a user error: reason Invalid)."""


class Carried(NamedTuple):
    """What a promoted spec carries: its images and model URIs, sorted, each once."""

    images: tuple[str, ...]
    model_uris: tuple[str, ...]


def seldon_deployment_overrides(spec: dict[str, Any], overrides: Overrides) -> Carried:
    """``replicas`` on every predictor, then each ``components`` entry."""
    if overrides.replicas is not None:
        for predictor in spec.get("predictors") or ():
            predictor["replicas"] = overrides.replicas
    for override in overrides.components:
        _apply_component(spec, override)
    return Carried(tuple(sorted(set(_images(spec)))), tuple(sorted(set(_model_uris(spec)))))


def model_overrides(spec: dict[str, Any], overrides: Overrides) -> Carried:
    """``model`` (storage URI, requirements, replicas), else ``replicas``."""
    apply_model_override(spec, overrides.model, overrides.replicas)
    return Carried((), _storage_uri(spec))


def pipeline_overrides(spec: dict[str, Any], overrides: Overrides) -> Carried:
    """Nothing on the Pipeline itself: its Models carry the overrides and the URIs."""
    return Carried((), ())


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


def apply_model_override(
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
