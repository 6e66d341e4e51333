"""Synthetic prediction traffic, exported as Seldon Core executor metrics on ``/metrics``.

Every Available SeldonDeployment receives a fixed request rate (200 requests/s
unless a test sets another), split across its predictors by their ``traffic``
values; each predictor answers a settable share of its requests with an error
code and takes a settable latency. What a scrape shows is what Seldon Core's
executor (``executor/api/metric`` and ``executor/api/rest/server.go`` in
SeldonIO/seldon-core) exports for REST predictions: the histogram
``seldon_api_executor_server_requests_seconds`` (``_bucket``, ``_count``,
``_sum``) with its buckets and the labels ``deployment_name``,
``predictor_name``, ``predictor_version``, ``service`` ("predictions"),
``method`` ("post", as promhttp writes it) and ``code`` ("200", "500", ...),
plus ``namespace``, which a real Prometheus adds when it relabels
``__meta_kubernetes_namespace`` (one page here serves every namespace, so the
page carries it).

Nothing runs in the background and nothing is random: each scrape (and each
control call that changes a setting) advances the model from the clock to
"now". Requests are counted with exact fractional accounting, so over any
window the count of a predictor is within one request of rate x share x
seconds, and its errors are within one of that count x error rate. Traffic
flows only while the cluster reports the deployment Available, with the split
of the spec that is running: a write stops the old split at the write (or the
GitOps sync), and the new one starts when its rollout is Available. A predictor
that stops serving (removed from the spec, or its deployment deleted) drops
out of the page; if it comes back, its counters start again at zero, as a new
pod's would.

Simplifications: every request of a predictor takes exactly its latency (so a
``histogram_quantile`` reads the upper part of that latency's bucket); shadow
predictors receive a copy of all traffic; when several non-shadow predictors
have no ``traffic`` at all, they share evenly (one such predictor gets 100 %).

Predictions: every successful request of a predictor is one prediction of one
label, counted the way Seldon Core v1 exports a Python model's custom metrics
(a model whose ``metrics()`` returns ``{"type": "COUNTER", "key":
"predictions", "value": 1, "tags": {"class": label}}``). The wrapper's
``SeldonMetrics`` (``python/seldon_core/metrics.py`` in SeldonIO/seldon-core,
v1.18.2; documented in ``doc/source/analytics/analytics.md``, "Custom
Metrics", and ``doc/source/python/python_component.md``) names the family after
the key, so the page shows ``predictions_total`` (a counter with empty help),
with the tags, the ``method`` tag it adds ("predict"), its ``DEFAULT_LABELS``
(``deployment_name``, ``model_name``, ``model_image``, ``model_version``,
``predictor_name``, ``predictor_version`` and the pre-1.3 copies
``seldon_deployment_name``, ``image_name``, ``image_version``) and
``worker_id``; ``namespace`` is Prometheus' again. The model labels come from
the environment Seldon's operator gives the container
(``operator/controllers/seldondeployment_controller.go``): the graph root's
name, its container's image split at the last ``:``, the ``version`` of the
predictor's ``labels`` (not its annotations, which the executor reads), and
``NOT_IMPLEMENTED`` for what the spec lacks. ``worker_id`` is a fixed "1" (a
gunicorn worker's pid in the real wrapper). Labels split a predictor's
predictions by a distribution settable per predictor (by default setosa 0.5,
versicolor 0.3, virginica 0.2 for every predictor, so a champion and its
shadow agree), with exact accounting: the labels' counts add up to the
successful requests at every scrape, and while the distribution stays the
same each is within one of requests x share. A label appears once it has a
prediction; the family appears once any label has one. A rollout that
changes the model labels (a new image, say) starts the predictor's prediction
counters again from zero when it becomes Available, as new pods would.

Seldon Core v2 (Pipelines and Models) has its own counters, exported only once
they have a sample: ``seldon_pipeline_infer_total`` and
``seldon_pipeline_infer_seconds_total`` with labels ``namespace``, ``pipeline``,
``code``, and ``seldon_model_infer_total`` / ``seldon_model_infer_seconds_total``
with ``namespace``, ``model``, ``code``. A pipeline receives requests only at a
rate a test set for it (there is no default rate, unlike deployments). Requests
to pipeline P go where P's experiment routes them (candidates by weight, the
mirror a copy of ``percent`` %; all to P without one); a pipeline serves what
reaches it only while it is Ready (see ``core_v2``) and requests routed to a
pipeline that is not Ready are not counted anywhere. Each request a pipeline
serves counts once for it and once for every Model its steps name. Error rate,
code and latency are set per (namespace, pipeline) and per (namespace, model)
and apply to that series alone: a model's errors do not turn into pipeline
errors. Routing and readiness are read from the store as it is at each advance,
so the API advances the counters before every Core v2 write; a pipeline or model
that is deleted drops out of the page (and restarts from zero if re-created).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tests.simulator.core_v2 import ready_intervals, routes
from tests.simulator.records import (
    CoreBehaviourRecord,
    CoreSeriesRecord,
    PredictionSeriesRecord,
    PredictorBehaviourRecord,
    RateRecord,
    SeriesRecord,
    TrafficSettingsRecord,
)
from tests.simulator.store import DEPLOYMENT, Deployment, Kind, Rollout, Store
from tests.simulator.validation import step_names

METRIC_NAME = "seldon_api_executor_server_requests_seconds"
METRIC_HELP = "A histogram of latencies for executor server"
# The executor's label names, in its order, then the one Prometheus' relabelling adds.
LABEL_NAMES = (
    "deployment_name",
    "predictor_name",
    "predictor_version",
    "service",
    "method",
    "code",
    "namespace",
)
# The executor's buckets (metric.DefBuckets in executor/api/metric/constants.go).
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
SERVICE = "predictions"
METHOD = "post"
OK_CODE = "200"
DEFAULT_ERROR_CODE = "500"
DEFAULT_REQUESTS_PER_SECOND = 200.0
DEFAULT_LATENCY_SECONDS = 0.02
# Absorbs float error in accumulated fractions (199.99999999 requests are 200).
_EPSILON = 1e-9

# The prediction counter: a custom COUNTER a Python model returns from `metrics()`
# with key "predictions" and tag "class", as Seldon Core v1's Python wrapper exposes
# it (`SeldonMetrics` in python/seldon_core/metrics.py: family = the key, so
# `predictions_total` in the text format, empty help; labels = the tags, the
# "method" tag the wrapper adds, DEFAULT_LABELS, then "worker_id").
PREDICTIONS_METRIC = "predictions"
PREDICTIONS_HELP = ""
PREDICTION_TAG = "class"
PREDICT_METHOD = "predict"
# What the wrapper reports for an environment variable the operator did not set.
NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
# The gunicorn worker's pid in the real wrapper; one fixed worker here.
WORKER_ID = "1"
PREDICTION_LABEL_NAMES = (
    PREDICTION_TAG,
    "method",
    "deployment_name",
    "model_name",
    "model_image",
    "model_version",
    "predictor_name",
    "predictor_version",
    "seldon_deployment_name",
    "image_name",
    "image_version",
    "worker_id",
    "namespace",
)
# Every predictor predicts the three iris classes in these shares unless a test
# sets another distribution, so a champion and its shadow agree by default.
DEFAULT_PREDICTIONS: tuple[tuple[str, float], ...] = (
    ("setosa", 0.5),
    ("versicolor", 0.3),
    ("virginica", 0.2),
)

Key = tuple[str, str]
PredictorKey = tuple[str, str, str]
CoreKind = Literal["Model", "Pipeline"]
CORE_KINDS: tuple[CoreKind, ...] = ("Model", "Pipeline")
# (kind, namespace, name) of a Core v2 Model or Pipeline.
CoreKey = tuple[CoreKind, str, str]

# Core v2 counters: family name (the exposition adds `_total`) and help.
CORE_FAMILIES: dict[CoreKind, tuple[tuple[str, str], tuple[str, str], str]] = {
    "Pipeline": (
        ("seldon_pipeline_infer", "A count of pipeline inference requests"),
        ("seldon_pipeline_infer_seconds", "A sum of pipeline inference latencies in seconds"),
        "pipeline",
    ),
    "Model": (
        ("seldon_model_infer", "A count of model inference requests"),
        ("seldon_model_infer_seconds", "A sum of model inference latencies in seconds"),
        "model",
    ),
}


def parse_core_kind(value: object) -> CoreKind:
    """Model or Pipeline, or a refusal."""
    if value not in CORE_KINDS:
        raise InvalidTrafficSetting(f"kind must be one of {list(CORE_KINDS)}")
    return value


class InvalidTrafficSetting(ValueError):
    """A control request asked for a setting the model cannot have; the message says why."""


Predictions = tuple[tuple[str, float], ...]


def parse_predictions(weights: object) -> Predictions:
    """A prediction distribution from ``{label: weight}``: shares summing to 1, by label.

    Weights are non-negative numbers, at least one of them positive, and are
    normalised by their sum; labels are non-empty strings. Anything else is
    refused with a message that names ``predictions``.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidTrafficSetting(
            "predictions must be a non-empty object of label: weight (or null for the default)"
        )
    parsed: dict[str, float] = {}
    for label, weight in weights.items():
        if not isinstance(label, str) or not label:
            raise InvalidTrafficSetting("predictions: every label must be a non-empty string")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidTrafficSetting(f"predictions: the weight of {label!r} must be a number")
        value = float(weight)
        if not (math.isfinite(value) and value >= 0.0):
            raise InvalidTrafficSetting(
                f"predictions: the weight of {label!r} must be a non-negative number"
            )
        parsed[label] = value
    total = sum(parsed.values())
    if total <= 0.0:
        raise InvalidTrafficSetting("predictions: at least one weight must be positive")
    return tuple((label, parsed[label] / total) for label in sorted(parsed))


