"""Drive ``kubectl promotion`` as a user does: the installed ``kubectl-promotion``
console script (or ``kubectl promotion`` through kubectl's plugin lookup) as a
subprocess, with ``KUBECONFIG`` pointing at a harness kubeconfig; and play the
operator's part by writing ``status`` with ``kubectl patch --subresource=status``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.harness.controlplane import ControlPlane

#: The console script pip installed next to this virtualenv's python.
SCRIPT = Path(sys.executable).parent / "kubectl-promotion"


def plugin_env(kubeconfig: Path) -> dict[str, str]:
    """The environment of a user with this kubeconfig and the virtualenv's bin on PATH."""
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


class Watching:
    """A running ``kubectl-promotion`` (``watch``, ``retry --watch``): its output as it
    comes, line by line."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.argv = argv
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            argv,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(
            target=lambda: self._stderr.extend(self.process.stderr or ()), daemon=True
        ).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        """The first line (from now on, or already read) for which ``predicate`` holds."""
        for line in self.lines:
            if predicate(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(
                    f"{' '.join(self.argv[1:])}: no such line in {timeout:.0f}s; "
                    f"output so far: {self.lines}"
                ) from None
            if item is None:
                self._queue.put(None)
                raise AssertionError(
                    f"{' '.join(self.argv[1:])} ended first: {self.lines} {self.stderr}"
                )
            self.lines.append(item)
            if predicate(item):
                return item

    def wait(self, timeout: float = 60.0) -> int:
        """Its exit code, once it ended; all its output is in ``lines`` then."""
        code = self.process.wait(timeout=timeout)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        self._queue.put(None)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class Plugin:
    """``kubectl promotion`` for one namespace, as the user of ``kubeconfig``."""

    def __init__(self, control_plane: ControlPlane, namespace: str, kubeconfig: Path) -> None:
        self.kube = control_plane
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.watching: list[Watching] = []

    def as_user(self, kubeconfig: Path) -> Plugin:
        """The same namespace, as another user; its watches are stopped with ours."""
        other = Plugin(self.kube, self.namespace, kubeconfig)
        other.watching = self.watching
        return other

    def argv(self, *args: str, namespaced: bool = True) -> list[str]:
        return [str(SCRIPT), *args, *(["-n", self.namespace] if namespaced else [])]

    def run(
        self, *args: str, namespaced: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run it to the end (``-n`` the test's namespace unless ``namespaced=False``)."""
        return subprocess.run(
            self.argv(*args, namespaced=namespaced),
            env=plugin_env(self.kubeconfig),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def through_kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``kubectl promotion ARGS``: kubectl finds ``kubectl-promotion`` on PATH."""
        return subprocess.run(
            [str(self.kube.binaries.kubectl), "promotion", *args, "-n", self.namespace],
            env=plugin_env(self.kubeconfig),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, *args: str) -> Watching:
        """Start it and return at once (for ``watch``); stopped at the end of the test."""
        watching = Watching(self.argv(*args), plugin_env(self.kubeconfig))
        self.watching.append(watching)
        return watching

    def stop_all(self) -> None:
        for watching in self.watching:
            watching.stop()

    # --- the object, as the harness admin -----------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        out = self.kube.kubectl("get", "mp", name, "-n", self.namespace, "-o", "json").stdout
        body: dict[str, Any] = json.loads(out)
        return body

    def annotations(self, name: str) -> dict[str, str]:
        return dict(self.get(name)["metadata"].get("annotations") or {})

    def set_status(self, name: str, status: Mapping[str, Any]) -> None:
        """Merge ``status`` into the status subresource, as the operator writes it."""
        self.kube.kubectl(
            "patch", "mp", name, "-n", self.namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip

    def annotate(self, name: str, **annotations: str) -> None:
        pairs = [f"{key}={value}" for key, value in annotations.items()]
        self.kube.kubectl("annotate", "mp", name, "-n", self.namespace, "--overwrite", *pairs)


def run_status(
    phase: str,
    *,
    generation: int = 1,
    reason: str | None = None,
    message: str = "",
    retry: int = 0,
    last_retry: str | None = None,
    outcome: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A status as the operator writes it for run ``generation.retry`` in ``phase``."""
    finished = phase in ("Succeeded", "Failed", "RolledBack", "Aborted")
    ready = "True" if phase == "Succeeded" else "False"
    condition = {
        "status": ready,
        "reason": reason or phase,
        "message": message or f"{phase.lower()} (set by the test)",
        "observedGeneration": generation,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    return {
        "phase": phase,
        "observedGeneration": generation,
        "retry": retry,
        "lastRetry": last_retry,
        "source": "staging/iris",
        "target": "production/iris",
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:05:00Z" if finished else None,
        "outcome": {"reason": outcome, "message": "set by the test"} if outcome else None,
        "conditions": [
            {"type": "Ready", **condition},
            {"type": "Progressing", **condition, "status": "False" if finished else "True"},
        ],
        **extra,
    }


def user_kubeconfig(
    control_plane: ControlPlane,
    namespace: str,
    account: str,
    verbs: list[str],
    path: Path,
    *,
    grant_in: str | None = None,
) -> Path:
    """A ServiceAccount ``namespace/account`` allowed ``verbs`` on ModelPromotions in
    ``grant_in`` (default ``namespace``), and a kubeconfig with its token."""
    where = grant_in or namespace
    role = f"mp-{account}"
    control_plane.kubectl("create", "serviceaccount", account, "-n", namespace)
    control_plane.kubectl(
        "create", "role", role, "-n", where, f"--verb={','.join(verbs)}",
        "--resource=modelpromotions.deploy.mlops.dev",
    )  # fmt: skip
    control_plane.kubectl(
        "create", "rolebinding", role, "-n", where, f"--role={role}",
        f"--serviceaccount={namespace}:{account}",
    )  # fmt: skip
    return control_plane.service_account_kubeconfig(namespace, account, path)


def crd_status_fields(control_plane: ControlPlane) -> tuple[set[str], set[str]]:
    """The status fields and the phases the installed CRD declares."""
    crd = json.loads(
        control_plane.kubectl("get", "crd", "modelpromotions.deploy.mlops.dev", "-o", "json").stdout
    )
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    status = schema["properties"]["status"]["properties"]
    return set(status), set(status["phase"].get("enum") or ())
