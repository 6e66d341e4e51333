"""The Canary strategy for a Seldon Core v2 Pipeline, through Seldon Deploy's
Experiments API.

The promoted spec runs as a second Pipeline beside the target, the *candidate* of
one of the target's experiments (:mod:`experiment_roles`, one type per experiment):
``<target>-shadow`` while a ``shadow`` step's experiment mirrors the target's traffic
to it, ``<target>-canary`` while the canary experiment sends it a share. A run
writes, in order: the Models the promoted Pipeline needs (as ``Replace`` does); for a
``shadow`` step, the shadow Pipeline, then, once it is Ready, the shadow experiment
(``POST .../experiment/shadow``); for the first ``setWeight`` after a shadow, the
removal of the shadow experiment with the shadow Pipeline (``DELETE
.../experiment/shadow``: a Pipeline has one experiment at a time); for a
``setWeight``, the canary Pipeline (at the first one), then, once it is Ready, the
weight (``POST .../experiment/canary?weight=``), measuring and pausing between the
steps as for a SeldonDeployment. The last step promotes the candidate in place
(``PUT .../experiment/shadow`` or ``/canary``): the target takes its spec and
annotations, and the experiment and the candidate are removed; the run then verifies
the target as ``Replace`` does. A rollback removes the experiment in place with its
candidate (``DELETE .../experiment/shadow`` or ``/canary``), or a candidate of this
run left without one, restores the target if the promotion had landed, and undoes
the Models the run wrote.

Crash safety: a candidate Pipeline carries this run's annotations (and, as the step,
the final one, so the target carries them once promoted), so it is adopted and never
written twice; an experiment already in place is seen on the target's experiment
(its sort told by its spec) and not started again, nor a weight set again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
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
    CanaryStep,
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
from promotion_operator.core.strategies.experiment_roles import (
    ROLES,
    ExperimentRole,
    role_at,
    role_for,
    role_held,
    role_named,
    roles_until,
)
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

#: The actions on the experiment itself (the others write a candidate Pipeline).
EXPERIMENT_ACTIONS = frozenset(
    {ActionKind.SET_WEIGHT, ActionKind.MIRROR, ActionKind.PROMOTE, ActionKind.REMOVE}
)
#: The calls on the experiment made with a candidate in place: should retrying them
#: give up, the run rolls the candidate back rather than leaving it.
WITH_CANDIDATE = frozenset({ActionKind.SET_WEIGHT, ActionKind.MIRROR, ActionKind.REMOVE})


def left_by_an_earlier_run(ctx: Context, pipeline: Mapping[str, Any]) -> bool:
    """Whether ``pipeline`` (a candidate beside the target) is of this ModelPromotion's
    earlier run (another generation, or an earlier retry)."""
    annotations = (pipeline.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(PROMOTION_UID_ANNOTATION) == ctx.promotion.uid
        and annotations.get(GENERATION_ANNOTATION) != ctx.promotion.run
    )


def remove_earlier_canary(ctx: Context, run: Run, observed: Observed) -> Decision:
    """Take an earlier run's candidate away (its experiment with it, or the candidate
    Pipeline alone) before this run plans anything."""
    pipeline = observed.canary.deployment
    assert pipeline is not None
    name = str((pipeline.get("metadata") or {}).get("name"))
    role = role_named(name, ctx.spec.target.name)
    if role is not None and role.holds(observed.experiment.deployment, ctx.spec.target.name):
        remove = role.remove(write_message(ctx), Purpose.CLEANUP)
    else:
        remove = Action(ActionKind.DELETE, None, write_message(ctx), Purpose.CLEANUP, pipeline=name)
    what = role.label if role is not None else "candidate"
    message = f"removing the {what} an earlier generation left on {ctx.spec.target.described}"
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


def describe_experiment(ctx: Context, models: tuple[str, ...]) -> tuple[str, ...]:
    """The canary's writes and waits, in order, as a dry run reports them."""
    spec, target = ctx.spec, ctx.spec.target
    steps = spec.canary_steps
    lines = _ExperimentLines(target.namespace, target.name, str(target), steps)
    first = role_at(steps, 0).candidate(target.name)
    last = role_at(steps, len(steps))
    promoted = last.candidate(target.name)
    return (
        *models,
        f"create Pipeline {target.namespace}/{first} (the promoted spec)",
        *step_lines(steps, lines),
        f"{len(steps)}: promote the {last.label}: {target} takes {promoted}'s spec; "
        f"the experiment and {promoted} are removed",
    )