@dataclass(frozen=True)
class PredictorBehaviour:
    """How one predictor answers: the share of errors, their code, its latency, and the
    distribution of its predictions over labels (SeldonDeployment predictors only)."""

    error_rate: float = 0.0
    latency_seconds: float = DEFAULT_LATENCY_SECONDS
    error_code: str = DEFAULT_ERROR_CODE
    predictions: Predictions = DEFAULT_PREDICTIONS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.error_rate) and 0.0 <= self.error_rate <= 1.0):
            raise InvalidTrafficSetting("error_rate must be between 0 and 1")
        if not (math.isfinite(self.latency_seconds) and self.latency_seconds >= 0.0):
            raise InvalidTrafficSetting("latency_seconds must be a non-negative number")
        if not (self.error_code.isdigit() and 400 <= int(self.error_code) <= 599):
            raise InvalidTrafficSetting("error_code must be an HTTP status from 400 to 599")
        labels = [label for label, _ in self.predictions]
        shares = [share for _, share in self.predictions]
        if not (
            labels
            and labels == sorted(set(labels))
            and all(isinstance(label, str) and label for label in labels)
            and all(math.isfinite(share) and share >= 0.0 for share in shares)
            and math.isclose(sum(shares), 1.0, abs_tol=1e-9)
        ):
            raise InvalidTrafficSetting("predictions must be shares summing to 1, by label")

    def changed(
        self,
        error_rate: float | None = None,
        latency_seconds: float | None = None,
        error_code: str | int | None = None,
        predictions: Mapping[str, Any] | None = None,
        *,
        default_predictions: bool = False,
    ) -> PredictorBehaviour:
        """This behaviour with the parts given changed; the others stay as they are.

        ``default_predictions`` puts the distribution back to ``DEFAULT_PREDICTIONS``.
        """
        changes: dict[str, Any] = {}
        if error_rate is not None:
            changes["error_rate"] = float(error_rate)
        if latency_seconds is not None:
            changes["latency_seconds"] = float(latency_seconds)
        if error_code is not None:
            changes["error_code"] = str(error_code)
        if predictions is not None and default_predictions:
            raise InvalidTrafficSetting("predictions: give a distribution or the default, not both")
        if predictions is not None:
            changes["predictions"] = parse_predictions(predictions)
        elif default_predictions:
            changes["predictions"] = DEFAULT_PREDICTIONS
        return replace(self, **changes)


