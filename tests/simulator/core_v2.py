"""Seldon Core v2 objects as the API shows them: Models, Pipelines, Experiments.

Everything here is a pure function of the store and "now", like the deployment
status: no background tasks. A Model is Ready while its rollout is Available; a
Pipeline is Ready while its own rollout is Available and every Model its steps
name exists and is Ready; an Experiment is Ready while every pipeline it names
(candidates and mirror) is Ready.
"""

from __future__ import annotations

import copy
from itertools import pairwise
from typing import Any

from tests.simulator.store import Deployment, Experiment, Rollout, Store, rfc3339
from tests.simulator.validation import (
    CORE_API_VERSION,
    EXPERIMENT_KIND,
    MODEL_KIND,
    PIPELINE_KIND,
    experiment_pipelines,
    step_names,
)

CANARY_SUFFIX = "-canary"
SHADOW_SUFFIX = "-shadow"


def canary_name(pipeline: str) -> str:
    """The pipeline that is the canary candidate of `pipeline` (the simulator's convention)."""
    return pipeline + CANARY_SUFFIX


def shadow_name(pipeline: str) -> str:
    """The pipeline that is the shadow candidate of `pipeline` (the simulator's convention)."""
    return pipeline + SHADOW_SUFFIX


def _condition(
    kind: str, ok: bool, reason: str, message: str | None, since: float
) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message or "",
        "lastTransitionTime": rfc3339(since),
    }


def _metadata(obj: Deployment | Experiment) -> dict[str, Any]:
    metadata = copy.deepcopy(obj.metadata)
    metadata.update(
        {
            "name": obj.name,
            "namespace": obj.namespace,
            "uid": obj.uid,
            "resourceVersion": str(obj.resource_version),
            "generation": obj.generation,
            "creationTimestamp": rfc3339(obj.created_at),
        }
    )
    return metadata


def _phase(rollout: Rollout, now: float) -> tuple[bool, str, str | None, float]:
    """(available, state, description, since) of a rollout at `now`."""
    state, description = rollout.state_at(now)
    return state == "Available", state, description, rollout.transition_at(now)


# -- Models --------------------------------------------------------------------

_MODEL_REASONS = {"Creating": "ModelProgressing", "Available": "ModelAvailable"}


def desired_replicas(spec: dict[str, Any]) -> int:
    """`replicas`, else `minReplicas`, else 1."""
    for key in ("replicas", "minReplicas"):
        value = spec.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 1


def model_ready(model: Deployment | None, now: float) -> bool:
    """Whether a model exists (since before `now`) and its rollout is Available at `now`."""
    if model is None or now < model.created_at:
        return False
    rollout = model.rollout_at(now)
    return rollout is not None and rollout.state_at(now)[0] == "Available"


def model_status(model: Deployment, now: float) -> dict[str, Any] | None:
    """`{observedGeneration, replicas, conditions: [ModelReady, Ready]}`, or None before a sync."""
    rollout = model.rollout_at(now)
    if rollout is None:
        return None
    ok, state, description, since = _phase(rollout, now)
    reason = _MODEL_REASONS.get(state, "ModelFailed")
    return {
        "observedGeneration": rollout.generation,
        "replicas": desired_replicas(model.spec) if ok else 0,
        "conditions": [
            _condition("ModelReady", ok, reason, description, since),
            _condition("Ready", ok, reason, description, since),
        ],
    }


def render_model(model: Deployment, now: float) -> dict[str, Any]:
    """A Model as the API returns it (Kubernetes shape, nested metadata)."""
    body: dict[str, Any] = {
        "apiVersion": CORE_API_VERSION,
        "kind": MODEL_KIND,
        "metadata": _metadata(model),
        "spec": copy.deepcopy(model.spec),
    }
    status = model_status(model, now)
    if status is not None:
        body["status"] = status
    return body


# -- Pipelines -----------------------------------------------------------------

_PIPELINE_REASONS = {"Creating": "PipelineCreating", "Available": "PipelineReady"}


