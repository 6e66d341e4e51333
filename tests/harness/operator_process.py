"""The operator as its own process, as it runs in a cluster, with a mounted-Secret-like
credentials directory."""

from __future__ import annotations

import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.harness.controlplane import ControlPlane
from tests.harness.keycloak import (
    DATA_SCIENTIST,
    OPERATOR_CLIENT_ID,
    OPERATOR_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    Keycloak,
)
from tests.harness.ports import free_port
from tests.harness.processes import ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say
from tests.harness.prometheus import Prometheus
from tests.harness.simulator import Simulator

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
_START_TIMEOUT = 60.0


def write_credentials(directory: Path, files: Mapping[str, str]) -> Path:
    """Write (or rotate) a credentials directory the way the kubelet mounts a Secret.

    The keys go into a fresh ``..<version>`` directory and the ``..data`` symlink
    is swapped atomically, so a reader never sees half a rotation.
    """
    directory.mkdir(parents=True, exist_ok=True)
    version = directory / f"..{time.time_ns()}"
    version.mkdir()
    for key, value in files.items():
        (version / key).write_text(value)
    staged = directory / "..data_tmp"
    staged.unlink(missing_ok=True)
    staged.symlink_to(version.name)
    staged.replace(directory / "..data")
    for entry in directory.iterdir():
        if entry.name.startswith(".."):
            if entry.is_dir() and not entry.is_symlink() and entry != version:
                shutil.rmtree(entry)
        elif entry.name not in files:
            entry.unlink()
    for key in files:
        link = directory / key
        if not link.is_symlink():
            link.symlink_to(f"..data/{key}")
    return directory


def password_credentials(keycloak: Keycloak, password: str | None = None) -> dict[str, str]:
    """Secret keys for the password grant as the seed's data scientist."""
    return {
        "oidc-server": keycloak.issuer,
        "client-id": PUBLIC_CLIENT_ID,
        "grant-type": "password",
        "username": DATA_SCIENTIST.username,
        "password": password if password is not None else DATA_SCIENTIST.password,
    }


def client_credentials(keycloak: Keycloak) -> dict[str, str]:
    """Secret keys for the client-credentials grant as the operator's service account."""
    return {
        "oidc-server": keycloak.issuer,
        "client-id": OPERATOR_CLIENT_ID,
        "client-secret": OPERATOR_CLIENT_SECRET,
        "grant-type": "client_credentials",
    }


@dataclass(eq=False)
class OperatorProcess:
    """A running operator and the files it reads."""

    workdir: Path
    credentials_dir: Path
    liveness_url: str
    metrics_url: str
    env: dict[str, str]
    argv: list[str]
    process: ManagedProcess

    def healthy(self) -> bool:
        """Whether the liveness endpoint answers 200."""
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        """Everything the operator printed so far (all its lives)."""
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.workdir.glob("operator*.log"))
        )

    def metrics_text(self) -> str:
        """Its Prometheus metrics page (``--metrics-port``), as text."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        """SIGKILL, as a node failure or OOM kill would."""
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP: frozen as by a long GC pause or a frozen node; its sockets stay open."""
        self.process.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`: it wakes up where it stopped."""
        self.process.popen.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Start a new operator process with the same settings."""
        if self.process.running():
            self.process.stop()
        lives = len(list(self.workdir.glob("operator*.log")))
        self.process = _launch(self.workdir, self.argv, self.env, f"operator-{lives + 1}.log")
        self.process.wait_until(self.healthy, _START_TIMEOUT, "its liveness endpoint answered")

    def stop(self) -> None:
        """Stop it (SIGTERM: Kopf finishes cleanly) and remove its files."""
        self.process.stop()
        remove_temp_dir(self.workdir)


def install_crds(control_plane: ControlPlane) -> None:
    """Apply ``crds/`` (a kustomization) and wait until the API serves them."""
    control_plane.kubectl("apply", "-k", str(CRD_DIR))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/modelpromotions.deploy.mlops.dev",
        "crd/promotionpolicies.deploy.mlops.dev",
        "crd/promotionpaths.deploy.mlops.dev",
        # kubectl's default of 30 s was once too short beside a loaded machine's
        # other session set-up; establishing takes well under a second when idle.
        "--timeout=120s",
    )


def start_operator(
    control_plane: ControlPlane,
    simulator: Simulator,
    credentials: Mapping[str, str],
    *,
    kubeconfig: Path | None = None,
    namespaces: tuple[str, ...] = (),
    extra_env: Mapping[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    prometheus: Prometheus | None = None,
    entry: tuple[str, ...] = ("-m", "promotion_operator"),
    python: str = sys.executable,
) -> OperatorProcess:
    """Start ``promotion-operator`` against the harness; return once it is live.

    With ``prometheus`` (the stack's), the operator measures canary analyses there
    (``PROMETHEUS_URL``); ``extra_env`` still wins. ``entry`` is what the
    interpreter (``python``) runs (the benchmark's heap profile runs a wrapper under
    tracemalloc; its before/after runs another checkout's interpreter).
    """
    workdir = make_temp_dir("operator")
    credentials_dir = write_credentials(workdir / "credentials", credentials)
    port, metrics_port = free_port(), free_port()
    liveness = f"http://127.0.0.1:{port}/healthz"
    env = {
        "KUBECONFIG": str(kubeconfig or control_plane.kubeconfig),
        "SELDON_DEPLOY_URL": simulator.api_url,
        "SELDON_DEPLOY_CREDENTIALS_DIR": str(credentials_dir),
        "PYTHONSAFEPATH": "1",
        **({"PROMETHEUS_URL": prometheus.url} if prometheus is not None else {}),
        **(extra_env or {}),
    }
    argv = [
        python,
        "-P",
        *entry,
        *([f"--namespace={ns}" for ns in namespaces] or ["--all-namespaces"]),
        f"--liveness={liveness}",
        f"--metrics-port={metrics_port}",
        "--max-retry-delay=3",
        "--max-poll-delay=1",
        *extra_args,
    ]
    say(f"starting the operator (liveness {liveness})")
    process = _launch(workdir, argv, env, "operator-1.log")
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    operator = OperatorProcess(workdir, credentials_dir, liveness, metrics, env, argv, process)
    process.wait_until(operator.healthy, _START_TIMEOUT, "its liveness endpoint answered")
    return operator


def _launch(workdir: Path, argv: list[str], env: dict[str, str], log: str) -> ManagedProcess:
    return ManagedProcess("promotion-operator", argv, workdir / log, env=env, cwd=workdir)
