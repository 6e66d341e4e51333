"""What makes a request body an acceptable SeldonDeployment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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
    if not isinstance(body, dict):
        raise InvalidDeployment("body must be a JSON object")
    api_version = body.get("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        raise InvalidDeployment(f"apiVersion must be {API_VERSION}")
    kind = body.get("kind")
    if kind is not None and kind != KIND:
        raise InvalidDeployment(f"kind must be {KIND}")
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidDeployment("metadata is required")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidDeployment("metadata.name is required")
    if len(name) > _MAX_NAME or not _DNS1123_SUBDOMAIN.match(name):
        raise InvalidDeployment(f"metadata.name {name!r} is not a valid DNS-1123 subdomain")
    body_namespace = metadata.get("namespace")
    if body_namespace not in (None, "", namespace):
        raise InvalidDeployment(
            f"metadata.namespace {body_namespace!r} does not match the request's {namespace!r}"
        )
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise InvalidDeployment("spec is required")
    if strict_spec:
        _check_predictors(spec)
    client_metadata = {
        key: value
        for key, value in metadata.items()
        if key not in SERVER_METADATA_FIELDS and key != "namespace"
    }
    return DeploymentBody(name=name, metadata=client_metadata, spec=spec)


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