@dataclass
class _Histogram:
    """Counters of one (predictor, code) series: like the executor's, cumulative."""

    count: int = 0
    total: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))

    def observe(self, requests: int, latency: float) -> None:
        if requests <= 0:
            return
        self.count += requests
        self.total += requests * latency
        for index, bound in enumerate(BUCKETS):
            if latency <= bound:
                self.buckets[index] += requests


@dataclass(frozen=True)
class ModelLabels:
    """What Seldon's Python wrapper reads from its environment for its default labels.

    The model is the predictor's graph root (``PREDICTIVE_UNIT_ID``, the
    container's name), its image that container's in ``componentSpecs``
    (``PREDICTIVE_UNIT_IMAGE``, split at the last ``:`` into name and version),
    the predictor version the ``version`` of the predictor's ``labels``
    (``PREDICTOR_LABELS``). What the spec lacks is ``NOT_IMPLEMENTED``.
    """

    name: str = NOT_IMPLEMENTED
    image: str = NOT_IMPLEMENTED
    version: str = NOT_IMPLEMENTED
    predictor_version: str = NOT_IMPLEMENTED


@dataclass
class _PredictionCounters:
    """The predictions of one predictor's model, by label: exact fractional accounting.

    Each label is owed its share of every successful request; a batch of
    requests goes to the labels by how much each is owed (the floor first, the
    rest to the largest remainders, the first label on ties), so the counts
    always add up to the successful requests and, while the distribution stays
    the same, each is within one of requests x share.
    """

    model: ModelLabels
    offered: dict[str, float] = field(default_factory=dict)
    issued: dict[str, int] = field(default_factory=dict)

    def add(self, successes: int, shares: Predictions) -> None:
        if successes <= 0:
            return
        for label, share in shares:
            self.offered[label] = self.offered.get(label, 0.0) + successes * share
        labels = sorted(self.offered)
        owed = {label: self.offered[label] - self.issued.get(label, 0) for label in labels}
        given = {label: max(0, math.floor(owed[label] + _EPSILON)) for label in labels}
        excess = sum(given.values()) - successes

        def left(label: str) -> float:
            return owed[label] - given[label]

        # Only after a change of distribution can the floors exceed the batch:
        # take back from the labels furthest ahead (the last label on ties).
        while excess > 0:
            label = min((x for x in reversed(labels) if given[x] > 0), key=left)
            given[label] -= 1
            excess -= 1
        while excess < 0:
            label = max(labels, key=left)
            given[label] += 1
            excess += 1
        for label, count in given.items():
            if count:
                self.issued[label] = self.issued.get(label, 0) + count


