"""The test-only control API under `/_control`: no auth, JSON in and out.

Errors here use the same `{"code", "message"}` shape as the API so clients need
only one way to read them.
"""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.simulator.app_keys import SIMULATOR
from tests.simulator.config import CONTROL_BASE
from tests.simulator.core_v2 import render_experiment, render_model, render_pipeline
from tests.simulator.errors import ApiError, error_response
from tests.simulator.faults import parse_rule
from tests.simulator.gitops import commit_record
from tests.simulator.namespaces import (
    GITOPS_LABEL,
    RESTRICTED_LABEL,
    Namespace,
    parse_policies,
)
from tests.simulator.state import Simulator
from tests.simulator.store import (
    STATES,
    Deployment,
    FailureMark,
    Kind,
    State,
    default_failure,
    parse_kind,
    render,
)
from tests.simulator.traffic import CoreKind
from tests.simulator.validation import (
    DeploymentBody,
    InvalidDeployment,
    parse_deployment,
    parse_model,
    parse_pipeline,
)


def add_routes(app: web.Application) -> None:
    """Register the control routes."""
    router = app.router
    base = CONTROL_BASE
    router.add_get(base + "/health", health)
    router.add_post(base + "/reset", reset)
    router.add_get(base + "/namespaces", list_namespaces)
    router.add_put(base + "/namespaces/{namespace}", put_namespace)
    router.add_delete(base + "/namespaces/{namespace}", delete_namespace)
    router.add_post(base + "/namespaces/{namespace}/deployments", seed_deployment)
    router.add_get(base + "/namespaces/{namespace}/deployments/{name}", peek_deployment)
    router.add_post(base + "/namespaces/{namespace}/models", seed_model)
    router.add_get(base + "/namespaces/{namespace}/models/{name}", peek_model)
    router.add_post(base + "/namespaces/{namespace}/pipelines", seed_pipeline)
    router.add_get(base + "/namespaces/{namespace}/pipelines/{name}", peek_pipeline)
    router.add_get(base + "/namespaces/{namespace}/experiments/{name}", peek_experiment)
    router.add_put(base + "/namespaces/{namespace}/models/{name}/traffic", put_model_behaviour)
    router.add_put(
        base + "/namespaces/{namespace}/pipelines/{name}/traffic", put_pipeline_behaviour
    )
    router.add_put(base + "/namespaces/{namespace}/failing/{name}", mark_failing)
    router.add_delete(base + "/namespaces/{namespace}/failing/{name}", unmark_failing)
    router.add_get(base + "/delays", get_delays)
    router.add_put(base + "/delays", put_delays)
    router.add_get(base + "/faults", list_faults)
    router.add_post(base + "/faults", add_fault)
    router.add_delete(base + "/faults", clear_faults)
    router.add_delete(base + "/faults/{fault_id}", delete_fault)
    router.add_get(base + "/requests", list_requests)
    router.add_delete(base + "/requests", clear_requests)
    router.add_get(base + "/commits", list_commits)
    router.add_get(base + "/traffic", get_traffic)
    router.add_put(base + "/traffic", put_default_rate)
    router.add_delete(base + "/traffic", clear_traffic_settings)
    router.add_put(base + "/namespaces/{namespace}/traffic/{name}", put_deployment_rate)
    router.add_put(
        base + "/namespaces/{namespace}/traffic/{name}/predictors/{predictor}",
        put_predictor_behaviour,
    )


