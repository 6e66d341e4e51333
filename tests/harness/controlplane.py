"""A real Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager
(its garbage collector only) on loopback.

Started the way controller-runtime's envtest starts them: etcd with a temporary
data dir, kube-apiserver with RBAC authorization, a generated serving
certificate, a generated service-account signing key and client-certificate
authentication; the admin identity is a client certificate in ``system:masters``.
kube-controller-manager runs the garbage-collector controller and nothing else,
so that objects with ownerReferences are deleted with their owner as in a real
cluster (it finds new kinds, a CRD applied later, within its 30 s discovery
resync).
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.binaries import Binaries, ensure_binaries
from tests.harness.certs import CertificateAuthority, KeyPair, write_signing_key
from tests.harness.ports import free_port
from tests.harness.processes import ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say

ADMIN_USER = "harness-admin"
_START_TIMEOUT = 120.0


class KubectlFailed(subprocess.CalledProcessError):
    """A kubectl command that failed, with kubectl's own message in its text."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(returncode, ["kubectl", *args], stderr=stderr)

    def __str__(self) -> str:
        return f"{super().__str__()}: {self.stderr}"


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver pair and the files to reach it."""

    binaries: Binaries
    workdir: Path
    url: str
    etcd_url: str
    kubeconfig: Path
    ca_cert: Path
    admin: KeyPair
    etcd: ManagedProcess
    apiserver: ManagedProcess
    controller_manager: ManagedProcess | None = None

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl as the harness admin; with ``check``, a failure says
        what kubectl said."""
        done = subprocess.run(
            [str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise KubectlFailed(args, done.returncode, done.stderr.strip())
        return done

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path) -> Path:
        """A kubeconfig for a ServiceAccount, with a token from the TokenRequest API."""
        token = self.kubectl("create", "token", name, "-n", namespace).stdout.strip()
        _write_kubeconfig(path, self.url, self.ca_cert, f"{namespace}:{name}", {"token": token})
        return path

    def ready(self) -> bool:
        """Whether ``/readyz`` answers ``ok`` to the admin identity."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", context=context, timeout=2) as r:
                return bool(r.status == 200 and r.read().strip() == b"ok")
        except (urllib.error.URLError, OSError):
            return False

    def etcd_healthy(self) -> bool:
        """Whether etcd's ``/health`` says it is healthy."""
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (urllib.error.URLError, OSError, ValueError):
            return False

    # -- control-plane faults ------------------------------------------------------------------
    # Each returns the moment (time.monotonic()) the fault cleared: the apiserver answered
    # /readyz again, so recovery times are measured from the same point.

    def restart_apiserver(self, *, down_seconds: float = 0.0, flags: Sequence[str] = ()) -> float:
        """Stop kube-apiserver, keep it down ``down_seconds``, start it again on the same
        port (etcd keeps the data). ``flags`` (``--name=value``) replace the flags of the
        same names, from now on. Every watch is cut; its watch cache starts afresh, so a
        re-watch from a resourceVersion older than the restart is answered 410 Gone."""
        self.apiserver.stop()
        time.sleep(down_seconds)
        self.apiserver.restart(_with_flags(self.apiserver.argv, flags))
        self.apiserver.wait_until(self.ready, _START_TIMEOUT, f"{self.url}/readyz answered ok")
        return time.monotonic()

    def restart_etcd(self, *, down_seconds: float = 0.0) -> float:
        """Stop etcd, keep it down ``down_seconds``, start it again on the same data dir
        and ports; return once it is healthy and the apiserver ready again. Meanwhile
        the apiserver answers no read or write that needs etcd (they hang, then fail)."""
        self.etcd.stop()
        time.sleep(down_seconds)
        self.etcd.restart()
        self.etcd.wait_until(self.etcd_healthy, _START_TIMEOUT, f"{self.etcd_url}/health ok")
        self.apiserver.wait_until(self.ready, _START_TIMEOUT, f"{self.url}/readyz answered ok")
        return time.monotonic()

    def compact_etcd(self) -> int:
        """Write a marker key and compact etcd's history up to it, through etcd's own API
        (as the apiserver does every 5 minutes): no resourceVersion handed out before
        can be watched from any more. The revision compacted at."""
        marker = {"key": _b64text("/harness/compaction-marker"), "value": _b64text("x")}
        revision = int(self._etcd("/v3/kv/put", marker)["header"]["revision"])
        self._etcd("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def expire_watches(self, meanwhile: Callable[[], object] | None = None) -> float:
        """Expire every watch: restart the apiserver (every watch is cut), do
        ``meanwhile`` (changes no watch from before sees: not even in a socket's buffer),
        then compact etcd's history. A watcher coming back from any resourceVersion it
        saw before is answered 410 Gone ("too old resource version"): it must list
        again, and a deletion in ``meanwhile`` reaches it as no event at all."""
        self.restart_apiserver()
        if meanwhile is not None:
            meanwhile()
        self.compact_etcd()
        return time.monotonic()

    def _etcd(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.etcd_url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def stop(self) -> None:
        """Stop the processes and remove the data directory."""
        if self.controller_manager is not None:
            self.controller_manager.stop()
        self.apiserver.stop()
        self.etcd.stop()
        remove_temp_dir(self.workdir)


@dataclass(frozen=True)
class ControlPlanePlan:
    """What is fixed before kube-apiserver starts: its URL (also the service-account
    issuer) and its CA, so that Keycloak, started first, can trust and reach it."""

    workdir: Path
    certs_dir: Path
    ca: CertificateAuthority
    port: int

    @property
    def url(self) -> str:
        """The apiserver's URL, which is also the service-account issuer."""
        return f"https://127.0.0.1:{self.port}"


def plan_control_plane() -> ControlPlanePlan:
    """Choose the apiserver's port and make its CA (fast; nothing starts)."""
    workdir = make_temp_dir("controlplane")
    certs_dir = workdir / "certs"
    certs_dir.mkdir()
    ca = CertificateAuthority(certs_dir, "harness")
    return ControlPlanePlan(workdir, certs_dir, ca, free_port())


def start_control_plane(plan: ControlPlanePlan | None = None) -> ControlPlane:
    """Build (if needed) and start etcd and kube-apiserver; return once ``/readyz`` is ok.

    The service-account issuer is the apiserver's own loopback URL, and its
    discovery documents (``/.well-known/openid-configuration``,
    ``/openid/v1/jwks``) are readable anonymously, as clusters grant it with the
    ``system:service-account-issuer-discovery`` ClusterRole: so an identity
    provider such as Keycloak can check the ServiceAccount tokens it issues.
    """
    binaries = ensure_binaries()
    plan = plan or plan_control_plane()
    workdir, certs_dir, ca = plan.workdir, plan.certs_dir, plan.ca
    serving = ca.issue_serving("kube-apiserver", ["127.0.0.1", "localhost"])
    admin = ca.issue_client(ADMIN_USER, ["system:masters"])
    sa_key = write_signing_key(certs_dir / "service-account.key")

    etcd_client, etcd_peer = free_port(), free_port()
    say(f"starting etcd on 127.0.0.1:{etcd_client}")
    etcd = ManagedProcess(
        "etcd",
        [
            str(binaries.etcd),
            "--name=harness",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=harness=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync=true",
        ],
        workdir / "etcd.log",
    )

    port, url = plan.port, plan.url
    say(f"starting kube-apiserver on {url}")
    apiserver = ManagedProcess(
        "kube-apiserver",
        [
            str(binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={certs_dir}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert_path}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            # The first issuer signs new tokens and names the discovery document;
            # the in-cluster default stays accepted.
            f"--service-account-issuer={url}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-jwks-uri={url}/openid/v1/jwks",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
        ],
        workdir / "kube-apiserver.log",
    )
    kubeconfig = workdir / "kubeconfig"
    credentials = {
        "client-certificate-data": _b64(admin.cert),
        "client-key-data": _b64(admin.key),
    }
    _write_kubeconfig(kubeconfig, url, ca.cert_path, ADMIN_USER, credentials)
    etcd_url = f"http://127.0.0.1:{etcd_client}"
    plane = ControlPlane(
        binaries, workdir, url, etcd_url, kubeconfig, ca.cert_path, admin, etcd, apiserver
    )
    apiserver.wait_until(plane.ready, _START_TIMEOUT, f"{url}/readyz answered ok")
    plane.kubectl("apply", "-f", "-", input_text=json.dumps(_ANONYMOUS_ISSUER_DISCOVERY))
    say(f"kube-apiserver ready; kubeconfig {kubeconfig}")
    plane.controller_manager = _start_garbage_collector(binaries, workdir, kubeconfig)
    return plane


def _start_garbage_collector(binaries: Binaries, workdir: Path, kubeconfig: Path) -> ManagedProcess:
    """kube-controller-manager with the garbage-collector controller only: no leader
    election (one instance), no serving port (nothing scrapes or probes it here)."""
    say("starting kube-controller-manager (the garbage collector)")
    return ManagedProcess(
        "kube-controller-manager",
        [
            str(binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            "--controllers=garbage-collector-controller",
            "--leader-elect=false",
            "--secure-port=0",
            "--concurrent-gc-syncs=5",
        ],
        workdir / "kube-controller-manager.log",
    )


# What managed clusters grant so that relying parties can verify ServiceAccount
# tokens: the issuer discovery documents, readable without credentials.
_ANONYMOUS_ISSUER_DISCOVERY = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "service-account-issuer-discovery-anonymous"},
    "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:service-account-issuer-discovery",
    },
    "subjects": [
        {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Group",
            "name": "system:unauthenticated",
        }
    ],
}


def _with_flags(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``argv`` with ``flags`` (``--name=value``) in place of those of the same names."""
    names = {flag.split("=", 1)[0] for flag in flags}
    return [arg for arg in argv if arg.split("=", 1)[0] not in names] + list(flags)


def _b64text(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(
    path: Path, url: str, ca: Path, user: str, credentials: dict[str, str]
) -> None:
    # JSON is valid YAML, and kubectl and the kubernetes client both read it.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "harness", "cluster": {"server": url, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "harness", "context": {"cluster": "harness", "user": user}}],
        "current-context": "harness",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
