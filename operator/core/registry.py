"""What a registry source does to the target: the model version's storage URI written
into the target as it is, as the model URI of one graph node of a SeldonDeployment's
predictor, or as a Core v2 Model's ``storageUri``. The rest of the promotion (the
overrides, the strategies, rollback) then treats the result as it treats a source
deployment.

What a finished run writes back to the registry (:func:`write_back`) is decided here
too; the runner only sends it."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from promotion_operator.core.conditions import ready_reason
from promotion_operator.core.overrides import PlanningError
from promotion_operator.core.promotion import PromotionRef
from promotion_operator.core.run import FINISHED, ModelVersion, Phase, Run, format_time
from promotion_operator.core.spec import Kind, PromotionSpec, RegistrySource


def with_version(
    base: Mapping[str, Any], kind: Kind, registry: RegistrySource, version: ModelVersion
) -> dict[str, Any]:
    """A copy of ``base`` (the target) carrying ``version``'s storage URI where
    ``registry`` says; PlanningError when there is no such place."""
    body = copy.deepcopy(dict(base))
    spec = body.setdefault("spec", {})
    match kind:
        case Kind.MODEL:
            spec["storageUri"] = version.storage_uri
        case Kind.SELDON_DEPLOYMENT:
            _graph_node(spec, registry)["modelUri"] = version.storage_uri
        case Kind.PIPELINE:
            raise PlanningError(
                "spec.source.registry: a Pipeline takes no model URI; promote the Model "
                "its step names instead (spec.source.kind: Model)"
            )
    return body


def _graph_node(spec: dict[str, Any], registry: RegistrySource) -> dict[str, Any]:
    predictors = [p for p in spec.get("predictors") or () if isinstance(p, dict)]
    names = [str(p.get("name")) for p in predictors]
    if registry.predictor is None:
        if len(predictors) != 1:
            raise PlanningError(
                f"spec.source.registry.predictor: the target has {len(predictors)} predictors "
                f"({', '.join(names) or 'none'}); name the one whose model is replaced"
            )
        predictor = predictors[0]
    else:
        found = [p for p in predictors if p.get("name") == registry.predictor]
        if not found:
            raise PlanningError(
                f"spec.source.registry.predictor: the target has no predictor named "
                f"{registry.predictor!r} (it has: {', '.join(names) or 'none'})"
            )
        predictor = found[0]
    graph = predictor.get("graph")
    if not isinstance(graph, dict):
        raise PlanningError(f"predictor {predictor.get('name')!r} of the target has no graph")
    if registry.node is None:
        return graph
    node = _find_node(graph, registry.node)
    if node is None:
        raise PlanningError(
            f"spec.source.registry.node: no graph node named {registry.node!r} in predictor "
            f"{predictor.get('name')!r} of the target"
        )
    return node


def _find_node(node: dict[str, Any], name: str) -> dict[str, Any] | None:
    if node.get("name") == name:
        return node
    for child in node.get("children") or ():
        if isinstance(child, dict) and (found := _find_node(child, name)) is not None:
            return found
    return None


#: The prefix of the tags a finished run sets on its model version.
TAG_PREFIX = "deploy.mlops.dev"


class WriteBack(NamedTuple):
    """What a finished run writes back to its model version: tags, and an alias to set."""

    model: str
    version: str
    tags: Mapping[str, str]
    alias: str | None


def write_back(spec: PromotionSpec, run: Run, promotion: PromotionRef) -> WriteBack | None:
    """What ``run`` (finished) writes back to the registry, per ``spec.source.registry.
    writeBack``: the tag ``deploy.mlops.dev/<target>`` whose JSON value says how the run
    ended (phase and Ready reason), when, and which ModelPromotion run it was; and after
    success the alias asked for. None: nothing to write."""
    registry, version = spec.registry, run.model_version
    if registry is None or version is None or run.phase not in FINISHED:
        return None
    tags: dict[str, str] = {}
    if registry.write_back.tags:
        # One tag per target, so a run's write-back is one call (MLflow sets one tag a call).
        outcome = {
            "outcome": str(run.phase),
            "reason": ready_reason(run.conditions),
            "at": format_time(run.finished_at or run.phase_since),
            "promotion": f"{promotion} run {run.label}",
        }
        tags = {f"{TAG_PREFIX}/{spec.target}": json.dumps(outcome, separators=(",", ":"))}
    alias = registry.write_back.alias if run.phase == Phase.SUCCEEDED else None
    if not tags and alias is None:
        return None
    return WriteBack(version.model, version.version, tags, alias)
