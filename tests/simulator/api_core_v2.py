"""Seldon Core v2 routes (Models, Pipelines, Experiments), at seldon-deploy-sdk 2.4.0's paths.

Auth, namespace permissions, the error shape, the request log and faults are the
ones SeldonDeployments have (the middleware and `api.authorize`). Every write
first advances the traffic model, because routing and readiness of pipelines
are read from the store as it is when the counters advance.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.simulator.api import (
    authorize,
    json_body,
    message_response,
    record_commit,
)
from tests.simulator.config import API_BASE
from tests.simulator.core_v2 import (
    canary_name,
    canary_spec,
    is_canary,
    is_shadow,
    pipeline_list,
    pipeline_models,
    render_experiment,
    render_model,
    render_pipeline,
    shadow_name,
    shadow_spec,
)
from tests.simulator.errors import ApiError
from tests.simulator.gitops import audit_log
from tests.simulator.namespaces import Namespace
from tests.simulator.state import Simulator
from tests.simulator.store import Deployment, Experiment, Kind, Store
from tests.simulator.validation import (
    DeploymentBody,
    InvalidDeployment,
    experiment_pipelines,
    parse_experiment,
    parse_model,
    parse_pipeline,
)

_NAMESPACE = API_BASE + "/namespaces/{namespace}"
_MODELS = _NAMESPACE + "/models"
_MODEL = _MODELS + "/{name}"
_PIPELINES = _NAMESPACE + "/pipelines"
_PIPELINE = _PIPELINES + "/{name}"
_EXPERIMENT = _PIPELINE + "/experiment"
_WEIGHT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class _KindApi:
    """What differs between the Model and Pipeline routes."""

    kind: Kind
    noun: str
    parse: Callable[[object, str], DeploymentBody]
    render: Callable[[Store, Deployment, float], dict[str, Any]]


_MODEL_API = _KindApi(
    kind="Model",
    noun="model",
    parse=parse_model,
    render=lambda _store, model, now: render_model(model, now),
)
_PIPELINE_API = _KindApi(
    kind="Pipeline", noun="pipeline", parse=parse_pipeline, render=render_pipeline
)


@dataclass(frozen=True)
class _Role:
    """Canary or shadow: how the candidate is named and how its experiment is recognised."""

    label: str
    candidate_of: Callable[[str], str]
    matches: Callable[[Experiment], bool]


_CANARY = _Role("canary", canary_name, is_canary)
_SHADOW = _Role("shadow", shadow_name, is_shadow)


def add_routes(app: web.Application) -> None:
    """Register the Core v2 routes (there is no list of models in the SDK, so none here)."""
    router = app.router
    router.add_post(_MODELS, create_model)
    router.add_get(_MODEL, read_model)
    router.add_put(_MODEL, update_model)
    router.add_delete(_MODEL, delete_model)
    router.add_get(_MODEL + "/gitlogs", model_git_logs)
    router.add_get(_PIPELINES, list_pipelines)
    router.add_post(_PIPELINES, create_pipeline)
    router.add_get(_PIPELINE, read_pipeline)
    router.add_put(_PIPELINE, update_pipeline)
    router.add_delete(_PIPELINE, delete_pipeline)
    router.add_get(_PIPELINE + "/models", list_pipeline_models)
    router.add_get(_PIPELINE + "/gitlogs", pipeline_git_logs)
    router.add_get(_EXPERIMENT, read_experiment)
    router.add_post(_EXPERIMENT, create_experiment)
    router.add_put(_EXPERIMENT, update_experiment)
    router.add_delete(_EXPERIMENT, delete_experiment)
    router.add_post(_EXPERIMENT + "/canary", create_canary)
    router.add_put(_EXPERIMENT + "/canary", promote_canary)
    router.add_delete(_EXPERIMENT + "/canary", remove_canary)
    router.add_post(_EXPERIMENT + "/shadow", create_shadow)
    router.add_put(_EXPERIMENT + "/shadow", promote_shadow)
    router.add_delete(_EXPERIMENT + "/shadow", remove_shadow)


def _advance(simulator: Simulator) -> float:
    # Count the traffic up to now with the routing and readiness before this write.
    now = simulator.clock()
    simulator.traffic.advance(simulator.store, now)
    return now


def _not_found(api: _KindApi, namespace: str, name: str) -> ApiError:
    return ApiError(404, f"{api.noun} {namespace}/{name} not found")


async def _parsed(request: web.Request, api: _KindApi, namespace: str) -> DeploymentBody:
    decoded = await json_body(request, api.kind)
    try:
        return api.parse(decoded, namespace)
    except InvalidDeployment as exc:
        raise ApiError(400, f"invalid {api.kind}: {exc}") from exc


# -- Models and Pipelines ------------------------------------------------------


async def _create(request: web.Request, api: _KindApi) -> web.Response:
    simulator, namespace = authorize(request, "write")
    body = await _parsed(request, api, namespace.name)
    if simulator.store.get(namespace.name, body.name, api.kind) is not None:
        raise ApiError(409, f"{api.noun} {namespace.name}/{body.name} already exists")
    now = _advance(simulator)
    obj = simulator.store.write(namespace, body, now, api.kind)
    record_commit(
        request, simulator, namespace, body.name, body, "Create", f"Create {body.name}", api.kind
    )
    return web.json_response(api.render(simulator.store, obj, now))


async def _read(request: web.Request, api: _KindApi) -> web.Response:
    simulator, namespace = authorize(request, "read")
    name = request.match_info["name"]
    obj = simulator.store.get(namespace.name, name, api.kind)
    if obj is None:
        raise _not_found(api, namespace.name, name)
    return web.json_response(api.render(simulator.store, obj, simulator.clock()))


async def _update(request: web.Request, api: _KindApi) -> web.Response:
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    body = await _parsed(request, api, namespace.name)
    if body.name != name:
        raise ApiError(400, f"metadata.name {body.name!r} does not match the path's {name!r}")
    if simulator.store.get(namespace.name, name, api.kind) is None:
        raise _not_found(api, namespace.name, name)
    now = _advance(simulator)
    obj = simulator.store.write(namespace, body, now, api.kind)
    record_commit(request, simulator, namespace, name, body, "Update", f"Update {name}", api.kind)
    return web.json_response(api.render(simulator.store, obj, now))


async def _delete(request: web.Request, api: _KindApi) -> web.Response:
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    if simulator.store.get(namespace.name, name, api.kind) is None:
        raise _not_found(api, namespace.name, name)
    _advance(simulator)
    simulator.store.remove(namespace.name, name, api.kind)
    record_commit(request, simulator, namespace, name, None, "Delete", f"Delete {name}", api.kind)
    return message_response(f"{api.noun} {namespace.name}/{name} deleted")


async def _git_logs(request: web.Request, api: _KindApi) -> web.Response:
    simulator, namespace = authorize(request, "read")
    if not namespace.gitops:
        raise ApiError(400, f"namespace {namespace.name} is not a GitOps namespace")
    history = simulator.gitlog.history(namespace.name, request.match_info["name"], api.kind)
    return web.json_response([audit_log(c) for c in history])


async def create_model(request: web.Request) -> web.Response:
    """Create a Model; 409 if the name is taken. In GitOps namespaces this is a commit."""
    return await _create(request, _MODEL_API)


async def read_model(request: web.Request) -> web.Response:
    """One Model with the status the cluster reports now."""
    return await _read(request, _MODEL_API)


async def update_model(request: web.Request) -> web.Response:
    """Replace a Model; 404 if missing, 400 if the body names another model."""
    return await _update(request, _MODEL_API)


async def delete_model(request: web.Request) -> web.Response:
    """Delete a Model (pipelines naming it stop being Ready)."""
    return await _delete(request, _MODEL_API)


async def model_git_logs(request: web.Request) -> web.Response:
    """A Model's commits, newest first, as `list[AuditLog]` (GitOps namespaces only)."""
    return await _git_logs(request, _MODEL_API)


