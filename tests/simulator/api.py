"""The Seldon Deploy v1alpha1 routes, with paths exactly as seldon-deploy-sdk calls them.

SeldonDeployments live here; Core v2 Models, Pipelines and Experiments in `api_core_v2`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.simulator.app_keys import SIMULATOR
from tests.simulator.auth import Identity
from tests.simulator.config import API_BASE
from tests.simulator.errors import ApiError
from tests.simulator.gitops import audit_log
from tests.simulator.namespaces import Namespace, Permission, allowed
from tests.simulator.state import Simulator
from tests.simulator.store import DEPLOYMENT, Kind, render
from tests.simulator.validation import (
    API_VERSION,
    DeploymentBody,
    InvalidDeployment,
    parse_deployment,
)

IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)

_DEPLOYMENTS = API_BASE + "/namespaces/{namespace}/seldondeployments"
_DEPLOYMENT = _DEPLOYMENTS + "/{name}"


def add_routes(app: web.Application) -> None:
    """Register the API routes; `validate` first so it is not taken for a deployment name."""
    router = app.router
    router.add_get(_DEPLOYMENTS + "/validate", validate_deployment)
    router.add_get(_DEPLOYMENTS, list_deployments)
    router.add_post(_DEPLOYMENTS, create_deployment)
    router.add_get(_DEPLOYMENT, read_deployment)
    router.add_put(_DEPLOYMENT, update_deployment)
    router.add_delete(_DEPLOYMENT, delete_deployment)
    router.add_get(_DEPLOYMENT + "/gitlogs", git_logs)
    router.add_post(_DEPLOYMENT + "/gitrevert", git_revert)
    router.add_post(_DEPLOYMENT + "/gitrestore", git_restore)


def message_response(text: str) -> web.Response:
    """The SDK's `Message` model: what validate, delete, revert, restore and experiments return."""
    return web.json_response({"code": 200, "message": text})


def authorize(request: web.Request, action: Permission) -> tuple[Simulator, Namespace]:
    """The namespace, if the caller may perform `action` in it.

    Unknown and unmanaged namespaces are refused like forbidden ones, so the
    answer never reveals which namespaces exist.
    """
    simulator = request.app[SIMULATOR]
    identity = request[IDENTITY]
    name = request.match_info["namespace"]
    namespace = simulator.store.namespaces.get(name)
    if namespace is None or not namespace.managed or not allowed(namespace, identity, action):
        raise ApiError(
            403, f"user {identity.user} is not authorized to {action} in namespace {name}"
        )
    return simulator, namespace


async def json_body(request: web.Request, what: str) -> object:
    """The decoded JSON body; 400 when it is empty or not JSON."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, f"request body is empty; a {what} is required")
    try:
        decoded: object = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from exc
    return decoded


async def _deployment_body(request: web.Request, namespace: str) -> DeploymentBody:
    decoded = await json_body(request, "SeldonDeployment")
    try:
        return parse_deployment(decoded, namespace)
    except InvalidDeployment as exc:
        raise ApiError(400, f"invalid SeldonDeployment: {exc}") from exc


def _commit_fields(
    request: web.Request, default_action: str, default_message: str
) -> tuple[str, str]:
    action = request.query.get("action") or default_action
    message = request.query.get("message") or default_message
    return action, message


def _require_gitops(namespace: Namespace) -> None:
    if not namespace.gitops:
        raise ApiError(400, f"namespace {namespace.name} is not a GitOps namespace")


async def list_deployments(request: web.Request) -> web.Response:
    """`SeldonDeploymentList` of a namespace."""
    simulator, namespace = authorize(request, "read")
    now = simulator.clock()
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "SeldonDeploymentList",
        "metadata": {"resourceVersion": str(simulator.store.resource_version)},
        "items": [render(d, now) for d in simulator.store.list(namespace.name)],
    }
    return web.json_response(body)


async def read_deployment(request: web.Request) -> web.Response:
    """One `SeldonDeployment`, with the status the cluster reports now."""
    simulator, namespace = authorize(request, "read")
    name = request.match_info["name"]
    deployment = simulator.store.get(namespace.name, name)
    if deployment is None:
        raise ApiError(404, f"seldondeployment {namespace.name}/{name} not found")
    return web.json_response(render(deployment, simulator.clock()))


async def create_deployment(request: web.Request) -> web.Response:
    """Create; 409 if the name is taken. In GitOps namespaces this is a commit."""
    simulator, namespace = authorize(request, "write")
    body = await _deployment_body(request, namespace.name)
    if simulator.store.get(namespace.name, body.name) is not None:
        raise ApiError(409, f"seldondeployment {namespace.name}/{body.name} already exists")
    now = simulator.clock()
    deployment = simulator.store.write(namespace, body, now)
    record_commit(request, simulator, namespace, body.name, body, "Create", f"Create {body.name}")
    return web.json_response(render(deployment, now))


async def update_deployment(request: web.Request) -> web.Response:
    """Replace; 404 if missing, 400 if the body names another deployment."""
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    body = await _deployment_body(request, namespace.name)
    if body.name != name:
        raise ApiError(400, f"metadata.name {body.name!r} does not match the path's {name!r}")
    if simulator.store.get(namespace.name, name) is None:
        raise ApiError(404, f"seldondeployment {namespace.name}/{name} not found")
    now = simulator.clock()
    deployment = simulator.store.write(namespace, body, now)
    record_commit(request, simulator, namespace, name, body, "Update", f"Update {name}")
    return web.json_response(render(deployment, now))


async def delete_deployment(request: web.Request) -> web.Response:
    """Delete; in a GitOps namespace it vanishes from reads at once (the repo is the truth)."""
    simulator, namespace = authorize(request, "write")
    name = request.match_info["name"]
    if simulator.store.remove(namespace.name, name) is None:
        raise ApiError(404, f"seldondeployment {namespace.name}/{name} not found")
    record_commit(request, simulator, namespace, name, None, "Delete", f"Delete {name}")
    return message_response(f"seldondeployment {namespace.name}/{name} deleted")


async def validate_deployment(request: web.Request) -> web.Response:
    """`Message` for a valid body; 400 (the `Error` shape) for anything else."""
    _, namespace = authorize(request, "read")
    body = await _deployment_body(request, namespace.name)
    return message_response(f"seldondeployment {body.name} is valid")


async def git_logs(request: web.Request) -> web.Response:
    """The deployment's commits, newest first, as `list[AuditLog]`."""
    simulator, namespace = authorize(request, "read")
    _require_gitops(namespace)
    history = simulator.gitlog.history(namespace.name, request.match_info["name"])
    return web.json_response([audit_log(c) for c in history])


