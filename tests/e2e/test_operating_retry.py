"""Retry (issue 10): a run that failed is run again on request, once per token, with
the cause fixed; status.history keeps both runs. The operator runs as its own
process on the real stack."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.operating import (
    ENDED,
    RETRY,
    SPEC,
    annotate,
    annotations_of,
    quiet,
    status_is,
    target_writes,
    token,
    unannotate,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e


def _failed_run(seldon: Simulator, promotions: Promotions) -> dict[str, Any]:
    """A first run whose target fails its rollout: created, then removed."""
    seldon.control.mark_failing("production", "iris", description="ImagePullBackOff")
    promotions.apply("iris", SPEC)
    status = promotions.wait_for_phase("iris", ENDED, timeout=30)
    assert (status["phase"], status["outcome"]["reason"]) == ("RolledBack", "TargetFailed")
    assert target_writes(seldon) == ["POST", "DELETE"]
    return status


def test_retry_after_the_cause_is_fixed_runs_once_more_and_succeeds(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    first = _failed_run(seldon, promotions)
    seldon.control.unmark_failing("production", "iris")
    asked = token()

    annotate(promotions, "iris", RETRY, asked)

    body = promotions.wait_for("iris", status_is(retry=1), "status.retry 1", timeout=15)
    status = promotions.wait_for_phase("iris", ENDED, timeout=30)
    assert status["phase"] == "Succeeded", status
    assert (status["retry"], status["lastRetry"]) == (1, asked)
    assert status["observedGeneration"] == body["metadata"]["generation"] == 1
    assert status["startedAt"] >= first["finishedAt"]
    assert target_writes(seldon) == ["POST", "DELETE", "POST"]
    target = seldon.control.get_deployment("production", "iris")
    assert target is not None and target["status"]["state"] == "Available"
    # Newest first: the retry that succeeded, then the run that was rolled back.
    history = status["history"]
    assert [(h["generation"], h["retry"], h["outcome"], h["reason"]) for h in history] == [
        (1, 1, "Succeeded", "Succeeded"),
        (1, 0, "RolledBack", "RolledBack"),
    ]
    assert history[0]["targetGeneration"] == status["appliedGeneration"]
    assert "targetGeneration" not in history[1]
    assert history[1]["finishedAt"] <= history[0]["startedAt"]
    # The token stays: it is how the operator knows this request was handled.
    assert annotations_of(promotions, "iris")[RETRY] == asked


def test_the_same_retry_token_again_starts_nothing(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    _failed_run(seldon, promotions)
    seldon.control.unmark_failing("production", "iris")
    asked = token()
    annotate(promotions, "iris", RETRY, asked)
    promotions.wait_for("iris", status_is(retry=1, phase="Succeeded"), "retry 1 Succeeded", 30)
    done = promotions.status("iris")
    before = target_writes(seldon)

    # The same token, taken away and set again (a re-applied manifest, a re-run CI
    # step), and an unrelated change that wakes the operator.
    unannotate(promotions, "iris", RETRY)
    annotate(promotions, "iris", RETRY, asked)
    promotions.kube.kubectl("label", "mp", "iris", "-n", promotions.namespace, "touched=yes")
    status, _ = quiet(promotions, "iris")

    assert target_writes(seldon) == before
    assert (status["retry"], status["lastRetry"], status["phase"]) == (1, asked, "Succeeded")
    assert status["startedAt"] == done["startedAt"]
    assert status["history"] == done["history"]


def test_a_retry_while_the_run_goes_on_is_ignored_once_and_never_acted_on_later(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.set_delays(rollout_seconds=4.0)  # the run sits in Verifying a while
    promotions.apply("iris", SPEC)
    promotions.wait_for_phase("iris", {"Verifying"}, timeout=20)
    asked = token()

    annotate(promotions, "iris", RETRY, asked)

    status = promotions.wait_for_phase("iris", ENDED, timeout=20)
    assert status["phase"] == "Succeeded"
    status, events = quiet(promotions, "iris")
    assert events.count("RetryIgnored") == 1, events
    assert (status["retry"], status["lastRetry"]) == (0, asked)  # handled: refused
    assert [h["retry"] for h in status["history"]] == [0]
    assert target_writes(seldon) == ["POST"]
