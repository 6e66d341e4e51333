"""The Canary strategy for a Seldon Core v2 Pipeline, through Seldon Deploy's
Experiments API.

The promoted spec runs as a second Pipeline beside the target, named
``<target>-canary`` (the candidate Seldon Deploy's canary experiment of the target
sends traffic to). A run writes, in order: the Models the promoted Pipeline needs
(as ``Replace`` does), the canary Pipeline, then, once it is Ready, the weight of
each ``setWeight`` step (``POST .../experiment/canary?weight=``), measuring and
pausing between them as for a SeldonDeployment. The last step promotes the canary
(``PUT .../experiment/canary``): the target takes the canary's spec and
annotations, and the experiment and the canary Pipeline are removed; the run then
verifies the target as ``Replace`` does. A rollback removes the experiment and the
canary Pipeline (``DELETE .../experiment/canary``), restores the target if the
promotion had landed, and undoes the Models the run wrote.

Crash safety: the canary Pipeline carries this run's annotations (and, as the
step, the final one, so the target carries them once promoted); a weight already
set is seen on the experiment and not set again.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from promotion_operator.core.canary_stepping import (
    after_verified,
    canary_summary,
    check_canary,
    enter_step,
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
from promotion_operator.core.kinds import readiness
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
from promotion_operator.core.pipeline_models import (
    PlannedModel,
    describe_models,
    plan_models,
    read_models,
    source_hash,
    step_models,
    with_models,
    write_models,
)
from promotion_operator.core.planning import (
    GENERATION_ANNOTATION,
    PROMOTION_UID_ANNOTATION,
    Plan,
    PlanningError,
    plan_promotion,
    written_by,
)
from promotion_operator.core.run import ActionKind, Failure, Phase, PreviousTarget, Run
from promotion_operator.core.spec import Kind, PromotionSpec
from promotion_operator.core.strategy import Cleared, Planned
from promotion_operator.core.transitions import (
    adopt,
    backoff,
    deadline,
    decision,
    is_ours,
    previous_of,
    retry_or_fail,
    same_target,
    target_changed,
    target_failed,
    timed_out,
    unusable_reads,
    write_message,
)

CANARY_SUFFIX = "-canary"
#: The actions on the experiment itself (the others write the canary Pipeline).
EXPERIMENT_ACTIONS = frozenset({ActionKind.SET_WEIGHT, ActionKind.PROMOTE, ActionKind.REMOVE})


def canary_pipeline_name(spec: PromotionSpec) -> str:
    """The name of the Pipeline carrying the promoted spec beside the target."""
    return f"{spec.target.name}{CANARY_SUFFIX}"


def left_by_an_earlier_run(ctx: Context, observed: Observed) -> bool:
    """Whether a canary Pipeline of this ModelPromotion's earlier run (another
    generation, or an earlier retry) is still beside the target."""
    pipeline = observed.canary.deployment
    if pipeline is None:
        return False
    annotations = (pipeline.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(PROMOTION_UID_ANNOTATION) == ctx.promotion.uid
        and annotations.get(GENERATION_ANNOTATION) != ctx.promotion.run
    )


def remove_earlier_canary(ctx: Context, run: Run, observed: Observed) -> Decision:
    """Take an earlier run's canary away (the experiment with its canary Pipeline, or the
    canary Pipeline alone) before this run plans anything."""
    message = f"removing the canary an earlier generation left on {ctx.spec.target.described}"
    if observed.experiment.deployment is not None:
        remove = Action(ActionKind.REMOVE, None, write_message(ctx), Purpose.CLEANUP)
    else:
        name = canary_pipeline_name(ctx.spec)
        remove = Action(ActionKind.DELETE, None, write_message(ctx), Purpose.CLEANUP, pipeline=name)
    return decision(ctx, run.moved_to(Phase.VALIDATING, ctx.now), message, remove)


def check_models_for_canary(
    spec: PromotionSpec, target: Mapping[str, Any], planned: Sequence[PlannedModel]
) -> None:
    """Refuse a canary that would change, in place, a Model the stable Pipeline serves
    (its traffic would see the new version at once, whatever the weights)."""
    serving = set(step_models(target))
    changed = [
        p.name for p in planned if p.dependency.action == ActionKind.UPDATE and p.name in serving
    ]
    if changed:
        raise PlanningError(
            f"a canary cannot change the Models {', '.join(changed)} in place: "
            f"{spec.target.described} serves them; give the new versions other names in "
            f"the steps of {spec.source.described}, or promote with strategy Replace"
        )


SHADOW_PIPELINE = (
    "a shadow step is for SeldonDeployments: a Pipeline canary cannot mirror traffic yet "
    "(remove the shadow step, or judge the canary at a small setWeight)"
)


def describe_experiment(ctx: Context, models: tuple[str, ...]) -> tuple[str, ...]:
    """The canary's writes and waits, in order, as a dry run reports them."""
    spec, target = ctx.spec, ctx.spec.target
    canary = canary_pipeline_name(spec)
    out = [
        *models,
        f"create Pipeline {target.namespace}/{canary} (the promoted spec)",
        *step_lines(spec.canary_steps, _ExperimentLines(str(target), canary)),
    ]
    out.append(
        f"{len(spec.canary_steps)}: promote the canary: {target} takes {canary}'s spec; "
        f"the experiment and {canary} are removed"
    )
    return tuple(out)