def _models_condition(
    store: Store, pipeline: Deployment, rollout: Rollout, now: float
) -> tuple[dict[str, str], float]:
    """ModelsReady (every step names an existing Model that is Ready now), and its time.

    The time is the latest transition among the pipeline's rollout start and
    its existing models' states (the simulator does not remember when a model
    was deleted).
    """
    missing: list[str] = []
    not_ready: list[str] = []
    times = [rollout.started_at]
    for name in step_names(pipeline.spec):
        model = store.get(pipeline.namespace, name, "Model")
        model_rollout = None if model is None else model.rollout_at(now)
        if model is None or model_rollout is None:
            missing.append(name)
            continue
        times.append(model_rollout.transition_at(now))
        if not model_ready(model, now):
            not_ready.append(name)
    since = max(times)
    if not missing and not not_ready:
        return _condition("ModelsReady", True, "ModelsReady", "", since), since
    parts = []
    if missing:
        parts.append(f"models missing: {', '.join(missing)}")
    if not_ready:
        parts.append(f"models not ready: {', '.join(not_ready)}")
    message = "; ".join(parts)
    return _condition("ModelsReady", False, "ModelsNotReady", message, since), since


def pipeline_status(store: Store, pipeline: Deployment, now: float) -> dict[str, Any] | None:
    """`{observedGeneration, conditions: [ModelsReady, PipelineReady, Ready]}`, or None."""
    rollout = pipeline.rollout_at(now)
    if rollout is None:
        return None
    ok, state, description, since = _phase(rollout, now)
    own = _condition(
        "PipelineReady",
        ok,
        _PIPELINE_REASONS.get(state, "PipelineFailed"),
        description,
        since,
    )
    models, models_since = _models_condition(store, pipeline, rollout, now)
    # Ready carries the first False of PipelineReady, ModelsReady (a failed
    # pipeline shows PipelineFailed), or True once both are.
    failed = [c for c in (own, models) if c["status"] == "False"]
    if failed:
        ready = dict(failed[0], type="Ready")
    else:
        ready = _condition("Ready", True, "PipelineReady", "", max(since, models_since))
    return {"observedGeneration": rollout.generation, "conditions": [models, own, ready]}


def pipeline_ready(store: Store, namespace: str, name: str, now: float) -> bool:
    """Whether a pipeline exists and is Ready at `now` (its rollout and all its models)."""
    pipeline = store.get(namespace, name, "Pipeline")
    if pipeline is None or now < pipeline.created_at:
        return False
    rollout = pipeline.rollout_at(now)
    if rollout is None or rollout.state_at(now)[0] != "Available":
        return False
    return all(
        model_ready(store.get(namespace, m, "Model"), now) for m in step_names(pipeline.spec)
    )


def ready_intervals(
    store: Store, namespace: str, name: str, start: float, end: float
) -> list[tuple[float, float]]:
    """The parts of [start, end] in which the pipeline is Ready, with the store as it is now.

    Readiness changes only where the pipeline or one of its models is created
    or a rollout of theirs starts or ends, so it is constant between those
    moments.
    """
    pipeline = store.get(namespace, name, "Pipeline")
    if pipeline is None or end <= start:
        return []
    objects = [pipeline]
    for model_name in step_names(pipeline.spec):
        model = store.get(namespace, model_name, "Model")
        if model is None:
            return []
        objects.append(model)
    moments = {start, end}
    for obj in objects:
        if start < obj.created_at < end:
            moments.add(obj.created_at)
        for rollout in obj.rollouts():
            for moment in (rollout.started_at, rollout.started_at + rollout.duration):
                if start < moment < end:
                    moments.add(moment)
    intervals: list[tuple[float, float]] = []
    for a, b in pairwise(sorted(moments)):
        if not pipeline_ready(store, namespace, name, (a + b) / 2):
            continue
        if intervals and intervals[-1][1] == a:
            intervals[-1] = (intervals[-1][0], b)
        else:
            intervals.append((a, b))
    return intervals


def render_pipeline(store: Store, pipeline: Deployment, now: float) -> dict[str, Any]:
    """A Pipeline as the API returns it (Kubernetes shape, nested metadata)."""
    body: dict[str, Any] = {
        "apiVersion": CORE_API_VERSION,
        "kind": PIPELINE_KIND,
        "metadata": _metadata(pipeline),
        "spec": copy.deepcopy(pipeline.spec),
    }
    status = pipeline_status(store, pipeline, now)
    if status is not None:
        body["status"] = status
    return body


def pipeline_models(store: Store, pipeline: Deployment, now: float) -> dict[str, Any]:
    """The `ModelList` of the existing Models the steps name, in step order."""
    items = []
    for name in step_names(pipeline.spec):
        model = store.get(pipeline.namespace, name, "Model")
        if model is not None:
            items.append(render_model(model, now))
    return {"apiVersion": CORE_API_VERSION, "kind": "ModelList", "metadata": {}, "items": items}


