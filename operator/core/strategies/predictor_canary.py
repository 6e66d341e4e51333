"""The Canary strategy for a SeldonDeployment: a canary predictor on the target.

A canary keeps the target's serving predictor (the *stable* one) and adds a
second predictor carrying the promoted spec (the *canary*), splitting traffic
between them as Seldon's webhook requires (non-shadow traffic sums to 100). The
last write is the promoted deployment itself, as ``Replace`` would write it.

Every write carries this run's provenance annotations and the index of the step
it belongs to, so a restarted operator knows which step's write landed. A canary
predictor an earlier run of this ModelPromotion left on the target is removed
before anything else (also by a ``Replace`` run, through :meth:`clear_earlier`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from promotion_operator.core.canary_stepping import (
    after_verified,
    canary_summary,
    check_canary,
    start_canary,
    step_pass,
    validate_again,
    without_target,
)
from promotion_operator.core.canary_steps import (
    CANARY_STEP_ANNOTATION,
    SetWeight,
    Shadow,
    step_lines,
    step_name,
    weight_of,
)
from promotion_operator.core.pass_io import (
    Action,
    Answer,
    Beside,
    Context,
    Decision,
    Effects,
    Observed,
    Purpose,
)
from promotion_operator.core.planning import (
    GENERATION_ANNOTATION,
    PROMOTION_UID_ANNOTATION,
    Plan,
    PlanningError,
    plan_promotion,
    strip_server_fields,
    written_by,
)
from promotion_operator.core.promotion import ANNOTATION_PREFIX, PromotionRef
from promotion_operator.core.run import ActionKind, Failure, Phase, PreviousTarget, Run
from promotion_operator.core.spec import PromotionSpec
from promotion_operator.core.strategy import Cleared, Planned
from promotion_operator.core.transitions import (
    adopt,
    decision,
    is_ours,
    previous_of,
    retry_or_fail,
    same_target,
    target_changed,
    target_failed,
    unusable_reads,
    write_message,
)
from promotion_operator.core.warm import switch_back, warm_done, with_warm

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
    """The target as it was (``stable``) plus the promoted predictor at ``weight``
    percent, or (0) as a shadow: a copy of the traffic, whose answers no caller sees."""
    if not 0 <= weight < 100:
        # The webhook refuses traffic outside 0..100; 100 is not a canary.
        raise PlanningError(f"a canary weight must be between 0 and 99, not {weight}")
    body = copy.deepcopy(dict(stable))
    spec = body.setdefault("spec", {})
    serving = serving_predictor(body, "the target")
    promoted = copy.deepcopy(serving_predictor(plan.deployment, "the source"))
    name = canary_name(serving)
    promoted["name"] = name
    if weight == 0:
        promoted["shadow"] = True
        promoted.pop("traffic", None)  # a shadow's traffic is not part of the split
    else:
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

    def shadow(self, index: int, step: Shadow) -> str:
        return (
            f"{index}: update {self.target}: predictor {self.canary!r} (promoted) as a "
            f"shadow of {self.stable!r}, which keeps 100%"
        )


def _annotations(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    return (deployment.get("metadata") or {}).get("annotations") or {}


def _foreign(annotations: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in annotations.items() if not k.startswith(f"{ANNOTATION_PREFIX}/")}


@dataclass(frozen=True)
class PredictorCanary:
    """The Canary strategy for a SeldonDeployment (see the module's docstring)."""

    def read(self, ctx: Context, run: Run, source: Answer, effects: Effects) -> Beside:
        return Beside()  # the canary is on the target

    def read_earlier(self, ctx: Context, run: Run, effects: Effects) -> tuple[Answer, Answer]:
        return Answer(), Answer()  # an earlier run's canary is on the target: read anyway

    def clear(self, ctx: Context, run: Run, observed: Observed) -> Cleared:
        missing = without_target(ctx, run, observed)
        return Cleared(missing, None) if missing else self.clear_earlier(ctx, run, observed)

    def clear_earlier(self, ctx: Context, run: Run, observed: Observed) -> Cleared:
        """Remove the canary predictor an earlier run left on the target (a dry run plans
        against the target as the removal would leave it)."""
        target = observed.target
        if target is None or not left_by_another_run(target, ctx.promotion):
            return Cleared(None, target)
        if ctx.spec.dry_run:
            return Cleared(None, without_canary(target))
        # A spec change during a canary: take the old canary out before anything else.
        cleanup = Action(
            ActionKind.UPDATE, without_canary(target), write_message(ctx), Purpose.CLEANUP
        )
        message = f"removing the canary an earlier generation left on {ctx.spec.target.described}"
        return Cleared(
            decision(ctx, run.moved_to(Phase.VALIDATING, ctx.now), message, cleanup), None
        )

    def plan(
        self, ctx: Context, run: Run, observed: Observed, previous: PreviousTarget
    ) -> Planned | Failure:
        assert observed.source is not None
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
        check_canary(ctx.spec)
        assert previous.deployment is not None
        first = weight_of(ctx.spec.canary_steps, 0)  # checked: the first step sets one
        checked = canary_deployment(plan, previous.deployment, first, 0)
        stable = str(serving_predictor(previous.deployment, "the target").get("name"))
        steps = describe_steps(ctx.spec, stable, canary_name({"name": stable}))
        return Planned(plan, (), checked, steps)

    def summary(self, ctx: Context, run: Run) -> str | Failure:
        return canary_summary(ctx)

    def start(self, ctx: Context, run: Run, done: str) -> Decision:
        assert run.previous is not None and run.previous.deployment is not None
        stable = str(serving_predictor(run.previous.deployment, "the target").get("name"))
        canary = canary_name({"name": stable})
        return start_canary(ctx, run, done, canary=canary, stable=stable)

    def write(self, ctx: Context, run: Run, planned: Planned, observed: Observed) -> Decision:
        # A canary writes through its steps (proceed): a validated plan starts them.
        return self.start(ctx, run, "validated")

    def proceed(self, ctx: Context, run: Run, observed: Observed) -> Decision | None:
        def in_place() -> bool:
            # The canary predictor this run wrote is on the target, at its current step.
            return observed.target is not None and is_ours(ctx, observed.target, run)

        return step_pass(ctx, run, observed, lambda: _write(ctx, run, observed), in_place=in_place)

    def done(
        self,
        ctx: Context,
        run: Run,
        action: Action,
        result: Mapping[str, Any] | None,
        failure: Failure | None,
    ) -> Decision | None:
        # Its writes are updates of the target, as Replace's; the warm copy's are its own.
        return warm_done(ctx, run, action, result, failure)

    def verified(self, ctx: Context, run: Run, ready: str) -> Decision | None:
        return after_verified(ctx, run, ready)

    def in_place(self, ctx: Context, observed: Observed) -> bool:
        return False  # nothing beside the target

    def undo(self, ctx: Context, run: Run, observed: Observed, message: str) -> Decision | None:
        # Restoring the target removes the canary predictor (and a bake's warm copy); the
        # warm copy takes the traffic back first.
        return switch_back(ctx, run, observed, message)


def _write(ctx: Context, run: Run, observed: Observed) -> Decision:
    """Write the current step's weight (or, after the last step, the promoted spec)."""
    canary, recorded, stable = run.canary, run.plan, run.previous
    assert canary is not None and recorded is not None and stable is not None
    assert stable.deployment is not None
    target = observed.target
    if observed.target_error is None and target is not None and is_ours(ctx, target, run):
        # This step's write landed, but the operator stopped before recording it.
        # (applied_at belongs to the previous step's write: this one's clock starts now.)
        weight = weight_of(ctx.spec.canary_steps, canary.step)
        run = replace(run, applied_at=None, canary=replace(canary, weight=weight))
        return adopt(ctx, run, target)
    unreadable = unusable_reads(ctx, run, observed)
    if unreadable is not None:
        return unreadable
    assert observed.source is not None
    first_write = not canary.written
    if first_write and not same_target(run.previous, previous_of(target)):
        # The target changed between validation and the first write: validate again.
        return validate_again(ctx, run, "the target changed since it was validated")
    if not first_write and (target is None or not written_by(target, ctx.promotion)):
        return target_changed(ctx, run, "the canary")
    try:
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
    except PlanningError as error:
        return retry_or_fail(ctx, run, Failure("Invalid", str(error)))
    if plan.source_spec_hash != recorded.source_spec_hash:
        if first_write:
            return validate_again(ctx, run, "the source changed before the first write")
        changed = Failure(
            "SourceChanged",
            f"{ctx.spec.origin} changed during the canary; what was measured is "
            "no longer what would be promoted (change the spec to start a new run)",
        )
        return target_failed(ctx, run, changed)
    final = canary.step >= len(ctx.spec.canary_steps)
    try:
        deployment = (
            with_warm(ctx.spec, stable, final_deployment(plan, canary.step))
            if final
            else canary_deployment(
                plan, stable.deployment, weight_of(ctx.spec.canary_steps, canary.step), canary.step
            )
        )
    except PlanningError as error:
        return retry_or_fail(ctx, run, Failure("Invalid", str(error)))
    message = f"{write_message(ctx)} ({step_name(ctx.spec.canary_steps, canary.step)})"
    write = Action(ActionKind.UPDATE, deployment, message)
    return decision(ctx, run, f"{step_name(ctx.spec.canary_steps, canary.step)} in flight", write)
