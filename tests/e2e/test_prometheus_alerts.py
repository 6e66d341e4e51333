"""Alerting rules on the stack's real Prometheus: alerts fire for real.

What a bake (roll back when an alert fires) will rely on: the harness's default
rule ``PredictorErrorRateHigh`` fires for a predictor whose error rate a test
set through ``/_control``, names it by namespace, deployment and predictor
(``ALERTS{alertstate="firing"}`` and ``/api/v1/alerts``), stays silent for a
predictor without errors, and tests can replace the rules at runtime.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.prometheus import (
    DEFAULT_RULE_GROUP,
    ERROR_RATE_ALERT,
    ERROR_RATE_THRESHOLD,
    Prometheus,
    PrometheusQueryError,
    default_alert_rules,
)
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body, wait_for

pytestmark = pytest.mark.e2e

NS = "production"
# Two scrapes a second apart fill a rate window; an evaluation follows within a second.
ALERT_TIMEOUT = 30.0
# The witness rule of the quiet test: fires for the target once its traffic has been
# in the 5 s window for this long, so the alert next to it has been evaluated on it.
WITNESS = "TargetServing"
WITNESS_FOR = "3s"


def canary_deployment(name: str) -> dict[str, Any]:
    """Predictor `default` (90 %) and predictor `canary` (10 %)."""
    body = deployment_body(name, image="seldonio/sklearn-iris:1.4")
    main = body["spec"]["predictors"][0]
    main["traffic"] = 90
    second = copy.deepcopy(main)
    second.update(name="canary", traffic=10)
    second["componentSpecs"][0]["spec"]["containers"][0]["image"] = "seldonio/sklearn-iris:1.5"
    body["spec"]["predictors"].append(second)
    return body


@pytest.fixture
def alerting(prometheus: Prometheus) -> Iterator[Prometheus]:
    """Prometheus with the default rules, put back after the test whatever it set."""
    prometheus.reset_alert_rules()
    yield prometheus
    prometheus.reset_alert_rules()


def test_a_failing_predictor_fires_the_error_rate_alert(
    simulator: Simulator, alerting: Prometheus
) -> None:
    control = simulator.control
    control.add_namespace(NS)
    # A fresh name per run: its series start at zero, untouched by earlier tests.
    target = f"iris-{uuid.uuid4().hex[:6]}"
    control.set_predictor_behaviour(NS, target, "canary", error_rate=0.5)
    control.seed_deployment(NS, canary_deployment(target))

    firing = wait_for(
        lambda: alerting.firing_alerts(ERROR_RATE_ALERT, namespace=NS, deployment_name=target),
        timeout=ALERT_TIMEOUT,
    )

    assert [alert["labels"]["predictor_name"] for alert in firing] == ["canary"]
    assert firing[0]["labels"]["severity"] == "critical"
    assert float(firing[0]["value"]) > ERROR_RATE_THRESHOLD
    # The same alert as the ALERTS series Prometheus writes at each evaluation.
    series = (
        f'ALERTS{{alertname="{ERROR_RATE_ALERT}",alertstate="firing",'
        f'namespace="{NS}",deployment_name="{target}",predictor_name="canary"}}'
    )
    assert alerting.wait_for(series, timeout=ALERT_TIMEOUT) == 1.0


def test_predictors_without_errors_fire_nothing(simulator: Simulator, alerting: Prometheus) -> None:
    control = simulator.control
    control.add_namespace(NS)
    target = f"iris-{uuid.uuid4().hex[:6]}"
    # Evaluated in the same group, at the same instants, as the error-rate alert.
    (group,) = default_alert_rules()
    group["rules"].append(
        {
            "alert": WITNESS,
            "expr": (
                "sum by (namespace, deployment_name, predictor_name) (rate("
                "seldon_api_executor_server_requests_seconds_count"
                f'{{deployment_name="{target}"}}[5s])) > 0'
            ),
            "for": WITNESS_FOR,
        }
    )
    alerting.set_alert_rules([group])
    control.seed_deployment(NS, canary_deployment(target))

    witnessed = wait_for(
        lambda: alerting.firing_alerts(WITNESS, namespace=NS, deployment_name=target),
        timeout=ALERT_TIMEOUT,
    )

    assert {alert["labels"]["predictor_name"] for alert in witnessed} == {"default", "canary"}
    names = {
        alert["labels"]["alertname"]
        for alert in alerting.alerts()
        if alert["labels"].get("deployment_name") == target
    }
    assert names == {WITNESS}
    # Never pending or firing since the deployment appeared.
    history = f'ALERTS{{alertname="{ERROR_RATE_ALERT}",deployment_name="{target}"}}[10m]'
    assert alerting.query(f"count_over_time({history})") == []


def test_rules_are_replaced_at_runtime_and_a_bad_one_changes_nothing(
    alerting: Prometheus,
) -> None:
    alerting.set_alert_rules(
        """
        groups:
          - name: always
            rules:
              - alert: AlwaysFiring
                expr: vector(1)
        """
    )

    assert [group["name"] for group in alerting.rule_groups()] == ["always"]
    wait_for(lambda: alerting.firing_alerts("AlwaysFiring"), timeout=ALERT_TIMEOUT)

    with pytest.raises(PrometheusQueryError):
        alerting.set_alert_rules([{"name": "broken", "rules": [{"alert": "X", "expr": "sum("}]}])
    assert [group["name"] for group in alerting.rule_groups()] == ["always"]

    alerting.reset_alert_rules()
    assert [group["name"] for group in alerting.rule_groups()] == [DEFAULT_RULE_GROUP]
