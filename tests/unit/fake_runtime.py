"""An in-memory Seldon Deploy client and a real runtime served by it, for the shell's
unit tests (``run_pass``, the controller)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from promotion_operator.clients.seldon import Resources
from promotion_operator.config.settings import Settings
from promotion_operator.control.metrics import Metrics
from promotion_operator.control.runner import DeploymentClient, Runtime
from promotion_operator.core.spec import Kind
from promotion_operator.errors import NotFound
from tests.unit.core_builders import source_deployment


def rolling_out(generation: int, kind: Kind = Kind.SELDON_DEPLOYMENT) -> dict[str, Any]:
    if kind is Kind.SELDON_DEPLOYMENT:
        return {"state": "Creating", "observedGeneration": generation}
    progressing = {"type": "Ready", "status": "False", "reason": "Progressing", "message": ""}
    return {"observedGeneration": generation, "conditions": [progressing]}


def ready(generation: int) -> dict[str, Any]:
    """A Core v2 resource's status once it serves ``generation``."""
    condition = {"type": "Ready", "status": "True", "reason": "Ready", "message": ""}
    return {"observedGeneration": generation, "conditions": [condition]}


class FakeClient:
    """Seldon Deploy in memory: resources by (namespace, name), one store per kind,
    every call recorded (with the kind when it is not a SeldonDeployment)."""

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {
            ("staging", "iris"): source_deployment()
        }
        self.models: dict[tuple[str, str], dict[str, Any]] = {}
        self.pipelines: dict[tuple[str, str], dict[str, Any]] = {}
        self.experiments: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, ...]] = []
        self.error: Exception | None = None

    def store(self, kind: Kind) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            Kind.SELDON_DEPLOYMENT: self.deployments,
            Kind.MODEL: self.models,
            Kind.PIPELINE: self.pipelines,
        }[kind]

    def _call(self, *what: str, kind: Kind = Kind.SELDON_DEPLOYMENT) -> None:
        self.calls.append(what if kind is Kind.SELDON_DEPLOYMENT else (*what, str(kind)))
        if self.error is not None:
            raise self.error

    def find(
        self, namespace: str, name: str, *, kind: Kind = Kind.SELDON_DEPLOYMENT
    ) -> dict[str, Any] | None:
        self._call("find", namespace, name, kind=kind)
        return copy.deepcopy(self.store(kind).get((namespace, name)))

    def list(self, namespace: str, *, kind: Kind = Kind.SELDON_DEPLOYMENT) -> Resources:
        self._call("list", namespace, kind=kind)
        return [copy.deepcopy(d) for (ns, _), d in self.store(kind).items() if ns == namespace]

    def pipeline_models(self, namespace: str, name: str) -> Resources:
        self._call("pipeline_models", namespace, name)
        pipeline = self.pipelines.get((namespace, name))
        if pipeline is None:
            raise NotFound(f"GET pipelines/{name}/models: HTTP 404", http_status=404)
        steps = [step["name"] for step in pipeline["spec"]["steps"]]
        return [
            copy.deepcopy(self.models[namespace, n]) for n in steps if (namespace, n) in self.models
        ]

    def find_experiment(self, namespace: str, pipeline: str) -> dict[str, Any] | None:
        self._call("find_experiment", namespace, pipeline)
        return copy.deepcopy(self.experiments.get((namespace, pipeline)))

    def set_canary_weight(
        self, namespace: str, pipeline: str, weight: int, *, action: str, message: str
    ) -> None:
        self._call("set_canary_weight", namespace, pipeline, str(weight), action)
        candidates = [
            {"name": pipeline, "weight": 100 - weight},
            {"name": f"{pipeline}-canary", "weight": weight},
        ]
        self.experiments[namespace, pipeline] = {"spec": {"candidates": candidates}}

    def promote_canary(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        self._call("promote_canary", namespace, pipeline, action)

    def remove_canary(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        self._call("remove_canary", namespace, pipeline, action)
        self.experiments.pop((namespace, pipeline), None)

    def create_shadow(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        self._call("create_shadow", namespace, pipeline, action)
        mirror = {"name": f"{pipeline}-shadow", "percent": 100}
        candidates = [{"name": pipeline, "weight": 100}]
        self.experiments[namespace, pipeline] = {
            "spec": {"candidates": candidates, "mirror": mirror}
        }

    def promote_shadow(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        self._call("promote_shadow", namespace, pipeline, action)

    def remove_shadow(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        self._call("remove_shadow", namespace, pipeline, action)
        self.experiments.pop((namespace, pipeline), None)

    def validate(self, namespace: str, deployment: Mapping[str, Any]) -> dict[str, Any]:
        self._call("validate", namespace)
        return {"code": 200, "message": "valid"}

    def create(
        self,
        namespace: str,
        deployment: Mapping[str, Any],
        *,
        action: str,
        message: str,
        kind: Kind = Kind.SELDON_DEPLOYMENT,
    ) -> dict[str, Any]:
        self._call("create", namespace, action, kind=kind)
        # Rolling out, as Seldon Deploy shows a write it has taken in.
        written = {**copy.deepcopy(dict(deployment)), "status": rolling_out(1, kind)}
        written["metadata"]["generation"] = 1
        self.store(kind)[(namespace, written["metadata"]["name"])] = written
        return copy.deepcopy(written)

    def update(
        self,
        namespace: str,
        name: str,
        deployment: Mapping[str, Any],
        *,
        action: str,
        message: str,
        kind: Kind = Kind.SELDON_DEPLOYMENT,
    ) -> dict[str, Any]:
        self._call("update", namespace, name, action, kind=kind)
        written = {**copy.deepcopy(dict(deployment)), "status": rolling_out(2, kind)}
        written["metadata"]["generation"] = 2
        self.store(kind)[(namespace, name)] = written
        return copy.deepcopy(written)

    def delete(
        self,
        namespace: str,
        name: str,
        *,
        action: str,
        message: str,
        kind: Kind = Kind.SELDON_DEPLOYMENT,
    ) -> None:
        self._call("delete", namespace, name, action, kind=kind)
        self.store(kind).pop((namespace, name), None)


class FakeRuntime(Runtime):
    """A real runtime whose every instance is served by one :class:`FakeClient`."""

    def __init__(self, settings: Settings, fake: FakeClient) -> None:
        super().__init__(settings, metrics=Metrics())
        self.fake = fake

    def client(self, instance: str | None) -> DeploymentClient:
        self.settings.instance(instance)  # unknown instances fail as in the real runtime
        return self.fake
