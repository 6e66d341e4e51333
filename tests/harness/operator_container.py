"""The operator's image run with podman the way a pod runs it, against the local stack.

As in ``manifests/``' Deployment: a read-only root filesystem, numeric non-root
user 65532, no capabilities, a writable ``/tmp``, the credentials directory
mounted read-only at ``/var/run/secrets/seldon-deploy`` and a ServiceAccount
token where the kubelet mounts one (``/var/run/secrets/kubernetes.io/
serviceaccount``: ``token``, ``ca.crt``, ``namespace``), with the
``KUBERNETES_SERVICE_*`` variables pointing at the apiserver. The files belong to
the user, read-only, as ``fsGroup`` and ``defaultMode: 0440`` make them. The
stack listens on loopback, hence the host network (``podman.HOST_NETWORK``).
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.harness.controlplane import ControlPlane
from tests.harness.operator_process import write_credentials
from tests.harness.podman import HOST_NETWORK, Podman
from tests.harness.ports import free_port
from tests.harness.processes import ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say
from tests.harness.simulator import Simulator

USER = "65532:65532"
CREDENTIALS_MOUNT = "/var/run/secrets/seldon-deploy"
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_START_TIMEOUT = 60.0


def _own_read_only(directory: Path) -> None:
    """What the kubelet's fsGroup and defaultMode 0440 make of a mounted volume."""
    uid, gid = (int(part) for part in USER.split(":"))
    for path in [directory, *directory.rglob("*")]:
        os.lchown(path, uid, gid)
        if not path.is_symlink():
            path.chmod(0o550 if path.is_dir() else 0o440)


def service_account_mount(directory: Path, control_plane: ControlPlane, token: str,
                          namespace: str) -> Path:  # fmt: skip
    """A ServiceAccount volume as the kubelet writes it: token, ca.crt, namespace."""
    directory.mkdir(parents=True)
    (directory / "token").write_text(token)
    shutil.copyfile(control_plane.ca_cert, directory / "ca.crt")
    (directory / "namespace").write_text(namespace)
    _own_read_only(directory)
    return directory


@dataclass(eq=False)
class OperatorContainer:
    """One container of the operator's image and the files mounted into it."""

    podman: Podman
    name: str
    workdir: Path
    liveness_url: str
    metrics_url: str
    process: ManagedProcess  # the foreground `podman run --rm`

    def healthy(self) -> bool:
        """Whether the liveness endpoint answers 200."""
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metrics_text(self) -> str:
        """Its Prometheus metrics page, as text."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return str(response.read().decode())

    def log(self) -> str:
        """What the container printed (podman run's output)."""
        return self.process.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0) -> tuple[float, int]:
        """SIGTERM to the container's main process, as the kubelet sends it; return
        the seconds until the container had exited, and its exit code."""
        started = time.monotonic()
        self.podman.run("kill", "--signal=SIGTERM", self.name)
        code = self.process.popen.wait(timeout=timeout)
        return time.monotonic() - started, code

    def stop(self) -> None:
        """Remove the container (if still there) and its files."""
        self.podman.run("rm", "--force", "--ignore", self.name, check=False)
        self.process.stop()
        remove_temp_dir(self.workdir)


def start_container(
    podman: Podman,
    image: str,
    control_plane: ControlPlane,
    simulator: Simulator,
    credentials: Mapping[str, str],
    service_account_token: str,
    *,
    namespaces: tuple[str, ...],
    extra_env: Mapping[str, str] | None = None,
) -> OperatorContainer:
    """``podman run`` the image as a pod would; return once its liveness answers."""
    workdir = make_temp_dir("container")
    credentials_dir = write_credentials(workdir / "credentials", credentials)
    _own_read_only(credentials_dir)
    account = service_account_mount(
        workdir / "serviceaccount", control_plane, service_account_token, "promotion-operator"
    )
    apiserver = urlsplit(control_plane.url)
    port, metrics_port = free_port(), free_port()
    name = f"spo-e2e-{uuid.uuid4().hex[:8]}"
    env = {
        "KUBERNETES_SERVICE_HOST": str(apiserver.hostname),
        "KUBERNETES_SERVICE_PORT": str(apiserver.port),
        "SELDON_DEPLOY_URL": simulator.api_url,
        "SELDON_DEPLOY_CREDENTIALS_DIR": CREDENTIALS_MOUNT,
        "POD_NAMESPACE": "promotion-operator",
        "POD_NAME": name,
        **(extra_env or {}),
    }
    argv = podman.command(
        "run",
        "--rm",
        f"--name={name}",
        HOST_NETWORK,
        "--read-only",
        f"--user={USER}",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--tmpfs=/tmp:size=16m",
        f"--volume={credentials_dir}:{CREDENTIALS_MOUNT}:ro",
        f"--volume={account}:{SERVICE_ACCOUNT_MOUNT}:ro",
        *[f"--env={key}={value}" for key, value in env.items()],
        image,
        *[f"--namespace={ns}" for ns in namespaces],
        f"--liveness=http://0.0.0.0:{port}/healthz",
        f"--metrics-port={metrics_port}",
        "--log-format=json",
        "--max-retry-delay=3",
        "--max-poll-delay=1",
    )
    say(f"starting the operator's container {name} from {image}")
    process = ManagedProcess(f"container {name}", argv, workdir / "container.log",
                             env=podman.env(), cwd=workdir)  # fmt: skip
    container = OperatorContainer(
        podman,
        name,
        workdir,
        f"http://127.0.0.1:{port}/healthz",
        f"http://127.0.0.1:{metrics_port}/metrics",
        process,
    )
    process.wait_until(container.healthy, _START_TIMEOUT, "its liveness endpoint answered")
    return container