@dataclass
class _PredictorCounters:
    """One serving predictor: exact fractional accounting and its series by code."""

    version: str
    offered: float = 0.0
    issued: int = 0
    errors_offered: float = 0.0
    errors_issued: int = 0
    series: dict[str, _Histogram] = field(default_factory=dict)
    # The model's prediction counter (SeldonDeployment predictors only).
    predictions: _PredictionCounters | None = None

    def add(self, offered: float, behaviour: PredictorBehaviour) -> int:
        """Count the requests of ``offered`` more; return how many new ones succeeded."""
        self.offered += offered
        new = math.floor(self.offered + _EPSILON) - self.issued
        if new <= 0:
            return 0
        self.issued += new
        self.errors_offered += new * behaviour.error_rate
        errors = math.floor(self.errors_offered + _EPSILON) - self.errors_issued
        errors = max(0, min(errors, new))
        self.errors_issued += errors
        latency = behaviour.latency_seconds
        self.series.setdefault(OK_CODE, _Histogram()).observe(new - errors, latency)
        if errors:
            self.series.setdefault(behaviour.error_code, _Histogram()).observe(errors, latency)
        return new - errors

    def predict(self, successes: int, model: ModelLabels, shares: Predictions) -> None:
        """Count the predictions of ``successes`` requests; a new model starts from zero."""
        if self.predictions is None or self.predictions.model != model:
            # Other labels mean other pods (a new image, say): their counters are new.
            self.predictions = _PredictionCounters(model)
        self.predictions.add(successes, shares)


@dataclass(frozen=True)
class _Serving:
    """What a deployment's cluster served at the last advance: which rollout, which split."""

    rollout: Rollout
    split: dict[str, float]
    versions: dict[str, str]
    models: dict[str, ModelLabels]


@dataclass
class _DeploymentTraffic:
    advanced_to: float
    serving: _Serving | None = None
    predictors: dict[str, _PredictorCounters] = field(default_factory=dict)


def traffic_split(spec: Mapping[str, Any]) -> dict[str, float]:
    """Each predictor's share (0..1) of a deployment's requests, by Seldon's ``traffic`` rules.

    Non-shadow predictors share by their ``traffic`` values (normalised by their
    sum); when none has a value they share evenly. Shadow predictors get a copy
    of everything (share 1).
    """
    predictors = [p for p in spec.get("predictors") or [] if isinstance(p, Mapping)]
    split: dict[str, float] = {}
    live: list[tuple[str, float | None]] = []
    for predictor in predictors:
        name = predictor.get("name")
        if not isinstance(name, str) or not name:
            continue
        if predictor.get("shadow") is True:
            split[name] = 1.0
            continue
        traffic = predictor.get("traffic")
        weight = float(traffic) if isinstance(traffic, int | float) and traffic > 0 else None
        live.append((name, weight))
    weights = [w for _, w in live if w is not None]
    if weights:
        total = sum(weights)
        split.update({name: (w or 0.0) / total for name, w in live})
    elif live:
        split.update({name: 1.0 / len(live) for name, _ in live})
    return split


