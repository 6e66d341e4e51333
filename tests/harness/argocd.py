"""A real Argo CD on loopback, syncing ModelPromotions from a git repository.

Runs the two parts a sync needs, from the binary :mod:`tests.harness.argocd_build`
builds: the **repo server** (clones the repository, renders the manifests) and the
**application controller** (diffs, syncs, judges health), with Redis (Debian's
``redis-server``) as their cache, against the harness kube-apiserver, installed
from the same module version: its CRDs and ``manifests/base/config/`` (what
Argo CD's install manifests create before the components start). The API
server and the UI are not run: Applications are written with kubectl, and a
sync or a refresh is asked for the way the API server asks for it (the
Application's ``operation`` field, the ``argocd.argoproj.io/refresh``
annotation).

Argo CD is configured as ``manifests/argocd/README.md`` tells users to:
``argocd-cm`` (with Argo CD's defaults) patched with
``kubectl patch --patch-file manifests/argocd/argocd-cm-patch.yaml`` (the health
check, as shipped), everything else at Argo CD's defaults. The controller runs
with ``--persist-resource-health`` so that each resource's health (status and
message) is in the Application's status, where a test without the API server
can read it. The in-cluster destination (``https://kubernetes.default.svc``)
is the harness apiserver through ``ARGOCD_FAKE_IN_CLUSTER`` and ``KUBECONFIG``,
the way Argo CD's own local development runs the controller outside a cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness.argocd_build import ARGOCD_VERSION, ArgoCDBinary, ensure_argocd
from tests.harness.controlplane import ControlPlane
from tests.harness.git_server import BRANCH, GitServer, start_git_server
from tests.harness.ports import free_port
from tests.harness.processes import HarnessError, ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say

NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"
ROOT = Path(__file__).resolve().parents[2]
ARGOCD_CM_PATCH = ROOT / "manifests" / "argocd" / "argocd-cm-patch.yaml"
HEALTH_KEY = "resource.customizations.health.deploy.mlops.dev_ModelPromotion"
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
_START_TIMEOUT = 120.0
# Argo CD's API server creates the `default` project when it starts; it is not run here.
DEFAULT_PROJECT: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "AppProject",
    "metadata": {"name": "default", "namespace": NAMESPACE},
    "spec": {
        "sourceRepos": ["*"],
        "destinations": [{"server": "*", "namespace": "*"}],
        "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
    },
}


def health_script_from_patch() -> str:
    """The health check as ``argocd-cm-patch.yaml`` carries it."""
    patch: dict[str, Any] = yaml.safe_load(ARGOCD_CM_PATCH.read_text())
    script: str = patch["data"][HEALTH_KEY]
    return script


def judge_health(binary: ArgoCDBinary, obj_path: Path) -> tuple[str, str]:
    """(status, message) Argo CD's own Lua runtime gives ``obj_path`` with the shipped
    ``argocd-cm-patch.yaml``: ``argocd admin settings resource-overrides health``, the
    same health function the application controller calls, without a cluster."""
    argv, env = binary.command("argocd")
    with tempfile.TemporaryDirectory(prefix="argocd-cli-home-") as home:
        result = subprocess.run(
            argv
            + ["admin", "settings", "resource-overrides", "health", str(obj_path)]
            + ["--argocd-cm-path", str(ARGOCD_CM_PATCH)],
            env={"PATH": "/usr/bin:/bin", "HOME": home, **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    if result.returncode != 0:
        raise HarnessError(f"argocd admin ... health {obj_path} failed: {result.stderr}")
    fields = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    if "STATUS" not in fields:
        raise HarnessError(f"argocd admin ... health {obj_path} said: {result.stdout}")
    return fields["STATUS"], fields.get("MESSAGE", "")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass(eq=False)
class ArgoCD:
    """Redis, the repo server and the application controller, running; the git server."""

    binary: ArgoCDBinary
    control_plane: ControlPlane
    git: GitServer
    workdir: Path
    redis: ManagedProcess
    repo_server: ManagedProcess
    controller: ManagedProcess

    # -- Applications -------------------------------------------------------------

    def create_application(
        self,
        name: str,
        path: str,
        destination_namespace: str,
        *,
        automated: bool = True,
        prune_propagation: str = "background",
    ) -> None:
        """An Application for ``path`` of the repository's main branch, synced into
        ``destination_namespace``; automated sync with pruning unless ``automated`` is off;
        pruned resources deleted with ``prune_propagation`` (``foreground``: Argo CD's
        default, ``background``, ``orphan``)."""
        # Argo CD prunes with foreground deletion by default, which the garbage collector
        # of kube-controller-manager finishes; tests that do not test it prune in the
        # background, where the object is gone at once.
        sync_option = f"PrunePropagationPolicy={prune_propagation}"
        sync_policy: dict[str, Any] = {"syncOptions": [sync_option]}
        if automated:
            sync_policy["automated"] = {"prune": True}
        spec: dict[str, Any] = {
            "project": "default",
            "source": {"repoURL": self.git.repo_url, "targetRevision": BRANCH, "path": path},
            "destination": {"server": IN_CLUSTER, "namespace": destination_namespace},
            "syncPolicy": sync_policy,
        }
        body = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        }
        self.control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(body))

    def delete_application(self, name: str) -> None:
        """Delete the Application (not what it deployed: it has no finalizer)."""
        self.control_plane.kubectl(
            "delete", "application", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false"
        )

    def application(self, name: str) -> dict[str, Any]:
        """The Application as the API serves it."""
        out = self.control_plane.kubectl("get", "application", name, "-n", NAMESPACE, "-o", "json")
        body: dict[str, Any] = json.loads(out.stdout)
        return body

    def sync(self, name: str, *, prune: bool = True) -> str:
        """Ask for a sync of the branch's head, as `argocd app sync` does through the API
        server (which writes the Application's `operation`); return the revision."""
        revision = self.git.head()
        operation = {
            "operation": {
                "initiatedBy": {"username": "e2e"},
                "sync": {"revision": revision, "prune": prune},
            }
        }
        self.control_plane.kubectl(
            "patch", "application", name, "-n", NAMESPACE, "--type=merge",
            "-p", json.dumps(operation),
        )  # fmt: skip
        return revision

    def refresh(self, name: str, *, hard: bool = False) -> None:
        """Ask for a refresh (``hard``: also regenerate the manifests, cache bypassed), as
        `argocd app get --refresh/--hard-refresh` does: the controller removes the
        annotation when it is done."""
        self.control_plane.kubectl(
            "annotate", "application", name, "-n", NAMESPACE, "--overwrite",
            f"{REFRESH_ANNOTATION}={'hard' if hard else 'normal'}",
        )  # fmt: skip

    def wait_for(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 120.0,
        interval: float = 0.3,
    ) -> dict[str, Any]:
        """Poll the Application until ``predicate`` holds; fail with its status otherwise."""
        deadline = time.monotonic() + timeout
        body = self.application(name)
        while not predicate(body):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Application {name} did not reach {what} in {timeout:.0f}s; status: "
                    f"{json.dumps(body.get('status'), indent=1)[:4000]}\n"
                    f"controller log:\n{self.controller.log_tail(20)}"
                )
            time.sleep(interval)
            body = self.application(name)
        return body

    def stop(self) -> None:
        """Stop the controller, the repo server, Redis and the git server; remove files."""
        self.controller.stop()
        self.repo_server.stop()
        self.redis.stop()
        self.git.stop()
        remove_temp_dir(self.workdir)


