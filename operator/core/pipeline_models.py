"""The Models a promoted Pipeline brings with it.

A Seldon Core v2 Pipeline's steps name Models, which must exist (and be Ready)
in the Pipeline's namespace before it can serve. Promoting a Pipeline therefore
writes, before the Pipeline itself, each Model its source's steps name that the
target namespace lacks or has at another spec, in step order, one write per
pass; then waits until every Model the steps name is Ready; then writes the
Pipeline. A rollback undoes the Pipeline first, then every Model the run wrote,
in reverse order: a Model it created is deleted, one it updated gets its
previous spec back.

Crash safety is the target's: each Model write carries this run's provenance
annotations, so a restarted operator recognises a write that landed before it
could record it, and never writes it twice. Which Models were written is
recorded in ``status.models`` as soon as it is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from promotion_operator.core.kinds import readiness
from promotion_operator.core.pass_io import (
    Action,
    Answer,
    Context,
    Decision,
    Effects,
    ModelsAnswer,
    Observed,
    Purpose,
)
from promotion_operator.core.planning import (
    Plan,
    check_model_overrides,
    plan_model,
    spec_hash,
    storage_uris,
    strip_server_fields,
    written_by,
)
from promotion_operator.core.run import ActionKind, Dependency, Failure, Phase, PreviousTarget, Run
from promotion_operator.core.spec import DeploymentRef, Kind
from promotion_operator.core.transitions import (
    backoff,
    deadline,
    decision,
    retry_or_fail,
    target_failed,
    timed_out,
    write_message,
)


@dataclass(frozen=True)
class PlannedModel:
    """A Model to have beside the promoted Pipeline: the body to write, and what the
    run found in its place."""

    body: Mapping[str, Any]
    dependency: Dependency

    @property
    def name(self) -> str:
        return self.dependency.name


def read_models(
    ctx: Context, run: Run, source: Answer, effects: Effects
) -> tuple[ModelsAnswer | None, dict[str, Answer]]:
    """The Model reads a pass of a Pipeline's run needs: the source's step models and
    those of the same names beside the target (when planning or writing), or the ones
    it wrote (when rolling back)."""
    recorded = [d.name for d in run.models]
    if run.phase in (Phase.PENDING, Phase.VALIDATING, Phase.PROMOTING):
        source_models = None
        names = list(recorded)
        if source.deployment is not None:
            source_models = effects.read_source_models()
            names = list(dict.fromkeys([*step_models(source.deployment), *recorded]))
        return source_models, {name: effects.read_model(name) for name in names}
    if run.phase == Phase.ROLLING_BACK:
        return None, {d.name: effects.read_model(d.name) for d in run.models if d.written}
    return None, {}


def step_models(pipeline: Mapping[str, Any]) -> list[str]:
    """The Models a Pipeline's steps name, in step order, each once."""
    steps = (pipeline.get("spec") or {}).get("steps") or ()
    names = (s.get("name") for s in steps if isinstance(s, Mapping))
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n))


def plan_models(
    ctx: Context, run: Run, source: Mapping[str, Any], observed: Observed
) -> tuple[PlannedModel, ...] | Failure:
    """The Models to have beside the promoted Pipeline, or why they cannot be planned
    yet (a step names a Model the source namespace lacks). Raises PlanningError for
    overrides that name no step's Model."""
    names = step_models(source)
    check_model_overrides(ctx.spec, names)
    answer = observed.source_models or ModelsAnswer()
    found = {_name(m): m for m in answer.models}
    missing = [name for name in names if name not in found]
    if missing:
        return Failure(
            "SourceNotFound",
            f"the steps of {ctx.spec.source.described} name Models that "
            f"{ctx.spec.source.namespace} lacks: {', '.join(missing)}",
            http_status=404,
            retryable=True,
        )
    recorded = {d.name: d for d in run.models}
    planned = []
    for name in names:
        body = plan_model(found[name], ctx.spec, ctx.promotion)
        current = observed.models.get(name, Answer()).deployment
        earlier = recorded.get(name)
        if current is not None and written_by(current, ctx.promotion) and earlier is not None:
            dependency = replace(earlier, written=True)  # this run's own write
        elif current is None:
            dependency = Dependency(name, ActionKind.CREATE, PreviousTarget(existed=False))
        elif _spec_hash(current) == _spec_hash(body):
            dependency = Dependency(name, None, PreviousTarget(True, _spec_hash(current)))
        else:
            previous = PreviousTarget(True, _spec_hash(current), strip_server_fields(current))
            dependency = Dependency(name, ActionKind.UPDATE, previous)
        planned.append(PlannedModel(body, dependency))
    return tuple(planned)