def _versions(spec: Mapping[str, Any]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for predictor in spec.get("predictors") or []:
        if isinstance(predictor, Mapping) and isinstance(predictor.get("name"), str):
            annotations = predictor.get("annotations")
            version = annotations.get("version") if isinstance(annotations, Mapping) else None
            versions[predictor["name"]] = str(version) if version is not None else ""
    return versions


def _split_image_tag(image: str) -> tuple[str, str]:
    # As the wrapper's split_image_tag: everything before the last ":" and the rest.
    name, _, version = image.rpartition(":")
    return name, version


def _model_labels(spec: Mapping[str, Any]) -> dict[str, ModelLabels]:
    """Each predictor's :class:`ModelLabels`, read from the spec."""
    models: dict[str, ModelLabels] = {}
    for predictor in spec.get("predictors") or []:
        if not isinstance(predictor, Mapping) or not isinstance(predictor.get("name"), str):
            continue
        graph = predictor.get("graph")
        root = graph.get("name") if isinstance(graph, Mapping) else None
        model = root if isinstance(root, str) and root else NOT_IMPLEMENTED
        image = f"{NOT_IMPLEMENTED}:{NOT_IMPLEMENTED}"
        for component in predictor.get("componentSpecs") or []:
            pod = component.get("spec") if isinstance(component, Mapping) else None
            containers = pod.get("containers") if isinstance(pod, Mapping) else None
            for container in containers if isinstance(containers, list) else []:
                if (
                    isinstance(container, Mapping)
                    and container.get("name") == model
                    and isinstance(container.get("image"), str)
                ):
                    image = container["image"]
        labels = predictor.get("labels")
        version = labels.get("version") if isinstance(labels, Mapping) else None
        image_name, image_version = _split_image_tag(image)
        models[predictor["name"]] = ModelLabels(
            name=model,
            image=image_name,
            version=image_version,
            predictor_version=NOT_IMPLEMENTED if version is None else str(version),
        )
    return models


def _available_from(rollout: Rollout) -> float | None:
    """When a rollout starts serving, or None if it never does."""
    if rollout.forced_state is not None:
        return rollout.started_at if rollout.forced_state == "Available" else None
    if rollout.failure is not None:
        return None
    return rollout.started_at + rollout.duration


@dataclass
class TrafficModel:
    """Counters for every serving predictor, the knobs tests turn, and the ``/metrics`` page."""

    default_rate: float = DEFAULT_REQUESTS_PER_SECOND
    rates: dict[Key, float] = field(default_factory=dict)
    behaviours: dict[PredictorKey, PredictorBehaviour] = field(default_factory=dict)
    pipeline_rates: dict[Key, float] = field(default_factory=dict)
    core_behaviours: dict[CoreKey, PredictorBehaviour] = field(default_factory=dict)
    _deployments: dict[Key, _DeploymentTraffic] = field(default_factory=dict)
    _core_counters: dict[CoreKey, _PredictorCounters] = field(default_factory=dict)
    _pipelines_advanced: dict[Key, float] = field(default_factory=dict)
    registry: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ExecutorCollector(self))
        self.registry.register(_PredictionCollector(self))
        self.registry.register(_CoreV2Collector(self))

    def reset(self) -> None:
        """Forget counters and settings (the registry stays)."""
        self.default_rate = DEFAULT_REQUESTS_PER_SECOND
        self.rates.clear()
        self.behaviours.clear()
        self.pipeline_rates.clear()
        self.core_behaviours.clear()
        self._deployments.clear()
        self._core_counters.clear()
        self._pipelines_advanced.clear()

    # -- settings -------------------------------------------------------------

    def set_rate(
        self,
        requests_per_second: float,
        namespace: str | None = None,
        name: str | None = None,
        kind: Kind = DEPLOYMENT,
    ) -> None:
        """Set the rate of one deployment, or the default when namespace and name are None.

        With kind "Pipeline" it sets the rate of one pipeline (namespace and name
        required: pipelines have no default rate). Models get no rate of their
        own: they serve what their pipelines send them.
        """
        if (namespace is None) != (name is None):
            raise InvalidTrafficSetting("give both namespace and name, or neither")
        rate = float(requests_per_second)
        if not (math.isfinite(rate) and rate >= 0.0):
            raise InvalidTrafficSetting("requests_per_second must be a non-negative number")
        if kind == "Model":
            raise InvalidTrafficSetting("models receive traffic through pipelines; rate a pipeline")
        if kind == "Pipeline":
            if namespace is None or name is None:
                raise InvalidTrafficSetting("a pipeline rate needs namespace and name")
            self.pipeline_rates[(namespace, name)] = rate
        elif namespace is None or name is None:
            self.default_rate = rate
        else:
            self.rates[(namespace, name)] = rate

    def rate_for(self, namespace: str, name: str) -> float:
        """Requests per second the deployment receives while Available."""
        return self.rates.get((namespace, name), self.default_rate)

    def behaviour(self, namespace: str, name: str, predictor: str) -> PredictorBehaviour:
        """How a predictor answers (the defaults unless a test changed them)."""
        return self.behaviours.get((namespace, name, predictor), PredictorBehaviour())

    def set_behaviour(
        self,
        namespace: str,
        name: str,
        predictor: str,
        *,
        error_rate: float | None = None,
        latency_seconds: float | None = None,
        error_code: str | int | None = None,
        predictions: Mapping[str, Any] | None = None,
        default_predictions: bool = False,
    ) -> PredictorBehaviour:
        """Change some of a predictor's behaviour; unnamed parts stay as they were.

        ``predictions`` is ``{label: weight}`` (normalised); ``default_predictions``
        puts the distribution back to ``DEFAULT_PREDICTIONS``.
        """
        current = self.behaviour(namespace, name, predictor)
        updated = current.changed(
            error_rate,
            latency_seconds,
            error_code,
            predictions,
            default_predictions=default_predictions,
        )
        self.behaviours[(namespace, name, predictor)] = updated
        return updated

    def core_behaviour(self, kind: CoreKind, namespace: str, name: str) -> PredictorBehaviour:
        """How a Core v2 pipeline or model answers (the defaults unless a test changed them)."""
        return self.core_behaviours.get((kind, namespace, name), PredictorBehaviour())

    def set_core_behaviour(
        self,
        kind: CoreKind,
        namespace: str,
        name: str,
        *,
        error_rate: float | None = None,
        latency_seconds: float | None = None,
        error_code: str | int | None = None,
    ) -> PredictorBehaviour:
        """Change some of a pipeline's or model's behaviour; unnamed parts stay as they were."""
        kind = parse_core_kind(kind)
        current = self.core_behaviour(kind, namespace, name)
        updated = current.changed(error_rate, latency_seconds, error_code)
        self.core_behaviours[(kind, namespace, name)] = updated
        return updated

    def clear_settings(self) -> None:
        """Every rate and every predictor, pipeline and model behaviour back to defaults."""
        self.default_rate = DEFAULT_REQUESTS_PER_SECOND
        self.rates.clear()
        self.behaviours.clear()
        self.pipeline_rates.clear()
        self.core_behaviours.clear()

    # -- the clock ------------------------------------------------------------

    def advance(self, store: Store, now: float) -> None:
        """Count the requests every deployment and pipeline served up to ``now``."""
        for key in [k for k in self._deployments if k not in store.deployments]:
            del self._deployments[key]
        for key, deployment in store.deployments.items():
            self._advance_one(key, deployment, now)
        self._advance_core(store, now)

    def _advance_core(self, store: Store, now: float) -> None:
        for key in [k for k in self._pipelines_advanced if k not in store.pipelines]:
            del self._pipelines_advanced[key]
        for key, pipeline in store.pipelines.items():
            # A pipeline cannot have served before it existed.
            since = max(self._pipelines_advanced.get(key, -math.inf), pipeline.created_at)
            rate = self.pipeline_rates.get(key, 0.0)
            if rate > 0 and now > since:
                self._serve_pipeline(store, key, rate, since, now)
            self._pipelines_advanced[key] = max(since, now)
        for core_key in list(self._core_counters):
            kind, namespace, name = core_key
            if (namespace, name) not in store.objects(kind):
                del self._core_counters[core_key]

    def _serve_pipeline(
        self, store: Store, key: Key, rate: float, start: float, end: float
    ) -> None:
        namespace, name = key
        for target, share in routes(store, namespace, name).items():
            if share <= 0:
                continue
            pipeline = store.get(namespace, target, "Pipeline")
            models = [] if pipeline is None else step_names(pipeline.spec)
            for begin, finish in ready_intervals(store, namespace, target, start, end):
                offered = rate * share * (finish - begin)
                self._count_core(("Pipeline", namespace, target), offered)
                for model in models:
                    self._count_core(("Model", namespace, model), offered)

    def _count_core(self, key: CoreKey, offered: float) -> None:
        counters = self._core_counters.get(key)
        if counters is None:
            counters = self._core_counters[key] = _PredictorCounters(version="")
        counters.add(offered, self.core_behaviour(*key))

    def _advance_one(self, key: Key, deployment: Deployment, now: float) -> None:
        state = self._deployments.get(key)
        rollout = deployment.rollout_at(now)
        if state is None:
            # First sight: count from whenever the running rollout became Available.
            state = self._deployments[key] = _DeploymentTraffic(advanced_to=-math.inf)
        since = state.advanced_to
        if now <= since:
            return
        previous = state.serving
        current: _Serving | None = None
        if rollout is not None:
            current = self._serving(deployment, rollout, previous)
        if previous is not None and (current is None or current.rollout != previous.rollout):
            # The old rollout served until the next one started (the write or the sync).
            end = now if rollout is None else min(now, rollout.started_at)
            self._serve(key, state, previous, since, end)
        if current is not None:
            self._serve(key, state, current, since, now)
            for gone in [p for p in state.predictors if p not in current.split]:
                del state.predictors[gone]
        else:
            state.predictors.clear()
        state.serving = current
        state.advanced_to = now

    def _serving(
        self, deployment: Deployment, rollout: Rollout, previous: _Serving | None
    ) -> _Serving:
        if previous is not None and previous.rollout == rollout:
            return previous
        if deployment.generation != rollout.generation and previous is not None:
            # A GitOps repository ahead of the cluster: the running spec is the one
            # seen before; keep its split until the sync starts the new rollout.
            return _Serving(rollout, previous.split, previous.versions, previous.models)
        spec = deployment.spec
        return _Serving(rollout, traffic_split(spec), _versions(spec), _model_labels(spec))

    def _serve(
        self, key: Key, state: _DeploymentTraffic, serving: _Serving, start: float, end: float
    ) -> None:
        available = _available_from(serving.rollout)
        if available is None:
            return
        begin = max(start, available)
        seconds = end - begin
        if seconds <= 0:
            return
        rate = self.rate_for(*key)
        for predictor, share in serving.split.items():
            counters = state.predictors.get(predictor)
            if counters is None:
                counters = state.predictors[predictor] = _PredictorCounters(
                    version=serving.versions.get(predictor, "")
                )
            behaviour = self.behaviour(*key, predictor)
            successes = counters.add(rate * share * seconds, behaviour)
            model = serving.models.get(predictor, ModelLabels())
            counters.predict(successes, model, behaviour.predictions)

    # -- reading --------------------------------------------------------------

    def series(self) -> Iterator[tuple[Key, str, _PredictorCounters, str, _Histogram]]:
        """Every exported series, in a stable order."""
        for key in sorted(self._deployments):
            state = self._deployments[key]
            for predictor in sorted(state.predictors):
                counters = state.predictors[predictor]
                for code in sorted(counters.series):
                    yield key, predictor, counters, code, counters.series[code]

    def series_records(self) -> list[SeriesRecord]:
        """The counters as plain records (for the control API)."""
        return [
            {
                "namespace": namespace,
                "deployment_name": name,
                "predictor_name": predictor,
                "code": code,
                "count": histogram.count,
                "sum": histogram.total,
            }
            for (namespace, name), predictor, _, code, histogram in self.series()
        ]

    def prediction_series(self) -> Iterator[tuple[Key, str, ModelLabels, str, int]]:
        """Every prediction series: deployment, predictor, model, label, count; stable order."""
        for key in sorted(self._deployments):
            state = self._deployments[key]
            for predictor in sorted(state.predictors):
                predictions = state.predictors[predictor].predictions
                if predictions is None:
                    continue
                for label in sorted(predictions.issued):
                    yield key, predictor, predictions.model, label, predictions.issued[label]

    def prediction_series_records(self) -> list[PredictionSeriesRecord]:
        """The prediction counters as plain records (for the control API)."""
        return [
            {
                "namespace": namespace,
                "deployment_name": name,
                "predictor_name": predictor,
                "model_name": model.name,
                "class": label,
                "count": count,
            }
            for (namespace, name), predictor, model, label, count in self.prediction_series()
        ]

    def core_series(self) -> Iterator[tuple[CoreKey, str, _Histogram]]:
        """Every Core v2 series (kind, namespace, name), code, counters, in a stable order."""
        for key in sorted(self._core_counters):
            counters = self._core_counters[key]
            for code in sorted(counters.series):
                yield key, code, counters.series[code]

    def core_series_records(self) -> list[CoreSeriesRecord]:
        """The Core v2 counters as plain records (for the control API)."""
        return [
            {
                "kind": kind,
                "namespace": namespace,
                "name": name,
                "code": code,
                "count": histogram.count,
                "sum": histogram.total,
            }
            for (kind, namespace, name), code, histogram in self.core_series()
        ]

    def core_behaviour_record(
        self, kind: CoreKind, namespace: str, name: str
    ) -> CoreBehaviourRecord:
        """One pipeline's or model's behaviour as a plain record."""
        behaviour = self.core_behaviour(kind, namespace, name)
        return {
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "error_rate": behaviour.error_rate,
            "latency_seconds": behaviour.latency_seconds,
            "error_code": behaviour.error_code,
        }

    def behaviour_record(
        self, namespace: str, name: str, predictor: str
    ) -> PredictorBehaviourRecord:
        """One predictor's behaviour as a plain record."""
        behaviour = self.behaviour(namespace, name, predictor)
        return {
            "namespace": namespace,
            "name": name,
            "predictor": predictor,
            "error_rate": behaviour.error_rate,
            "latency_seconds": behaviour.latency_seconds,
            "error_code": behaviour.error_code,
            "predictions": dict(behaviour.predictions),
        }

    def settings_record(self) -> TrafficSettingsRecord:
        """Default rate, per-deployment rates and per-predictor behaviours."""
        rates: list[RateRecord] = [
            {"namespace": ns, "name": name, "requests_per_second": rate}
            for (ns, name), rate in sorted(self.rates.items())
        ]
        pipeline_rates: list[RateRecord] = [
            {"namespace": ns, "name": name, "requests_per_second": rate}
            for (ns, name), rate in sorted(self.pipeline_rates.items())
        ]
        return {
            "default_requests_per_second": self.default_rate,
            "rates": rates,
            "predictors": [self.behaviour_record(*key) for key in sorted(self.behaviours)],
            "pipeline_rates": pipeline_rates,
            "core_behaviours": [
                self.core_behaviour_record(*key) for key in sorted(self.core_behaviours)
            ],
        }

    def exposition(self) -> bytes:
        """The ``/metrics`` page in the Prometheus text format."""
        return generate_latest(self.registry)


