"""JSON shapes the control API returns, shared by the server and the client.

They live apart from both so that `control.py` (used by tests that never start the
server in-process) does not import aiohttp.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

FaultKind = Literal["latency", "error", "rate_limit", "drop", "malformed"]
# What a `malformed` fault answers with 200: not JSON, JSON labelled text/plain,
# a 20 MiB body, or a JSON object without the fields the API promises.
MalformedBody = Literal["not-json", "wrong-content-type", "huge", "missing-fields"]


class RequestLogEntry(TypedDict):
    """One API request as the simulator saw it; never holds the token."""

    time: str
    method: str
    path: str
    template: str | None
    query: dict[str, str]
    user: str | None
    # The client's User-Agent: which operator process (replica) sent it.
    agent: str | None
    status: int | None
    fault: FaultKind | None


class CommitRecord(TypedDict):
    """One GitOps commit, in the control API's shape (not the SDK's AuditLog)."""

    id: str
    action: str
    message: str
    author: str
    timestamp: str
    namespace: str
    name: str
    kind: str  # SeldonDeployment, Model or Pipeline
    spec: dict[str, Any] | None


class FaultRecord(TypedDict):
    """A fault rule as installed, with how many triggers it has left."""

    id: str
    kind: FaultKind
    method: str | None
    path: str | None
    probability: float
    remaining: int | None
    status_codes: list[int]
    latency_ms: int
    retry_after_seconds: int | None
    body: MalformedBody


class PredictorBehaviourRecord(TypedDict):
    """How one predictor answers the synthetic traffic (see `traffic`)."""

    namespace: str
    name: str
    predictor: str
    error_rate: float
    latency_seconds: float
    error_code: str
    # Each label's share (0..1, summing to 1) of the predictor's predictions.
    predictions: dict[str, float]


class RateRecord(TypedDict):
    """A deployment's own request rate (requests per second while Available)."""

    namespace: str
    name: str
    requests_per_second: float


class SeriesRecord(TypedDict):
    """One exported executor series' counters (one predictor, one status code)."""

    namespace: str
    deployment_name: str
    predictor_name: str
    code: str
    count: int
    sum: float


# One prediction counter series (one predictor, one predicted label); the
# functional form because `class` is a keyword.
PredictionSeriesRecord = TypedDict(
    "PredictionSeriesRecord",
    {
        "namespace": str,
        "deployment_name": str,
        "predictor_name": str,
        "model_name": str,
        "class": str,
        "count": int,
    },
)


class CoreBehaviourRecord(TypedDict):
    """How one Core v2 pipeline or model answers the synthetic traffic."""

    kind: str  # Model or Pipeline
    namespace: str
    name: str
    error_rate: float
    latency_seconds: float
    error_code: str


class CoreSeriesRecord(TypedDict):
    """One Core v2 series' counters (one pipeline or model, one status code)."""

    kind: str  # Model or Pipeline
    namespace: str
    name: str
    code: str
    count: int
    sum: float


class TrafficSettingsRecord(TypedDict):
    """The traffic model's knobs; `pipeline_rates` and `core_behaviours` are Core v2's."""

    default_requests_per_second: float
    rates: list[RateRecord]
    predictors: list[PredictorBehaviourRecord]
    pipeline_rates: list[RateRecord]
    core_behaviours: list[CoreBehaviourRecord]


class TrafficRecord(TrafficSettingsRecord):
    """The knobs and, as of the call, every exported series (executor, predictions, Core v2)."""

    series: list[SeriesRecord]
    prediction_series: list[PredictionSeriesRecord]
    core_series: list[CoreSeriesRecord]