def with_models(
    ctx: Context, run: Run, plan: Plan, observed: Observed
) -> tuple[Plan, tuple[PlannedModel, ...]] | Failure:
    """``plan`` (a Pipeline's) with the Models it brings: what it promotes as one hash,
    and their storage URIs; or why they cannot be planned yet (see :func:`plan_models`)."""
    assert observed.source is not None
    models = plan_models(ctx, run, observed.source, observed)
    if isinstance(models, Failure):
        return models
    plan = replace(
        plan,
        source_spec_hash=source_hash(plan.source_spec_hash, models),
        model_uris=storage_uris(m.body for m in models),
    )
    return plan, models


def source_hash(pipeline_hash: str, planned: Sequence[PlannedModel]) -> str:
    """What the run promotes, as one hash: the Pipeline's spec and its Models' (a
    change to any of them between validation and the writes plans the run again)."""
    return spec_hash(
        {"pipeline": pipeline_hash, "models": {p.name: _spec_hash(p.body) for p in planned}}
    )


def same_models(recorded: Sequence[Dependency], planned: Sequence[PlannedModel]) -> bool:
    """Whether the Models beside the target are as the run found them when it planned."""

    def key(d: Dependency) -> tuple[str, ActionKind | None, bool, str | None]:
        return d.name, d.action, d.previous.existed, d.previous.spec_hash

    return [key(d) for d in recorded] == [key(p.dependency) for p in planned]


def describe_models(ctx: Context, planned: Sequence[PlannedModel]) -> tuple[str, ...]:
    """The Model writes and the wait before the Pipeline's, as a dry run reports them."""
    out = [
        f"{str(p.dependency.action).lower()} {_ref(ctx, p.name).described}"
        for p in planned
        if p.dependency.action is not None
    ]
    names = ", ".join(p.name for p in planned)
    out.append(f"wait until the Models {names} are Ready in {ctx.spec.target.namespace}")
    return tuple(out)


def write_models(
    ctx: Context, run: Run, planned: Sequence[PlannedModel], observed: Observed
) -> Decision | None:
    """The next Model write, or the wait for the Models to be Ready; None once the
    Pipeline may be written."""
    for index, model in enumerate(planned):
        dependency = model.dependency
        if dependency.action is None or dependency.written:
            continue
        exists = observed.models.get(model.name, Answer()).deployment is not None
        kind = ActionKind.UPDATE if exists else ActionKind.CREATE
        write = Action(kind, model.body, write_message(ctx), model=model.name)
        verb = "update" if exists else "create"
        what = f"{verb} of {_ref(ctx, model.name).described} ({index + 1}/{len(planned)})"
        return decision(ctx, run, f"{what} in flight, before {ctx.spec.target.described}", write)
    waiting = []
    for model in planned:
        found = observed.models.get(model.name, Answer()).deployment
        ref = _ref(ctx, model.name).described
        if found is None:
            gone = Failure("TargetChanged", f"{ref} was deleted while the run waited for it")
            return target_failed(ctx, run, gone)
        state = readiness(Kind.MODEL, found)
        generation = (found.get("metadata") or {}).get("generation")
        # A status about an older generation (a GitOps sync pending) decides nothing.
        current = generation is None or (state.observed_generation or 0) >= generation
        if state.failed and current:
            why = f": {state.description}" if state.description else ""
            failed = Failure("TargetFailed", f"{ref} went {state.state}{why}")
            return target_failed(ctx, run, failed)
        if not (state.ready and current):
            waiting.append(model.name)
    if not waiting:
        return None
    if ctx.now >= deadline(ctx, run):
        return target_failed(ctx, run, timed_out(ctx, f"Models {', '.join(waiting)} not Ready"))
    message = (
        f"waiting for the Models {', '.join(waiting)} in {ctx.spec.target.namespace} "
        f"to become Ready before writing {ctx.spec.target.described}"
    )
    return decision(ctx, run, message, None, backoff(ctx, run.phase_since, poll=True))


