"""One reconcile pass of a promotion run: observe, ask the core, act once.

This is the imperative shell around the pure core: it owns the Seldon Deploy
clients (one pooled client per instance, sharing one token cache per
instance) and turns their exceptions into the core's ``Failure`` values. It
knows nothing of Kopf; the controller records its result (a status patch,
Events) and schedules the next pass.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar, assert_never

from promotion_operator.clients.auth import TokenProviders
from promotion_operator.clients.mlflow import MlflowRegistryClient
from promotion_operator.clients.notifications import Notice, NoticeKind, Notifier
from promotion_operator.clients.prometheus import PrometheusClient
from promotion_operator.clients.seldon import Resources, SeldonDeployClient, WriteFence
from promotion_operator.config.settings import Settings
from promotion_operator.control.metrics import Metrics
from promotion_operator.control.shared_reads import SharedReads
from promotion_operator.core.conditions import ready_reason
from promotion_operator.core.durations import NEVER
from promotion_operator.core.machine import reconcile
from promotion_operator.core.pass_io import (
    Action,
    Alerts,
    Answer,
    Context,
    ModelsAnswer,
    PassResult,
    Reading,
    RetryPolicy,
    VersionAnswer,
)
from promotion_operator.core.paths import PATH_LABEL, STAGE_LABEL
from promotion_operator.core.promotion import PromotionRef
from promotion_operator.core.registry import write_back
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import (
    FINISHED,
    ActionKind,
    Experiment,
    Failure,
    ModelVersion,
    Phase,
    Run,
)
from promotion_operator.core.spec import DeploymentRef, Kind, PromotionSpec, parse_spec
from promotion_operator.core.transitions import deadline
from promotion_operator.core.windows import Policies
from promotion_operator.errors import NotLeading, PromotionError

logger = logging.getLogger(__name__)

#: The GitOps commit ``action`` of a write, as Seldon Deploy records it.
PROMOTE_ACTION = "Promote"
ROLLBACK_ACTION = "Rollback"


class DeploymentClient(Protocol):
    """The Seldon Deploy calls a pass makes (``SeldonDeployClient`` is the real one);
    ``kind`` picks SeldonDeployments (the default), Models or Pipelines."""

    def find(self, namespace: str, name: str, *, kind: Kind = ...) -> dict[str, Any] | None: ...

    def list(self, namespace: str, *, kind: Kind = ...) -> Resources: ...

    def pipeline_models(self, namespace: str, name: str) -> Resources: ...

    def validate(self, namespace: str, deployment: Mapping[str, Any]) -> dict[str, Any]: ...

    def find_experiment(self, namespace: str, pipeline: str) -> dict[str, Any] | None: ...

    def set_canary_weight(
        self, namespace: str, pipeline: str, weight: int, *, action: str, message: str
    ) -> None: ...

    def promote_canary(
        self, namespace: str, pipeline: str, *, action: str, message: str
    ) -> None: ...

    def remove_canary(
        self, namespace: str, pipeline: str, *, action: str, message: str
    ) -> None: ...

    def create_shadow(
        self, namespace: str, pipeline: str, *, action: str, message: str
    ) -> None: ...

    def promote_shadow(
        self, namespace: str, pipeline: str, *, action: str, message: str
    ) -> None: ...

    def remove_shadow(
        self, namespace: str, pipeline: str, *, action: str, message: str
    ) -> None: ...

    def create(
        self,
        namespace: str,
        deployment: Mapping[str, Any],
        *,
        action: str,
        message: str,
        kind: Kind = ...,
    ) -> dict[str, Any]: ...

    def update(
        self,
        namespace: str,
        name: str,
        deployment: Mapping[str, Any],
        *,
        action: str,
        message: str,
        kind: Kind = ...,
    ) -> dict[str, Any]: ...

    def delete(
        self, namespace: str, name: str, *, action: str, message: str, kind: Kind = ...
    ) -> None: ...


class MetricsSource(Protocol):
    """Where analysis queries and a bake's alerts are answered (``PrometheusClient`` is
    the real one)."""

    def query(self, promql: str) -> float: ...

    def query_by(self, promql: str, label: str) -> dict[str, float]: ...

    def firing_alerts(self, match_labels: Mapping[str, str]) -> list[dict[str, str]]: ...


class Runtime:
    """The long-lived parts every pass shares: settings, token caches, HTTP clients."""

    def __init__(
        self,
        settings: Settings,
        *,
        policy: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        fence: WriteFence | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or RetryPolicy()
        self.metrics = metrics or Metrics()
        # With leader election: no Seldon Deploy write unless this replica leads.
        self.fence = fence
        self.tokens = TokenProviders(settings, observer=self.metrics.token_requested)
        self._clients: dict[str, SeldonDeployClient] = {}
        self._prometheus: PrometheusClient | None = None
        self._registry: MlflowRegistryClient | None = None
        self.notifier = Notifier(
            settings.notification_sinks, observer=self.metrics.notification_observer()
        )
        # The notices sent per resource for its current run, so a replayed pass
        # (its status patch lost) does not notify twice.
        self._notified: dict[str, tuple[str, set[str]]] = {}
        self._lock = threading.Lock()
        # Runs reading the same namespace share its reads (one list instead of a GET each).
        self.reads = SharedReads(self.client)

    def client(self, instance: str | None) -> DeploymentClient:
        """The client of ``instance`` (None: the default); SettingsError if unknown."""
        settings = self.settings.instance(instance)
        with self._lock:
            client = self._clients.get(settings.name)
            if client is None:
                client = SeldonDeployClient(
                    settings,
                    self.tokens.for_instance(settings.name),
                    observer=self.metrics.seldon_observer(settings.name),
                    fence=self.fence,
                )
                self._clients[settings.name] = client
            return client

    def prometheus(self) -> MetricsSource:
        """The Prometheus client for analysis queries; SettingsError if none is configured."""
        settings = self.settings.require_prometheus()
        with self._lock:
            if self._prometheus is None:
                self._prometheus = PrometheusClient(
                    settings, observer=self.metrics.prometheus_observer()
                )
            return self._prometheus

    def registry(self) -> MlflowRegistryClient:
        """The one MLflow client every run shares; SettingsError if none is configured."""
        settings = self.settings.require_mlflow()
        with self._lock:
            if self._registry is None:
                self._registry = MlflowRegistryClient(settings)
            return self._registry

    def close(self) -> None:
        """Close every HTTP session."""
        with self._lock:
            if self._registry is not None:
                self._registry.close()
                self._registry = None
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            if self._prometheus is not None:
                self._prometheus.close()
                self._prometheus = None
        self.tokens.close()
        self.notifier.close()

    def forget(self, uid: str) -> None:
        """The resource was deleted: drop what is kept about it."""
        with self._lock:
            self._notified.pop(uid, None)
        self.reads.unwatch(uid)
        self.metrics.forget(uid)

    def notify_once(self, uid: str, run: str, notice: Notice) -> None:
        """Send ``notice`` unless it was already sent for this run of ``uid``."""
        with self._lock:
            seen_run, sent = self._notified.get(uid, (run, set()))
            if seen_run != run:
                sent = set()
            if notice.kind in sent:
                return
            sent.add(notice.kind)
            self._notified[uid] = (run, sent)
        self.notifier.notify(notice)


def run_pass(
    runtime: Runtime,
    promotion: PromotionRef,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    *,
    now: datetime.datetime,
    jitter: float,
    requests: Requests | None = None,
    chain: ChainReads | None = None,
    policies: Policies | None = None,
    labels: Mapping[str, str] | None = None,
) -> PassResult:
    """One pass of the run for ``promotion``'s current generation, counted in the metrics.

    ``requests``: what people asked through annotations; the result's ``used``
    names those the pass acted on (their annotations are to be removed).
    ``chain``: the reads of the pass just before, when this one follows it at once
    (the same run, nothing written since): they are not made again.
    ``policies``: the namespace's PromotionPolicies, for a pass that may reach the
    run's first write (none given: none apply).
    ``labels``: the ModelPromotion's; a PromotionPath's run names its path and stage
    in its notices.
    """
    ctx = Context(
        parse_spec(spec),
        promotion,
        now,
        jitter,
        runtime.policy,
        requests=requests or Requests(),
        prometheus_configured=runtime.settings.prometheus is not None,
        policies=policies or Policies(),
    )
    runtime.reads.watch(promotion.uid, (ctx.spec.source, ctx.spec.target))
    effects = SeldonEffects(runtime, ctx.spec, run=promotion.uid, chain=chain)
    result = reconcile(ctx, status, effects)
    if runtime.fence is not None and runtime.fence() <= 0:
        # Its notices and counts would repeat the leader's: the pass ends here.
        raise NotLeading("the Lease was lost during the pass")
    if result.requeue_after is None:
        runtime.reads.unwatch(promotion.uid)
    if result.run is not None:
        _count(runtime, promotion, result, now)
        runtime.metrics.due_by(
            promotion.uid, promotion.namespace, promotion.name, _open_deadline(ctx, result.run)
        )
        _notify(runtime, promotion, result, now, labels or {})
        _write_back(runtime, ctx, result)
    return result


def _write_back(runtime: Runtime, ctx: Context, result: PassResult) -> None:
    """Tell the registry how the run of a registry source ended (once: in the pass that
    ended it). Best effort: a registry that refuses is logged, the run stays as it ended."""
    run = result.run
    if run is None or result.status is None or run.finished_at != ctx.now:
        return  # not the pass that ended the run
    back = write_back(ctx.spec, run, ctx.promotion)
    if back is None:
        return
    try:
        client = runtime.registry()
        client.set_tags(back.model, back.version, back.tags)
        if back.alias is not None:
            client.set_alias(back.model, back.alias, back.version)
    except PromotionError as error:
        logger.warning(
            "could not write the outcome of %s run %s back to MLflow (%s): %s",
            ctx.promotion,
            run.label,
            error.reason,
            error.message,
        )


def _open_deadline(ctx: Context, run: Run) -> datetime.datetime | None:
    """The current phase's deadline of a run in flight; None when the run is not in
    flight or a person ends the phase (its deadline is then ``NEVER`` away)."""
    if not _in_flight(run):
        return None
    due = deadline(ctx, run)
    return due if due - ctx.now < NEVER / 2 else None


_OUTCOMES: dict[Phase, NoticeKind] = {
    Phase.SUCCEEDED: "Succeeded",
    Phase.FAILED: "Failed",
    Phase.ROLLED_BACK: "RolledBack",
    Phase.ABORTED: "Aborted",
}


def _notify(
    runtime: Runtime,
    promotion: PromotionRef,
    result: PassResult,
    now: datetime.datetime,
    labels: Mapping[str, str],
) -> None:
    run = result.run
    assert run is not None
    kinds: list[NoticeKind] = []
    if result.started:
        kinds.append("RunStarted")
    if any(event.reason == "AwaitingApproval" for event in result.events):
        kinds.append("AwaitingApproval")
    if run.phase in _OUTCOMES and result.status is not None:
        kinds.append(_OUTCOMES[run.phase])
    for kind in kinds:
        notice = Notice(
            kind=kind,
            namespace=promotion.namespace,
            name=promotion.name,
            uid=promotion.uid,
            generation=run.generation,
            retry=run.retry,
            phase=str(run.phase),
            reason=ready_reason(run.conditions),
            message=result.message,
            source=run.source,
            target=run.target,
            at=now,
            path=labels.get(PATH_LABEL, ""),
            stage=labels.get(STAGE_LABEL, ""),
        )
        runtime.notify_once(promotion.uid, run.label, notice)


def _count(
    runtime: Runtime, promotion: PromotionRef, result: PassResult, now: datetime.datetime
) -> None:
    run = result.run
    assert run is not None
    if result.status is not None:
        recent = (
            *(run.canary.measurements if run.canary else ()),
            *(run.bake.measurements if run.bake else ()),
        )
        for measurement in recent:
            if measurement.at == now:  # taken in this pass (an analysis step's or a bake's)
                runtime.metrics.measured(measurement.template, str(measurement.verdict))
    if run.canary is not None and result.status is not None:
        runtime.metrics.canary_at(
            promotion.uid, promotion.namespace, promotion.name, run.canary.weight
        )
    if result.started:
        runtime.metrics.run_started(promotion.uid, run.label)
    if run.phase in FINISHED and result.status is not None:
        seconds = ((run.finished_at or run.started_at) - run.started_at).total_seconds()
        reason = ready_reason(run.conditions)
        runtime.metrics.run_finished(promotion.uid, run.label, str(run.phase), reason, seconds)
    else:
        runtime.metrics.run_seen(promotion.uid, in_flight=_in_flight(run))


def _in_flight(run: Run) -> bool:
    return run.phase not in FINISHED and run.phase != Phase.SUSPENDED


class ChainReads:
    """What a pass read, for the pass that follows it at once (see ``run_pass``)."""

    def __init__(self) -> None:
        self.answers: dict[DeploymentRef, Answer] = {}


class SeldonEffects:
    """The core's :class:`~promotion_operator.core.machine.Effects` on Seldon Deploy.

    Reads go through the runtime's shared reads (``run`` is the reader); a write
    forgets what the chain read. Turns the client's typed errors into the core's
    ``Failure`` values; anything else is an internal error, logged with its
    traceback and reported briefly.
    """

    def __init__(
        self,
        runtime: Runtime,
        spec: PromotionSpec,
        *,
        run: str = "",
        chain: ChainReads | None = None,
    ) -> None:
        self._runtime = runtime
        self._spec = spec
        self._run = run
        self._chain = chain if chain is not None else ChainReads()

    def read_source(self) -> Answer:
        return self._read(self._spec.source)

    def read_target(self) -> Answer:
        return self._read(self._spec.target)

    def read_source_models(self) -> ModelsAnswer:
        source = self._spec.source

        def models() -> tuple[Mapping[str, Any], ...]:
            client = self._runtime.client(source.instance)
            return tuple(client.pipeline_models(source.namespace, source.name))

        return _answered(ModelsAnswer, models)

    def read_model_version(self) -> VersionAnswer:
        registry = self._spec.registry
        assert registry is not None, "only a registry source reads a model version"

        def read() -> ModelVersion:
            client = self._runtime.registry()
            if registry.alias is not None:
                return client.version_by_alias(registry.model, registry.alias)
            return client.version(registry.model, str(registry.version))

        return _answered(VersionAnswer, read)

    def read_model(self, name: str) -> Answer:
        return self._read(self._spec.target.model(name))

    def read_pipeline(self, name: str) -> Answer:
        return self._read(self._spec.target.sibling(name))

    def read_experiment(self) -> Answer:
        target = self._spec.target
        return _answered(
            Answer,
            lambda: self._runtime.client(target.instance).find_experiment(
                target.namespace, target.name
            ),
        )

    def perform(self, action: Action) -> Answer:
        target = self._spec.target
        if action.model is not None:
            target = target.model(action.model)
        elif action.pipeline is not None:
            target = target.sibling(action.pipeline)
        if action.kind is not ActionKind.VALIDATE:
            # Whether it landed or not, what was read before no longer holds.
            self._chain.answers.clear()
        try:
            return _answered(
                Answer, lambda: self._perform(self._runtime.client(target.instance), target, action)
            )
        finally:
            if action.kind is not ActionKind.VALIDATE:
                self._runtime.reads.written(self._run, target)

    def query(self, promql: str, by: str | None = None) -> Reading:
        # No Prometheus configured (a restart without PROMETHEUS_URL) is a failure of the
        # measurement, InvalidSettings, as the contract says; so is every client error.
        if by is not None:
            return _answered(Reading, lambda: self._runtime.prometheus().query_by(promql, by))
        return _answered(Reading, lambda: self._runtime.prometheus().query(promql))

    def firing_alerts(self, match_labels: Mapping[str, str]) -> Alerts:
        return _answered(
            Alerts, lambda: tuple(self._runtime.prometheus().firing_alerts(match_labels))
        )

    def _read(self, ref: DeploymentRef) -> Answer:
        known = self._chain.answers.get(ref)
        if known is not None:
            return known
        answer = _answered(Answer, lambda: self._runtime.reads.find(self._run, ref))
        if answer.failure is None:
            self._chain.answers[ref] = answer
        return answer

    @staticmethod
    def _perform(
        client: DeploymentClient, target: DeploymentRef, action: Action
    ) -> Mapping[str, Any] | None:
        verb = ROLLBACK_ACTION if action.rollback else PROMOTE_ACTION
        namespace, name, kind = target.namespace, target.name, target.kind
        match action.kind:
            case ActionKind.VALIDATE:
                assert action.deployment is not None
                return client.validate(namespace, action.deployment)
            case ActionKind.CREATE:
                assert action.deployment is not None
                return client.create(
                    namespace, action.deployment, action=verb, message=action.message, kind=kind
                )
            case ActionKind.UPDATE:
                assert action.deployment is not None
                return client.update(
                    namespace,
                    name,
                    action.deployment,
                    action=verb,
                    message=action.message,
                    kind=kind,
                )
            case ActionKind.DELETE:
                client.delete(namespace, name, action=verb, message=action.message, kind=kind)
                return None
            case ActionKind.SET_WEIGHT:
                assert action.weight is not None
                client.set_canary_weight(
                    namespace, name, action.weight, action=verb, message=action.message
                )
                return None
            case ActionKind.MIRROR:
                client.create_shadow(namespace, name, action=verb, message=action.message)
                return None
            case ActionKind.PROMOTE:
                promote = _experiment_calls(client, action).promote
                promote(namespace, name, action=verb, message=action.message)
                return None
            case ActionKind.REMOVE:
                remove = _experiment_calls(client, action).remove
                remove(namespace, name, action=verb, message=action.message)
                return None
            case _:
                assert_never(action.kind)


class _ExperimentCall(Protocol):
    """A call on the target Pipeline's experiment that names nothing but the Pipeline."""

    def __call__(self, namespace: str, pipeline: str, *, action: str, message: str) -> None: ...


