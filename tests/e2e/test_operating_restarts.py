"""Requests made while the operator is down (issue 10): the next operator acts on
each exactly once, and the one after it does nothing more. The operator is
SIGKILLed, as a node failure would; writes are counted in the simulator's log."""

from __future__ import annotations

import pytest

from tests.harness.operating import (
    ABORT,
    ENDED,
    RETRY,
    SPEC,
    annotate,
    annotations_of,
    quiet,
    status_is,
    target_writes,
    token,
    wait_until_removed,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e


def test_a_retry_set_while_the_operator_is_down_is_acted_on_exactly_once(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.mark_failing("production", "iris", description="ImagePullBackOff")
    promotions.apply("iris", SPEC)
    assert promotions.wait_for_phase("iris", ENDED, timeout=30)["phase"] == "RolledBack"
    seldon.control.unmark_failing("production", "iris")
    assert target_writes(seldon) == ["POST", "DELETE"]

    operator.kill()
    asked = token()
    annotate(promotions, "iris", RETRY, asked)
    operator.restart()

    promotions.wait_for("iris", status_is(retry=1, phase="Succeeded"), "retry 1 Succeeded", 30)
    assert target_writes(seldon) == ["POST", "DELETE", "POST"]  # one new run, one create
    handled = promotions.status("iris")
    assert handled["lastRetry"] == asked
    assert [(h["retry"], h["outcome"]) for h in handled["history"]] == [
        (1, "Succeeded"),
        (0, "RolledBack"),
    ]

    operator.kill()
    operator.restart()
    status, _ = quiet(promotions, "iris")

    assert target_writes(seldon) == ["POST", "DELETE", "POST"]
    assert status["startedAt"] == handled["startedAt"]
    assert (status["retry"], status["lastRetry"], status["phase"]) == (1, asked, "Succeeded")
    assert status["history"] == handled["history"]


def test_an_abort_set_while_the_operator_is_down_is_acted_on_exactly_once(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.set_delays(rollout_seconds=60.0)  # the run sits in Verifying
    promotions.apply("iris", SPEC)
    promotions.wait_for_phase("iris", {"Verifying"}, timeout=20)
    assert target_writes(seldon) == ["POST"]

    operator.kill()
    annotate(promotions, "iris", ABORT, "requested")
    operator.restart()

    status = promotions.wait_for_phase("iris", ENDED, timeout=20)
    assert (status["phase"], status["outcome"]["reason"]) == ("RolledBack", "Aborted")
    wait_until_removed(promotions, "iris", ABORT)
    assert target_writes(seldon) == ["POST", "DELETE"]  # one rollback: the new target removed
    assert seldon.control.get_deployment("production", "iris") is None
    [entry] = status["history"]
    assert (entry["outcome"], entry["reason"]) == ("RolledBack", "RolledBack")

    operator.kill()
    operator.restart()
    after, events = quiet(promotions, "iris")

    assert target_writes(seldon) == ["POST", "DELETE"]
    assert after["finishedAt"] == status["finishedAt"]
    assert after["history"] == status["history"]
    assert "NothingToAbort" not in events  # the request was used up, not seen again
    assert ABORT not in annotations_of(promotions, "iris")