@web.middleware
async def control_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render control API failures in the shared error shape."""
    if not request.path.startswith(CONTROL_BASE):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, "control")
    except (ValueError, TypeError, KeyError) as exc:
        return error_response(400, f"bad control request: {exc}", "control")
    except web.HTTPException as exc:
        return error_response(exc.status, exc.reason, "control")


async def _json_object(request: web.Request) -> dict[str, Any]:
    if not (await request.read()).strip():
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "control request body must be a JSON object")
    return cast(dict[str, Any], body)


def _ok(payload: object = None) -> web.Response:
    return web.json_response({"ok": True} if payload is None else payload)


async def health(request: web.Request) -> web.Response:
    """Liveness for harnesses."""
    return _ok()


async def reset(request: web.Request) -> web.Response:
    """Forget everything tests configured or caused."""
    request.app[SIMULATOR].reset()
    return _ok()


async def list_namespaces(request: web.Request) -> web.Response:
    """Namespaces with labels and policies."""
    store = request.app[SIMULATOR].store
    return web.json_response(
        [
            {
                "name": ns.name,
                "labels": ns.labels,
                "users": {u: sorted(a) for u, a in ns.users.items()},
                "groups": {g: sorted(a) for g, a in ns.groups.items()},
            }
            for ns in store.namespaces.values()
        ]
    )


async def put_namespace(request: web.Request) -> web.Response:
    """Create or replace a namespace: `{labels?, managed?, gitops?, users?, groups?}`.

    `managed` and `gitops` are shorthands that set the labels Seldon Deploy reads.
    Replacing keeps the namespace's deployments.
    """
    store = request.app[SIMULATOR].store
    name = request.match_info["namespace"]
    body = await _json_object(request)
    labels = {str(k): str(v) for k, v in (body.get("labels") or {}).items()}
    if "managed" in body:
        labels[RESTRICTED_LABEL] = "false" if body["managed"] else "true"
    if "gitops" in body:
        labels[GITOPS_LABEL] = "enabled" if body["gitops"] else "disabled"
    store.namespaces[name] = Namespace(
        name=name,
        labels=labels,
        users=parse_policies(body.get("users") or {}),
        groups=parse_policies(body.get("groups") or {}),
    )
    return _ok()


async def delete_namespace(request: web.Request) -> web.Response:
    """Remove a namespace and its deployments, models, pipelines and experiments."""
    simulator = request.app[SIMULATOR]
    store = simulator.store
    name = request.match_info["namespace"]
    if store.namespaces.pop(name, None) is None:
        raise ApiError(404, f"namespace {name} not found")
    simulator.traffic.advance(store, simulator.clock())
    store.drop_namespace(name)
    return _ok()


_PARSERS = {"SeldonDeployment": parse_deployment, "Model": parse_model, "Pipeline": parse_pipeline}
# The key of the object in a seed request's body, by kind.
_SEED_KEYS = {"SeldonDeployment": "deployment", "Model": "model", "Pipeline": "pipeline"}


async def _seed(request: web.Request, kind: Kind) -> tuple[Simulator, Deployment, float]:
    """Plant an object: `{<deployment|model|pipeline>, state?, description?, generation?}`.

    `state` is Available (default), Creating or Failed (kept until the next
    write) or null (a rollout from now). In a GitOps namespace the seed is also
    a commit (author "simulator"), so history-based calls have something to
    work on. The spec rules are skipped, so tests can plant odd objects.
    """
    simulator = request.app[SIMULATOR]
    namespace = simulator.store.namespaces.get(request.match_info["namespace"])
    if namespace is None:
        raise ApiError(404, f"namespace {request.match_info['namespace']} not found")
    body = await _json_object(request)
    state = body.get("state", "Available")
    if state is not None and state not in STATES:
        raise ApiError(400, f"state must be one of {sorted(STATES)} or null")
    key = _SEED_KEYS[kind]
    try:
        parsed: DeploymentBody = _PARSERS[kind](body.get(key), namespace.name, strict_spec=False)
    except InvalidDeployment as exc:
        raise ApiError(400, f"invalid {key}: {exc}") from exc
    generation = int(body.get("generation", 1))
    now = simulator.clock()
    simulator.traffic.advance(simulator.store, now)
    obj = simulator.store.seed(
        namespace,
        parsed,
        now,
        state=cast(State | None, state),
        description=body.get("description"),
        generation=generation,
        kind=kind,
    )
    if namespace.gitops:
        simulator.gitlog.record(
            namespace=namespace.name,
            name=parsed.name,
            action="Seed",
            message=f"Seed {parsed.name}",
            author="simulator",
            now=now,
            snapshot=parsed,
            kind=kind,
        )
    return simulator, obj, now


async def seed_deployment(request: web.Request) -> web.Response:
    """Plant a deployment: `{deployment, state?: Available|Creating|Failed|null, description?}`."""
    _, deployment, now = await _seed(request, "SeldonDeployment")
    return web.json_response(render(deployment, now))


async def seed_model(request: web.Request) -> web.Response:
    """Plant a Model: `{model, state?, description?, generation?}` (see `_seed`).

    Available means ModelReady True, Creating ModelProgressing, Failed
    ModelFailed with `description` as the message.
    """
    _, model, now = await _seed(request, "Model")
    return web.json_response(render_model(model, now))


async def seed_pipeline(request: web.Request) -> web.Response:
    """Plant a Pipeline: `{pipeline, state?, description?, generation?}` (see `_seed`).

    The state is PipelineReady's (PipelineReady, PipelineCreating,
    PipelineFailed); Ready also needs the steps' models to be Ready.
    """
    simulator, pipeline, now = await _seed(request, "Pipeline")
    return web.json_response(render_pipeline(simulator.store, pipeline, now))


def _peek(request: web.Request, kind: Kind) -> tuple[Simulator, Deployment]:
    simulator = request.app[SIMULATOR]
    key = (request.match_info["namespace"], request.match_info["name"])
    obj = simulator.store.get(*key, kind)
    if obj is None:
        raise ApiError(404, f"{kind} not found")
    return simulator, obj


async def peek_deployment(request: web.Request) -> web.Response:
    """A deployment as the API would return it, without a token."""
    simulator, deployment = _peek(request, "SeldonDeployment")
    return web.json_response(render(deployment, simulator.clock()))


async def peek_model(request: web.Request) -> web.Response:
    """A Model as the API would return it, without a token."""
    simulator, model = _peek(request, "Model")
    return web.json_response(render_model(model, simulator.clock()))


async def peek_pipeline(request: web.Request) -> web.Response:
    """A Pipeline as the API would return it, without a token."""
    simulator, pipeline = _peek(request, "Pipeline")
    return web.json_response(render_pipeline(simulator.store, pipeline, simulator.clock()))


async def peek_experiment(request: web.Request) -> web.Response:
    """A pipeline's experiment as the API would return it, without a token."""
    simulator = request.app[SIMULATOR]
    key = (request.match_info["namespace"], request.match_info["name"])
    experiment = simulator.store.experiments.get(key)
    if experiment is None:
        raise ApiError(404, "experiment not found")
    return web.json_response(render_experiment(simulator.store, experiment, simulator.clock()))


