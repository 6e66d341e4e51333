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
from typing import Any

from promotion_operator.core.planning import (
    GENERATION_ANNOTATION,
    PROMOTION_UID_ANNOTATION,
    Plan,
    PlanningError,
    strip_server_fields,
)
from promotion_operator.core.promotion import ANNOTATION_PREFIX, PromotionRef
from promotion_operator.core.requests import RESUME_ANNOTATION
from promotion_operator.core.spec import AnalysisTemplate, CanaryStep, PromotionSpec

CANARY_STEP_ANNOTATION = f"{ANNOTATION_PREFIX}/canary-step"
CANARY_PREDICTOR_ANNOTATION = f"{ANNOTATION_PREFIX}/canary-predictor"
CANARY_NAME = "canary"


def check_steps(spec: PromotionSpec) -> None:
    """Refuse canary steps the admission rules should have refused (an older CRD, say)."""
    steps = spec.canary_steps
    if not steps or steps[0].set_weight is None:
        raise PlanningError("spec.canary.steps must start with a setWeight step")
    for index, step in enumerate(steps):
        if step.set_weight is not None and not 0 < step.set_weight < 100:
            raise PlanningError(f"spec.canary.steps[{index}].setWeight must be 1..99")
        unknown = [name for name in step.analysis if name not in spec.templates]
        if unknown:
            raise PlanningError(
                f"spec.canary.steps[{index}].analysis names templates that "
                f"spec.analysis.templates does not define: {', '.join(unknown)}"
            )


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
    out: list[str] = []
    for index, step in enumerate(spec.canary_steps):
        if step.set_weight is not None:
            out.append(
                f"{index}: update {target}: predictor {canary!r} (promoted) at "
                f"{step.set_weight}%, {stable!r} at {100 - step.set_weight}%"
            )
        else:
            out.append(describe_wait(index, step))
    out.append(
        f"{len(spec.canary_steps)}: update {target}: the promoted spec at 100%, "
        f"predictor {canary!r} removed"
    )
    return tuple(out)


def describe_wait(index: int, step: CanaryStep) -> str:
    """How a dry run reports an analysis or a pause step."""
    if step.analysis:
        return f"{index}: analysis {', '.join(step.analysis)}"
    if step.pause_seconds is not None:
        return f"{index}: pause {step.pause_seconds:g}s"
    return f"{index}: pause until resumed ({RESUME_ANNOTATION}=true)"


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


def step_name(spec: PromotionSpec, index: int) -> str:
    """How step ``index`` reads in messages: ``step 2/5: canary at 10%``."""
    steps = spec.canary_steps
    if index >= len(steps):
        return f"step {index + 1}/{len(steps) + 1}: promoting the canary to 100%"
    step = steps[index]
    if step.set_weight is not None:
        what = f"canary at {step.set_weight}%"
    elif step.analysis:
        what = f"analysis {', '.join(step.analysis)}"
    elif step.pause_seconds is not None:
        what = f"pause {step.pause_seconds:g}s"
    else:
        what = "pause until resumed"
    return f"step {index + 1}/{len(steps) + 1}: {what}"


def weight_of(spec: PromotionSpec, index: int) -> int:
    """The canary's weight once step ``index``'s write (if any) landed; 100 when promoted."""
    steps = spec.canary_steps
    if index >= len(steps):
        return 100
    weight = steps[index].set_weight
    if weight is not None:
        return weight
    return weight_of(spec, last_write(spec, index))


def last_write(spec: PromotionSpec, index: int) -> int:
    """The index of the step whose write the target carries during step ``index``."""
    steps = spec.canary_steps
    if index >= len(steps):
        return index
    return max((i for i in range(index + 1) if steps[i].set_weight is not None), default=0)


def _annotations(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    return (deployment.get("metadata") or {}).get("annotations") or {}


def _foreign(annotations: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in annotations.items() if not k.startswith(f"{ANNOTATION_PREFIX}/")}
