"""The identity provider goes away, tokens expire mid-run, the Secret is rotated."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.keycloak import (
    DATA_SCIENTIST,
    OPERATOR_SERVICE_ACCOUNT,
    SHORT_LIVED_CLIENT_ID,
    Keycloak,
)
from tests.harness.operator_process import (
    client_credentials,
    password_credentials,
    write_credentials,
)
from tests.harness.promotions import FINISHED_PHASES, Promotions, ready_reason_is
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e


def _short_lived(keycloak: Keycloak, password: str | None = None) -> dict[str, str]:
    return {**password_credentials(keycloak, password), "client-id": SHORT_LIVED_CLIENT_ID}


def test_tokens_expiring_mid_run_are_refreshed(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
) -> None:
    seldon.control.set_delays(rollout_seconds=14.0)  # a run longer than three 5 s tokens
    operator = operator_factory(_short_lived(keycloak))
    promotions.apply("iris", PROMOTE_IRIS)

    assert promotions.wait_for_phase("iris", FINISHED_PHASES)["phase"] == "Succeeded"
    assert operator.log().count("fetched id_token") >= 3
    assert not [e for e in seldon.control.requests_log() if e["status"] == 401]


def test_rotation_to_a_wrong_password_and_back_is_reported_only_while_wrong(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
) -> None:
    seldon.control.set_delays(rollout_seconds=60.0)
    operator = operator_factory(_short_lived(keycloak))
    promotions.apply("iris", {**PROMOTE_IRIS, "verification": {"timeout": "5m"}})
    promotions.wait_for_phase("iris", {"Verifying"})

    write_credentials(operator.credentials_dir, _short_lived(keycloak, "rotated-wrong"))
    promotions.wait_for("iris", ready_reason_is("AuthenticationFailed"), "AuthenticationFailed")
    write_credentials(operator.credentials_dir, _short_lived(keycloak))
    promotions.wait_for("iris", ready_reason_is("WaitingForAvailable"), "the run resumed")
    seldon.control.set_delays(rollout_seconds=1.0, namespace="production", name="iris")

    assert promotions.status("iris")["phase"] == "Verifying"  # never failed meanwhile
    assert operator.process.running()


def test_keycloak_down_and_back_resumes_runs_without_restart(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
) -> None:
    operator = operator_factory(password_credentials(keycloak))
    keycloak.process.stop(grace=20)
    try:
        promotions.apply("iris", PROMOTE_IRIS)
        promotions.wait_for(
            "iris", ready_reason_is("IdentityProviderUnavailable"), "IdentityProviderUnavailable"
        )
    finally:
        keycloak.process.restart()
        keycloak.wait_ready()

    assert promotions.wait_for_phase("iris", FINISHED_PHASES, timeout=180)["phase"] == "Succeeded"
    assert operator.process.running()


def test_rotation_to_new_valid_credentials_is_used_without_restart(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
) -> None:
    seldon.control.set_delays(rollout_seconds=8.0)
    operator = operator_factory(_short_lived(keycloak))
    promotions.apply("iris", PROMOTE_IRIS)
    promotions.wait_for_phase("iris", {"Verifying"})

    # The Secret now holds another, valid identity: the operator's service account.
    write_credentials(operator.credentials_dir, client_credentials(keycloak))

    assert promotions.wait_for_phase("iris", FINISHED_PHASES)["phase"] == "Succeeded"
    users = [e["user"] for e in seldon.control.requests_log() if e["user"]]
    assert users[0] == DATA_SCIENTIST.username
    assert users[-1] == OPERATOR_SERVICE_ACCOUNT
    assert operator.process.running()