async def mark_failing(request: web.Request) -> web.Response:
    """Make the next rollouts of a name fail: `{description?, spec_contains?, kind?}`.

    `kind` is SeldonDeployment (default), Model or Pipeline.
    """
    store = request.app[SIMULATOR].store
    body = await _json_object(request)
    kind = parse_kind(body.get("kind"))
    key = (request.match_info["namespace"], request.match_info["name"])
    store.marks(kind)[key] = FailureMark(
        description=body.get("description") or default_failure(kind),
        spec_contains=body.get("spec_contains"),
    )
    return _ok()


async def unmark_failing(request: web.Request) -> web.Response:
    """Let later rollouts of a name succeed again (`?kind=` as for marking)."""
    store = request.app[SIMULATOR].store
    kind = parse_kind(request.query.get("kind"))
    store.marks(kind).pop((request.match_info["namespace"], request.match_info["name"]), None)
    return _ok()


async def get_delays(request: web.Request) -> web.Response:
    """Global delays, per-deployment overrides, and per-model/pipeline `core_overrides`."""
    store = request.app[SIMULATOR].store
    core_kinds: tuple[Kind, ...] = ("Model", "Pipeline")
    return web.json_response(
        {
            "rollout_seconds": store.default_delays.rollout_seconds,
            "gitops_sync_seconds": store.default_delays.gitops_sync_seconds,
            "traffic_seconds": store.default_delays.traffic_seconds,
            "overrides": [
                {
                    "namespace": ns,
                    "name": name,
                    "rollout_seconds": d.rollout_seconds,
                    "gitops_sync_seconds": d.gitops_sync_seconds,
                    "traffic_seconds": d.traffic_seconds,
                }
                for (ns, name), d in store.delay_overrides.items()
            ],
            "core_overrides": [
                {
                    "kind": kind,
                    "namespace": ns,
                    "name": name,
                    "rollout_seconds": d.rollout_seconds,
                    "gitops_sync_seconds": d.gitops_sync_seconds,
                }
                for kind in core_kinds
                for (ns, name), d in store.overrides(kind).items()
            ],
        }
    )