@dataclass(frozen=True)
class _ExperimentLines:
    """A step's write, as a dry run reports it: a call on the target's experiment (and,
    for the first weight after a shadow, the change of candidate)."""

    namespace: str
    name: str
    target: str
    steps: Sequence[CanaryStep]

    def set_weight(self, index: int, step: SetWeight) -> str:
        canary = role_at(self.steps, index)
        candidate = canary.candidate(self.name)
        line = f"{index}: experiment on {self.target}: {candidate} at {step.weight}%"
        before = role_at(self.steps, index - 1) if index else canary
        if before == canary:
            return line
        gone = before.candidate(self.name)
        return (
            f"{line}, after removing the {before.label} experiment and {gone} and creating "
            f"Pipeline {self.namespace}/{candidate} (the promoted spec)"
        )

    def shadow(self, index: int, step: Shadow) -> str:
        shadow = role_at(self.steps, index).candidate(self.name)
        return f"{index}: experiment on {self.target}: {shadow} mirrored (a copy of its traffic)"


def candidate_pipeline(ctx: Context, plan: Plan, name: str) -> dict[str, Any]:
    """The promoted Pipeline as the candidate ``name`` beside the target, marked as the
    canary's last write (the target carries it once the candidate is promoted)."""
    body = copy.deepcopy(plan.deployment)
    body["metadata"]["name"] = name
    body["metadata"]["annotations"][CANARY_STEP_ANNOTATION] = str(len(ctx.spec.canary_steps))
    return body


def candidate_in_place(ctx: Context, observed: Observed) -> bool:
    """Whether the candidate Pipeline the pass read is one this run wrote."""
    pipeline = observed.canary.deployment
    return pipeline is not None and written_by(pipeline, ctx.promotion)


def experiment_write(ctx: Context, run: Run, observed: Observed) -> Decision:
    """The current step's write: the Models, the removal of the experiment before it,
    the step's candidate Pipeline or its experiment, or (after the last step) the
    promotion of the candidate in place."""
    canary = run.canary
    assert canary is not None and run.plan is not None
    for answer in (observed.canary, observed.experiment):
        if answer.failure is not None:
            return _retry_or_undo(ctx, run, answer.failure, written=canary.written)
    steps = ctx.spec.canary_steps
    if canary.step >= len(steps):
        return _promote(ctx, run, observed)
    unreadable = unusable_reads(ctx, run, observed)
    if unreadable is not None:
        return unreadable
    assert observed.source is not None
    target = observed.target
    first_write = not canary.written
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
    role = role_at(steps, canary.step)
    target_name = ctx.spec.target.name
    earlier = role_held(observed.experiment.deployment, target_name)
    if earlier is not None and earlier != role and earlier in roles_until(steps, canary.step):
        # This run's earlier experiment (its shadow) goes before the next one starts.
        remove = earlier.remove(write_message(ctx), Purpose.PROMOTE)
        gone = earlier.candidate(target_name)
        message = (
            f"removing the {earlier.label} experiment on {ctx.spec.target.described} and "
            f"{gone} before the {role.label} (a Pipeline has one experiment at a time)"
        )
        return decision(ctx, run, message, remove)
    name = role.candidate(target_name)
    where = f"{ctx.spec.target.namespace}/{name}"
    if not candidate_in_place(ctx, observed):
        if canary.weight > 0:  # the canary Pipeline carried a weight: someone took it
            return target_changed(ctx, run, f"the {role.label}")
        kind = ActionKind.UPDATE if observed.canary.deployment is not None else ActionKind.CREATE
        body = candidate_pipeline(ctx, plan, name)
        write = Action(kind, body, write_message(ctx), pipeline=name)
        return decision(ctx, run, f"{kind.lower()} of the {role.label} {where} in flight", write)
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
        waiting = f"waiting for the {role.label} {where} to become Ready (state {state.state})"
        return decision(ctx, run, waiting, None, backoff(ctx, run.phase_since, poll=True))
    weight = weight_of(steps, canary.step)
    if role.started(observed.experiment.deployment, target_name, weight):
        # Started before a restart that kept it from being recorded.
        return experiment_started(ctx, run, role)
    message = f"{write_message(ctx)} ({step_name(steps, canary.step)})"
    action = role.start(message, weight)
    return decision(ctx, run, f"{step_name(steps, canary.step)} in flight", action)


def _promote(ctx: Context, run: Run, observed: Observed) -> Decision:
    canary = run.canary
    assert canary is not None
    if observed.target_error is not None:
        return retry_or_fail(ctx, run, observed.target_error)
    target = observed.target
    if target is not None and is_ours(ctx, target, run):
        # The promotion landed, but the operator stopped before recording it.
        return adopt(ctx, replace(run, applied_at=None, canary=replace(canary, weight=100)), target)
    role = role_at(ctx.spec.canary_steps, canary.step)
    held = role.holds(observed.experiment.deployment, ctx.spec.target.name)
    if not held or not candidate_in_place(ctx, observed):
        return target_changed(ctx, run, f"the {role.label}")
    message = f"{write_message(ctx)} ({step_name(ctx.spec.canary_steps, canary.step)})"
    action = role.promote(message)
    return decision(ctx, run, f"{step_name(ctx.spec.canary_steps, canary.step)} in flight", action)