class _ExecutorCollector(Collector):
    """Renders the model's counters as the executor's histogram family."""

    def __init__(self, model: TrafficModel) -> None:
        self._model = model

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(METRIC_NAME, METRIC_HELP, labels=LABEL_NAMES)
        for (namespace, name), predictor, counters, code, histogram in self._model.series():
            labels = [name, predictor, counters.version, SERVICE, METHOD, code, namespace]
            buckets: list[tuple[str, float]] = [
                (_bound(bound), float(count))
                for bound, count in zip(BUCKETS, histogram.buckets, strict=True)
            ]
            buckets.append(("+Inf", float(histogram.count)))
            family.add_metric(labels, buckets, histogram.total)
        yield family


class _PredictionCollector(Collector):
    """Renders the prediction counters as the wrapper does: only once there is a sample."""

    def __init__(self, model: TrafficModel) -> None:
        self._model = model

    def collect(self) -> Iterable[Metric]:
        series = list(self._model.prediction_series())
        if not series:
            return
        family = CounterMetricFamily(
            PREDICTIONS_METRIC, PREDICTIONS_HELP, labels=PREDICTION_LABEL_NAMES
        )
        for (namespace, name), predictor, model, label, count in series:
            labels = [
                label,
                PREDICT_METHOD,
                name,
                model.name,
                model.image,
                model.version,
                predictor,
                model.predictor_version,
                name,
                model.image,
                model.version,
                WORKER_ID,
                namespace,
            ]
            family.add_metric(labels, float(count))
        yield family


class _CoreV2Collector(Collector):
    """Renders the Core v2 counters; a family appears only once it has a sample."""

    def __init__(self, model: TrafficModel) -> None:
        self._model = model

    def collect(self) -> Iterable[Metric]:
        series = list(self._model.core_series())
        for kind, ((count_name, count_help), (sum_name, sum_help), label) in CORE_FAMILIES.items():
            own = [(key, code, h) for key, code, h in series if key[0] == kind]
            if not own:
                continue
            labels = ["namespace", label, "code"]
            counts = CounterMetricFamily(count_name, count_help, labels=labels)
            sums = CounterMetricFamily(sum_name, sum_help, labels=labels)
            for (_, namespace, name), code, histogram in own:
                counts.add_metric([namespace, name, code], float(histogram.count))
                sums.add_metric([namespace, name, code], histogram.total)
            yield counts
            yield sums


def _bound(value: float) -> str:
    # The way Go's client formats `le` (0.005, 1, 2.5, 10): shortest float text.
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text
