"""Injected faults: error bursts, error rates, 429, dropped connections, latency, scope."""

from __future__ import annotations

import time

import pytest
import requests

from tests.simulator.control import SimulatorControl
from tests.simulator.testing import ApiCaller, RunningSimulator, deployment_body

NS = "prod"
ALICE = "alice@example.com"


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    control.add_namespace(NS, users={ALICE: ["read", "write"]})
    return control


@pytest.fixture
def api(sim: RunningSimulator, ctl: SimulatorControl) -> ApiCaller:
    return ApiCaller(sim.base_url, sim.idp.token(ALICE))


def test_burst_fails_the_next_n_requests_with_503(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.fail_next(2, 503)
    statuses = [api.list(NS).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert ctl.faults() == []


def test_injected_error_uses_the_error_shape(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.fail_next(1, 500)
    response = api.list(NS)
    assert response.status_code == 500
    assert set(response.json()) == {"code", "message", "requestId"}


def test_error_with_retry_after_sends_the_header(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.inject_fault("error", status_codes=[503], count=1, retry_after_seconds=86400)
    failed = api.list(NS)
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "86400"


def test_error_without_retry_after_sends_no_header(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.fail_next(1, status=503)
    assert "Retry-After" not in api.list(NS).headers


def test_rate_limit_answers_429_with_retry_after(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.rate_limit(7, count=1)
    limited = api.list(NS)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert api.list(NS).status_code == 200


def test_dropped_connection_raises_a_connection_error(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.drop_connections(count=1)
    with pytest.raises(requests.ConnectionError):
        api.list(NS)
    assert api.list(NS).status_code == 200


def test_latency_delays_the_response(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.add_latency(300)
    started = time.monotonic()
    assert api.list(NS).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_error_rate_fails_about_that_share_with_the_listed_codes(
    ctl: SimulatorControl, api: ApiCaller
) -> None:
    ctl.error_rate(0.5, [503, 500], seed=7)
    statuses = [api.list(NS).status_code for _ in range(60)]
    failed = [s for s in statuses if s != 200]
    assert set(failed) <= {500, 503}
    assert 10 <= len(failed) <= 50


def test_fault_scope_limits_it_to_matching_requests(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.fail_next(5, 503, method="POST", path=r"/seldondeployments$")
    assert api.list(NS).status_code == 200
    assert api.create(NS, deployment_body("iris")).status_code == 503


def test_clear_faults_removes_every_rule(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.error_rate(1.0, [503])
    ctl.clear_faults()
    assert api.list(NS).status_code == 200


def test_faults_never_touch_the_control_api(ctl: SimulatorControl) -> None:
    ctl.drop_connections()
    ctl.fail_next(3)
    assert len(ctl.faults()) == 2


def test_request_log_marks_faulted_requests(ctl: SimulatorControl, api: ApiCaller) -> None:
    ctl.fail_next(1, 503)
    ctl.drop_connections(count=1, method="DELETE")
    api.list(NS)
    with pytest.raises(requests.ConnectionError):
        api.delete(NS, "iris")
    api.list(NS)
    log = [(e["method"], e["status"], e["fault"], e["user"]) for e in ctl.requests_log()]
    assert log == [
        ("GET", 503, "error", None),
        ("DELETE", None, "drop", None),
        ("GET", 200, None, ALICE),
    ]