async def list_pipelines(request: web.Request) -> web.Response:
    """The `PipelineList` of a namespace."""
    simulator, namespace = authorize(request, "read")
    return web.json_response(pipeline_list(simulator.store, namespace.name, simulator.clock()))


async def create_pipeline(request: web.Request) -> web.Response:
    """Create a Pipeline; 409 if the name is taken. In GitOps namespaces this is a commit."""
    return await _create(request, _PIPELINE_API)


async def read_pipeline(request: web.Request) -> web.Response:
    """One Pipeline with the status the cluster reports now."""
    return await _read(request, _PIPELINE_API)


async def update_pipeline(request: web.Request) -> web.Response:
    """Replace a Pipeline; 404 if missing, 400 if the body names another pipeline."""
    return await _update(request, _PIPELINE_API)


async def delete_pipeline(request: web.Request) -> web.Response:
    """Delete a Pipeline and its experiment."""
    return await _delete(request, _PIPELINE_API)


async def pipeline_git_logs(request: web.Request) -> web.Response:
    """A Pipeline's commits, newest first, as `list[AuditLog]` (GitOps namespaces only)."""
    return await _git_logs(request, _PIPELINE_API)


async def list_pipeline_models(request: web.Request) -> web.Response:
    """The existing Models the pipeline's steps name, in step order (`ModelList`)."""
    simulator, namespace = authorize(request, "read")
    name = request.match_info["name"]
    pipeline = simulator.store.get(namespace.name, name, "Pipeline")
    if pipeline is None:
        raise _not_found(_PIPELINE_API, namespace.name, name)
    return web.json_response(pipeline_models(simulator.store, pipeline, simulator.clock()))