@dataclass(frozen=True)
class _ExperimentLines:
    """A step's write, as a dry run reports it: a weight of the experiment."""

    target: str
    canary: str

    def set_weight(self, index: int, step: SetWeight) -> str:
        return f"{index}: experiment on {self.target}: {self.canary} at {step.weight}%"

    def shadow(self, index: int, step: Shadow) -> str:
        return f"{index}: experiment on {self.target}: {self.canary} mirrored"


def canary_pipeline(ctx: Context, plan: Plan) -> dict[str, Any]:
    """The promoted Pipeline as the canary beside the target, marked as the canary's
    last write (the target carries it once the canary is promoted)."""
    body = copy.deepcopy(plan.deployment)
    body["metadata"]["name"] = canary_pipeline_name(ctx.spec)
    body["metadata"]["annotations"][CANARY_STEP_ANNOTATION] = str(len(ctx.spec.canary_steps))
    return body


def experiment_weight(experiment: Mapping[str, Any] | None, candidate: str) -> int:
    """The weight an experiment gives ``candidate`` (0 without one)."""
    candidates = ((experiment or {}).get("spec") or {}).get("candidates") or ()
    for entry in candidates:
        if isinstance(entry, Mapping) and entry.get("name") == candidate:
            weight = entry.get("weight")
            return weight if isinstance(weight, int) else 0
    return 0


def canary_in_place(ctx: Context, observed: Observed) -> bool:
    """Whether the canary Pipeline this run wrote is still there."""
    pipeline = observed.canary.deployment
    return pipeline is not None and written_by(pipeline, ctx.promotion)


def experiment_write(ctx: Context, run: Run, observed: Observed) -> Decision:
    """The current step's write: the Models, the canary Pipeline or its weight, or
    (after the last step) the promotion of the canary."""
    canary = run.canary
    assert canary is not None and run.plan is not None
    for answer in (observed.canary, observed.experiment):
        if answer.failure is not None:
            return _retry_or_undo(ctx, run, answer.failure, written=canary.weight > 0)
    if canary.step >= len(ctx.spec.canary_steps):
        return _promote(ctx, run, observed)
    unreadable = unusable_reads(ctx, run, observed)
    if unreadable is not None:
        return unreadable
    assert observed.source is not None
    target = observed.target
    first_write = canary.weight == 0
    if target is None:
        return target_changed(ctx, run, "the canary")
    if first_write and not same_target(run.previous, previous_of(target)):
        return validate_again(ctx, run, "the target changed since it was validated")
    try:
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
        planned = plan_models(ctx, run, observed.source, observed)
    except PlanningError as error:
        return retry_or_fail(ctx, run, Failure("Invalid", str(error)))
    if isinstance(planned, Failure):
        return retry_or_fail(ctx, run, planned)
    if source_hash(plan.source_spec_hash, planned) != run.plan.source_spec_hash:
        if first_write:
            return validate_again(ctx, run, "the source changed before the first write")
        changed = Failure(
            "SourceChanged",
            f"{ctx.spec.source.described} changed during the canary; what was measured is "
            "no longer what would be promoted (change the spec to start a new run)",
        )
        return target_failed(ctx, run, changed)
    run = replace(run, models=tuple(p.dependency for p in planned))
    before = write_models(ctx, run, planned, observed)
    if before is not None:
        return before
    name = canary_pipeline_name(ctx.spec)
    where = f"{ctx.spec.target.namespace}/{name}"
    if not canary_in_place(ctx, observed):
        if not first_write:
            return target_changed(ctx, run, "the canary")
        kind = ActionKind.UPDATE if observed.canary.deployment is not None else ActionKind.CREATE
        body = canary_pipeline(ctx, plan)
        write = Action(kind, body, write_message(ctx), pipeline=name)
        return decision(ctx, run, f"{kind.lower()} of the canary {where} in flight", write)
    pipeline = observed.canary.deployment
    assert pipeline is not None
    state = readiness(Kind.PIPELINE, pipeline)
    generation = (pipeline.get("metadata") or {}).get("generation")
    current = generation is None or (state.observed_generation or 0) >= generation
    if state.failed and current:
        why = f": {state.description}" if state.description else ""
        return target_failed(ctx, run, Failure("TargetFailed", f"{where} went {state.state}{why}"))
    if not (state.ready and current):
        if ctx.now >= deadline(ctx, run):
            return target_failed(ctx, run, timed_out(ctx, f"{where} {state.state or 'not Ready'}"))
        waiting = f"waiting for the canary {where} to become Ready (state {state.state})"
        return decision(ctx, run, waiting, None, backoff(ctx, run.phase_since, poll=True))
    weight = weight_of(ctx.spec.canary_steps, canary.step)
    if experiment_weight(observed.experiment.deployment, name) == weight:
        return weight_set(ctx, run, weight)  # set before a restart that kept it from being recorded
    message = f"{write_message(ctx)} ({step_name(ctx.spec.canary_steps, canary.step)})"
    action = Action(ActionKind.SET_WEIGHT, None, message, weight=weight)
    return decision(ctx, run, f"{step_name(ctx.spec.canary_steps, canary.step)} in flight", action)


