"""Builders for the core's unit tests: fixed times, specs, deployments, runs, a fake Seldon.

Everything here is plain data at fixed, timezone-aware UTC instants; nothing sleeps
and nothing reads a clock.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from promotion_operator.core.conditions import Event
from promotion_operator.core.machine import reconcile
from promotion_operator.core.pass_io import (
    Action,
    Alerts,
    Answer,
    Context,
    Decision,
    ModelsAnswer,
    Reading,
    RetryPolicy,
)
from promotion_operator.core.planning import (
    Plan,
    plan_promotion,
    spec_hash,
    strip_server_fields,
)
from promotion_operator.core.promotion import PromotionRef
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import (
    ActionKind,
    Experiment,
    Failure,
    Phase,
    PlannedChange,
    PreviousTarget,
    Run,
    from_status,
)
from promotion_operator.core.spec import Kind, PromotionSpec, parse_spec

T0 = datetime.datetime(2025, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)

PROMOTION = PromotionRef(
    namespace="ml-promotions", name="iris-to-prod", uid="uid-1234", generation=2
)

SPEC_DICT: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
}
SPEC = parse_spec(SPEC_DICT)
DEFAULT_POLICY = RetryPolicy()


def at(seconds: float) -> datetime.datetime:
    """The instant ``seconds`` after :data:`T0`."""
    return T0 + datetime.timedelta(seconds=seconds)


def make_spec(**changes: Any) -> PromotionSpec:
    """:data:`SPEC` with some fields replaced."""
    return replace(SPEC, **changes)


def context(
    seconds: float = 0.0,
    *,
    spec: PromotionSpec = SPEC,
    jitter: float = 0.5,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Context:
    """A pass at ``seconds`` after T0; jitter 0.5 makes the jitter factor exactly 1."""
    return Context(spec=spec, promotion=PROMOTION, now=at(seconds), jitter=jitter, policy=policy)


# --- deployments ---------------------------------------------------------------


def source_deployment() -> dict[str, Any]:
    """The staging SeldonDeployment as Seldon Deploy returns it (server fields and all)."""
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {
            "name": "iris",
            "namespace": "staging",
            "uid": "src-uid",
            "resourceVersion": "4711",
            "generation": 5,
            "creationTimestamp": "2025-02-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "ownerReferences": [{"kind": "Application", "name": "argo"}],
            "labels": {"team": "ds", "env": "staging"},
            "annotations": {
                "owner": "ds-team",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "deploy.mlops.dev/promotion": "ml-promotions/older-promotion",
                "deploy.mlops.dev/source-spec-hash": "stale",
            },
        },
        "spec": {
            "name": "iris",
            "predictors": [
                {
                    "name": "main",
                    "replicas": 1,
                    "graph": {
                        "name": "router",
                        "type": "ROUTER",
                        "children": [
                            {
                                "name": "classifier",
                                "modelUri": "gs://models/iris/v1",
                                "children": [
                                    {"name": "explainer", "modelUri": "gs://models/explain/v1"}
                                ],
                            }
                        ],
                    },
                    "componentSpecs": [
                        {
                            "spec": {
                                "containers": [
                                    {"name": "classifier", "image": "seldonio/iris:1.0"},
                                    {"name": "sidecar", "image": "envoy:1.29"},
                                ]
                            }
                        }
                    ],
                },
                {
                    "name": "shadow",
                    "replicas": 1,
                    "graph": {"name": "classifier", "modelUri": "gs://models/iris/v2"},
                    "componentSpecs": [
                        {
                            "spec": {
                                "containers": [{"name": "classifier", "image": "seldonio/iris:2.0"}]
                            }
                        }
                    ],
                },
            ],
        },
        "status": {"state": "Available", "observedGeneration": 5},
    }


def foreign_target(*, image: str = "seldonio/iris:0.9", generation: int = 7) -> dict[str, Any]:
    """A production deployment someone else wrote (not this promotion run)."""
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {
            "name": "iris",
            "namespace": "production",
            "uid": "tgt-uid",
            "resourceVersion": "900",
            "generation": generation,
            "annotations": {"owner": "ops"},
        },
        "spec": {
            "name": "iris",
            "predictors": [
                {
                    "name": "main",
                    "replicas": 3,
                    "graph": {"name": "classifier", "modelUri": "gs://models/iris/v0"},
                    "componentSpecs": [
                        {"spec": {"containers": [{"name": "classifier", "image": image}]}}
                    ],
                }
            ],
        },
        "status": {"state": "Available", "observedGeneration": generation},
    }


def plan_for(spec: PromotionSpec = SPEC, source: Mapping[str, Any] | None = None) -> Plan:
    """The plan the core makes for ``source`` (default: :func:`source_deployment`)."""
    return plan_promotion(source or source_deployment(), spec, PROMOTION)


def our_target(
    *,
    generation: int = 1,
    state: str | None = None,
    observed_generation: int | None = None,
    spec: PromotionSpec = SPEC,
) -> dict[str, Any]:
    """The target after this run's write, as Seldon Deploy returns it."""
    deployment = copy.deepcopy(plan_for(spec).deployment)
    deployment["metadata"].update(uid="tgt-uid", resourceVersion="901", generation=generation)
    status: dict[str, Any] = {}
    if state is not None:
        status["state"] = state
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    deployment["status"] = status
    return deployment