async def put_delays(request: web.Request) -> web.Response:
    """Set `{rollout_seconds?, gitops_sync_seconds?, traffic_seconds?, namespace?, name?,
    kind?}`; later writes. `traffic_seconds`: a SeldonDeployment write that changes only
    its predictors' `traffic` (default 0: at once, as Seldon routes it without new pods).

    Without namespace and name the delays are the global ones (every kind);
    with them they are one object's, of `kind` (default SeldonDeployment).
    """
    store = request.app[SIMULATOR].store
    body = await _json_object(request)
    rollout = body.get("rollout_seconds")
    sync = body.get("gitops_sync_seconds")
    routing = body.get("traffic_seconds")
    store.set_delays(
        rollout_seconds=None if rollout is None else float(rollout),
        gitops_sync_seconds=None if sync is None else float(sync),
        traffic_seconds=None if routing is None else float(routing),
        namespace=body.get("namespace"),
        name=body.get("name"),
        kind=parse_kind(body.get("kind")),
    )
    return await get_delays(request)


async def list_faults(request: web.Request) -> web.Response:
    """Installed fault rules."""
    faults = request.app[SIMULATOR].faults
    return web.json_response([r.record() for r in faults.rules])


async def add_fault(request: web.Request) -> web.Response:
    """Install a fault rule (see `faults.parse_rule`); `seed` makes randomness repeatable."""
    faults = request.app[SIMULATOR].faults
    body = await _json_object(request)
    if "seed" in body:
        faults.reseed(body["seed"])
    rule = faults.add(parse_rule(body))
    return web.json_response(rule.record())


async def clear_faults(request: web.Request) -> web.Response:
    """Remove every fault rule."""
    request.app[SIMULATOR].faults.clear()
    return _ok()


async def delete_fault(request: web.Request) -> web.Response:
    """Remove one fault rule."""
    if not request.app[SIMULATOR].faults.remove(request.match_info["fault_id"]):
        raise ApiError(404, "fault not found")
    return _ok()


async def list_requests(request: web.Request) -> web.Response:
    """The API request log, oldest first."""
    return web.json_response(request.app[SIMULATOR].requests)


async def clear_requests(request: web.Request) -> web.Response:
    """Empty the request log."""
    request.app[SIMULATOR].requests.clear()
    return _ok()


async def list_commits(request: web.Request) -> web.Response:
    """GitOps commits oldest first, optionally filtered by `namespace` and `name`."""
    gitlog = request.app[SIMULATOR].gitlog
    namespace = request.query.get("namespace")
    name = request.query.get("name")
    kind = request.query.get("kind")
    commits = [
        commit_record(c)
        for c in gitlog.commits
        if (namespace is None or c.namespace == namespace)
        and (name is None or c.name == name)
        and (kind is None or c.kind == kind)
    ]
    return web.json_response(commits)


def _advance_traffic(request: web.Request) -> None:
    # Settings change from now on: count the time before with the old ones first.
    simulator = request.app[SIMULATOR]
    simulator.traffic.advance(simulator.store, simulator.clock())