def _promote(ctx: Context, run: Run, observed: Observed) -> Decision:
    canary = run.canary
    assert canary is not None
    if observed.target_error is not None:
        return retry_or_fail(ctx, run, observed.target_error)
    target = observed.target
    if target is not None and is_ours(ctx, target, run):
        # The promotion landed, but the operator stopped before recording it.
        return adopt(ctx, replace(run, applied_at=None, canary=replace(canary, weight=100)), target)
    if observed.experiment.deployment is None or not canary_in_place(ctx, observed):
        return target_changed(ctx, run, "the canary")
    message = f"{write_message(ctx)} ({step_name(ctx.spec.canary_steps, canary.step)})"
    action = Action(ActionKind.PROMOTE, None, message)
    return decision(ctx, run, f"{step_name(ctx.spec.canary_steps, canary.step)} in flight", action)


def weight_set(ctx: Context, run: Run, weight: int) -> Decision:
    """The experiment sends ``weight`` percent to the canary: on to the next step."""
    canary = run.canary
    assert canary is not None
    run = replace(run, canary=replace(canary, weight=weight), last_error=None)
    canary_name = canary_pipeline_name(ctx.spec)
    done = f"the experiment on {ctx.spec.target.described} sends {weight}% to {canary_name}"
    return enter_step(ctx, run, canary.step + 1, done)


def experiment_done(ctx: Context, run: Run, action: Action, failure: Failure | None) -> Decision:
    """The next step once an action of the canary (a Pipeline write or a call on the
    experiment, not a rollback) succeeded or failed."""
    if failure is not None:
        # A weight is only set once the canary Pipeline is in place.
        return _retry_or_undo(ctx, run, failure, written=action.kind == ActionKind.SET_WEIGHT)
    run = replace(run, last_error=None, error_since=None)
    if action.kind == ActionKind.SET_WEIGHT:
        assert action.weight is not None
        return weight_set(ctx, run, action.weight)
    if action.kind == ActionKind.PROMOTE:
        assert run.canary is not None
        run = replace(run, applied_at=ctx.now, canary=replace(run.canary, weight=100))
        return decision(
            ctx,
            run.moved_to(Phase.VERIFYING, ctx.now),
            f"promoted the canary {canary_pipeline_name(ctx.spec)} to {ctx.spec.target.described}; "
            "waiting for it to become Ready",
            requeue_after=backoff(ctx, ctx.now, poll=True),
        )
    verb = "created" if action.kind == ActionKind.CREATE else "updated"
    where = f"{ctx.spec.target.namespace}/{action.pipeline}"
    message = f"{verb} the canary {where}; waiting for it to become Ready"
    return decision(ctx, run, message, None, backoff(ctx, run.phase_since, poll=True))


def _retry_or_undo(ctx: Context, run: Run, failure: Failure, *, written: bool) -> Decision:
    """Retry, or, once retrying is over, undo what the canary wrote (``written``: the
    canary Pipeline is in place) instead of leaving it beside the target."""
    decided = retry_or_fail(ctx, run, failure)
    if written and decided.run.phase == Phase.FAILED and run.phase != Phase.ROLLING_BACK:
        return target_failed(ctx, run, failure)
    return decided


