"""Session-wide fixtures: the local real stack, started once and only when needed.

Unit tests never touch these fixtures, so ``pytest -m "not e2e"`` starts nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.keycloak import Keycloak
from tests.harness.prometheus import Prometheus
from tests.harness.simulator import Simulator
from tests.harness.stack import Stack, start_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """kube-apiserver + etcd, Keycloak, the simulator and Prometheus, for the whole session."""
    running = start_stack()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def control_plane(stack: Stack) -> ControlPlane:
    """The real kube-apiserver (admin kubeconfig, pinned kubectl)."""
    return stack.control_plane


@pytest.fixture(scope="session")
def keycloak(stack: Stack) -> Keycloak:
    """The real Keycloak with ``deploy-realm``."""
    return stack.keycloak


@pytest.fixture
def simulator(stack: Stack) -> Simulator:
    """The Seldon Deploy simulator, reset to empty for each test."""
    stack.simulator.control.reset()
    return stack.simulator


@pytest.fixture
def prometheus(stack: Stack) -> Prometheus:
    """The real Prometheus scraping the simulator every second; started again first if
    an earlier test stopped it and did not bring it back."""
    if not stack.prometheus.process.running():
        stack.prometheus.start_server()
    return stack.prometheus


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a harness process or temporary directory outlived the session."""
    from tests.harness import processes

    leftovers = [p.name for p in processes.live_processes() if p.running()]
    leftovers += [str(d) for d in processes.live_temp_dirs() if d.exists()]
    if leftovers:
        print(f"\nharness left behind: {', '.join(leftovers)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
