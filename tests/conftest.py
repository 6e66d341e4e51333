"""Session-wide fixtures: the local real stack, started once and only when needed.

Unit tests never touch these fixtures, so ``pytest -m "not e2e"`` starts nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
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


# Seconds the first test needing a late build may take, its wait for the build included
# (Argo CD took 732 s on 2 busy cores); every other test keeps pyproject's timeout.
LATE_BUILD_TIMEOUT = 3600

# The background process of tests/harness/late_builds.py, while one runs.
_late_builder: subprocess.Popen[bytes] | None = None


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the files that need a late build last, in the order they are built; the first
    test of each may wait for its build as long as a cold build takes."""
    from tests.harness.late_builds import ORDER

    def rank(item: pytest.Item) -> int:
        marker = item.get_closest_marker("late_build")
        return -1 if marker is None else ORDER[marker.args[0]]

    items.sort(key=rank)  # stable: the rest keeps pytest's order
    first: set[str] = set()
    for item in items:
        marker = item.get_closest_marker("late_build")
        if marker is not None and marker.args[0] not in first:
            first.add(marker.args[0])
            item.add_marker(pytest.mark.timeout(LATE_BUILD_TIMEOUT))


def pytest_collection_finish(session: pytest.Session) -> None:
    """If a selected test needs a late build, check and build them all in the background
    (at once when everything is cached) while the other tests run."""
    global _late_builder
    if session.config.option.collectonly:
        return
    from tests.harness.late_builds import ORDER, start_in_background

    markers = (item.get_closest_marker("late_build") for item in session.items)
    needed = sorted({marker.args[0] for marker in markers if marker}, key=ORDER.__getitem__)
    if not needed:
        return
    from tests.harness.cache import cache_root

    log = cache_root() / "late-builds.log"
    _late_builder = start_in_background(needed, log)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"{', '.join(needed)}: checked, and built where missing, beside the first "
            f"tests (log: {log})"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the background process built, and how long each build took."""
    if _late_builder is None:
        return
    from tests.harness.cache import cache_root

    log = cache_root() / "late-builds.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    done = [line for line in lines if "still " not in line]
    if done:
        terminalreporter.write_sep("-", "built beside the tests")
        for line in done:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a harness process or temporary directory outlived the session."""
    from tests.harness import processes

    if _late_builder is not None and _late_builder.poll() is None:
        # Only when the tests that needed it were not run to the end (-x, Ctrl-C).
        os.killpg(_late_builder.pid, signal.SIGTERM)
        _late_builder.wait(timeout=30)

    leftovers = [p.name for p in processes.live_processes() if p.running()]
    leftovers += [str(d) for d in processes.live_temp_dirs() if d.exists()]
    if leftovers:
        print(f"\nharness left behind: {', '.join(leftovers)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