def undo_experiment(ctx: Context, observed: Observed, message: str, run: Run) -> Decision | None:
    """The next call of a rollback on the canary (remove the experiment, or a canary
    Pipeline left without one), or None once neither is left."""
    for answer in (observed.canary, observed.experiment):
        if answer.failure is not None:
            return retry_or_fail(ctx, run, answer.failure)
    if observed.experiment.deployment is not None:
        remove = Action(ActionKind.REMOVE, None, message, Purpose.ROLLBACK)
        return decision(
            ctx, run, f"removing the canary experiment on {ctx.spec.target.described}", remove
        )
    if canary_in_place(ctx, observed):
        name = canary_pipeline_name(ctx.spec)
        delete = Action(ActionKind.DELETE, None, message, Purpose.ROLLBACK, pipeline=name)
        where = f"{ctx.spec.target.namespace}/{name}"
        return decision(ctx, run, f"removing the canary {where}", delete)
    return None


@dataclass(frozen=True)
class ExperimentCanary:
    """The Canary strategy for a Pipeline (see the module's docstring)."""

    def read(self, ctx: Context, run: Run, source: Answer, effects: Effects) -> Beside:
        source_models, models = read_models(ctx, run, source, effects)
        working = run.phase in (Phase.PROMOTING, Phase.ANALYZING, Phase.ROLLING_BACK)
        canary, experiment = self.read_earlier(ctx, run, effects)
        if working and run.canary is not None:
            canary, experiment = self._read_canary(ctx, effects)
        return Beside(source_models, models, canary, experiment)

    def read_earlier(self, ctx: Context, run: Run, effects: Effects) -> tuple[Answer, Answer]:
        """The canary Pipeline and the experiment while the run plans (an earlier run's
        canary may be left)."""
        if run.phase not in (Phase.PENDING, Phase.VALIDATING):
            return Answer(), Answer()
        return self._read_canary(ctx, effects)

    def _read_canary(self, ctx: Context, effects: Effects) -> tuple[Answer, Answer]:
        return effects.read_pipeline(canary_pipeline_name(ctx.spec)), effects.read_experiment()

    def clear(self, ctx: Context, run: Run, observed: Observed) -> Cleared:
        missing = without_target(ctx, run, observed)
        return Cleared(missing, None) if missing else self.clear_earlier(ctx, run, observed)

    def clear_earlier(self, ctx: Context, run: Run, observed: Observed) -> Cleared:
        """Remove the canary an earlier run left beside the target (a dry run plans as if
        it were gone: it writes nothing)."""
        if left_by_an_earlier_run(ctx, observed) and not ctx.spec.dry_run:
            return Cleared(remove_earlier_canary(ctx, run, observed), None)
        return Cleared(None, observed.target)

    def plan(
        self, ctx: Context, run: Run, observed: Observed, previous: PreviousTarget
    ) -> Planned | Failure:
        assert observed.source is not None
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
        planned = with_models(ctx, run, plan, observed)
        if isinstance(planned, Failure):
            return planned
        plan, models = planned
        check_canary(ctx.spec)
        if any(isinstance(step, Shadow) for step in ctx.spec.canary_steps):
            # The admission rules refuse it; an older CRD may have let it through.
            raise PlanningError(SHADOW_PIPELINE)
        assert previous.deployment is not None
        check_models_for_canary(ctx.spec, previous.deployment, models)
        steps = describe_experiment(ctx, describe_models(ctx, models))
        return Planned(plan, models, plan.deployment, steps)

    def summary(self, ctx: Context, run: Run) -> str | Failure:
        return canary_summary(ctx)

    def start(self, ctx: Context, run: Run, done: str) -> Decision:
        # The canary is a Pipeline beside the target; analysis compares the two.
        return start_canary(
            ctx, run, done, canary=canary_pipeline_name(ctx.spec), stable=ctx.spec.target.name
        )

    def write(self, ctx: Context, run: Run, planned: Planned, observed: Observed) -> Decision:
        # A canary writes through its steps (proceed): a validated plan starts them.
        return self.start(ctx, run, "validated")

    def proceed(self, ctx: Context, run: Run, observed: Observed) -> Decision | None:
        return step_pass(
            ctx,
            run,
            observed,
            lambda: experiment_write(ctx, run, observed),
            in_place=lambda: canary_in_place(ctx, observed),
        )

    def done(
        self, ctx: Context, run: Run, action: Action, failure: Failure | None
    ) -> Decision | None:
        if action.pipeline is not None or action.kind in EXPERIMENT_ACTIONS:
            return experiment_done(ctx, run, action, failure)
        return None

    def verified(self, ctx: Context, run: Run, ready: str) -> Decision | None:
        return after_verified(ctx, run, ready)

    def in_place(self, ctx: Context, observed: Observed) -> bool:
        return canary_in_place(ctx, observed)

    def undo(self, ctx: Context, run: Run, observed: Observed, message: str) -> Decision | None:
        # The canary goes first: the target keeps serving while it does.
        return undo_experiment(ctx, observed, message, run)