def resource_health(application: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    """The health Argo CD recorded for one resource of the Application ({} if none yet)."""
    for resource in (application.get("status") or {}).get("resources") or []:
        if resource.get("kind") == kind and resource.get("name") == name:
            health: dict[str, Any] = resource.get("health") or {}
            return health
    return {}


def sync_status(application: dict[str, Any]) -> str:
    """``Synced``, ``OutOfSync`` or ``Unknown`` ("" before the first comparison)."""
    return str(((application.get("status") or {}).get("sync") or {}).get("status") or "")


def _wait_established(control_plane: ControlPlane, crd: str) -> None:
    # Polled: `kubectl wait` fails on a CRD whose status has no conditions yet.
    deadline = time.monotonic() + 60
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    while True:
        result = control_plane.kubectl("get", "crd", crd, "-o", f"jsonpath={jsonpath}", check=False)
        if result.stdout.strip() == "True":
            return
        if time.monotonic() > deadline:
            raise HarnessError(f"CRD {crd} not Established in 60s: {result.stderr}")
        time.sleep(0.2)


def _install(control_plane: ControlPlane, binary: ArgoCDBinary) -> None:
    kubectl = control_plane.kubectl
    if kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0:
        kubectl("create", "namespace", NAMESPACE)
    # The Application CRD is larger than client-side apply's annotation allows.
    for crd in binary.crds:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    for name in ("applications.argoproj.io", "appprojects.argoproj.io"):
        _wait_established(control_plane, name)
    # What Argo CD's install creates: argocd-cm with Argo CD's defaults (status updates
    # ignored unless the health changes, the resource exclusions), argocd-secret, ...
    for path in binary.config:
        kubectl("apply", "-n", NAMESPACE, "-f", str(path))
    kubectl("apply", "-f", "-", input_text=json.dumps(DEFAULT_PROJECT))
    # As manifests/argocd/README.md tells users to install the health check.
    kubectl(
        "-n", NAMESPACE, "patch", "configmap", "argocd-cm", "--type", "merge",
        "--patch-file", str(ARGOCD_CM_PATCH),
    )  # fmt: skip


def start_argocd(control_plane: ControlPlane) -> ArgoCD:
    """Build (if needed), install and start Argo CD against ``control_plane``."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise HarnessError("redis-server is missing: `make prepare` installs Debian's package")
    binary = ensure_argocd()
    _install(control_plane, binary)
    workdir = make_temp_dir("argocd")
    git = start_git_server()
    processes: list[ManagedProcess] = []
    try:
        redis_port = free_port()
        say(f"starting Redis on 127.0.0.1:{redis_port}")
        (workdir / "redis").mkdir()
        redis = ManagedProcess(
            "redis",
            [redis_server, "--bind", "127.0.0.1", "--port", str(redis_port)]
            + ["--save", "", "--appendonly", "no", "--dir", str(workdir / "redis")],
            workdir / "redis.log",
        )
        processes.append(redis)
        redis_address = f"127.0.0.1:{redis_port}"

        home = workdir / "home"
        for directory in ("home", "tmp", "ssh", "tls", "gnupg"):
            (workdir / directory).mkdir()
        common_env = {
            "HOME": str(home),
            "TMPDIR": str(workdir / "tmp"),
            "KUBECONFIG": str(control_plane.kubeconfig),
            # Nothing from /app/config (the paths in Argo CD's image): no GPG, own dirs.
            "ARGOCD_GPG_ENABLED": "false",
            "ARGOCD_SSH_DATA_PATH": str(workdir / "ssh"),
            "ARGOCD_TLS_DATA_PATH": str(workdir / "tls"),
            "ARGOCD_GNUPGHOME": str(workdir / "gnupg"),
            "ARGOCD_ASK_PASS_SOCK": str(workdir / "reposerver-ask-pass.sock"),
        }

        repo_port, repo_metrics = free_port(), free_port()
        say(f"starting Argo CD {ARGOCD_VERSION} repo server on 127.0.0.1:{repo_port}")
        argv, env = binary.command("argocd-repo-server")
        repo_server = ManagedProcess(
            "argocd-repo-server",
            argv
            + ["--address", "127.0.0.1", "--port", str(repo_port), "--disable-tls"]
            # Its default is the path of a Secret mounted in Argo CD's pod; plaintext here.
            + ["--client-ca-path="]
            + ["--metrics-address", "127.0.0.1", "--metrics-port", str(repo_metrics)]
            + ["--redis", redis_address, "--logformat", "text"],
            workdir / "repo-server.log",
            env={**common_env, **env, "PATH": f"{binary.scripts_dir}:/usr/bin:/bin"},
        )
        processes.append(repo_server)

        # Its metrics and /healthz port is the one not on loopback only: Argo CD
        # v3.6.1 binds it to 0.0.0.0 with no flag to change that.
        controller_metrics = free_port()
        say(f"starting Argo CD {ARGOCD_VERSION} application controller")
        argv, env = binary.command("argocd-application-controller")
        controller = ManagedProcess(
            "argocd-application-controller",
            argv
            + ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", NAMESPACE]
            + ["--repo-server", f"127.0.0.1:{repo_port}", "--repo-server-plaintext"]
            + ["--redis", redis_address, "--metrics-port", str(controller_metrics)]
            + ["--persist-resource-health", "--logformat", "text"]
            + ["--status-processors", "4", "--operation-processors", "2"],
            workdir / "application-controller.log",
            env={**common_env, **env, "ARGOCD_FAKE_IN_CLUSTER": "true"},
        )
        processes.append(controller)

        started = time.monotonic()
        repo_server.wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{repo_metrics}/healthz"),
            _START_TIMEOUT,
            "the repo server's /healthz answered 200",
        )
        controller.wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{controller_metrics}/healthz"),
            _START_TIMEOUT,
            "the application controller's /healthz answered 200",
        )
        say(f"Argo CD ready in {time.monotonic() - started:.1f}s; repository {git.repo_url}")
    except BaseException:
        for process in reversed(processes):
            process.stop()
        git.stop()
        remove_temp_dir(workdir)
        raise
    return ArgoCD(binary, control_plane, git, workdir, redis, repo_server, controller)