class _ExperimentCalls(NamedTuple):
    """The client's calls that promote or remove one of the target Pipeline's experiments."""

    promote: _ExperimentCall
    remove: _ExperimentCall


def _experiment_calls(client: DeploymentClient, action: Action) -> _ExperimentCalls:
    """The calls on the experiment ``action`` names (the canary or the shadow)."""
    match action.experiment:
        case Experiment.CANARY:
            return _ExperimentCalls(client.promote_canary, client.remove_canary)
        case Experiment.SHADOW:
            return _ExperimentCalls(client.promote_shadow, client.remove_shadow)
        case None:
            raise ValueError(f"a {action.kind} action names no experiment")
        case _:
            assert_never(action.experiment)


_Value = TypeVar("_Value", contravariant=True)
_Outcome = TypeVar("_Outcome", covariant=True)


class _Answers(Protocol[_Value, _Outcome]):
    """One of the core's answer types (``Answer``, ``ModelsAnswer``, ``Reading``):
    built from a value, or from a failure."""

    def __call__(self, value: _Value = ..., /, *, failure: Failure | None = None) -> _Outcome: ...


_V = TypeVar("_V")
_R = TypeVar("_R")


def _answered(answer: _Answers[_V, _R], call: Callable[[], _V]) -> _R:
    """``answer(call())``, or ``answer(failure=...)`` when the call raises: a typed error
    as the core sees it, anything else as an internal error (see :func:`_internal`)."""
    try:
        return answer(call())
    except NotLeading:
        raise  # not the run's failure: the pass stops, and the leader goes on
    except PromotionError as error:
        return answer(failure=as_failure(error))
    except Exception as error:
        return answer(failure=_internal(error))


def as_failure(error: PromotionError) -> Failure:
    """The core's view of a typed error."""
    return Failure(
        error.reason, error.message, error.http_status, error.retryable, error.retry_after
    )


def _internal(error: Exception) -> Failure:
    # The traceback goes to the operator's log; status and Events get a short line.
    logger.exception("unexpected error in a promotion pass")
    return Failure(
        "InternalError",
        f"unexpected {type(error).__name__} in the operator; see its log",
        retryable=True,
    )