# -- Experiments ---------------------------------------------------------------


def _require_pipeline(simulator: Simulator, namespace: str, name: str, role: str = "") -> None:
    if simulator.store.get(namespace, name, "Pipeline") is None:
        prefix = f"{role} pipeline" if role else "pipeline"
        raise ApiError(404, f"{prefix} {namespace}/{name} not found")


def _experiment(
    simulator: Simulator, namespace: str, name: str, role: _Role | None = None
) -> Experiment:
    """The experiment of pipeline `name` (a canary or shadow one if `role` says), or 404."""
    experiment = simulator.store.experiments.get((namespace, name))
    if experiment is None or (role is not None and not role.matches(experiment)):
        label = "experiment" if role is None else f"{role.label} experiment"
        raise ApiError(404, f"no {label} for pipeline {namespace}/{name}")
    return experiment


def _weight(request: web.Request) -> int:
    raw = request.query.get("weight")
    if raw is None or raw == "":
        raise ApiError(400, "query parameter weight is required")
    if not _WEIGHT.match(raw):
        raise ApiError(400, f"weight must be an integer, not {raw!r}")
    weight = int(raw)
    if not 1 <= weight <= 99:
        raise ApiError(400, f"weight must be between 1 and 99, not {weight}")
    return weight


def _start(request: web.Request, role: _Role, spec_of: Callable[[str], dict[str, Any]]) -> str:
    """Create or re-weight the canary/shadow experiment of the path's pipeline.

    403, then 404 if the pipeline or its candidate is missing, 409 if the
    pipeline has an experiment of another sort; the same spec again is a no-op.
    Returns the answer's text.
    """
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    spec = spec_of(name)
    _require_pipeline(simulator, namespace.name, name)
    _require_pipeline(simulator, namespace.name, role.candidate_of(name), role.label)
    existing = simulator.store.experiments.get((namespace.name, name))
    if existing is not None and not role.matches(existing):
        raise ApiError(
            409,
            f"pipeline {namespace.name}/{name} has an experiment that is not a {role.label}",
        )
    if existing is not None and existing.spec == spec:
        return f"{role.label} experiment {namespace.name}/{name} unchanged"
    now = _advance(simulator)
    metadata = {} if existing is None else existing.metadata
    simulator.store.put_experiment(namespace.name, name, metadata, spec, now)
    return f"{role.label} experiment {namespace.name}/{name} set"


def _promote(request: web.Request, role: _Role) -> web.Response:
    """Copy the candidate's spec, labels and annotations onto the pipeline; drop the rest."""
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    _experiment(simulator, namespace.name, name, role)
    candidate_name = role.candidate_of(name)
    pipeline = simulator.store.get(namespace.name, name, "Pipeline")
    candidate = simulator.store.get(namespace.name, candidate_name, "Pipeline")
    if pipeline is None:
        raise ApiError(404, f"pipeline {namespace.name}/{name} not found")
    if candidate is None:
        raise ApiError(404, f"{role.label} pipeline {namespace.name}/{candidate_name} not found")
    now = _advance(simulator)
    metadata = copy.deepcopy(pipeline.metadata)
    for key in ("labels", "annotations"):
        if key in candidate.metadata:
            metadata[key] = copy.deepcopy(candidate.metadata[key])
        else:
            metadata.pop(key, None)
    body = DeploymentBody(name=name, metadata=metadata, spec=copy.deepcopy(candidate.spec))
    simulator.store.remove_experiment(namespace.name, name)
    simulator.store.write(namespace, body, now, "Pipeline")
    record_commit(
        request,
        simulator,
        namespace,
        name,
        body,
        "Promote",
        f"Promote {candidate_name} to {name}",
        "Pipeline",
    )
    _drop_candidate(request, simulator, namespace, candidate_name)
    return message_response(
        f"{role.label} {namespace.name}/{candidate_name} promoted to {namespace.name}/{name}"
    )


