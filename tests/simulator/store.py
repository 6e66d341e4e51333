"""Deployments, namespaces, and the cluster state derived from timestamps.

Nothing here sleeps or runs in the background: a write records *when* the
cluster will pick the new spec up and how long its rollout takes, and every read
computes the state for "now". That keeps handlers non-blocking and lets a test
pick any delay without timers to cancel.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from tests.simulator.namespaces import Namespace
from tests.simulator.validation import API_VERSION, KIND, DeploymentBody

State = Literal["Creating", "Available", "Failed"]
STATES: frozenset[str] = frozenset({"Creating", "Available", "Failed"})
DEFAULT_FAILURE = "simulated failure: deployment marked to fail"

Key = tuple[str, str]


def rfc3339(moment: float, *, fraction: bool = False) -> str:
    """Format a POSIX time the way Kubernetes (seconds) or Go's git library (micro) does."""
    stamp = datetime.fromtimestamp(moment, tz=UTC)
    if fraction:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Rollout:
    """The cluster applying one generation: from `started_at`, for `duration` seconds."""

    generation: int
    started_at: float
    duration: float
    failure: str | None = None
    forced_state: State | None = None
    forced_description: str | None = None

    def state_at(self, now: float) -> tuple[State, str | None]:
        """The state and description the cluster reports at `now`."""
        if self.forced_state is not None:
            return self.forced_state, self.forced_description
        if now < self.started_at + self.duration:
            return "Creating", None
        if self.failure is not None:
            return "Failed", self.failure
        return "Available", None


@dataclass(frozen=True)
class FailureMark:
    """A test's order that rollouts of a deployment fail, optionally only for some specs.

    `spec_contains` lets a test fail the promoted spec but not the one a rollback
    restores: the rollout fails only when the spec's JSON contains the text.
    """

    description: str = DEFAULT_FAILURE
    spec_contains: str | None = None

    def applies_to(self, spec: dict[str, Any]) -> bool:
        """Whether a rollout of `spec` fails under this mark."""
        if self.spec_contains is None:
            return True
        return self.spec_contains in json.dumps(spec, sort_keys=True)


@dataclass(frozen=True)
class Delays:
    """How long a rollout takes, and how long GitOps takes to sync a commit."""

    rollout_seconds: float
    gitops_sync_seconds: float


@dataclass
class Deployment:
    """One SeldonDeployment: the desired object (repository or API) and what the cluster runs.

    `running` is the rollout the cluster has; `pending` is one a GitOps sync will
    start at `pending.started_at`. Reads never see `pending` before then.
    """

    namespace: str
    name: str
    metadata: dict[str, Any]
    spec: dict[str, Any]
    uid: str
    created_at: float
    generation: int
    resource_version: int
    running: Rollout | None = None
    pending: Rollout | None = None

    def rollout_at(self, now: float) -> Rollout | None:
        """The rollout the cluster reports on at `now`."""
        if self.pending is not None and now >= self.pending.started_at:
            return self.pending
        return self.running

    def settle(self, now: float) -> None:
        """Fold a pending rollout whose sync time has passed into `running`."""
        if self.pending is not None and now >= self.pending.started_at:
            self.running, self.pending = self.pending, None


def status_at(deployment: Deployment, now: float) -> dict[str, Any] | None:
    """The `status` the API shows at `now`, or None while the cluster has nothing."""
    rollout = deployment.rollout_at(now)
    if rollout is None:
        return None
    state, description = rollout.state_at(now)
    status: dict[str, Any] = {"state": state, "observedGeneration": rollout.generation}
    if description:
        status["description"] = description
    if state == "Available":
        status["address"] = {
            "url": f"http://{deployment.name}.{deployment.namespace}.svc.cluster.local:8000"
        }
    return status


def render(deployment: Deployment, now: float) -> dict[str, Any]:
    """The deployment as the API returns it (SDK `SeldonDeployment` shape)."""
    metadata = copy.deepcopy(deployment.metadata)
    metadata.update(
        {
            "name": deployment.name,
            "namespace": deployment.namespace,
            "uid": deployment.uid,
            "resourceVersion": str(deployment.resource_version),
            "generation": deployment.generation,
            "creationTimestamp": rfc3339(deployment.created_at),
        }
    )
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": copy.deepcopy(deployment.spec),
    }
    status = status_at(deployment, now)
    if status is not None:
        body["status"] = status
    return body


