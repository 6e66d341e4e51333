"""What makes a request body an acceptable SeldonDeployment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeGuard

API_VERSION = "machinelearning.seldon.io/v1"
KIND = "SeldonDeployment"

# Fields the server owns; whatever the client sends for them is discarded.
SERVER_METADATA_FIELDS = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_MAX_NAME = 253


class InvalidDeployment(ValueError):
    """The body is not a SeldonDeployment the server would accept; the message says why."""


@dataclass(frozen=True)
class DeploymentBody:
    """The client-owned parts of a deployment: name, metadata (sans server fields), spec."""

    name: str
    metadata: dict[str, Any]
    spec: dict[str, Any]


def parse_deployment(body: object, namespace: str, *, strict_spec: bool = True) -> DeploymentBody:
    """Check a decoded JSON body and keep what the client owns.

    `strict_spec` also demands what Seldon Core's admission webhook demands: at
    least one predictor, each with a name and a graph. Seeding skips it so tests
    can plant odd objects on purpose.
    """
    parsed = parse_object(body, namespace, api_version=API_VERSION, kind=KIND)
    if strict_spec:
        _check_predictors(parsed.spec)
    return parsed


def parse_object(
    body: object,
    namespace: str,
    *,
    api_version: str,
    kind: str,
    metadata_required: bool = True,
    path_name: str | None = None,
) -> DeploymentBody:
    """The checks every kind shares: shape, apiVersion/kind, nested metadata, a `spec` object.

    Without `metadata_required`, a missing metadata or name takes `path_name`
    (experiments are named by their path); a name that differs from
    `path_name` is refused either way when `path_name` is given and the
    metadata is optional.
    """
    if not isinstance(body, dict):
        raise InvalidDeployment("body must be a JSON object")
    body_api_version = body.get("apiVersion")
    if body_api_version is not None and body_api_version != api_version:
        raise InvalidDeployment(f"apiVersion must be {api_version}")
    body_kind = body.get("kind")
    if body_kind is not None and body_kind != kind:
        raise InvalidDeployment(f"kind must be {kind}")
    metadata = body.get("metadata")
    if metadata is None and not metadata_required:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidDeployment(
            "metadata is required" if metadata is None else "metadata must be an object"
        )
    name = metadata.get("name")
    if name is None and not metadata_required and path_name is not None:
        name = path_name
    if not isinstance(name, str) or not name:
        raise InvalidDeployment("metadata.name is required")
    check_name(name, "metadata.name")
    if not metadata_required and path_name is not None and name != path_name:
        raise InvalidDeployment(f"metadata.name {name!r} does not match the path's {path_name!r}")
    body_namespace = metadata.get("namespace")
    if body_namespace not in (None, "", namespace):
        raise InvalidDeployment(
            f"metadata.namespace {body_namespace!r} does not match the request's {namespace!r}"
        )
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise InvalidDeployment("spec is required")
    client_metadata = {
        key: value
        for key, value in metadata.items()
        if key not in SERVER_METADATA_FIELDS and key != "namespace"
    }
    return DeploymentBody(name=name, metadata=client_metadata, spec=spec)


def check_name(name: str, where: str) -> None:
    """Refuse a name that is not a DNS-1123 subdomain (what Kubernetes demands of names)."""
    if len(name) > _MAX_NAME or not _DNS1123_SUBDOMAIN.match(name):
        raise InvalidDeployment(f"{where} {name!r} is not a valid DNS-1123 subdomain")


def _check_predictors(spec: dict[str, Any]) -> None:
    predictors = spec.get("predictors")
    if not isinstance(predictors, list) or not predictors:
        raise InvalidDeployment("spec.predictors must list at least one predictor")
    for index, predictor in enumerate(predictors):
        if not isinstance(predictor, dict):
            raise InvalidDeployment(f"spec.predictors[{index}] must be an object")
        if not isinstance(predictor.get("name"), str) or not predictor["name"]:
            raise InvalidDeployment(f"spec.predictors[{index}].name is required")
        if not isinstance(predictor.get("graph"), dict):
            raise InvalidDeployment(f"spec.predictors[{index}].graph is required")
    _check_traffic(predictors)


def _check_traffic(predictors: list[dict[str, Any]]) -> None:
    """Seldon Core's webhook rules for predictor names and traffic splits."""
    names = [p["name"] for p in predictors]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidDeployment(f"duplicate predictor name: {', '.join(duplicates)}")
    shadows = [p for p in predictors if p.get("shadow") is True]
    serving = [p for p in predictors if p.get("shadow") is not True]
    if len(shadows) > 1:
        raise InvalidDeployment("multiple shadows are not allowed")
    if not serving:
        raise InvalidDeployment("a shadow can not be the only predictor")
    for predictor in predictors:
        traffic = predictor.get("traffic", 0)
        if not isinstance(traffic, int) or isinstance(traffic, bool) or not 0 <= traffic <= 100:
            raise InvalidDeployment(
                f"predictor {predictor['name']!r}: traffic must be an integer in [0, 100]"
            )
    total = sum(int(p.get("traffic", 0)) for p in serving)
    if len(serving) > 1 and total != 100:
        raise InvalidDeployment(
            f"traffic must sum to 100 for multiple predictors (it sums to {total})"
        )
    if len(predictors) == 1 and 0 < total < 100:
        raise InvalidDeployment("traffic must be 100 for a single predictor when set")


# -- Seldon Core v2: Models, Pipelines, Experiments ----------------------------