def previous_of(target: Mapping[str, Any] | None) -> PreviousTarget:
    """What a run records about the target before writing it."""
    if target is None:
        return PreviousTarget(existed=False)
    return PreviousTarget(True, spec_hash(target["spec"]), strip_server_fields(target))


def change_for(target: Mapping[str, Any] | None, spec: PromotionSpec = SPEC) -> PlannedChange:
    """The planned change a run records for ``target``."""
    plan = plan_for(spec)
    action = ActionKind.CREATE if target is None else ActionKind.UPDATE
    return PlannedChange(
        action, plan.source_spec_hash, plan.images, plan.model_uris, source_generation=5
    )


def run_in(phase: Phase, **changes: Any) -> Run:
    """A run of :data:`PROMOTION` in ``phase`` started at T0 (fields overridable)."""
    run = Run(
        generation=PROMOTION.generation,
        phase=phase,
        started_at=T0,
        phase_since=T0,
        source=str(SPEC.source),
        target=str(SPEC.target),
    )
    return replace(run, **changes)


def promoting_run(target: Mapping[str, Any] | None, **changes: Any) -> Run:
    """A run that validated its plan against ``target`` and is about to write."""
    fields: dict[str, Any] = {
        "phase": Phase.PROMOTING,
        "plan": change_for(target),
        "previous": previous_of(target),
    }
    fields.update(changes)
    return run_in(**fields)


def verifying_run(
    target_before: Mapping[str, Any] | None = None, *, applied_generation: int = 1, **changes: Any
) -> Run:
    """A run that wrote the target at T0 (generation ``applied_generation``)."""
    fields: dict[str, Any] = {
        "phase": Phase.VERIFYING,
        "plan": change_for(target_before),
        "previous": previous_of(target_before),
        "applied_generation": applied_generation,
        "applied_at": T0,
    }
    fields.update(changes)
    return run_in(**fields)


def rolling_back_run(target_before: Mapping[str, Any] | None, **changes: Any) -> Run:
    """A run whose verification failed (TargetFailed) at T0 and that is rolling back."""
    fields: dict[str, Any] = {
        "phase": Phase.ROLLING_BACK,
        "plan": change_for(target_before),
        "previous": previous_of(target_before),
        "applied_generation": 8 if target_before else 1,
        "applied_at": T0,
        "outcome": Failure("TargetFailed", "production/iris went Failed: image pull error"),
    }
    fields.update(changes)
    return run_in(**fields)


def condition(run: Run, type_: str) -> dict[str, Any]:
    """The condition of ``type_`` on ``run`` (fails the test if absent)."""
    found = [c for c in run.conditions if c.get("type") == type_]
    assert len(found) == 1, f"expected one {type_} condition, got {run.conditions}"
    return found[0]


def failure(reason: str, status: int | None = None, **changes: Any) -> Failure:
    """A failure with a readable message."""
    return Failure(reason, f"{reason} from Seldon Deploy", status, **changes)


# --- a fake Seldon Deploy and the shell's loop ------------------------------------