def _drop_candidate(
    request: web.Request, simulator: Simulator, namespace: Namespace, candidate: str
) -> None:
    if simulator.store.remove(namespace.name, candidate, "Pipeline") is not None:
        record_commit(
            request,
            simulator,
            namespace,
            candidate,
            None,
            "Delete",
            f"Delete {candidate}",
            "Pipeline",
        )


def _remove(request: web.Request, role: _Role) -> web.Response:
    """Drop the experiment and the candidate pipeline; the pipeline stays as it is."""
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    _experiment(simulator, namespace.name, name, role)
    _advance(simulator)
    simulator.store.remove_experiment(namespace.name, name)
    _drop_candidate(request, simulator, namespace, role.candidate_of(name))
    return message_response(f"{role.label} experiment {namespace.name}/{name} removed")


async def create_canary(request: web.Request) -> web.Response:
    """Send `weight` % (1..99) of pipeline P's requests to `P-canary`: experiment P."""
    authorize(request, "write")  # 403 before the weight's 400
    weight = _weight(request)
    text = _start(request, _CANARY, lambda name: canary_spec(name, weight))
    return message_response(f"{text}: {canary_name(request.match_info['name'])} at {weight}%")


async def promote_canary(request: web.Request) -> web.Response:
    """`P-canary`'s spec, labels and annotations become P's; experiment and canary go."""
    return _promote(request, _CANARY)


async def remove_canary(request: web.Request) -> web.Response:
    """Drop the canary experiment and `P-canary`; P is untouched."""
    return _remove(request, _CANARY)


async def create_shadow(request: web.Request) -> web.Response:
    """Mirror all of pipeline P's requests to `P-shadow`: experiment P."""
    return message_response(_start(request, _SHADOW, shadow_spec))


async def promote_shadow(request: web.Request) -> web.Response:
    """`P-shadow`'s spec, labels and annotations become P's; experiment and shadow go."""
    return _promote(request, _SHADOW)


async def remove_shadow(request: web.Request) -> web.Response:
    """Drop the shadow experiment and `P-shadow`; P is untouched."""
    return _remove(request, _SHADOW)


async def _experiment_body(request: web.Request, namespace: str, name: str) -> DeploymentBody:
    decoded = await json_body(request, "SeldonExperiment")
    try:
        return parse_experiment(decoded, namespace, name)
    except InvalidDeployment as exc:
        raise ApiError(400, f"invalid SeldonExperiment: {exc}") from exc


def _require_named_pipelines(simulator: Simulator, namespace: str, spec: dict[str, Any]) -> None:
    missing = [
        n
        for n in experiment_pipelines(spec)
        if simulator.store.get(namespace, n, "Pipeline") is None
    ]
    if missing:
        raise ApiError(
            400,
            f"invalid SeldonExperiment: pipelines that do not exist: {', '.join(missing)}",
        )


async def read_experiment(request: web.Request) -> web.Response:
    """Pipeline P's experiment (`SeldonExperiment`), or 404."""
    simulator, namespace = authorize(request, "read")
    experiment = _experiment(simulator, namespace.name, request.match_info["name"])
    return web.json_response(render_experiment(simulator.store, experiment, simulator.clock()))


async def create_experiment(request: web.Request) -> web.Response:
    """Create P's experiment from a `SeldonExperiment`; 409 if P has one."""
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    body = await _experiment_body(request, namespace.name, name)
    _require_pipeline(simulator, namespace.name, name)
    if (namespace.name, name) in simulator.store.experiments:
        raise ApiError(409, f"pipeline {namespace.name}/{name} already has an experiment")
    _require_named_pipelines(simulator, namespace.name, body.spec)
    now = _advance(simulator)
    experiment = simulator.store.put_experiment(namespace.name, name, body.metadata, body.spec, now)
    return web.json_response(render_experiment(simulator.store, experiment, now))


async def update_experiment(request: web.Request) -> web.Response:
    """Replace P's experiment; 404 if it has none."""
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    body = await _experiment_body(request, namespace.name, name)
    _experiment(simulator, namespace.name, name)
    _require_named_pipelines(simulator, namespace.name, body.spec)
    now = _advance(simulator)
    experiment = simulator.store.put_experiment(namespace.name, name, body.metadata, body.spec, now)
    return web.json_response(render_experiment(simulator.store, experiment, now))


async def delete_experiment(request: web.Request) -> web.Response:
    """Remove P's experiment only (candidate pipelines stay)."""
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    _experiment(simulator, namespace.name, name)
    _advance(simulator)
    simulator.store.remove_experiment(namespace.name, name)
    return message_response(f"experiment {namespace.name}/{name} deleted")