def experiment_started(ctx: Context, run: Run, role: ExperimentRole) -> Decision:
    """The step's experiment does what the step wants (a weight, or a mirror): on to the
    next step, measuring ``role``'s candidate from now on."""
    canary = run.canary
    assert canary is not None
    weight = weight_of(ctx.spec.canary_steps, canary.step)
    name = role.candidate(ctx.spec.target.name)
    canary = replace(canary, weight=weight, canary_predictor=name)
    run = replace(run, canary=canary, last_error=None)
    done = role.says(ctx.spec.target.described, name, weight)
    return enter_step(ctx, run, canary.step + 1, done)


def experiment_done(ctx: Context, run: Run, action: Action, failure: Failure | None) -> Decision:
    """The next step once an action of the canary (a Pipeline write or a call on the
    experiment, not a rollback) succeeded or failed."""
    canary = run.canary
    assert canary is not None
    if failure is not None:
        # A call on the experiment is only made with a candidate in place.
        return _retry_or_undo(ctx, run, failure, written=action.kind in WITH_CANDIDATE)
    run = replace(run, last_error=None, error_since=None)
    target = ctx.spec.target
    role = role_at(ctx.spec.canary_steps, canary.step)
    if action.kind in (ActionKind.SET_WEIGHT, ActionKind.MIRROR):
        return experiment_started(ctx, run, role)
    if action.kind == ActionKind.PROMOTE:
        run = replace(run, applied_at=ctx.now, canary=replace(canary, weight=100))
        return decision(
            ctx,
            run.moved_to(Phase.VERIFYING, ctx.now),
            f"promoted the {role.label} {role.candidate(target.name)} to {target.described}; "
            "waiting for it to become Ready",
            requeue_after=backoff(ctx, ctx.now, poll=True),
        )
    if action.kind == ActionKind.REMOVE:
        removed = role_for(action.experiment) if action.experiment is not None else role
        message = (
            f"removed the {removed.label} experiment on {target.described} and "
            f"{removed.candidate(target.name)}; the {role.label} comes next"
        )
        return decision(ctx, run, message, None, 0.0)
    verb = "created" if action.kind == ActionKind.CREATE else "updated"
    where = f"{target.namespace}/{action.pipeline}"
    message = f"{verb} the {role.label} {where}; waiting for it to become Ready"
    return decision(ctx, run, message, None, backoff(ctx, run.phase_since, poll=True))


def _retry_or_undo(ctx: Context, run: Run, failure: Failure, *, written: bool) -> Decision:
    """Retry, or, once retrying is over, undo what the canary wrote (``written``: a
    candidate Pipeline is in place) instead of leaving it beside the target."""
    decided = retry_or_fail(ctx, run, failure)
    if written and decided.run.phase == Phase.FAILED and run.phase != Phase.ROLLING_BACK:
        return target_failed(ctx, run, failure)
    return decided


def undo_experiment(ctx: Context, observed: Observed, message: str, run: Run) -> Decision | None:
    """The next call of a rollback on the candidates (remove the experiment this run
    started, with its candidate; or a candidate Pipeline of this run left without one),
    or None once neither is left."""
    for answer in (observed.canary, observed.experiment):
        if answer.failure is not None:
            return retry_or_fail(ctx, run, answer.failure)
    target = ctx.spec.target
    held = role_held(observed.experiment.deployment, target.name)
    if held is not None and held in _roles_of(ctx, run):
        remove = held.remove(message, Purpose.ROLLBACK)
        return decision(
            ctx, run, f"removing the {held.label} experiment on {target.described}", remove
        )
    pipeline = observed.canary.deployment
    if pipeline is not None and candidate_in_place(ctx, observed):
        name = str((pipeline.get("metadata") or {}).get("name"))
        delete = Action(ActionKind.DELETE, None, message, Purpose.ROLLBACK, pipeline=name)
        return decision(ctx, run, f"removing {target.namespace}/{name}", delete)
    return None


def _roles_of(ctx: Context, run: Run) -> tuple[ExperimentRole, ...]:
    """The experiments this run may have started by now, the latest first."""
    if run.canary is None:
        return ()
    return roles_until(ctx.spec.canary_steps, run.canary.step)


