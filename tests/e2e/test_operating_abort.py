"""Abort (issue 10), with the operator as its own process: before the first write a run
ends Aborted having written nothing; after it, the target is rolled back as a
failure would be (reason Aborted); a finished run is left alone, and says so."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.operating import (
    ABORT,
    ENDED,
    SPEC,
    annotate,
    annotations_of,
    quiet,
    target_writes,
    wait_until_removed,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

# Nobody approves it in these tests: it waits before the first write until aborted.
NEEDS_APPROVAL: dict[str, Any] = {**SPEC, "approval": {"required": True}}
OLD_IMAGE = "seldonio/sklearn-iris:1.2"


def _image(deployment: dict[str, Any]) -> str:
    spec = deployment["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    return str(spec["containers"][0]["image"])


def _assert_aborted_before_writing(seldon: Simulator, promotions: Promotions) -> None:
    status = promotions.wait_for_phase("iris", ENDED, timeout=15)
    assert status["phase"] == "Aborted", status
    assert status["outcome"]["reason"] == "Aborted"
    ready = promotions.ready("iris")
    assert (ready["status"], ready["reason"]) == ("False", "Aborted")
    [entry] = status["history"]
    assert (entry["outcome"], entry["reason"]) == ("Aborted", "Aborted")
    wait_until_removed(promotions, "iris", ABORT)
    _, events = quiet(promotions, "iris", 1.0)
    assert events[-1] == "Aborted"
    assert target_writes(seldon) == []
    assert seldon.control.get_deployment("production", "iris") is None


def test_abort_while_awaiting_approval_ends_aborted_without_a_write(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", NEEDS_APPROVAL)
    promotions.wait_for_phase("iris", {"AwaitingApproval"}, timeout=20)

    annotate(promotions, "iris", ABORT, "requested")

    _assert_aborted_before_writing(seldon, promotions)


def test_abort_of_a_suspended_run_ends_aborted_without_a_write(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", {**SPEC, "suspend": True})
    promotions.wait_for_phase("iris", {"Suspended"}, timeout=20)

    annotate(promotions, "iris", ABORT, "requested")

    _assert_aborted_before_writing(seldon, promotions)


def test_abort_after_the_write_restores_the_previous_target(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.seed_deployment("production", deployment_body("iris", image=OLD_IMAGE))
    seldon.control.set_delays(rollout_seconds=60.0)  # the promoted spec rolls out slowly
    promotions.apply("iris", SPEC)
    promotions.wait_for_phase("iris", {"Verifying"}, timeout=20)
    assert target_writes(seldon) == ["PUT"]

    annotate(promotions, "iris", ABORT, "requested")

    status = promotions.wait_for_phase("iris", ENDED, timeout=15)
    assert status["phase"] == "RolledBack", status
    assert status["outcome"]["reason"] == "Aborted"
    assert "aborted on request after production/iris was written" in status["outcome"]["message"]
    assert promotions.ready("iris")["reason"] == "RolledBack"
    assert target_writes(seldon) == ["PUT", "PUT"]  # the promotion, then the restore
    target = seldon.control.get_deployment("production", "iris")
    assert target is not None and _image(target) == OLD_IMAGE
    assert "deploy.mlops.dev/promotion" not in (target["metadata"].get("annotations") or {})
    wait_until_removed(promotions, "iris", ABORT)


def test_abort_after_the_write_removes_a_target_that_did_not_exist(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.set_delays(rollout_seconds=60.0)
    promotions.apply("iris", SPEC)
    promotions.wait_for_phase("iris", {"Verifying"}, timeout=20)

    annotate(promotions, "iris", ABORT, "requested")

    status = promotions.wait_for_phase("iris", ENDED, timeout=15)
    assert (status["phase"], status["outcome"]["reason"]) == ("RolledBack", "Aborted")
    assert target_writes(seldon) == ["POST", "DELETE"]
    assert seldon.control.get_deployment("production", "iris") is None
    wait_until_removed(promotions, "iris", ABORT)


def test_abort_of_a_finished_run_says_nothing_to_abort_and_changes_nothing(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("iris", SPEC)
    done = promotions.wait_for_phase("iris", ENDED, timeout=20)
    assert done["phase"] == "Succeeded"
    before = target_writes(seldon)

    annotate(promotions, "iris", ABORT, "requested")

    wait_until_removed(promotions, "iris", ABORT)
    status, events = quiet(promotions, "iris", 1.0)
    assert events.count("NothingToAbort") == 1, events
    [event] = [e for e in promotions.events("iris") if e["reason"] == "NothingToAbort"]
    assert "the run already ended (Succeeded)" in event["message"]
    assert target_writes(seldon) == before
    assert status == done
    assert ABORT not in annotations_of(promotions, "iris")
