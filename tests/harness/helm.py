"""Helm, built once from its pinned Go module and cached like the control plane.

The module ``gobin/helm`` pins ``helm.sh/helm/v4``; the build is the one
``tests.harness.binaries`` does for the other binaries (progress every 30 s, the
binary moved into the cache only once it built). ``Helm`` runs it against the
harness's apiserver with directories of its own, so nothing of this machine's
Helm configuration (repositories, plugins, registry logins) is read or written.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.binaries import _Target, ensure_target

HELM_VERSION = "v4.3.2"

_HELM = _Target(
    "helm",
    "helm.sh/helm/v4/cmd/helm",
    Path(__file__).parent / "gobin" / "helm",
    f"helm-{HELM_VERSION}",
    # What Helm's own Makefile sets for a tagged release, so `helm version` tells it.
    " ".join(
        [
            "-s",
            "-w",
            f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v4/internal/version.metadata=",
            "-X helm.sh/helm/v4/internal/version.gitTreeState=clean",
        ]
    ),
)


def ensure_helm() -> Path:
    """The cached ``helm`` binary, built first if it is missing."""
    return ensure_target(_HELM)


@dataclass(frozen=True)
class Helm:
    """``helm`` with a kubeconfig and its own config, cache and data directories."""

    binary: Path
    kubeconfig: Path
    home: Path

    def env(self) -> dict[str, str]:
        """The environment of every call: only PATH-free, Helm-specific settings."""
        return {
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``helm args...``; with ``check``, fail with its output when it fails."""
        result = subprocess.run(
            [str(self.binary), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result
