"""Shadow promotions end to end: the challenger gets a copy of the target's traffic on
the simulator, the real Prometheus measures both predictors, and the comparison
templates decide whether it is promoted. Helpers and conventions: ``test_canary``."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_canary import (
    NS,
    STABLE_IMAGE,
    TargetHistory,
    Timeline,
    analysis,
    canary_spec,
    finished,
    follow,
    kill_on_arrival,
    operator_with_prometheus,
    seed_model,
    set_weight,
    target,
    target_puts,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import Prometheus
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

SHADOW: dict[str, Any] = {"shadow": {}}
_PREDICTOR = 'namespace="{{namespace}}",deployment_name="{{target}}",predictor_name="{{predictor}}"'
LATENCY_QUERY = (
    "histogram_quantile(0.95, sum by (le) (rate("
    f"seldon_api_executor_server_requests_seconds_bucket{{{_PREDICTOR}}}[{{{{interval}}}}])))"
)
PREDICTIONS_QUERY = (
    f"sum by (class) (increase(predictions_total{{{_PREDICTOR}}}[{{{{interval}}}}]))"
)


def latency(*, max_ratio: float = 1.5, count: int = 2) -> dict[str, Any]:
    """The challenger's p95 latency at most ``max_ratio`` times the champion's."""
    return {
        "name": "latency",
        "query": LATENCY_QUERY,
        "compare": {"ratio": {"max": max_ratio}},
        "interval": "3s",
        "count": count,
    }


def predictions(*, max_psi: float = 0.1, count: int = 2) -> dict[str, Any]:
    """The challenger predicts the classes as often as the champion (PSI)."""
    return {
        "name": "predictions",
        "query": PREDICTIONS_QUERY,
        "compare": {"distribution": {"by": "class", "maxPSI": max_psi}},
        "interval": "3s",
        "count": count,
    }


JUDGED = (SHADOW, analysis("latency", "predictions"))


@pytest.fixture
def shadow_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    """The operator, measuring on the stack's Prometheus."""
    yield from operator_with_prometheus(operator_factory, prometheus)


def _measurements(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((status.get("canary") or {}).get("measurements") or [])


def test_a_shadow_that_matches_the_champion_is_promoted_in_one_write_after_it(
    seldon: Simulator, shadow_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None
    spec = canary_spec(model, JUDGED, templates=[latency(), predictions()])

    with TargetHistory(seldon, model) as history:
        promotions.apply("iris", spec)
        status = follow(promotions, "iris", finished)

    assert status["phase"] == "Succeeded", status
    shadowed, promoted = history.written()
    # The challenger answered a copy of the traffic; callers kept the champion's answers.
    assert shadowed.traffic == {"default": 100, "canary": None}
    canary = next(p for p in shadowed.spec["predictors"] if p["name"] == "canary")
    assert canary["shadow"] is True
    assert shadowed.image("default") == STABLE_IMAGE
    assert promoted.spec == source["spec"]
    assert target(seldon, model)["spec"] == source["spec"]
    # Both values in each measurement, and the score the band applies to.
    passed = [m for m in _measurements(status) if m["result"] == "Passed"]
    assert {m["template"] for m in passed} == {"latency", "predictions"}
    ratio = next(m for m in passed if m["template"] == "latency")
    assert ratio["value"] > 0 and ratio["champion"] > 0 and ratio["max"] == 1.5
    assert ratio["score"] == pytest.approx(ratio["value"] / ratio["champion"])
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote"] * 2


def test_a_shadow_slower_than_the_champion_is_rolled_back_without_serving_a_caller(
    seldon: Simulator, shadow_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    before = target(seldon, model)
    # The predictor a shadow write adds answers ten times slower.
    seldon.control.set_predictor_behaviour(NS, model, "canary", latency_seconds=0.2)
    spec = canary_spec(model, (SHADOW, analysis("latency")), templates=[latency()])

    with TargetHistory(seldon, model) as history:
        promotions.apply("iris", spec)
        status = follow(promotions, "iris", finished)

    assert status["phase"] == "RolledBack", status
    assert status["outcome"]["reason"] == "AnalysisFailed"
    assert "analysis 'latency' measured ratio" in status["outcome"]["message"]
    assert "above its max 1.5" in status["outcome"]["message"]
    # The champion served every caller throughout: no version gave the canary traffic.
    assert all(v.traffic.get("canary") is None for v in history.written())
    assert target(seldon, model)["spec"] == before["spec"]


def test_a_shadow_predicting_other_classes_is_rolled_back_though_it_is_as_fast(
    seldon: Simulator, shadow_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    before = target(seldon, model)
    seldon.control.set_predictor_behaviour(
        NS, model, "canary", predictions={"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}
    )
    spec = canary_spec(model, JUDGED, templates=[latency(), predictions()])

    promotions.apply("iris", spec)
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "RolledBack", status
    assert "analysis 'predictions' measured PSI" in status["outcome"]["message"]
    # Its latency was as good as the champion's: only the distribution failed it.
    latencies = [m for m in _measurements(status) if m["template"] == "latency"]
    assert latencies and all(m["result"] == "Passed" for m in latencies), latencies
    assert target(seldon, model)["spec"] == before["spec"]


def test_a_shadow_without_traffic_is_never_promoted(
    seldon: Simulator, shadow_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    before = target(seldon, model)
    seldon.control.set_request_rate(0.0, namespace=NS, name=model)
    spec = canary_spec(model, (SHADOW, analysis("latency")), templates=[latency()], timeout="5s")

    promotions.apply("iris", spec)
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "RolledBack", status
    assert status["outcome"]["reason"] == "AnalysisInconclusive"
    results = {m["result"] for m in _measurements(status)}
    assert results == {"Inconclusive"}, _measurements(status)
    assert target(seldon, model)["spec"] == before["spec"]


def test_sigkill_in_every_phase_of_a_shadow_writes_each_version_once(
    seldon: Simulator, shadow_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None
    steps = (SHADOW, analysis("latency"), set_weight(50))
    spec = canary_spec(model, steps, templates=[latency(count=3)])
    timeline, killed = Timeline(), list[tuple[str, int | None]]()
    kill = kill_on_arrival(shadow_operator, ("Promoting", "Verifying", "Analyzing"), killed)

    with TargetHistory(seldon, model) as history:
        promotions.apply("iris", spec)
        status = follow(
            promotions, "iris", finished, timeline=timeline, on_change=kill, timeout=180
        )

    assert status["phase"] == "Succeeded", timeline.describe()
    assert ("Analyzing", 1) in killed, killed
    # One PUT per step: the shadow, the 50 % canary, the promoted spec.
    per_step = collections.Counter(v.step for v in history.written())
    assert per_step == {"0": 1, "2": 1, "3": 1}, history.written()
    assert len(target_puts(seldon, model)) == 3
    assert target(seldon, model)["spec"] == source["spec"]