async def get_traffic(request: web.Request) -> web.Response:
    """Traffic settings and every exported series' counters, as of now."""
    _advance_traffic(request)
    traffic = request.app[SIMULATOR].traffic
    return web.json_response(
        {
            **traffic.settings_record(),
            "series": traffic.series_records(),
            "prediction_series": traffic.prediction_series_records(),
            "core_series": traffic.core_series_records(),
        }
    )


async def put_default_rate(request: web.Request) -> web.Response:
    """Set `{requests_per_second}` for every deployment without a rate of its own."""
    body = await _json_object(request)
    _advance_traffic(request)
    traffic = request.app[SIMULATOR].traffic
    traffic.set_rate(float(body["requests_per_second"]))
    return web.json_response(traffic.settings_record())


async def put_deployment_rate(request: web.Request) -> web.Response:
    """Set `{requests_per_second, kind?}` for one deployment or pipeline (need not exist yet).

    `kind` is SeldonDeployment (default) or Pipeline; models have no rate.
    """
    body = await _json_object(request)
    kind = parse_kind(body.get("kind"))
    _advance_traffic(request)
    traffic = request.app[SIMULATOR].traffic
    traffic.set_rate(
        float(body["requests_per_second"]),
        request.match_info["namespace"],
        request.match_info["name"],
        kind,
    )
    return web.json_response(traffic.settings_record())


_BEHAVIOUR_KEYS = frozenset({"error_rate", "latency_seconds", "error_code"})


async def _behaviour_settings(
    request: web.Request, allowed: frozenset[str] = _BEHAVIOUR_KEYS
) -> dict[str, Any]:
    """The `{error_rate?, latency_seconds?, error_code?}` body of a behaviour change (and
    any other `allowed` keys), once the traffic so far is counted under the old behaviour."""
    body = await _json_object(request)
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(400, f"unknown traffic settings: {sorted(unknown)}")
    _advance_traffic(request)
    return body


async def _put_core_behaviour(request: web.Request, kind: CoreKind) -> web.Response:
    body = await _behaviour_settings(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    traffic = request.app[SIMULATOR].traffic
    traffic.set_core_behaviour(
        kind,
        namespace,
        name,
        error_rate=body.get("error_rate"),
        latency_seconds=body.get("latency_seconds"),
        error_code=body.get("error_code"),
    )
    return web.json_response(traffic.core_behaviour_record(kind, namespace, name))


async def put_model_behaviour(request: web.Request) -> web.Response:
    """Set `{error_rate?, latency_seconds?, error_code?}` of one Model (need not exist yet)."""
    return await _put_core_behaviour(request, "Model")


async def put_pipeline_behaviour(request: web.Request) -> web.Response:
    """Set `{error_rate?, latency_seconds?, error_code?}` of one Pipeline (need not exist yet)."""
    return await _put_core_behaviour(request, "Pipeline")


async def put_predictor_behaviour(request: web.Request) -> web.Response:
    """Set `{error_rate?, latency_seconds?, error_code?, predictions?}` of one predictor.

    `predictions` is `{label: weight}` (non-negative numbers, normalised by their
    sum), or null for the default distribution. The predictor need not exist yet
    (a canary predictor a later write adds); parts left out keep their value.
    Applies to requests from now on.
    """
    body = await _behaviour_settings(request, _BEHAVIOUR_KEYS | {"predictions"})
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    predictor = request.match_info["predictor"]
    traffic = request.app[SIMULATOR].traffic
    traffic.set_behaviour(
        namespace,
        name,
        predictor,
        error_rate=body.get("error_rate"),
        latency_seconds=body.get("latency_seconds"),
        error_code=body.get("error_code"),
        predictions=body.get("predictions"),
        default_predictions="predictions" in body and body["predictions"] is None,
    )
    return web.json_response(traffic.behaviour_record(namespace, name, predictor))


async def clear_traffic_settings(request: web.Request) -> web.Response:
    """Every rate and predictor behaviour back to the defaults; counters keep counting."""
    _advance_traffic(request)
    request.app[SIMULATOR].traffic.clear_settings()
    return _ok()
