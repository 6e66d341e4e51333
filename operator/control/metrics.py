"""Prometheus metrics: runs, Seldon Deploy calls, token requests, analysis queries,
notifications, the work queue and leadership.

Label values are names, path templates, status codes and condition reasons
only, never anything read from a credentials file or a token.
"""

from __future__ import annotations

import datetime
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from promotion_operator.clients.notifications import DeliveryObserver
from promotion_operator.clients.prometheus import QueryObserver
from promotion_operator.clients.seldon import RequestObserver
from promotion_operator.errors import PromotionError

_DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
_NOTIFICATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_QUEUE_LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """The operator's metrics, in their own registry (so tests can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.runs_started = Counter(
            "modelpromotion_runs_started",
            "Promotion runs started (one per spec generation and per retry, counted once per "
            "operator process even when a pass is replayed).",
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "modelpromotion_runs_finished",
            "Promotion runs finished, by outcome (phase) and Ready reason (once per run).",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "modelpromotion_run_duration_seconds",
            "Time from a run's start to its end, by outcome.",
            ["outcome"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.runs_in_flight = Gauge(
            "modelpromotion_runs_in_flight",
            "Runs started and not yet finished (suspended runs excluded).",
            registry=self.registry,
        )
        self.path_stage_runs = Counter(
            "promotionpath_stage_runs_started",
            "Stage runs (ModelPromotions) a PromotionPath created, by path and stage "
            "(a run found already there after a restart is not counted).",
            ["namespace", "path", "stage"],
            registry=self.registry,
        )
        self.path_soak = Histogram(
            "promotionpath_soak_seconds",
            "Time a freight soaked before its stage started (from the start of the soak to "
            "the run's creation), by path and stage.",
            ["namespace", "path", "stage"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.seldon_requests = Counter(
            "seldon_deploy_requests",
            "Calls to Seldon Deploy, by instance, method, path template and status code.",
            ["instance", "method", "path", "code"],
            registry=self.registry,
        )
        self.seldon_latency = Histogram(
            "seldon_deploy_request_duration_seconds",
            "Latency of calls to Seldon Deploy.",
            ["instance", "method", "path"],
            registry=self.registry,
        )
        self.token_requests = Counter(
            "oidc_token_requests",
            "Token requests to the identity provider, by instance and result.",
            ["instance", "result"],
            registry=self.registry,
        )
        self.token_failures = Counter(
            "oidc_token_request_failures",
            "Failed token requests, by instance and reason.",
            ["instance", "reason"],
            registry=self.registry,
        )
        self.prometheus_queries = Counter(
            "prometheus_queries",
            "Analysis queries to Prometheus, by result (ok, or the error's reason).",
            ["result"],
            registry=self.registry,
        )
        self.prometheus_query_duration = Histogram(
            "prometheus_query_duration_seconds",
            "Time an analysis query to Prometheus took, whatever its result.",
            registry=self.registry,
        )
        self.analysis_measurements = Counter(
            "modelpromotion_analysis_measurements",
            "Canary analysis measurements, by template and result "
            "(Passed, Failed, Inconclusive, Sampled).",
            ["template", "result"],
            registry=self.registry,
        )
        self.canary_weight = Gauge(
            "modelpromotion_canary_weight",
            "The canary's share of the target's traffic, in percent (100 once promoted, "
            "0 after a rollback), by ModelPromotion.",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "modelpromotion_notifications",
            "Notices to webhook sinks, by sink name and result (delivered; failed: given up "
            "after retries; dropped: the queue was full or the notifier closed).",
            ["sink", "result"],
            registry=self.registry,
        )
        self.notification_delivery = Histogram(
            "modelpromotion_notification_delivery_seconds",
            "Time from a notice being notified to its delivery to a sink (queueing and "
            "retries included).",
            ["sink"],
            buckets=_NOTIFICATION_BUCKETS,
            registry=self.registry,
        )
        self.run_deadline = Gauge(
            "modelpromotion_run_deadline_timestamp_seconds",
            "When the current phase of an open run must end (Unix time), by ModelPromotion; "
            "absent for phases a person ends (approval, a pause without duration).",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "modelpromotion_leader",
            "1 while this replica runs the passes (it holds the Lease, or leader election "
            "is off), else 0, by Lease (empty without leader election).",
            ["lease"],
            registry=self.registry,
        )
        self.workqueue_depth = Gauge(
            "modelpromotion_workqueue_depth",
            "Resources waiting in the work queue for their next pass, due now or later.",
            registry=self.registry,
        )
        self.workqueue_working = Gauge(
            "modelpromotion_workqueue_working",
            "Resources whose pass runs now (taken by a worker).",
            registry=self.registry,
        )
        self.workqueue_latency = Histogram(
            "modelpromotion_workqueue_latency_seconds",
            "How late passes start: from when a resource was due to when a worker took it.",
            buckets=_QUEUE_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.workqueue = _QueueMetrics(self)
        self._weights: dict[str, tuple[str, str]] = {}  # uid -> the gauge's labels
        self._deadlines: dict[str, tuple[str, str]] = {}  # uid -> the gauge's labels
        self._in_flight: set[str] = set()
        # The generation whose start / end was counted, per resource: a pass replayed
        # because its status patch did not land must not count the same run again.
        self._started: dict[str, str] = {}
        self._finished: dict[str, str] = {}
        self._lock = threading.Lock()

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on a background thread."""
        start_http_server(port, addr=address, registry=self.registry)

    def seldon_observer(self, instance: str) -> RequestObserver:
        """A ``RequestObserver`` for the Seldon Deploy client of ``instance``."""

        def observe(method: str, path: str, status: int | None, seconds: float) -> None:
            code = str(status) if status is not None else "connection-error"
            self.seldon_requests.labels(instance, method, path, code).inc()
            self.seldon_latency.labels(instance, method, path).observe(seconds)

        return observe

    def prometheus_observer(self) -> QueryObserver:
        """A ``QueryObserver`` for the Prometheus client."""

        def observe(result: str, seconds: float) -> None:
            self.prometheus_queries.labels(result).inc()
            self.prometheus_query_duration.observe(seconds)

        return observe

    def notification_observer(self) -> DeliveryObserver:
        """A ``DeliveryObserver`` for the ``Notifier``."""

        def observe(sink: str, result: str, seconds: float | None) -> None:
            self.notifications.labels(sink, result).inc()
            if result == "delivered" and seconds is not None:
                self.notification_delivery.labels(sink).observe(seconds)

        return observe

    def token_requested(self, instance: str, error: PromotionError | None) -> None:
        """Count one token request (a ``TokenObserver``)."""
        self.token_requests.labels(instance, "failure" if error else "success").inc()
        if error is not None:
            self.token_failures.labels(instance, error.reason).inc()

    def run_started(self, uid: str, run: str) -> None:
        """The run ``run`` (generation, and retry if any: ``3.1``) of ``uid`` started."""
        if self._first(self._started, uid, run):
            self.runs_started.inc()
        self._track(uid, in_flight=True)

    def run_finished(self, uid: str, run: str, outcome: str, reason: str, seconds: float) -> None:
        """The run ``run`` of ``uid`` ended as ``outcome`` (Succeeded, Failed, RolledBack,
        Aborted)."""
        if self._first(self._finished, uid, run):
            self.runs_finished.labels(outcome, reason).inc()
            self.run_duration.labels(outcome).observe(seconds)
        self._track(uid, in_flight=False)

    def run_seen(self, uid: str, *, in_flight: bool) -> None:
        """A pass saw the run (after a restart this rebuilds the in-flight gauge)."""
        self._track(uid, in_flight=in_flight)

    def stage_started(self, namespace: str, path: str, stage: str, soaked: float | None) -> None:
        """A path created a stage's run, after ``soaked`` seconds of soak (None: no soak
        was recorded, a first stage without one)."""
        self.path_stage_runs.labels(namespace, path, stage).inc()
        if soaked is not None:
            self.path_soak.labels(namespace, path, stage).observe(soaked)

    def measured(self, template: str, result: str) -> None:
        """One analysis measurement of ``template`` came out as ``result``."""
        self.analysis_measurements.labels(template, result).inc()

    def canary_at(self, uid: str, namespace: str, name: str, weight: int) -> None:
        """The canary of the resource ``uid`` now takes ``weight`` percent of the traffic."""
        with self._lock:
            self._weights[uid] = (namespace, name)
        self.canary_weight.labels(namespace, name).set(weight)

    def due_by(
        self, uid: str, namespace: str, name: str, deadline: datetime.datetime | None
    ) -> None:
        """The open run of ``uid`` must leave its phase by ``deadline``; None: it has no
        deadline now (it ended, waits for a person, or is suspended)."""
        with self._lock:
            if deadline is None:
                labels = self._deadlines.pop(uid, None)
                if labels is not None:
                    self.run_deadline.remove(*labels)
                return
            self._deadlines[uid] = (namespace, name)
        self.run_deadline.labels(namespace, name).set(deadline.timestamp())

    def leading(self, lease: str, leading: bool) -> None:
        """Whether this replica runs the passes (``lease``: ``namespace/name``, or empty
        without leader election). A replica that stops leading drops its runs'
        deadlines: the new leader's passes own them now."""
        self.leader.labels(lease).set(1 if leading else 0)
        if not leading:
            with self._lock:
                for labels in self._deadlines.values():
                    self.run_deadline.remove(*labels)
                self._deadlines.clear()

    def forget(self, uid: str) -> None:
        """The resource was deleted; its run no longer counts as in flight."""
        self.due_by(uid, "", "", None)
        with self._lock:
            labels = self._weights.pop(uid, None)
            if labels is not None:
                self.canary_weight.remove(*labels)
            self._started.pop(uid, None)
            self._finished.pop(uid, None)
        self._track(uid, in_flight=False)

    def _first(self, counted: dict[str, str], uid: str, run: str) -> bool:
        """Record ``run`` for ``uid``; whether it was not recorded yet."""
        with self._lock:
            if counted.get(uid) == run:
                return False
            counted[uid] = run
            return True

    def _track(self, uid: str, *, in_flight: bool) -> None:
        with self._lock:
            if in_flight:
                self._in_flight.add(uid)
            else:
                self._in_flight.discard(uid)
            self.runs_in_flight.set(len(self._in_flight))


class _QueueMetrics:
    """The work queue's observer (a ``QueueObserver``): its size and how late passes start."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def sized(self, waiting: int, working: int) -> None:
        self._metrics.workqueue_depth.set(waiting)
        self._metrics.workqueue_working.set(working)

    def taken(self, late_seconds: float) -> None:
        self._metrics.workqueue_latency.observe(late_seconds)
