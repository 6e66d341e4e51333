"""No password, client secret or token reaches the operator's output, Events or status."""

from __future__ import annotations

import json

import pytest
import requests

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.controlplane import ControlPlane
from tests.harness.keycloak import Keycloak
from tests.harness.operator_process import (
    client_credentials,
    password_credentials,
    write_credentials,
)
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.secrets import assert_no_secrets
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

WRONG_PASSWORD = "wrong-password-0b7c1e"


def test_no_secret_or_token_in_output_events_or_status(
    seldon: Simulator,
    keycloak: Keycloak,
    operator_factory: StartOperator,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    # A wrong password first (errors are where secrets leak), then the right one.
    with_password = operator_factory(password_credentials(keycloak, password=WRONG_PASSWORD))
    promotions.apply("by-password", PROMOTE_IRIS)
    promotions.wait_for(
        "by-password",
        lambda body: "AuthenticationFailed" in json.dumps(body.get("status")),
        "AuthenticationFailed",
    )
    write_credentials(with_password.credentials_dir, password_credentials(keycloak))
    promotions.wait_for_phase("by-password", FINISHED_PHASES)
    with_password.stop()

    with_secret = operator_factory(client_credentials(keycloak))
    promotions.apply(
        "by-client", {**PROMOTE_IRIS, "target": {"namespace": "production", "name": "iris-2"}}
    )
    promotions.wait_for_phase("by-client", FINISHED_PHASES)

    captured = {
        "operator output": with_password.log() + with_secret.log(),
        "events": control_plane.kubectl(
            "get", "events", "-n", promotions.namespace, "-o", "json"
        ).stdout,
        "status": control_plane.kubectl(
            "get", "mp", "-n", promotions.namespace, "-o", "json"
        ).stdout,
        "metrics": requests.get(with_secret.metrics_url, timeout=10).text,
    }
    assert "by-password" in captured["status"] and "Succeeded" in captured["status"]
    assert "AuthenticationFailed" in captured["events"]  # the scan saw the failure path
    assert_no_secrets(captured, {"the wrong password": WRONG_PASSWORD})
