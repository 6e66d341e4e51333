"""Seldon Deploy answers 200 with something that is not the API's shape: the run
reports a clear reason, retries, and ends right, with no traceback anywhere."""

from __future__ import annotations

import pytest

from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("body", ["not-json", "wrong-content-type", "huge", "missing-fields"])
def test_malformed_answers_are_reported_and_retried(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, body: str
) -> None:
    seldon.control.inject_fault(
        "malformed",
        body=body,
        count=2,
        method="GET",
        path="/namespaces/staging/seldondeployments/iris$",
    )
    promotions.apply("iris", PROMOTE_IRIS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "Succeeded"
    warnings = [e for e in promotions.events("iris") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["UnexpectedResponse"]
    assert "GET /namespaces/staging/seldondeployments/iris" in warnings[0]["message"]
    everything = str(promotions.get("iris")) + operator.log() + str(warnings)
    assert "Traceback" not in everything
