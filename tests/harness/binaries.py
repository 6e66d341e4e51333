"""The pinned kube-apiserver, kube-controller-manager, kubectl, etcd, Prometheus and
Toxiproxy binaries, built once and cached.

The control-plane binaries come from Go modules whose own go.mod files carry
``replace`` lines, so ``go install pkg@version`` refuses them; the small modules
under ``gobin/`` pin them (and replace every k8s.io staging module by its
published release) and ``go build`` builds from there with the default module
proxy. Prometheus and Toxiproxy (the fault proxy of the network-fault tests) are
pinned the same way, for one build path and one go.sum.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.build_lock import build_lock
from tests.harness.cache import cache_root
from tests.harness.processes import HarnessError
from tests.harness.progress import say

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.5"
# Prometheus 3.16.0, published as the Go module version v0.316.0.
PROMETHEUS_MODULE_VERSION = "v0.316.0"
PROMETHEUS_VERSION = "3.16.0"
# The newest Toxiproxy release (its go.mod needs Go 1.23).
TOXIPROXY_VERSION = "v2.12.0"

_GOBIN = Path(__file__).parent / "gobin"


@dataclass(frozen=True)
class _Target:
    name: str
    package: str
    module_dir: Path
    cache_dir: str
    ldflags: str
    tags: str = ""


def _kube_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    fields = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    flags = ["-s", "-w"]
    # kube-apiserver reads component-base's version, kubectl's client half reads client-go's.
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{field}={value}" for field, value in fields.items()]
    return " ".join(flags)


def _prometheus_ldflags() -> str:
    # What Prometheus' own release build (.promu.yml) sets, so `--version` and
    # /api/v1/status/buildinfo tell the real version; there is no VCS checkout, so
    # the revision is the module version.
    pkg = "github.com/prometheus/common/version"
    fields = {
        "Version": PROMETHEUS_VERSION,
        "Revision": PROMETHEUS_MODULE_VERSION,
        "Branch": "HEAD",
        "BuildUser": "seldon-promotion-operator-harness",
    }
    return " ".join(["-s", "-w"] + [f"-X {pkg}.{field}={value}" for field, value in fields.items()])


#: Prometheus' own build tags. Without `builtinassets`: the web UI's assets are not in
#: the Go module (they are built with npm); the HTTP API is all the tests need. With
#: `remove_all_sd` (its README, "Building from source"): the harness scrapes
#: `static_configs` only, and leaving out the other service discoveries leaves out
#: their cloud SDKs: 1.0 of 4.0 million lines of Go outside the standard library
#: are left to compile on a fresh machine (`go list -deps`).
_PROMETHEUS_TAGS = "netgo,remove_all_sd"
#: The cache directory names the tags: a binary built with other tags is built again.
_PROMETHEUS_CACHE = f"prometheus-{PROMETHEUS_MODULE_VERSION}-static-sd"


def _toxiproxy_ldflags() -> str:
    # What Toxiproxy's release build (.goreleaser.yml) stamps, so its /version tells it.
    version = TOXIPROXY_VERSION.lstrip("v")
    return f"-s -w -X github.com/Shopify/toxiproxy/v2.Version={version}"


def _targets() -> list[_Target]:
    kube = f"kubernetes-{KUBERNETES_VERSION}"
    return [
        _Target(
            "etcd",
            "go.etcd.io/etcd/server/v3",
            _GOBIN / "etcd",
            f"etcd-{ETCD_VERSION}",
            "-s -w",
        ),
        _Target(
            "kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            _GOBIN / "kubernetes",
            kube,
            _kube_ldflags(),
        ),
        # The garbage collector (ownerReferences) runs here, from the apiserver's module.
        _Target(
            "kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            _GOBIN / "kubernetes",
            kube,
            _kube_ldflags(),
        ),
        _Target(
            "kubectl", "k8s.io/kubernetes/cmd/kubectl", _GOBIN / "kubernetes", kube, _kube_ldflags()
        ),
        _Target(
            "prometheus",
            "github.com/prometheus/prometheus/cmd/prometheus",
            _GOBIN / "prometheus",
            _PROMETHEUS_CACHE,
            _prometheus_ldflags(),
            tags=_PROMETHEUS_TAGS,
        ),
        _Target(
            "toxiproxy-server",
            "github.com/Shopify/toxiproxy/v2/cmd/server",
            _GOBIN / "toxiproxy",
            f"toxiproxy-{TOXIPROXY_VERSION}",
            _toxiproxy_ldflags(),
        ),
    ]


@dataclass(frozen=True)
class Binaries:
    """Paths of the built binaries."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    prometheus: Path
    toxiproxy: Path
    kube_controller_manager: Path


def ensure_binaries() -> Binaries:
    """Return the cached binaries, building whichever is missing first."""
    paths = {target.name: ensure_target(target) for target in _targets()}
    return Binaries(
        paths["etcd"],
        paths["kube-apiserver"],
        paths["kubectl"],
        paths["prometheus"],
        paths["toxiproxy-server"],
        paths["kube-controller-manager"],
    )


def ensure_target(target: _Target) -> Path:
    """The cached binary of ``target``, built first if missing (by this process, or by
    another one that is building it already: then this one waits)."""
    path = cache_root() / target.cache_dir / target.name
    with build_lock(target.name):
        if not path.exists():
            _build(target, path)
    return path


def _build(target: _Target, path: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise HarnessError("the Go toolchain (`go`) is needed to build the test control plane")
    path.parent.mkdir(parents=True, exist_ok=True)
    say(
        f"building {target.name} from {target.package} into {path.parent} "
        "(first run only; this takes several minutes on 2 cores)"
    )
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    tags = ["-tags", target.tags] if target.tags else []
    command = [go, "build", "-trimpath", "-ldflags", target.ldflags, *tags]
    seconds = go_build(command, target.package, path, cwd=target.module_dir, env=env)
    say(f"built {target.name} in {seconds:.0f}s")


def go_build(
    command: list[str], package: str, path: Path, *, cwd: Path, env: dict[str, str]
) -> float:
    """Run ``command -o <partial> package`` (a ``go build``), saying every 30 s that it
    still runs; move the result to ``path`` only once it succeeded. Returns seconds."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "-o", str(partial), package],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    while True:
        try:
            out, _ = process.communicate(timeout=30)
            output.append(out)
            break
        except subprocess.TimeoutExpired:
            say(f"  ... still building {path.name} ({time.monotonic() - started:.0f}s)")
    if process.returncode != 0:
        partial.unlink(missing_ok=True)
        raise HarnessError(f"building {path.name} failed:\n{''.join(output)[-4000:]}")
    partial.rename(path)
    return time.monotonic() - started


# promtool, from the same pinned Prometheus module as the server (so the rules it
# checks are parsed as the server parses them), cached next to it. Its own target:
# only the alert-rule tests and `prepare` need it.
_PROMTOOL = _Target(
    "promtool",
    "github.com/prometheus/prometheus/cmd/promtool",
    _GOBIN / "prometheus",
    _PROMETHEUS_CACHE,
    _prometheus_ldflags(),
    tags=_PROMETHEUS_TAGS,
)


def ensure_promtool() -> Path:
    """The cached promtool, built first if missing."""
    return ensure_target(_PROMTOOL)
