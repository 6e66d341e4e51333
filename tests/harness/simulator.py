"""The Seldon Deploy simulator (``tests.simulator``) as its own process."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tests.harness.certs import KeyPair
from tests.harness.ports import free_port
from tests.harness.processes import ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say
from tests.simulator.control import SimulatorControl

API_PREFIX = "/seldon-deploy/api/v1alpha1"
READY_LINE = "SIMULATOR READY"
_START_TIMEOUT = 30.0


@dataclass(eq=False)
class Simulator:
    """A running simulator: its API base URL and its control client."""

    url: str
    workdir: Path
    process: ManagedProcess
    ca_file: Path | None = None

    @property
    def api_url(self) -> str:
        """The Seldon Deploy API base URL (what the SDK calls ``host``)."""
        return f"{self.url}{API_PREFIX}"

    @cached_property
    def control(self) -> SimulatorControl:
        """The test-only control API client."""
        verify: bool | str = str(self.ca_file) if self.ca_file is not None else True
        return SimulatorControl(self.url, verify=verify)

    def ready(self) -> bool:
        """Whether the process has printed its ready line."""
        return READY_LINE in self.process.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the simulator and remove its log directory."""
        self.process.stop()
        remove_temp_dir(self.workdir)


def start_simulator(
    issuer: str, *, tls: KeyPair | None = None, ca_file: Path | None = None
) -> Simulator:
    """Start the simulator trusting tokens of ``issuer``; return once it listens.

    With ``tls`` it serves HTTPS on 127.0.0.1 with that certificate; ``ca_file``
    is the CA its control client trusts (the system's trust store if None).
    """
    workdir = make_temp_dir("simulator")
    port = free_port()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    tls_args = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)] if tls else []
    say(f"starting the Seldon Deploy simulator on {url}")
    process = ManagedProcess(
        "seldon-deploy-simulator",
        # -P: never put the working directory first on sys.path, where the
        # project's `operator/` directory would shadow the standard library.
        [sys.executable, "-P", "-u", "-m", "tests.simulator"]
        + ["--host", "127.0.0.1", "--port", str(port), "--issuer", issuer]
        + tls_args,
        workdir / "simulator.log",
        cwd=workdir,
    )
    simulator = Simulator(url, workdir, process, ca_file)
    process.wait_until(simulator.ready, _START_TIMEOUT, "it printed its ready line")
    return simulator
