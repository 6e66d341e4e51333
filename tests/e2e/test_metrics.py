"""The operator's Prometheus endpoint counts runs, Seldon Deploy calls and token requests."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(operator: OperatorProcess) -> Samples:
    text = requests.get(operator.metrics_url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_move_during_a_promotion(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    before = _scrape(operator)
    promotions.apply("iris", PROMOTE_IRIS)
    during = promotions.wait_for_phase("iris", {"Verifying", "Succeeded"})
    in_flight = _value(_scrape(operator), "modelpromotion_runs_in_flight")
    promotions.wait_for_phase("iris", {"Succeeded"})
    after = _scrape(operator)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("modelpromotion_runs_started_total") == 1
    assert moved("modelpromotion_runs_finished_total", outcome="Succeeded", reason="Succeeded") == 1
    assert moved("modelpromotion_run_duration_seconds_count", outcome="Succeeded") == 1
    assert in_flight == (1 if during["phase"] == "Verifying" else 0)
    assert _value(after, "modelpromotion_runs_in_flight") == 0
    create = {
        "instance": "default",
        "method": "POST",
        "path": "/namespaces/{namespace}/seldondeployments",
    }
    assert moved("seldon_deploy_requests_total", **create, code="200") == 1
    assert moved("seldon_deploy_request_duration_seconds_count", **create) == 1
    assert moved("oidc_token_requests_total", instance="default", result="success") >= 1