def model_written(ctx: Context, run: Run, action: Action, failure: Failure | None) -> Decision:
    """The next step once the write of a Model (``action.model``) succeeded or failed."""
    if failure is not None:
        if action.kind == ActionKind.UPDATE and failure.http_status == 404:
            failure = replace(failure, retryable=True)  # it vanished: the next pass creates it
        return retry_or_fail(ctx, run, failure)
    models = tuple(replace(d, written=True) if d.name == action.model else d for d in run.models)
    verb = "created" if action.kind == ActionKind.CREATE else "updated"
    assert action.model is not None
    message = f"{verb} {_ref(ctx, action.model).described}"
    return decision(ctx, replace(run, models=models, last_error=None), message, None, 0.0)


def undo_models(ctx: Context, run: Run, observed: Observed, message: str) -> Decision | None:
    """The next Model a rollback undoes (latest written first), or None when none is left.

    A Model no longer carrying this run's write (deleted, restored, or changed by
    someone else since) is left as it is."""
    for dependency in reversed(run.models):
        if not dependency.written:
            continue
        answer = observed.models.get(dependency.name, Answer())
        if answer.failure is not None:
            return retry_or_fail(ctx, run, answer.failure)
        current = answer.deployment
        if current is None or not written_by(current, ctx.promotion):
            continue
        ref = _ref(ctx, dependency.name).described
        previous = dependency.previous
        if previous.existed and previous.deployment is not None:
            undo = Action(
                ActionKind.UPDATE, previous.deployment, message, Purpose.ROLLBACK, dependency.name
            )
            return decision(ctx, run, f"restoring the previous spec of {ref}", undo)
        if previous.existed:
            lost = Failure("RollbackFailed", f"the previous spec of {ref} was not recorded")
            return retry_or_fail(ctx, run, lost)
        remove = Action(ActionKind.DELETE, None, message, Purpose.ROLLBACK, dependency.name)
        return decision(ctx, run, f"removing {ref}, which did not exist before", remove)
    return None


def models_written(run: Run) -> bool:
    """Whether the run wrote any Model (as recorded)."""
    return any(d.written for d in run.models)


def with_landed_models(ctx: Context, run: Run, observed: Observed) -> Run:
    """``run`` with every Model a read of this pass shows carrying its write marked
    written (a write can land just before a restart that kept it from being recorded)."""

    def landed(dependency: Dependency) -> bool:
        found = observed.models.get(dependency.name, Answer()).deployment
        return found is not None and written_by(found, ctx.promotion)

    models = tuple(replace(d, written=d.written or landed(d)) for d in run.models)
    return replace(run, models=models)


def _ref(ctx: Context, name: str) -> DeploymentRef:
    return ctx.spec.target.model(name)


def _name(model: Mapping[str, Any]) -> str:
    # Seldon Deploy nests the name in metadata; seldon-deploy-sdk's list type has it inline.
    metadata = model.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else model.get("name")
    return str(name or "")


def _spec_hash(resource: Mapping[str, Any]) -> str:
    return spec_hash(resource.get("spec") or {})
