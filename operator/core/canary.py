"""Canary planning: the deployments a canary run writes, step by step.

A canary keeps the target's serving predictor (the *stable* one) and adds a
second predictor carrying the promoted spec (the *canary*), splitting traffic
between them as Seldon's webhook requires (non-shadow traffic sums to 100). The
last write is the promoted deployment itself, as ``Replace`` would write it.

Every write carries this run's provenance annotations and the index of the step
it belongs to, so a restarted operator knows which step's write landed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.core.canary_steps import AnalysisTemplate, SetWeight, step_lines
from promotion_operator.core.planning import (
    GENERATION_ANNOTATION,
    PROMOTION_UID_ANNOTATION,
    Plan,
    PlanningError,
    strip_server_fields,
)
from promotion_operator.core.promotion import ANNOTATION_PREFIX, PromotionRef
from promotion_operator.core.spec import PromotionSpec

CANARY_STEP_ANNOTATION = f"{ANNOTATION_PREFIX}/canary-step"
CANARY_PREDICTOR_ANNOTATION = f"{ANNOTATION_PREFIX}/canary-predictor"
CANARY_NAME = "canary"


def serving_predictor(deployment: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The one predictor of ``deployment`` that takes traffic (shadows do not)."""
    predictors = [
        p for p in (deployment.get("spec") or {}).get("predictors") or () if not p.get("shadow")
    ]
    if len(predictors) != 1:
        names = ", ".join(str(p.get("name")) for p in predictors) or "none"
        raise PlanningError(
            f"a canary needs {what} with exactly one serving (non-shadow) predictor; "
            f"it has {len(predictors)} ({names})"
        )
    serving: dict[str, Any] = predictors[0]
    return serving


def canary_name(stable: Mapping[str, Any]) -> str:
    """The canary predictor's name: ``canary``, unless the stable one is called that."""
    return CANARY_NAME if stable.get("name") != CANARY_NAME else f"{CANARY_NAME}-2"


def canary_deployment(
    plan: Plan, stable: Mapping[str, Any], weight: int, step: int
) -> dict[str, Any]:
    """The target as it was (``stable``) plus the promoted predictor at ``weight`` percent."""
    if not 0 < weight < 100:
        # The webhook refuses traffic outside 0..100; 0 and 100 are not canaries.
        raise PlanningError(f"a canary weight must be between 1 and 99, not {weight}")
    body = copy.deepcopy(dict(stable))
    spec = body.setdefault("spec", {})
    serving = serving_predictor(body, "the target")
    promoted = copy.deepcopy(serving_predictor(plan.deployment, "the source"))
    name = canary_name(serving)
    promoted["name"] = name
    promoted["traffic"] = weight
    promoted.pop("shadow", None)
    serving["traffic"] = 100 - weight
    spec["predictors"] = [p for p in spec.get("predictors") or () if p.get("name") != name] + [
        promoted
    ]
    metadata = body.setdefault("metadata", {})
    ours = {
        k: v
        for k, v in (plan.deployment["metadata"].get("annotations") or {}).items()
        if k.startswith(f"{ANNOTATION_PREFIX}/")
    }
    metadata["annotations"] = {
        **_foreign(metadata.get("annotations") or {}),
        **ours,
        CANARY_STEP_ANNOTATION: str(step),
        CANARY_PREDICTOR_ANNOTATION: name,
    }
    return body


def final_deployment(plan: Plan, step: int) -> dict[str, Any]:
    """The promoted deployment, marked as the canary's last write (``step``)."""
    body = copy.deepcopy(plan.deployment)
    body["metadata"]["annotations"][CANARY_STEP_ANNOTATION] = str(step)
    return body


def written_step(deployment: Mapping[str, Any]) -> int | None:
    """The canary step whose write ``deployment`` is, if it is one."""
    value = _annotations(deployment).get(CANARY_STEP_ANNOTATION)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def left_by_another_run(target: Mapping[str, Any], promotion: PromotionRef) -> bool:
    """Whether ``target`` still carries a canary predictor from an earlier run (another
    generation, or an earlier retry) of this ModelPromotion, which a new run must remove
    before anything else."""
    annotations = _annotations(target)
    name = annotations.get(CANARY_PREDICTOR_ANNOTATION)
    return (
        annotations.get(PROMOTION_UID_ANNOTATION) == promotion.uid
        and annotations.get(GENERATION_ANNOTATION) != promotion.run
        and any(p.get("name") == name for p in (target.get("spec") or {}).get("predictors") or ())
    )


def without_canary(target: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with its canary predictor removed and the stable one at 100 %."""
    body = strip_server_fields(target)
    annotations = body["metadata"].get("annotations") or {}
    name = annotations.pop(CANARY_PREDICTOR_ANNOTATION, None)
    annotations.pop(CANARY_STEP_ANNOTATION, None)
    spec = body.setdefault("spec", {})
    spec["predictors"] = [p for p in spec.get("predictors") or () if p.get("name") != name]
    serving = [p for p in spec["predictors"] if not p.get("shadow")]
    if len(serving) == 1:
        serving[0]["traffic"] = 100
    return body


def describe_steps(spec: PromotionSpec, stable: str, canary: str) -> tuple[str, ...]:
    """The canary's writes and waits, in order, as a dry run reports them."""
    target = str(spec.target)
    return (
        *step_lines(spec.canary_steps, _PredictorLines(target, stable, canary)),
        f"{len(spec.canary_steps)}: update {target}: the promoted spec at 100%, "
        f"predictor {canary!r} removed",
    )


@dataclass(frozen=True)
class _PredictorLines:
    """A step's write, as a dry run reports it: an update of the target's predictors."""

    target: str
    stable: str
    canary: str

    def set_weight(self, index: int, step: SetWeight) -> str:
        return (
            f"{index}: update {self.target}: predictor {self.canary!r} (promoted) at "
            f"{step.weight}%, {self.stable!r} at {100 - step.weight}%"
        )


def fill_query(template: AnalysisTemplate, spec: PromotionSpec, *, canary: str, stable: str) -> str:
    """The template's PromQL with its placeholders filled in."""
    values = {
        "target": spec.target.name,
        "namespace": spec.target.namespace,
        "canary": canary,
        "stable": stable,
        "interval": template.interval,
    }
    query = template.query
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value)
    return query


def _annotations(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    return (deployment.get("metadata") or {}).get("annotations") or {}


def _foreign(annotations: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in annotations.items() if not k.startswith(f"{ANNOTATION_PREFIX}/")}
