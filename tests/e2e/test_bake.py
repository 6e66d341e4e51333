"""Bakes end to end: a promotion written, verified, then watched on the stack's real
Prometheus (its measurements and its alerting rules) before the run succeeds, or
rolled back when an alert about the target fires.

The promotions are Replace runs onto an existing target (``seed_model`` of the canary
tests: a fresh model name per test, so Prometheus' earlier series stay apart, and
synthetic traffic). The alert is the harness's default rule ``PredictorErrorRateHigh``
(a predictor answering more than 10 % of its requests with 5xx over 5 s), made to
fire through the simulator's per-predictor error rate (``/_control``) once the run
is baking.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_canary import (
    NS,
    Timeline,
    finished,
    follow,
    in_phase,
    is_subsequence,
    operator_with_prometheus,
    ready,
    seed_model,
    target,
    target_puts,
)
from tests.harness.operating import ABORT, annotate, wait_until_removed
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import ERROR_RATE_ALERT, Prometheus
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

_COUNT = "seldon_api_executor_server_requests_seconds_count"
_TARGET = 'namespace="{{namespace}}",deployment_name="{{target}}"'
# The share of all the target's requests that did not answer 2xx (after the promotion
# the target serves nothing but the promoted spec).
TARGET_ERROR_RATE = (
    f'(sum(rate({_COUNT}{{{_TARGET},code!~"2.."}}[{{{{interval}}}}])) or vector(0))'
    f" / sum(rate({_COUNT}{{{_TARGET}}}[{{{{interval}}}}]))"
)
WATCHED = {"namespace": "{{namespace}}", "deployment_name": "{{target}}"}


def bake_spec(model: str, duration: str, *, templates: bool = True) -> dict[str, Any]:
    """A Replace of ``staging/model`` onto ``production/model`` baked ``duration``: the
    target's error rate measured twice every 3 s (``templates``), its alerts watched."""
    bake: dict[str, Any] = {"duration": duration, "alerts": {"matchLabels": dict(WATCHED)}}
    spec: dict[str, Any] = {
        "source": {"namespace": "staging", "name": model},
        "target": {"namespace": NS},
        "verification": {"timeout": "30s"},
        "bake": bake,
    }
    if templates:
        bake["templates"] = ["error-rate"]
        spec["analysis"] = {
            "templates": [
                {
                    "name": "error-rate",
                    "query": TARGET_ERROR_RATE,
                    "max": 0.05,
                    "interval": "3s",
                    "count": 2,
                }
            ]
        }
    return spec


@pytest.fixture
def bake_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    """The operator with the stack's Prometheus; its alerting rules the default ones,
    before and after the test."""
    prometheus.reset_alert_rules()
    yield from operator_with_prometheus(operator_factory, prometheus)
    prometheus.reset_alert_rules()


def test_a_bake_that_passes_succeeds_after_its_duration(
    seldon: Simulator, bake_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    timeline = Timeline()

    promotions.apply("iris", bake_spec(model, "8s"))
    status = follow(promotions, "iris", finished, timeline=timeline)

    assert status["phase"] == "Succeeded", timeline.describe()
    assert is_subsequence(["Verifying", "Baking", "Succeeded"], [m.phase for m in timeline.moments])
    assert "bake of 8s passed" in ready(status)["message"]
    bake = status["bake"]
    assert [p["taken"] for p in bake["analysis"]] == [2]
    assert [m["result"] for m in bake["measurements"]] == ["Passed", "Passed"]
    assert "alerts" not in bake or not bake["alerts"]
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote"]


def test_a_firing_alert_rolls_the_promotion_back(
    seldon: Simulator, bake_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    before = target(seldon, model)

    promotions.apply("iris", bake_spec(model, "60s", templates=False))
    follow(promotions, "iris", in_phase("Baking"))
    # The promoted predictor (the source's `default`) starts failing half its requests.
    seldon.control.set_predictor_behaviour(NS, model, "default", error_rate=0.5)
    status = follow(promotions, "iris", finished, timeout=60.0)

    assert status["phase"] == "RolledBack"
    outcome = status["outcome"]
    assert outcome["reason"] == "AlertFiring"
    assert outcome["message"].startswith(f'alert {ERROR_RATE_ALERT}{{predictor_name="default"')
    assert outcome["message"].endswith(f"fired during the bake of {NS}/{model}")
    assert [a["alertname"] for a in status["bake"]["alerts"]] == [ERROR_RATE_ALERT]
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Rollback"]
    assert target(seldon, model)["spec"] == before["spec"]


def test_an_abort_during_the_bake_rolls_the_promotion_back(
    seldon: Simulator, bake_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    before = target(seldon, model)

    promotions.apply("iris", bake_spec(model, "60s", templates=False))
    follow(promotions, "iris", in_phase("Baking"))
    annotate(promotions, "iris", ABORT, "requested")
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "RolledBack"
    assert status["outcome"]["reason"] == "Aborted"
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Rollback"]
    assert target(seldon, model)["spec"] == before["spec"]
    wait_until_removed(promotions, "iris", ABORT)


def test_sigkill_during_the_bake_resumes_it_without_writing_again(
    seldon: Simulator, bake_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None

    promotions.apply("iris", bake_spec(model, "8s"))
    follow(promotions, "iris", in_phase("Baking"))
    bake_operator.kill()
    bake_operator.restart()
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "Succeeded", status
    assert [p["taken"] for p in status["bake"]["analysis"]] == [2]
    # The promotion was written once; the restarted operator went on baking it.
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote"]
    assert target(seldon, model)["spec"] == source["spec"]
