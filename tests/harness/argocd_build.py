"""Argo CD v3.6.1, built once from its Go module and cached like the other binaries.

Argo CD ships one multi-call binary, ``github.com/argoproj/argo-cd/v3/cmd``: its
``main`` picks the component by ``$ARGOCD_BINARY_NAME`` (or the program's name),
``argocd-application-controller``, ``argocd-repo-server``, ``argocd`` (the CLI) and
so on. That one package is built, as Argo CD's own Makefile builds it
(``CGO_ENABLED=0``, its version fields stamped), from the module in
``gobin/argocd``, which repeats the ``replace`` lines of Argo CD's go.mod (a
dependency's are ignored). Argo CD v3.6 needs Go 1.27: that module's
``toolchain`` line has the go command fetch it as a module when the installed Go
is older. The Application and AppProject CRDs, the configuration Argo CD's
install manifests create (``manifests/base/config/``: ``argocd-cm`` with its
defaults, ``argocd-secret`` and the other ConfigMaps) and the two scripts its
image adds to ``PATH`` are copied from the same module version next to the binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.binaries import go_build
from tests.harness.build_lock import build_lock
from tests.harness.cache import cache_root
from tests.harness.processes import HarnessError
from tests.harness.progress import say

ARGOCD_VERSION = "v3.6.1"
ARGOCD_MODULE = "github.com/argoproj/argo-cd/v3"
# The client-go version Argo CD's go.mod pins (what its Makefile stamps as kubectlVersion).
ARGOCD_CLIENT_GO_VERSION = "v0.37.0"
# When v3.6.1 was tagged (the module's time), stamped as Argo CD's build date.
_BUILD_DATE = "2026-11-04T13:21:06Z"
_MODULE_DIR = Path(__file__).parent / "gobin" / "argocd"
# The CRDs a sync needs: Applications and the projects they belong to.
_CRD_FILES = ("application-crd.yaml", "appproject-crd.yaml")
# What Argo CD's install creates before any component starts (manifests/base/config).
_CONFIG_FILES = (
    "argocd-cm.yaml",
    "argocd-cmd-params-cm.yaml",
    "argocd-gpg-keys-cm.yaml",
    "argocd-rbac-cm.yaml",
    "argocd-secret.yaml",
    "argocd-ssh-known-hosts-cm.yaml",
    "argocd-tls-certs-cm.yaml",
)
# Scripts Argo CD's image puts on PATH (its Dockerfile copies them from hack/ to
# /usr/local/bin): the repo server runs git-verify-wrapper.sh for every revision.
_SCRIPT_FILES = ("git-verify-wrapper.sh", "gpg-wrapper.sh")


@dataclass(frozen=True)
class ArgoCDBinary:
    """The built multi-call binary, and the CRDs and install configuration of its version."""

    path: Path
    crds: tuple[Path, ...]
    config: tuple[Path, ...]
    # Put first on the repo server's PATH (where the image has /usr/local/bin).
    scripts_dir: Path

    def command(self, component: str) -> tuple[list[str], dict[str, str]]:
        """argv and environment that run ``component`` (e.g. ``argocd-repo-server``)."""
        return [str(self.path)], {"ARGOCD_BINARY_NAME": component}


def _ldflags() -> str:
    pkg = f"{ARGOCD_MODULE}/common"
    fields = {
        "version": ARGOCD_VERSION.lstrip("v"),
        "gitTag": ARGOCD_VERSION,
        # No VCS checkout in a module: the module version names the commit.
        "gitCommit": ARGOCD_VERSION,
        "gitTreeState": "clean",
        "buildDate": _BUILD_DATE,
        "kubectlVersion": ARGOCD_CLIENT_GO_VERSION,
    }
    return " ".join(["-s", "-w"] + [f"-X {pkg}.{field}={value}" for field, value in fields.items()])


def _go_env() -> dict[str, str]:
    # GOTOOLCHAIN=auto: the module's `toolchain` line selects Go 1.27 even where the
    # environment says `local` and the installed Go is older.
    return dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false", GOTOOLCHAIN="auto")


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise HarnessError("the Go toolchain (`go`) is needed to build Argo CD")
    return go


def ensure_argocd() -> ArgoCDBinary:
    """The cached Argo CD binary and manifests, building and copying them first if missing."""
    directory = cache_root() / f"argocd-{ARGOCD_VERSION}"
    binary = directory / "argocd"
    crds = tuple(directory / "crds" / name for name in _CRD_FILES)
    config = tuple(directory / "config" / name for name in _CONFIG_FILES)
    scripts = tuple(directory / "bin" / name for name in _SCRIPT_FILES)
    with build_lock("argocd"):
        if not binary.exists():
            _build(binary)
        if not all(path.exists() for path in crds + config + scripts):
            _copy_from_module(crds, "manifests/crds")
            _copy_from_module(config, "manifests/base/config")
            _copy_from_module(scripts, "hack")
            for script in scripts:
                script.chmod(0o755)
    return ArgoCDBinary(binary, crds, config, scripts[0].parent)


def _build(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    say(
        f"building Argo CD {ARGOCD_VERSION} ({ARGOCD_MODULE}/cmd) into {path.parent} "
        "(first run only; about 6 minutes on 2 cores, at low priority)"
    )
    # nice: the build shares the machine's cores with whatever else runs.
    command = ["nice", "-n", "19", _go(), "build", "-trimpath", "-ldflags", _ldflags()]
    seconds = go_build(command, f"{ARGOCD_MODULE}/cmd", path, cwd=_MODULE_DIR, env=_go_env())
    size = path.stat().st_size / 2**20
    say(f"built Argo CD in {seconds:.0f}s ({size:.0f} MiB)")


def _copy_from_module(targets: tuple[Path, ...], source_dir: str) -> None:
    """Copy files of ``source_dir`` in the module (in the module cache after the build)."""
    result = subprocess.run(
        [_go(), "mod", "download", "-json", f"{ARGOCD_MODULE}@{ARGOCD_VERSION}"],
        cwd=_MODULE_DIR,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise HarnessError(
            f"go mod download {ARGOCD_MODULE} failed:\n{result.stdout}{result.stderr}"
        )
    module_dir = Path(json.loads(result.stdout)["Dir"])
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    for target in targets:
        shutil.copyfile(module_dir / source_dir / target.name, target)
