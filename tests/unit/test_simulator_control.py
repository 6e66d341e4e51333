"""The control API and its client: what tests configure, and how refusals look."""

from __future__ import annotations

import pytest

from tests.simulator.control import ControlError, SimulatorControl
from tests.simulator.testing import ApiCaller, RunningSimulator, deployment_body

ALICE = "alice@example.com"


@pytest.fixture
def ctl(fresh_control: SimulatorControl) -> SimulatorControl:
    control = fresh_control
    return control


def test_add_namespace_sets_the_labels_seldon_deploy_reads(ctl: SimulatorControl) -> None:
    ctl.add_namespace("ns", gitops=True, users={ALICE: ["read"]}, groups={"/ops": ["write"]})
    (namespace,) = ctl.namespaces()
    assert namespace["labels"] == {"seldon.restricted": "false", "seldon.gitops": "enabled"}
    assert namespace["users"] == {ALICE: ["read"]}
    assert namespace["groups"] == {"/ops": ["write"]}


def test_unknown_permission_is_refused(ctl: SimulatorControl) -> None:
    with pytest.raises(ControlError, match="400"):
        ctl.add_namespace("ns", users={ALICE: ["admin"]})


def test_get_deployment_returns_none_when_missing(ctl: SimulatorControl) -> None:
    ctl.add_namespace("ns")
    assert ctl.get_deployment("ns", "ghost") is None


def test_seed_into_unknown_namespace_is_refused(ctl: SimulatorControl) -> None:
    with pytest.raises(ControlError, match="404"):
        ctl.seed_deployment("nowhere", deployment_body("iris"))


def test_remove_namespace_drops_its_deployments(ctl: SimulatorControl) -> None:
    ctl.add_namespace("ns")
    ctl.seed_deployment("ns", deployment_body("iris"))
    ctl.remove_namespace("ns")
    ctl.add_namespace("ns")
    assert ctl.get_deployment("ns", "iris") is None


def test_bad_fault_spec_is_refused(ctl: SimulatorControl) -> None:
    with pytest.raises(ControlError, match="400"):
        ctl.inject_fault("error", status_codes=[200])


def test_remove_fault_removes_only_that_rule(ctl: SimulatorControl) -> None:
    first = ctl.add_latency(10)
    ctl.drop_connections(path="never-matches")
    ctl.remove_fault(first)
    assert [f["kind"] for f in ctl.faults()] == ["drop"]


def test_set_delays_reports_global_and_per_deployment_values(ctl: SimulatorControl) -> None:
    ctl.set_delays(rollout_seconds=0.5, gitops_sync_seconds=1.5)
    delays = ctl.set_delays(rollout_seconds=9, namespace="ns", name="iris")
    assert (delays["rollout_seconds"], delays["gitops_sync_seconds"]) == (0.5, 1.5)
    assert delays["overrides"] == [
        {
            "namespace": "ns",
            "name": "iris",
            "rollout_seconds": 9.0,
            "gitops_sync_seconds": 1.5,
            "traffic_seconds": 0.0,
        }
    ]


def test_reset_forgets_everything(sim: RunningSimulator, ctl: SimulatorControl) -> None:
    ctl.add_namespace("ns", gitops=True, users={ALICE: ["read", "write"]})
    api = ApiCaller(sim.base_url, sim.idp.token(ALICE))
    api.create("ns", deployment_body("iris"))
    ctl.fail_next(5)
    ctl.reset()
    assert (ctl.namespaces(), ctl.faults(), ctl.commits(), ctl.requests_log()) == ([], [], [], [])