def read_candidate(
    ctx: Context,
    effects: Effects,
    roles: Sequence[ExperimentRole],
    wanted: Callable[[Mapping[str, Any]], bool],
) -> tuple[Answer, Answer]:
    """The experiment, and the first of ``roles``' candidate Pipelines that is
    ``wanted`` (the experiment's own candidate looked at first), else the first one
    read; a failed read ends the search."""
    experiment = effects.read_experiment()
    held = role_held(experiment.deployment, ctx.spec.target.name)
    first: Answer | None = None
    for role in sorted(roles, key=lambda role: role != held):
        answer = effects.read_pipeline(role.candidate(ctx.spec.target.name))
        found = answer.deployment is not None and wanted(answer.deployment)
        if answer.failure is not None or found:
            return answer, experiment
        first = answer if first is None else first
    return (Answer() if first is None else first), experiment


@dataclass(frozen=True)
class ExperimentCanary:
    """The Canary strategy for a Pipeline (see the module's docstring)."""

    def read(self, ctx: Context, run: Run, source: Answer, effects: Effects) -> Beside:
        source_models, models = read_models(ctx, run, source, effects)
        canary, experiment = self.read_earlier(ctx, run, effects)
        if run.canary is not None and run.phase in (Phase.PROMOTING, Phase.ANALYZING):
            # The candidate the current step works with.
            role = role_at(ctx.spec.canary_steps, run.canary.step)
            canary = effects.read_pipeline(role.candidate(ctx.spec.target.name))
            experiment = effects.read_experiment()
        elif run.canary is not None and run.phase == Phase.ROLLING_BACK:
            # Whichever candidate of this run is left.
            roles = _roles_of(ctx, run)
            canary, experiment = read_candidate(
                ctx, effects, roles, lambda p: written_by(p, ctx.promotion)
            )
        return Beside(source_models, models, canary, experiment)

    def read_earlier(self, ctx: Context, run: Run, effects: Effects) -> tuple[Answer, Answer]:
        """The candidate Pipeline an earlier run left, if any, and the experiment, while
        the run plans."""
        if run.phase not in (Phase.PENDING, Phase.VALIDATING):
            return Answer(), Answer()
        return read_candidate(ctx, effects, ROLES, lambda p: left_by_an_earlier_run(ctx, p))

    def clear(self, ctx: Context, run: Run, observed: Observed) -> Cleared:
        missing = without_target(ctx, run, observed)
        return Cleared(missing, None) if missing else self.clear_earlier(ctx, run, observed)

    def clear_earlier(self, ctx: Context, run: Run, observed: Observed) -> Cleared:
        """Remove the candidate an earlier run left beside the target (a dry run plans as
        if it were gone: it writes nothing)."""
        left = observed.canary.deployment
        if left is not None and left_by_an_earlier_run(ctx, left) and not ctx.spec.dry_run:
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
        assert previous.deployment is not None
        check_models_for_canary(ctx.spec, previous.deployment, models)
        steps = describe_experiment(ctx, describe_models(ctx, models))
        return Planned(plan, models, plan.deployment, steps)

    def summary(self, ctx: Context, run: Run) -> str | Failure:
        return canary_summary(ctx)

    def start(self, ctx: Context, run: Run, done: str) -> Decision:
        # The candidate is a Pipeline beside the target; analysis compares the two.
        target = ctx.spec.target.name
        first = role_at(ctx.spec.canary_steps, 0).candidate(target)
        return start_canary(ctx, run, done, canary=first, stable=target)

    def write(self, ctx: Context, run: Run, planned: Planned, observed: Observed) -> Decision:
        # A canary writes through its steps (proceed): a validated plan starts them.
        return self.start(ctx, run, "validated")

    def proceed(self, ctx: Context, run: Run, observed: Observed) -> Decision | None:
        return step_pass(
            ctx,
            run,
            observed,
            lambda: experiment_write(ctx, run, observed),
            in_place=lambda: candidate_in_place(ctx, observed),
        )

    def done(
        self,
        ctx: Context,
        run: Run,
        action: Action,
        result: Mapping[str, Any] | None,
        failure: Failure | None,
    ) -> Decision | None:
        if action.pipeline is not None or action.kind in EXPERIMENT_ACTIONS:
            return experiment_done(ctx, run, action, failure)
        return None

    def verified(self, ctx: Context, run: Run, ready: str) -> Decision | None:
        return after_verified(ctx, run, ready)

    def in_place(self, ctx: Context, observed: Observed) -> bool:
        return candidate_in_place(ctx, observed)

    def undo(self, ctx: Context, run: Run, observed: Observed, message: str) -> Decision | None:
        # The candidate goes first: the target keeps serving while it does.
        return undo_experiment(ctx, observed, message, run)
