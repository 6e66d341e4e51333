"""Deployments, Core v2 Models/Pipelines/Experiments, and the cluster state from timestamps.

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

# The kinds that roll out; a failure mark, a delay or a rate names one of them.
Kind = Literal["SeldonDeployment", "Model", "Pipeline"]
KINDS: tuple[Kind, ...] = ("SeldonDeployment", "Model", "Pipeline")
DEPLOYMENT: Kind = "SeldonDeployment"

Key = tuple[str, str]


def default_failure(kind: Kind) -> str:
    """The failure text of a mark that gives none."""
    if kind == DEPLOYMENT:
        return DEFAULT_FAILURE
    return f"simulated failure: {kind.lower()} marked to fail"


def parse_kind(value: object) -> Kind:
    """A kind named by a control request (None means SeldonDeployment)."""
    if value is None:
        return DEPLOYMENT
    if value not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}")
    return value


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

    def transition_at(self, now: float) -> float:
        """When the state reported at `now` began (a condition's lastTransitionTime)."""
        if self.forced_state is not None or now < self.started_at + self.duration:
            return self.started_at
        return self.started_at + self.duration


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
    """How long a rollout takes, how long GitOps takes to sync a commit, and how long
    a traffic-only change of a SeldonDeployment takes (Seldon routes it without new pods)."""

    rollout_seconds: float
    gitops_sync_seconds: float
    traffic_seconds: float = 0.0


def traffic_only(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether ``after`` differs from ``before`` only in the ``traffic`` of predictors both
    have (none added, removed or renamed; nothing else changed). Seldon Core applies
    such a change to its routing at once, without starting new pods."""
    if before == after:
        return False

    def without_traffic(spec: dict[str, Any]) -> dict[str, Any]:
        stripped = copy.deepcopy(spec)
        for predictor in stripped.get("predictors") or []:
            if isinstance(predictor, dict):
                predictor.pop("traffic", None)
        return stripped

    return without_traffic(before) == without_traffic(after)


@dataclass
class Deployment:
    """One rolled-out object (a SeldonDeployment, a Model or a Pipeline): the desired
    object (repository or API) and what the cluster runs.

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
    kind: Kind = DEPLOYMENT

    def rollouts(self) -> list[Rollout]:
        """The rollouts the record holds (for finding the moments its state changes)."""
        return [r for r in (self.running, self.pending) if r is not None]

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
class Experiment:
    """A Core v2 Experiment of a pipeline: applied at once, no rollout, never committed."""

    namespace: str
    name: str
    metadata: dict[str, Any]
    spec: dict[str, Any]
    uid: str
    created_at: float
    updated_at: float
    generation: int
    resource_version: int


@dataclass
class Store:
    """All mutable state about namespaces and objects, plus the knobs tests turn.

    SeldonDeployments keep their historical fields (`deployments`, `failing`,
    `delay_overrides`); Models and Pipelines have their own, reached through
    `objects`, `marks` and `overrides` by kind.
    """

    default_delays: Delays
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    deployments: dict[Key, Deployment] = field(default_factory=dict)
    failing: dict[Key, FailureMark] = field(default_factory=dict)
    delay_overrides: dict[Key, Delays] = field(default_factory=dict)
    models: dict[Key, Deployment] = field(default_factory=dict)
    pipelines: dict[Key, Deployment] = field(default_factory=dict)
    experiments: dict[Key, Experiment] = field(default_factory=dict)
    model_failing: dict[Key, FailureMark] = field(default_factory=dict)
    pipeline_failing: dict[Key, FailureMark] = field(default_factory=dict)
    model_delay_overrides: dict[Key, Delays] = field(default_factory=dict)
    pipeline_delay_overrides: dict[Key, Delays] = field(default_factory=dict)
    resource_version: int = 0

    def objects(self, kind: Kind = DEPLOYMENT) -> dict[Key, Deployment]:
        """The objects of one kind, by (namespace, name)."""
        if kind == "Model":
            return self.models
        if kind == "Pipeline":
            return self.pipelines
        return self.deployments

    def marks(self, kind: Kind = DEPLOYMENT) -> dict[Key, FailureMark]:
        """The failure marks of one kind."""
        if kind == "Model":
            return self.model_failing
        if kind == "Pipeline":
            return self.pipeline_failing
        return self.failing

    def overrides(self, kind: Kind = DEPLOYMENT) -> dict[Key, Delays]:
        """The per-object delay overrides of one kind."""
        if kind == "Model":
            return self.model_delay_overrides
        if kind == "Pipeline":
            return self.pipeline_delay_overrides
        return self.delay_overrides

    def delays_for(self, namespace: str, name: str, kind: Kind = DEPLOYMENT) -> Delays:
        """The delays that apply to the next write of this object."""
        return self.overrides(kind).get((namespace, name), self.default_delays)

    def set_delays(
        self,
        *,
        rollout_seconds: float | None,
        gitops_sync_seconds: float | None,
        traffic_seconds: float | None = None,
        namespace: str | None = None,
        name: str | None = None,
        kind: Kind = DEPLOYMENT,
    ) -> Delays:
        """Change delays globally (every kind), or for one `kind` object by namespace and name."""
        if (namespace is None) != (name is None):
            raise ValueError("give both namespace and name, or neither")
        current = (
            self.default_delays
            if namespace is None
            else self.delays_for(namespace, str(name), kind)
        )
        updated = replace(
            current,
            rollout_seconds=current.rollout_seconds if rollout_seconds is None else rollout_seconds,
            gitops_sync_seconds=(
                current.gitops_sync_seconds if gitops_sync_seconds is None else gitops_sync_seconds
            ),
            traffic_seconds=current.traffic_seconds if traffic_seconds is None else traffic_seconds,
        )
        if min(updated.rollout_seconds, updated.gitops_sync_seconds, updated.traffic_seconds) < 0:
            raise ValueError("delays must not be negative")
        if namespace is None:
            self.default_delays = updated
        else:
            self.overrides(kind)[(namespace, str(name))] = updated
        return updated

    def get(self, namespace: str, name: str, kind: Kind = DEPLOYMENT) -> Deployment | None:
        """The object, or None."""
        return self.objects(kind).get((namespace, name))

    def list(self, namespace: str, kind: Kind = DEPLOYMENT) -> list[Deployment]:
        """Objects of one kind in a namespace, by name."""
        found = [d for (ns, _), d in self.objects(kind).items() if ns == namespace]
        return sorted(found, key=lambda d: d.name)

    def write(
        self, namespace: Namespace, body: DeploymentBody, now: float, kind: Kind = DEPLOYMENT
    ) -> Deployment:
        """Create or replace an object and schedule the cluster's rollout.

        The generation moves only when the spec changes, as in Kubernetes; the
        resource version moves on every write.
        """
        key = (namespace.name, body.name)
        self.resource_version += 1
        objects = self.objects(kind)
        existing = objects.get(key)
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
                kind=kind,
            )
            objects[key] = deployment
            self._schedule(namespace, deployment, now)
            return deployment
        existing.settle(now)
        spec_changed = existing.spec != body.spec
        # Only a SeldonDeployment's routing: Seldon applies it without new pods.
        routing = kind == DEPLOYMENT and traffic_only(existing.spec, body.spec)
        existing.metadata = copy.deepcopy(body.metadata)
        existing.spec = copy.deepcopy(body.spec)
        existing.resource_version = self.resource_version
        if spec_changed:
            existing.generation += 1
            self._schedule(namespace, existing, now, traffic=routing)
        return existing

    def remove(self, namespace: str, name: str, kind: Kind = DEPLOYMENT) -> Deployment | None:
        """Delete an object; returns what was removed. A pipeline takes its experiment along."""
        self.resource_version += 1
        if kind == "Pipeline":
            self.experiments.pop((namespace, name), None)
        return self.objects(kind).pop((namespace, name), None)

    def drop_namespace(self, namespace: str) -> None:
        """Forget every object of a namespace (the namespace itself is the caller's)."""
        for objects in (self.deployments, self.models, self.pipelines):
            for key in [k for k in objects if k[0] == namespace]:
                del objects[key]
        for key in [k for k in self.experiments if k[0] == namespace]:
            del self.experiments[key]

    def put_experiment(
        self,
        namespace: str,
        name: str,
        metadata: dict[str, Any],
        spec: dict[str, Any],
        now: float,
    ) -> Experiment:
        """Create or replace experiment `name`; generation 1, then +1 when the spec changes."""
        self.resource_version += 1
        key = (namespace, name)
        existing = self.experiments.get(key)
        if existing is None:
            experiment = Experiment(
                namespace=namespace,
                name=name,
                metadata=copy.deepcopy(metadata),
                spec=copy.deepcopy(spec),
                uid=str(uuid.uuid4()),
                created_at=now,
                updated_at=now,
                generation=1,
                resource_version=self.resource_version,
            )
            self.experiments[key] = experiment
            return experiment
        if existing.spec != spec:
            existing.generation += 1
            existing.updated_at = now
        existing.metadata = copy.deepcopy(metadata)
        existing.spec = copy.deepcopy(spec)
        existing.resource_version = self.resource_version
        return existing

    def remove_experiment(self, namespace: str, name: str) -> Experiment | None:
        """Delete an experiment; returns what was removed."""
        self.resource_version += 1
        return self.experiments.pop((namespace, name), None)

    def seed(
        self,
        namespace: Namespace,
        body: DeploymentBody,
        now: float,
        *,
        state: State | None,
        description: str | None,
        generation: int = 1,
        kind: Kind = DEPLOYMENT,
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
            kind=kind,
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
        self.objects(kind)[(namespace.name, body.name)] = deployment
        return deployment

    def _schedule(
        self, namespace: Namespace, deployment: Deployment, now: float, *, traffic: bool = False
    ) -> None:
        if namespace.gitops:
            # The repository changed now; the cluster follows at the next sync.
            delays = self.delays_for(namespace.name, deployment.name, deployment.kind)
            sync_at = now + delays.gitops_sync_seconds
            deployment.pending = self._rollout(deployment, sync_at, traffic=traffic)
        else:
            deployment.running = self._rollout(deployment, now, traffic=traffic)
            deployment.pending = None

    def _rollout(self, deployment: Deployment, start: float, *, traffic: bool = False) -> Rollout:
        # The failure mark is read when the rollout is scheduled, so marking a
        # name affects the next write, never a deployment already running.
        key = (deployment.namespace, deployment.name)
        mark = self.marks(deployment.kind).get(key)
        failure = mark.description if mark and mark.applies_to(deployment.spec) else None
        delays = self.delays_for(*key, deployment.kind)
        return Rollout(
            generation=deployment.generation,
            started_at=start,
            # A traffic-only change (``traffic``) takes ``traffic_seconds``: no new pods.
            duration=delays.traffic_seconds if traffic else delays.rollout_seconds,
            failure=failure,
        )