CORE_API_VERSION = "mlops.seldon.io/v1alpha1"
MODEL_KIND = "Model"
PIPELINE_KIND = "Pipeline"
EXPERIMENT_KIND = "Experiment"
_REPLICA_FIELDS = ("replicas", "minReplicas", "maxReplicas")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_model(body: object, namespace: str, *, strict_spec: bool = True) -> DeploymentBody:
    """A Core v2 `Model`: `spec.storageUri` required; other spec keys are kept as sent.

    `strict_spec` False (seeding) skips the spec rules, as for deployments.
    """
    parsed = parse_object(body, namespace, api_version=CORE_API_VERSION, kind=MODEL_KIND)
    if strict_spec:
        _check_model_spec(parsed.spec)
    return parsed


def _check_model_spec(spec: dict[str, Any]) -> None:
    storage_uri = spec.get("storageUri")
    if not isinstance(storage_uri, str) or not storage_uri:
        raise InvalidDeployment("spec.storageUri must be a non-empty string")
    requirements = spec.get("requirements")
    if requirements is not None and (
        not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements)
    ):
        raise InvalidDeployment("spec.requirements must be a list of strings")
    for key in _REPLICA_FIELDS:
        value = spec.get(key)
        if value is not None and not (_is_int(value) and value >= 0):
            raise InvalidDeployment(f"spec.{key} must be a non-negative integer")


def parse_pipeline(body: object, namespace: str, *, strict_spec: bool = True) -> DeploymentBody:
    """A Core v2 `Pipeline`: named, unique steps; `output.steps` among them.

    `strict_spec` False (seeding) skips the spec rules, as for deployments.
    """
    parsed = parse_object(body, namespace, api_version=CORE_API_VERSION, kind=PIPELINE_KIND)
    if strict_spec:
        _check_pipeline_spec(parsed.spec)
    return parsed


def _check_pipeline_spec(spec: dict[str, Any]) -> None:
    steps = spec.get("steps")
    if not isinstance(steps, list) or not steps:
        raise InvalidDeployment("spec.steps must list at least one step")
    names: list[str] = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            raise InvalidDeployment(f"spec.steps[{index}] must be an object")
        name = step.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidDeployment(f"spec.steps[{index}].name is required")
        check_name(name, f"spec.steps[{index}].name")
        names.append(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidDeployment(f"duplicate step name: {', '.join(duplicates)}")
    output = spec.get("output")
    if output is None:
        return
    if not isinstance(output, dict):
        raise InvalidDeployment("spec.output must be an object")
    output_steps = output.get("steps")
    if output_steps is None:
        return
    if not isinstance(output_steps, list) or not all(isinstance(s, str) for s in output_steps):
        raise InvalidDeployment("spec.output.steps must be a list of step names")
    unknown = [s for s in output_steps if s not in names]
    if unknown:
        raise InvalidDeployment(
            f"spec.output.steps names steps the pipeline does not have: {', '.join(unknown)}"
        )


def step_names(spec: dict[str, Any]) -> list[str]:
    """The step names of a pipeline spec, in order, each once (tolerates seeded odd specs)."""
    names: list[str] = []
    steps = spec.get("steps")
    for step in steps if isinstance(steps, list) else []:
        name = step.get("name") if isinstance(step, dict) else None
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names


def parse_experiment(body: object, namespace: str, name: str) -> DeploymentBody:
    """A `SeldonExperiment` for pipeline `name` (metadata optional; its name must be `name`).

    Checks the shape only; whether the named pipelines exist is the caller's check.
    `resourceType` defaults to "pipeline", the only one this path serves.
    """
    parsed = parse_object(
        body,
        namespace,
        api_version=CORE_API_VERSION,
        kind=EXPERIMENT_KIND,
        metadata_required=False,
        path_name=name,
    )
    spec = dict(parsed.spec)
    candidates = spec.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise InvalidDeployment("spec.candidates must list at least one candidate")
    names: list[str] = []
    for index, candidate in enumerate(candidates):
        if not isinstance(candidate, dict):
            raise InvalidDeployment(f"spec.candidates[{index}] must be an object")
        candidate_name = candidate.get("name")
        if not isinstance(candidate_name, str) or not candidate_name:
            raise InvalidDeployment(f"spec.candidates[{index}].name is required")
        weight = candidate.get("weight")
        if not (_is_int(weight) and weight >= 0):
            raise InvalidDeployment(f"spec.candidates[{index}].weight must be an integer >= 0")
        names.append(candidate_name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidDeployment(f"duplicate candidate: {', '.join(duplicates)}")
    default = spec.get("default")
    if default is not None and default not in names:
        raise InvalidDeployment(f"spec.default {default!r} is not one of the candidates")
    resource_type = spec.setdefault("resourceType", "pipeline")
    if resource_type != "pipeline":
        raise InvalidDeployment("spec.resourceType must be pipeline on this path")
    mirror = spec.get("mirror")
    if mirror is not None:
        if not isinstance(mirror, dict):
            raise InvalidDeployment("spec.mirror must be an object")
        if not isinstance(mirror.get("name"), str) or not mirror["name"]:
            raise InvalidDeployment("spec.mirror.name is required")
        percent = mirror.get("percent", 100)
        if not (_is_int(percent) and 0 <= percent <= 100):
            raise InvalidDeployment("spec.mirror.percent must be an integer in [0, 100]")
    return DeploymentBody(name=parsed.name, metadata=parsed.metadata, spec=spec)


def experiment_pipelines(spec: dict[str, Any]) -> list[str]:
    """Every pipeline an experiment spec names: candidates, then the mirror."""
    names = [c["name"] for c in spec.get("candidates") or [] if isinstance(c, dict)]
    mirror = spec.get("mirror")
    if isinstance(mirror, dict) and isinstance(mirror.get("name"), str):
        names.append(mirror["name"])
    return names