@dataclass
class Store:
    """All mutable state about namespaces and deployments, plus the knobs tests turn."""

    default_delays: Delays
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    deployments: dict[Key, Deployment] = field(default_factory=dict)
    failing: dict[Key, FailureMark] = field(default_factory=dict)
    delay_overrides: dict[Key, Delays] = field(default_factory=dict)
    resource_version: int = 0

    def delays_for(self, namespace: str, name: str) -> Delays:
        """The delays that apply to the next write of this deployment."""
        return self.delay_overrides.get((namespace, name), self.default_delays)

    def set_delays(
        self,
        *,
        rollout_seconds: float | None,
        gitops_sync_seconds: float | None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> Delays:
        """Change delays globally, or for one deployment when namespace and name are given."""
        if (namespace is None) != (name is None):
            raise ValueError("give both namespace and name, or neither")
        current = (
            self.default_delays if namespace is None else self.delays_for(namespace, str(name))
        )
        updated = replace(
            current,
            rollout_seconds=current.rollout_seconds if rollout_seconds is None else rollout_seconds,
            gitops_sync_seconds=(
                current.gitops_sync_seconds if gitops_sync_seconds is None else gitops_sync_seconds
            ),
        )
        if updated.rollout_seconds < 0 or updated.gitops_sync_seconds < 0:
            raise ValueError("delays must not be negative")
        if namespace is None:
            self.default_delays = updated
        else:
            self.delay_overrides[(namespace, str(name))] = updated
        return updated

    def get(self, namespace: str, name: str) -> Deployment | None:
        """The deployment, or None."""
        return self.deployments.get((namespace, name))

    def list(self, namespace: str) -> list[Deployment]:
        """Deployments of a namespace, by name."""
        found = [d for (ns, _), d in self.deployments.items() if ns == namespace]
        return sorted(found, key=lambda d: d.name)

    def write(self, namespace: Namespace, body: DeploymentBody, now: float) -> Deployment:
        """Create or replace a deployment and schedule the cluster's rollout.

        The generation moves only when the spec changes, as in Kubernetes; the
        resource version moves on every write.
        """
        key = (namespace.name, body.name)
        self.resource_version += 1
        existing = self.deployments.get(key)
        if existing is None:
            deployment = Deployment(
                namespace=namespace.name,
                name=body.name,
                metadata=copy.deepcopy(body.metadata),
                spec=copy.deepcopy(body.spec),
                uid=str(uuid.uuid4()),
                created_at=now,
                generation=1,
                resource_version=self.resource_version,
            )
            self.deployments[key] = deployment
            self._schedule(namespace, deployment, now)
            return deployment
        existing.settle(now)
        spec_changed = existing.spec != body.spec
        existing.metadata = copy.deepcopy(body.metadata)
        existing.spec = copy.deepcopy(body.spec)
        existing.resource_version = self.resource_version
        if spec_changed:
            existing.generation += 1
            self._schedule(namespace, existing, now)
        return existing

    def remove(self, namespace: str, name: str) -> Deployment | None:
        """Delete a deployment; returns what was removed."""
        self.resource_version += 1
        return self.deployments.pop((namespace, name), None)

    def seed(
        self,
        namespace: Namespace,
        body: DeploymentBody,
        now: float,
        *,
        state: State | None,
        description: str | None,
        generation: int = 1,
    ) -> Deployment:
        """Plant a deployment as if it had been running already.

        With a `state` the cluster reports exactly that until the next write;
        with None it rolls out from now like a fresh create (even in a GitOps
        namespace: seeding stands for history before the test began).
        """
        self.resource_version += 1
        deployment = Deployment(
            namespace=namespace.name,
            name=body.name,
            metadata=copy.deepcopy(body.metadata),
            spec=copy.deepcopy(body.spec),
            uid=str(uuid.uuid4()),
            created_at=now,
            generation=generation,
            resource_version=self.resource_version,
        )
        if state is None:
            deployment.running = self._rollout(deployment, now)
        else:
            deployment.running = Rollout(
                generation=generation,
                started_at=now,
                duration=0.0,
                forced_state=state,
                forced_description=description,
            )
        self.deployments[(namespace.name, body.name)] = deployment
        return deployment

    def _schedule(self, namespace: Namespace, deployment: Deployment, now: float) -> None:
        if namespace.gitops:
            # The repository changed now; the cluster follows at the next sync.
            sync_at = now + self.delays_for(namespace.name, deployment.name).gitops_sync_seconds
            deployment.pending = self._rollout(deployment, sync_at)
        else:
            deployment.running = self._rollout(deployment, now)
            deployment.pending = None

    def _rollout(self, deployment: Deployment, start: float) -> Rollout:
        # The failure mark is read when the rollout is scheduled, so marking a
        # name affects the next write, never a deployment already running.
        key = (deployment.namespace, deployment.name)
        mark = self.failing.get(key)
        failure = mark.description if mark and mark.applies_to(deployment.spec) else None
        return Rollout(
            generation=deployment.generation,
            started_at=start,
            duration=self.delays_for(*key).rollout_seconds,
            failure=failure,
        )
