"""A server that asks to be left alone for a day (Retry-After: 86400) is honoured only up
to the operator's longest wait, and never past the run's deadline.

The e2e operator runs with ``--max-retry-delay=3``; the runs here time out after 8 s.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.keycloak import Keycloak
from tests.harness.operator_process import OperatorProcess, password_credentials
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.seldon_log import creates
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

A_DAY = 86400
MAX_RETRY_DELAY = 3.0  # the harness's --max-retry-delay
CREATE_PATH = "/namespaces/production/seldondeployments$"
# A path under the simulator's API base: its fault injector answers there before any
# routing, so it stands in for a token endpoint that keeps answering 503 / 429.
BUSY_TOKEN_PATH = "/namespaces/idp/token"
PROMOTE_WITHIN_8S: dict[str, Any] = {**PROMOTE_IRIS, "verification": {"timeout": "8s"}}


def _seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def _run_seconds(status: dict[str, Any]) -> float:
    return _seconds(status["finishedAt"]) - _seconds(status["startedAt"])


def test_retry_after_of_a_day_on_create_waits_only_the_maximum_delay(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.rate_limit(A_DAY, count=1, method="POST", path=CREATE_PATH)
    promotions.apply("iris", PROMOTE_IRIS)

    assert promotions.wait_for_phase("iris", FINISHED_PHASES)["phase"] == "Succeeded"

    posts = [
        (_seconds(e["time"]), e["status"])
        for e in seldon.control.requests_log()
        if e["method"] == "POST" and e["path"].endswith("/namespaces/production/seldondeployments")
    ]
    assert [status for _, status in posts] == [429, 200]
    gap = posts[1][0] - posts[0][0]
    # Honoured as a minimum up to the maximum delay (our own backoff is ~0.5 s) ...
    assert gap >= MAX_RETRY_DELAY - 0.2, gap
    # ... and no more: a day, or the old 300 s cap, would not have finished this test.
    assert gap < MAX_RETRY_DELAY + 5, gap
    assert creates(seldon, "production") == 1


def test_seldon_deploy_asking_for_a_day_ends_the_run_at_its_deadline(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.inject_fault("error", status_codes=[503], retry_after_seconds=A_DAY)
    promotions.apply("iris", PROMOTE_WITHIN_8S)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES, timeout=60)

    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == "SeldonDeployUnavailable"
    # Seconds-precision times; the last wait ends at the deadline, not a day later.
    assert 7 <= _run_seconds(status) <= 8 + MAX_RETRY_DELAY + 2, status
    assert creates(seldon, "production") == 0


@pytest.mark.parametrize("answer", ["503", "429"])
def test_identity_provider_asking_for_a_day_ends_the_run_at_its_deadline(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
    answer: str,
) -> None:
    if answer == "503":
        seldon.control.inject_fault(
            "error", status_codes=[503], retry_after_seconds=A_DAY, path=BUSY_TOKEN_PATH
        )
    else:
        seldon.control.rate_limit(A_DAY, path=BUSY_TOKEN_PATH)
    busy = {**password_credentials(keycloak), "token-url": f"{seldon.api_url}{BUSY_TOKEN_PATH}"}
    del busy["oidc-server"]
    operator_factory(busy)
    promotions.apply("iris", PROMOTE_WITHIN_8S)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES, timeout=60)

    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == "IdentityProviderUnavailable"
    assert f"HTTP {answer}" in status["outcome"]["message"]
    assert 7 <= _run_seconds(status) <= 8 + MAX_RETRY_DELAY + 2, status
    token_requests = [
        e for e in seldon.control.requests_log() if e["path"].endswith(BUSY_TOKEN_PATH)
    ]
    # Retried with backoff (gaps up to 3 s) during 8 s: a handful, not a hot loop.
    assert 2 <= len(token_requests) <= 20, len(token_requests)
