"""Seldon Deploy over HTTPS: the operator trusts a private CA when told to, refuses an
untrusted certificate before anything is sent, and only skips verification (with a
warning) when verification is switched off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator, prepare_seldon
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.certs import CertificateAuthority
from tests.harness.processes import make_temp_dir, remove_temp_dir
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator, start_simulator
from tests.harness.stack import Stack

pytestmark = pytest.mark.e2e

# Long enough for a run over HTTPS on a busy 2-core machine, short enough for the
# untrusted-certificate test to give up quickly.
PROMOTE_OVER_TLS: dict[str, Any] = {**PROMOTE_IRIS, "verification": {"timeout": "60s"}}


@pytest.fixture(scope="module")
def https_simulator(stack: Stack) -> Iterator[Simulator]:
    """A second simulator serving HTTPS with a certificate of a private CA (for
    127.0.0.1 and localhost), trusting the session Keycloak's tokens."""
    directory = make_temp_dir("tls")
    authority = CertificateAuthority(directory, "seldon-deploy-test")
    serving = authority.issue_serving("seldon-deploy", ["127.0.0.1", "localhost"])
    simulator = start_simulator(stack.keycloak.issuer, tls=serving, ca_file=authority.cert_path)
    try:
        yield simulator
    finally:
        simulator.stop()
        remove_temp_dir(directory)


@pytest.fixture
def tls_seldon(https_simulator: Simulator) -> Simulator:
    """The HTTPS simulator, reset and prepared like ``seldon``."""
    https_simulator.control.reset()
    return prepare_seldon(https_simulator)


def _ca_file(simulator: Simulator) -> str:
    assert simulator.ca_file is not None
    return str(simulator.ca_file)


def test_promotion_over_https_succeeds_with_the_ca_file(
    tls_seldon: Simulator, operator_factory: StartOperator, promotions: Promotions
) -> None:
    operator_factory(
        extra_env={
            "SELDON_DEPLOY_URL": tls_seldon.api_url,
            "SELDON_DEPLOY_CA_FILE": _ca_file(tls_seldon),
        }
    )
    promotions.apply("iris", PROMOTE_OVER_TLS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "Succeeded"
    assert tls_seldon.control.get_deployment("production", "iris") is not None
    assert writes(tls_seldon, "production") == [
        ("POST", "/seldon-deploy/api/v1alpha1/namespaces/production/seldondeployments")
    ]


def test_untrusted_certificate_is_retried_as_unavailable_then_fails_without_a_request(
    tls_seldon: Simulator, operator_factory: StartOperator, promotions: Promotions
) -> None:
    operator_factory(extra_env={"SELDON_DEPLOY_URL": tls_seldon.api_url})  # system trust only
    promotions.apply("iris", {**PROMOTE_IRIS, "verification": {"timeout": "8s"}})

    def retrying_unavailable(body: dict[str, Any]) -> bool:
        status = body.get("status") or {}
        conditions = status.get("conditions") or []
        return status.get("phase") not in FINISHED_PHASES and any(
            c["type"] == "Ready" and c["reason"] == "SeldonDeployUnavailable" for c in conditions
        )

    retrying = promotions.wait_for("iris", retrying_unavailable, "SeldonDeployUnavailable")
    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    error = retrying["status"]["lastError"]
    assert error["reason"] == "SeldonDeployUnavailable"
    assert "TLS error" in error["message"]
    assert "certificate verify failed" in error["message"]
    assert status["phase"] == "Failed"
    assert promotions.ready("iris")["reason"] == "SeldonDeployUnavailable"
    assert "certificate verify failed" in promotions.ready("iris")["message"]
    # The handshake fails before any HTTP request, so the simulator saw nothing at all.
    assert writes(tls_seldon) == []
    assert tls_seldon.control.requests_log() == []


def test_verification_off_promotes_without_the_ca_and_warns(
    tls_seldon: Simulator, operator_factory: StartOperator, promotions: Promotions
) -> None:
    operator = operator_factory(
        extra_env={"SELDON_DEPLOY_URL": tls_seldon.api_url, "SELDON_DEPLOY_VERIFY_TLS": "false"}
    )
    promotions.apply("iris", PROMOTE_OVER_TLS)

    status = promotions.wait_for_phase("iris", FINISHED_PHASES)

    assert status["phase"] == "Succeeded"
    assert tls_seldon.control.get_deployment("production", "iris") is not None
    assert "TLS verification is off for Seldon Deploy" in operator.log()
