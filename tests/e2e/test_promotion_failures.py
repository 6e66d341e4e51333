"""Failures reach status with a reason a person can act on, and the operator recovers
or rolls back as docs/contract.md promises."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.keycloak import Keycloak
from tests.harness.operator_process import (
    OperatorProcess,
    password_credentials,
    write_credentials,
)
from tests.harness.promotions import FINISHED_PHASES, Promotions, ready_reason_is
from tests.harness.seldon_log import creates, writes
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

OLD_IMAGE = "seldonio/sklearn-iris:1.2"


def test_missing_source_reports_source_not_found_then_succeeds_when_it_appears(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    promotions.apply("late", {**PROMOTE_IRIS, "source": {"namespace": "staging", "name": "late"}})

    promotions.wait_for("late", ready_reason_is("SourceNotFound"), "Ready reason SourceNotFound")
    assert promotions.status("late")["lastError"]["httpStatus"] == 404
    seldon.control.seed_deployment("staging", deployment_body("late"))

    assert promotions.wait_for_phase("late", FINISHED_PHASES)["phase"] == "Succeeded"
    assert seldon.control.get_deployment("production", "late") is not None


def test_failed_target_is_rolled_back_to_its_previous_spec(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.seed_deployment("production", deployment_body("iris", image=OLD_IMAGE))
    # Only the promoted spec fails; the old one still rolls out.
    seldon.control.mark_failing(
        "production", "iris", description="ImagePullBackOff", spec_contains="sklearn-iris:1.4"
    )
    promotions.apply("iris", PROMOTE_IRIS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "RolledBack"
    assert status["outcome"]["reason"] == "TargetFailed"
    assert "ImagePullBackOff" in status["outcome"]["message"]
    ready = promotions.ready("iris")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack")
    target = seldon.control.get_deployment("production", "iris")
    assert target is not None
    image = target["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["image"]
    assert image == OLD_IMAGE
    assert "deploy.mlops.dev/promotion" not in (target["metadata"].get("annotations") or {})


def test_failed_new_target_is_removed(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.mark_failing("production", "iris", description="CrashLoopBackOff")
    promotions.apply("iris", PROMOTE_IRIS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "RolledBack"
    assert status["previous"]["existed"] is False
    assert seldon.control.get_deployment("production", "iris") is None
    assert [m for m, _ in writes(seldon, "production")] == ["POST", "DELETE"]


def test_verification_timeout_rolls_back(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.set_delays(rollout_seconds=60.0)
    promotions.apply("iris", {**PROMOTE_IRIS, "verification": {"timeout": "4s"}})

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "RolledBack"
    assert status["outcome"]["reason"] == "VerificationTimedOut"
    assert seldon.control.get_deployment("production", "iris") is None


def test_rollback_off_leaves_the_failed_target_and_fails(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.mark_failing("production", "iris")
    promotions.apply("iris", {**PROMOTE_IRIS, "rollback": {"onFailure": False}})

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "Failed"
    assert promotions.ready("iris")["reason"] == "TargetFailed"
    assert seldon.control.get_deployment("production", "iris") is not None


def test_target_namespace_without_write_permission_fails_forbidden(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.add_namespace("production", groups={"data-scientists": ["read"]})
    promotions.apply("iris", PROMOTE_IRIS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "Failed"
    assert promotions.ready("iris")["reason"] == "Forbidden"
    assert status["outcome"]["httpStatus"] == 403


def test_wrong_password_reports_authentication_failed_until_the_secret_is_fixed(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
) -> None:
    operator = operator_factory(password_credentials(keycloak, password="not-the-password"))
    promotions.apply("iris", PROMOTE_IRIS)

    promotions.wait_for("iris", ready_reason_is("AuthenticationFailed"), "AuthenticationFailed")
    assert seldon.control.requests_log() == []  # no token, no call
    write_credentials(operator.credentials_dir, password_credentials(keycloak))

    assert promotions.wait_for_phase("iris", FINISHED_PHASES)["phase"] == "Succeeded"
    assert operator.process.running()  # picked up without a restart


def test_operator_killed_while_verifying_finishes_after_restart_with_one_create(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    seldon.control.set_delays(rollout_seconds=8.0)
    promotions.apply("iris", PROMOTE_IRIS)
    promotions.wait_for_phase("iris", {"Verifying"})

    operator.kill()
    operator.restart()

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)
    assert status["phase"] == "Succeeded"
    assert creates(seldon, "production") == 1