@dataclass
class FakeSeldon:
    """The core's ``Effects`` over one source and one target in memory; after a write
    the target's status catches up ``rollout_seconds`` later."""

    source: dict[str, Any] | None
    target: dict[str, Any] | None = None
    rollout_seconds: float = 20.0
    rollout_state: str = "Available"
    calls: list[Action] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    written_at: datetime.datetime | None = None
    now: datetime.datetime = T0
    # What Prometheus answers to a query at an instant (default: 0.0, which passes).
    prometheus: Callable[[str, datetime.datetime], Reading] = lambda _q, _t: Reading(0.0)
    queries: list[str] = field(default_factory=list)
    # The alerts firing at an instant whose labels equal the asked ones (default: none).
    alerts: Callable[[Mapping[str, str], datetime.datetime], Alerts] = lambda _l, _t: Alerts()
    alert_queries: list[dict[str, str]] = field(default_factory=list)
    # Seldon Core v2: the target's kind, the source Pipeline's Models and those beside
    # the target (by name), each rolling out to its state in ``model_states``.
    kind: Kind = Kind.SELDON_DEPLOYMENT
    source_models: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    models_written_at: dict[str, datetime.datetime] = field(default_factory=dict)
    model_states: dict[str, str] = field(default_factory=dict)
    # A Pipeline's canary: Pipelines beside the target (by name) and its experiment.
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines_written_at: dict[str, datetime.datetime] = field(default_factory=dict)
    experiment: dict[str, Any] | None = None
    experiment_refusal: Failure | None = None  # what every call on the experiment answers

    def query(self, promql: str, by: str | None = None) -> Reading:
        self.queries.append(promql)
        return self.prometheus(promql, self.now)

    def firing_alerts(self, match_labels: Mapping[str, str]) -> Alerts:
        self.alert_queries.append(dict(match_labels))
        return self.alerts(match_labels, self.now)

    def read_source(self) -> Answer:
        self.reads.append("source")
        return Answer(copy.deepcopy(self.source))

    def read_target(self) -> Answer:
        self.reads.append("target")
        self._catch_up()
        return Answer(copy.deepcopy(self.target))

    def read_source_models(self) -> ModelsAnswer:
        self.reads.append("source models")
        return ModelsAnswer(tuple(copy.deepcopy(self.source_models)))

    def read_model(self, name: str) -> Answer:
        self.reads.append(f"model {name}")
        self._catch_up()
        return Answer(copy.deepcopy(self.models.get(name)))

    def read_pipeline(self, name: str) -> Answer:
        self.reads.append(f"pipeline {name}")
        self._catch_up()
        return Answer(copy.deepcopy(self.pipelines.get(name)))

    def read_experiment(self) -> Answer:
        self.reads.append("experiment")
        return Answer(copy.deepcopy(self.experiment))

    def perform(self, action: Action) -> Answer:
        self.calls.append(action)
        if action.kind == ActionKind.VALIDATE:
            return Answer({"type": "Success", "message": "valid"})
        if action.experiment is not None:
            return self._experiment_call(action)
        old = self._resource(action)
        if action.kind == ActionKind.DELETE:
            if old is None:
                return Answer(failure=Failure("NotFound", "gone", 404))
            self._store(action, None)
            return Answer()
        if action.kind == ActionKind.CREATE and old is not None:
            return Answer(failure=Failure("Conflict", "already exists", 409, retryable=True))
        assert action.deployment is not None
        written = copy.deepcopy(dict(action.deployment))
        generation = 1 if old is None else int(old["metadata"]["generation"])
        if old is not None and old.get("spec") != written.get("spec"):
            generation += 1
        written["metadata"]["generation"] = generation
        # The status still describes what the cluster ran before (GitOps / rollout lag).
        written["status"] = copy.deepcopy(old.get("status", {})) if old else {}
        self._store(action, written)
        return Answer(copy.deepcopy(written))

    def writes(self) -> list[Action]:
        return [call for call in self.calls if call.kind != ActionKind.VALIDATE]

    def _resource(self, action: Action) -> dict[str, Any] | None:
        if action.model is not None:
            return self.models.get(action.model)
        if action.pipeline is not None:
            return self.pipelines.get(action.pipeline)
        return self.target

    def _experiment_call(self, action: Action) -> Answer:
        """The experiments of the target Pipeline ``<name>``, as the simulator plays Seldon
        Deploy's: the canary's candidate is ``<name>-canary``, the shadow's (a mirror)
        ``<name>-shadow``; one experiment at a time (409 for one of another sort); the
        candidate must exist; promoting or removing one takes its candidate away."""
        if self.experiment_refusal is not None:
            return Answer(failure=self.experiment_refusal)
        assert self.target is not None and action.experiment is not None
        name = self.target["metadata"]["name"]
        candidate = f"{name}-{action.experiment}"
        sort = self._experiment_sort(name)
        if action.kind in (ActionKind.SET_WEIGHT, ActionKind.MIRROR):
            if candidate not in self.pipelines:
                return Answer(failure=Failure("NotFound", f"no pipeline {candidate}", 404))
            if sort not in (None, action.experiment):
                return Answer(failure=Failure("Conflict", f"{name} has a {sort}", 409))
            if action.kind == ActionKind.SET_WEIGHT:
                assert action.weight is not None
                spec: dict[str, Any] = {
                    "candidates": [
                        {"name": name, "weight": 100 - action.weight},
                        {"name": candidate, "weight": action.weight},
                    ]
                }
            else:
                spec = {
                    "candidates": [{"name": name, "weight": 100}],
                    "mirror": {"name": candidate, "percent": 100},
                }
            self.experiment = {"metadata": {"name": name}, "spec": spec}
            return Answer()
        if sort != action.experiment:
            return Answer(failure=Failure("NotFound", f"no {action.experiment} experiment", 404))
        self.experiment = None
        promoted = self.pipelines.pop(candidate)
        if action.kind == ActionKind.PROMOTE:
            generation = int(self.target["metadata"]["generation"]) + 1
            self.target = {
                **copy.deepcopy(self.target),
                "spec": promoted["spec"],
                "status": self.target.get("status", {}),
            }
            self.target["metadata"] = {
                **self.target["metadata"],
                "annotations": promoted["metadata"]["annotations"],
                "generation": generation,
            }
            self.written_at = self.now
        return Answer()

    def _experiment_sort(self, name: str) -> Experiment | None:
        """Which experiment the target has, by its spec (None: none, or another sort)."""
        spec = (self.experiment or {}).get("spec") or {}
        if (spec.get("mirror") or {}).get("name") == f"{name}-shadow":
            return Experiment.SHADOW
        if any(c.get("name") == f"{name}-canary" for c in spec.get("candidates") or ()):
            return Experiment.CANARY
        return None

    def _store(self, action: Action, resource: dict[str, Any] | None) -> None:
        if action.model is None and action.pipeline is None:
            self.target, self.written_at = resource, self.now
            return
        store, written_at = (
            (self.models, self.models_written_at)
            if action.model is not None
            else (self.pipelines, self.pipelines_written_at)
        )
        name = action.model or action.pipeline
        assert name is not None
        if resource is None:
            store.pop(name, None)
        else:
            store[name] = resource
            written_at[name] = self.now

    def _catch_up(self) -> None:
        due = datetime.timedelta(seconds=self.rollout_seconds)
        if (
            self.target is not None
            and self.written_at is not None
            and self.now >= self.written_at + due
        ):
            self.target["status"] = self._rolled_out(self.target, self.kind, self.rollout_state)
        for name, model in self.models.items():
            written_at = self.models_written_at.get(name)
            if written_at is not None and self.now >= written_at + due:
                state = self.model_states.get(name, "Available")
                model["status"] = self._rolled_out(model, Kind.MODEL, state)
        for name, pipeline in self.pipelines.items():
            written_at = self.pipelines_written_at.get(name)
            if written_at is not None and self.now >= written_at + due:
                state = self.model_states.get(name, "Available")
                pipeline["status"] = self._rolled_out(pipeline, Kind.PIPELINE, state)

    @staticmethod
    def _rolled_out(resource: Mapping[str, Any], kind: Kind, state: str) -> dict[str, Any]:
        generation = resource["metadata"]["generation"]
        if kind is Kind.SELDON_DEPLOYMENT:
            return {"state": state, "observedGeneration": generation}
        return core_v2_status(generation, ready=state == "Available", failed=state == "Failed")


