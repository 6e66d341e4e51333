"""Where a run's new version comes from, one type per kind of source: a source
deployment (read from Seldon Deploy), or a version of a registered model in a model
registry (read from the registry once per run, and written into the target as it
is). :func:`source_for` is the one place a kind of source is picked.

Either way the pass gets a source resource to plan from, so the overrides, the
strategies, approval, analysis and rollback treat both alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from promotion_operator.core.overrides import PlanningError
from promotion_operator.core.pass_io import Answer, Context, Effects
from promotion_operator.core.registry import with_version
from promotion_operator.core.run import FINISHED, Failure, ModelVersion, Run
from promotion_operator.core.spec import PromotionSpec, RegistrySource


class SourceRead(NamedTuple):
    """The source to plan from (or why there is none), and the model version it carries."""

    answer: Answer
    version: ModelVersion | None = None


class PromotionSource(Protocol):
    """A kind of source: what a pass that plans reads to get the promoted resource."""

    def read(self, spec: PromotionSpec, run: Run, effects: Effects) -> SourceRead:
        """The source resource for ``run``."""
        ...


class DeploymentSource:
    """A SeldonDeployment, Model or Pipeline in Seldon Deploy, promoted as it is."""

    def read(self, spec: PromotionSpec, run: Run, effects: Effects) -> SourceRead:
        return SourceRead(effects.read_source())


@dataclass(frozen=True)
class RegistryVersionSource:
    """A registered model's version: the target as it was before the run, carrying the
    version's storage URI. The version is read once, when the run first plans; later
    passes of the run use the version it recorded, so an alias moved mid-run does not
    change what the run writes."""

    registry: RegistrySource

    def read(self, spec: PromotionSpec, run: Run, effects: Effects) -> SourceRead:
        version = run.model_version
        if version is None:
            found = effects.read_model_version()
            if found.failure is not None or found.version is None:
                return SourceRead(Answer(failure=found.failure or _no_answer(self.registry)))
            version = found.version
        previous = run.previous
        if previous is not None and previous.existed and previous.deployment is not None:
            base = previous.deployment  # the target before this run wrote it
        else:
            target = effects.read_target()
            if target.failure is not None:
                return SourceRead(Answer(failure=target.failure), version)
            if target.deployment is None:
                return SourceRead(Answer(failure=_no_target(spec)), version)
            base = target.deployment
        try:
            body = with_version(base, spec.target.kind, self.registry, version)
        except PlanningError as error:
            return SourceRead(Answer(failure=Failure("Invalid", str(error))), version)
        (body.get("metadata") or {}).pop("generation", None)  # the target's, not a source's
        return SourceRead(Answer(body), version)


def moved_version(ctx: Context, recorded: Run | None, effects: Effects) -> ModelVersion | None:
    """With ``follow``: the version the alias names now, when it is one this generation
    has not tried yet (neither the recorded run's nor one in its history, whatever their
    outcome) and the recorded run has ended; else None. One registry read per poll; a
    failed read is None too (the alias is read again at the next poll). A retry request
    starts its run itself, with the version read afresh."""
    registry = ctx.spec.registry
    if registry is None or not registry.follow or recorded is None:
        return None
    if recorded.generation != ctx.promotion.generation or recorded.phase not in FINISHED:
        return None
    if ctx.requests.retry is not None and ctx.requests.retry != recorded.last_retry:
        return None
    found = effects.read_model_version().version
    if found is None:
        return None
    tried = {entry.model_version.version for entry in recorded.history if entry.model_version}
    if recorded.model_version is not None:
        tried.add(recorded.model_version.version)
    return None if found.version in tried else found


def poll_interval(spec: PromotionSpec) -> float | None:
    """How long until a settled run's followed alias is read again; None: not following."""
    if spec.registry is None or not spec.registry.follow:
        return None
    return spec.registry.poll_seconds


def source_for(spec: PromotionSpec) -> PromotionSource:
    """The kind of source ``spec`` names."""
    if spec.registry is not None:
        return RegistryVersionSource(spec.registry)
    return DeploymentSource()


def _no_target(spec: PromotionSpec) -> Failure:
    return Failure(
        "TargetNotFound",
        f"{spec.target.described} does not exist: a version from the model registry is "
        "written into an existing target; create it first",
        http_status=404,
    )


def _no_answer(registry: RegistrySource) -> Failure:
    return Failure("ModelVersionNotFound", f"the registry gave no version for {registry.described}")
