"""The token endpoint answers 200 with something that is not a token response: the run
reports a clear reason, never a traceback, and recovers once the credentials point
at a real identity provider again."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.keycloak import Keycloak
from tests.harness.operator_process import password_credentials, write_credentials
from tests.harness.promotions import FINISHED_PHASES, Promotions, ready_reason_is
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

# A path under the simulator's API base: its fault injector answers there before any
# routing, so it stands in for a broken token endpoint.
BROKEN_TOKEN_PATH = "/namespaces/idp/token"


@pytest.mark.parametrize("body", ["not-json", "wrong-content-type", "huge", "missing-fields"])
def test_malformed_token_responses_are_reported_then_recovered(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
    body: str,
) -> None:
    seldon.control.inject_fault("malformed", body=body, method="POST", path=BROKEN_TOKEN_PATH)
    broken = {
        **password_credentials(keycloak),
        "token-url": f"{seldon.api_url}{BROKEN_TOKEN_PATH}",
    }
    del broken["oidc-server"]
    operator = operator_factory(broken)
    promotions.apply("iris", PROMOTE_IRIS)

    promotions.wait_for(
        "iris", ready_reason_is("IdentityProviderUnavailable"), "IdentityProviderUnavailable"
    )
    message = promotions.status("iris")["lastError"]["message"]
    assert "token" in message.lower() and "Traceback" not in message

    write_credentials(operator.credentials_dir, password_credentials(keycloak))
    assert promotions.wait_for_phase("iris", FINISHED_PHASES)["phase"] == "Succeeded"
    assert "Traceback" not in operator.log()
