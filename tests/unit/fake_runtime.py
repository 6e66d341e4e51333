"""An in-memory Seldon Deploy client and a real runtime served by it, for the shell's
unit tests (``run_pass``, the controller)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from promotion_operator.metrics import Metrics
from promotion_operator.runner import DeploymentClient, Runtime
from promotion_operator.settings import Settings
from tests.unit.core_builders import source_deployment


def rolling_out(generation: int) -> dict[str, Any]:
    return {"state": "Creating", "observedGeneration": generation}


class FakeClient:
    """Seldon Deploy in memory: deployments by (namespace, name), every call recorded."""

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {
            ("staging", "iris"): source_deployment()
        }
        self.calls: list[tuple[str, ...]] = []
        self.error: Exception | None = None

    def _call(self, *what: str) -> None:
        self.calls.append(what)
        if self.error is not None:
            raise self.error

    def find(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("find", namespace, name)
        return copy.deepcopy(self.deployments.get((namespace, name)))

    def list(self, namespace: str) -> list[dict[str, Any]]:
        self._call("list", namespace)
        return [copy.deepcopy(d) for (ns, _), d in self.deployments.items() if ns == namespace]

    def validate(self, namespace: str, deployment: Mapping[str, Any]) -> dict[str, Any]:
        self._call("validate", namespace)
        return {"code": 200, "message": "valid"}

    def create(
        self, namespace: str, deployment: Mapping[str, Any], *, action: str, message: str
    ) -> dict[str, Any]:
        self._call("create", namespace, action)
        # Rolling out, as Seldon Deploy shows a write it has taken in.
        written = {**copy.deepcopy(dict(deployment)), "status": rolling_out(1)}
        written["metadata"]["generation"] = 1
        self.deployments[(namespace, written["metadata"]["name"])] = written
        return copy.deepcopy(written)

    def update(
        self,
        namespace: str,
        name: str,
        deployment: Mapping[str, Any],
        *,
        action: str,
        message: str,
    ) -> dict[str, Any]:
        self._call("update", namespace, name, action)
        written = {**copy.deepcopy(dict(deployment)), "status": rolling_out(2)}
        written["metadata"]["generation"] = 2
        self.deployments[(namespace, name)] = written
        return copy.deepcopy(written)

    def delete(self, namespace: str, name: str, *, action: str, message: str) -> None:
        self._call("delete", namespace, name, action)
        self.deployments.pop((namespace, name), None)


class FakeRuntime(Runtime):
    """A real runtime whose every instance is served by one :class:`FakeClient`."""

    def __init__(self, settings: Settings, fake: FakeClient) -> None:
        super().__init__(settings, metrics=Metrics())
        self.fake = fake

    def client(self, instance: str | None) -> DeploymentClient:
        self.settings.instance(instance)  # unknown instances fail as in the real runtime
        return self.fake