async def git_revert(request: web.Request) -> web.Response:
    """Bring back the state before commit `hash`, as a new commit."""
    simulator, namespace = authorize(request, "write")
    _require_gitops(namespace)
    name = request.match_info["name"]
    commit_hash = request.query.get("hash", "")
    if not commit_hash:
        raise ApiError(400, "query parameter hash is required")
    commit = simulator.gitlog.find(namespace.name, name, commit_hash)
    if commit is None:
        raise ApiError(404, f"commit {commit_hash} not found for {namespace.name}/{name}")
    target = simulator.gitlog.state_before(commit)
    exists = simulator.store.get(namespace.name, name) is not None
    if target is None and not exists:
        raise ApiError(409, f"nothing to revert: {namespace.name}/{name} does not exist")
    now = simulator.clock()
    if target is None:
        simulator.store.remove(namespace.name, name)
    else:
        simulator.store.write(namespace, target, now)
    record_commit(request, simulator, namespace, name, target, "Revert", f"Revert {commit.id[:7]}")
    return message_response(f"reverted commit {commit.id} of {namespace.name}/{name}")


async def git_restore(request: web.Request) -> web.Response:
    """Re-create a deleted deployment from history (at `hash`, or its last existing state)."""
    simulator, namespace = authorize(request, "write")
    _require_gitops(namespace)
    name = request.match_info["name"]
    if simulator.store.get(namespace.name, name) is not None:
        raise ApiError(409, f"seldondeployment {namespace.name}/{name} exists; nothing to restore")
    commit_hash = request.query.get("hash", "")
    if commit_hash:
        commit = simulator.gitlog.find(namespace.name, name, commit_hash)
        if commit is None:
            raise ApiError(404, f"commit {commit_hash} not found for {namespace.name}/{name}")
        # Restoring "at" a delete commit means the state that commit removed.
        target = commit.snapshot or simulator.gitlog.state_before(commit)
    else:
        target = simulator.gitlog.last_existing(namespace.name, name)
    if target is None:
        raise ApiError(404, f"no earlier state of {namespace.name}/{name} to restore")
    simulator.store.write(namespace, target, simulator.clock())
    record_commit(request, simulator, namespace, name, target, "Restore", f"Restore {name}")
    return message_response(f"restored {namespace.name}/{name}")


def record_commit(
    request: web.Request,
    simulator: Simulator,
    namespace: Namespace,
    name: str,
    snapshot: DeploymentBody | None,
    default_action: str,
    default_message: str,
    kind: Kind = DEPLOYMENT,
) -> None:
    """Record a write as a commit in a GitOps namespace (nothing elsewhere)."""
    if not namespace.gitops:
        return
    action, message = _commit_fields(request, default_action, default_message)
    simulator.gitlog.record(
        namespace=namespace.name,
        name=name,
        action=action,
        message=message,
        author=request[IDENTITY].user,
        now=simulator.clock(),
        snapshot=snapshot,
        kind=kind,
    )