def pipeline_list(store: Store, namespace: str, now: float) -> dict[str, Any]:
    """The `PipelineList` of a namespace, by name."""
    return {
        "apiVersion": CORE_API_VERSION,
        "kind": "PipelineList",
        "metadata": {},
        "items": [render_pipeline(store, p, now) for p in store.list(namespace, "Pipeline")],
    }


# -- Experiments ---------------------------------------------------------------


def canary_spec(pipeline: str, weight: int) -> dict[str, Any]:
    """The experiment spec of a canary of `pipeline` at `weight` percent."""
    return {
        "default": pipeline,
        "resourceType": "pipeline",
        "candidates": [
            {"name": pipeline, "weight": 100 - weight},
            {"name": canary_name(pipeline), "weight": weight},
        ],
    }


def shadow_spec(pipeline: str) -> dict[str, Any]:
    """The experiment spec of a shadow of `pipeline` (a full mirror)."""
    return {
        "default": pipeline,
        "resourceType": "pipeline",
        "candidates": [{"name": pipeline, "weight": 100}],
        "mirror": {"name": shadow_name(pipeline), "percent": 100},
    }


def is_canary(experiment: Experiment) -> bool:
    """Whether an experiment is a canary of its pipeline: a candidate is `P-canary`."""
    wanted = canary_name(experiment.name)
    return any(
        isinstance(c, dict) and c.get("name") == wanted
        for c in experiment.spec.get("candidates") or []
    )


def is_shadow(experiment: Experiment) -> bool:
    """Whether an experiment is a shadow of its pipeline: its mirror is `P-shadow`."""
    mirror = experiment.spec.get("mirror")
    return isinstance(mirror, dict) and mirror.get("name") == shadow_name(experiment.name)


def routes(store: Store, namespace: str, name: str) -> dict[str, float]:
    """Where requests to pipeline `name` go: pipeline -> share (a mirror gets a copy).

    Without an experiment everything goes to the pipeline; with one, candidates
    share by weight (all to the pipeline if the weights sum to 0) and the
    mirror receives `percent` % on top.
    """
    experiment = store.experiments.get((namespace, name))
    if experiment is None:
        return {name: 1.0}
    candidates = [c for c in experiment.spec.get("candidates") or [] if isinstance(c, dict)]
    total = sum(int(c.get("weight") or 0) for c in candidates)
    shares: dict[str, float] = {}
    if total > 0:
        for candidate in candidates:
            target = str(candidate["name"])
            shares[target] = shares.get(target, 0.0) + int(candidate.get("weight") or 0) / total
    else:
        shares[name] = 1.0
    mirror = experiment.spec.get("mirror")
    if isinstance(mirror, dict) and isinstance(mirror.get("name"), str):
        percent = mirror.get("percent", 100)
        share = (int(percent) if isinstance(percent, int) else 100) / 100
        shares[mirror["name"]] = shares.get(mirror["name"], 0.0) + share
    return shares


def experiment_status(store: Store, experiment: Experiment, now: float) -> dict[str, Any]:
    """`{observedGeneration, conditions: [Ready]}`: Ready while every named pipeline is."""
    names = experiment_pipelines(experiment.spec)
    not_ready = [n for n in names if not pipeline_ready(store, experiment.namespace, n, now)]
    times = [experiment.updated_at]
    for name in names:
        pipeline = store.get(experiment.namespace, name, "Pipeline")
        rollout = None if pipeline is None else pipeline.rollout_at(now)
        if rollout is not None:
            times.append(rollout.transition_at(now))
    if not_ready:
        ready = _condition(
            "Ready",
            False,
            "CandidatesNotReady",
            f"pipelines not ready: {', '.join(not_ready)}",
            max(times),
        )
    else:
        ready = _condition("Ready", True, "ExperimentReady", "", max(times))
    return {"observedGeneration": experiment.generation, "conditions": [ready]}


def render_experiment(store: Store, experiment: Experiment, now: float) -> dict[str, Any]:
    """A `SeldonExperiment` as the API returns it."""
    return {
        "apiVersion": CORE_API_VERSION,
        "kind": EXPERIMENT_KIND,
        "metadata": _metadata(experiment),
        "spec": copy.deepcopy(experiment.spec),
        "status": experiment_status(store, experiment, now),
    }
