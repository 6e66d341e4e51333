"""The simulator as its own process: the ready line, default JWKS address, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.simulator.control import SimulatorControl
from tests.simulator.testing import ApiCaller, RunningSimulator

RUN_SCRIPT = Path(__file__).resolve().parents[1] / "simulator" / "run.py"
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def idp_host() -> Iterator[RunningSimulator]:
    # Only its identity provider is used: it serves the JWKS at Keycloak's path.
    with RunningSimulator() as running:
        yield running


@pytest.fixture
def process(idp_host: RunningSimulator) -> Iterator[tuple[subprocess.Popen[str], str]]:
    command = [sys.executable, str(RUN_SCRIPT), "--port", "0", "--issuer", idp_host.idp.issuer]
    # The repository root as working directory is the case `python -m` cannot handle.
    proc = subprocess.Popen(
        command,
        cwd=RUN_SCRIPT.parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    yield proc, line
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_process_prints_the_ready_line(process: tuple[subprocess.Popen[str], str]) -> None:
    _, line = process
    assert line.startswith("SIMULATOR READY http://127.0.0.1:")
    assert int(line.rsplit(":", 1)[1]) > 0


def test_process_fetches_keys_from_the_keycloak_path_under_the_issuer(
    idp_host: RunningSimulator, process: tuple[subprocess.Popen[str], str]
) -> None:
    base_url = process[1].split()[-1]
    control = SimulatorControl(base_url)
    control.add_namespace("staging", users={ALICE: ["read"]})
    api = ApiCaller(base_url, idp_host.idp.token(ALICE))
    assert api.list("staging").status_code == 200
    control.close()


def test_process_stops_cleanly_on_sigterm(process: tuple[subprocess.Popen[str], str]) -> None:
    proc, _ = process
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