def core_v2_status(generation: int, *, ready: bool = True, failed: bool = False) -> dict[str, Any]:
    """A Core v2 resource's status: Ready, failed (``LoadFailed``), or on its way."""
    status, reason = ("True", "Ready") if ready else ("False", "Progressing")
    if failed:
        status, reason = "False", "LoadFailed"
    condition = {"type": "Ready", "status": status, "reason": reason, "message": "out of memory"}
    return {"observedGeneration": generation, "conditions": [condition]}


#: The calls after which ``drive`` can crash the operator (a removal only when it is not
#: a rollback's).
PROMOTION_WRITES = frozenset(
    {
        ActionKind.CREATE,
        ActionKind.UPDATE,
        ActionKind.SET_WEIGHT,
        ActionKind.MIRROR,
        ActionKind.PROMOTE,
    }
)


@dataclass(frozen=True)
class Pass:
    """One reconcile pass of the loop in :func:`drive`."""

    at: datetime.datetime
    before: Run | None
    action: Action | None
    step: Decision
    events: tuple[Event, ...] = ()


def drive(
    seldon: FakeSeldon,
    *,
    spec: PromotionSpec = SPEC,
    jitter: float = 0.5,
    status: Mapping[str, Any] | None = None,
    crash_after_first_write: bool = False,
    crash_after_writes: frozenset[int] = frozenset(),
    resume_at: float | None = None,
    approve_at: float | None = None,
    abort_at: float | None = None,
    requests: Requests | None = None,
    prometheus: bool = True,
    max_passes: int = 60,
    start: float = 0.0,
) -> list[Pass]:
    """Run the shell's loop against ``seldon`` until the run settles or stops requeueing.

    The run goes through the status between passes, as it does through the
    resource's status in the cluster. ``crash_after_first_write`` makes the
    operator die right after its first write lands, before recording anything;
    the loop then restarts from the status recorded before the write;
    ``crash_after_writes`` does so after each write whose 1-based number it holds.
    ``resume_at`` is when a person asks a paused canary to go on (seconds after T0),
    ``approve_at`` when alice approves, ``abort_at`` when bob aborts.
    ``requests`` are set on the resource from the start; a used one is removed, as
    the handler removes its annotation. ``start``: when the first pass happens
    (seconds after T0), to go on from a ``status`` recorded later than T0.
    """
    crash_at = set(crash_after_writes) | ({1} if crash_after_first_write else set())
    asked = requests or Requests()
    now = at(start)
    recorded: Mapping[str, Any] = status or {}
    passes: list[Pass] = []
    for _ in range(max_passes):
        if resume_at is not None and now >= at(resume_at):
            asked, resume_at = replace(asked, resume="yes"), None
        if approve_at is not None and now >= at(approve_at):
            asked, approve_at = replace(asked, approve="alice"), None
        if abort_at is not None and now >= at(abort_at):
            asked, abort_at = replace(asked, abort="bob"), None
        ctx = replace(
            context(spec=spec, jitter=jitter),
            now=now,
            requests=asked,
            prometheus_configured=prometheus,
        )
        seldon.now = now
        calls = len(seldon.calls)
        before = from_status(recorded)
        result = reconcile(ctx, recorded, seldon)
        action = seldon.calls[-1] if len(seldon.calls) > calls else None
        assert result.run is not None
        if result.status is None and result.requeue_after is None:
            break
        asked = replace(asked, **dict.fromkeys(result.used))
        written = action is not None and (
            action.kind in PROMOTION_WRITES
            # Removing the shadow before a weight is a write of the promotion too.
            or (action.kind == ActionKind.REMOVE and not action.rollback)
        )
        if written and len(seldon.writes()) in crash_at:
            crash_at.discard(len(seldon.writes()))
            assert before is not None
            passes.append(Pass(now, before, action, Decision(before)))
            continue
        step = Decision(result.run, action, result.requeue_after, result.used)
        passes.append(Pass(now, before, action, step, result.events))
        if result.status is not None:  # None: the pass only waited; nothing is written
            recorded = result.status
        if result.used and result.after_removal:  # the annotations are gone: clear the record
            recorded = {**recorded, **result.after_removal}
        if step.requeue_after is None:
            break
        now += datetime.timedelta(seconds=step.requeue_after)
    return passes
