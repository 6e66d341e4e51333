"""Podman as this machine runs containers: Debian's ``podman`` with ``runc``, as root.

Three settings are needed here, and all three live in this module:

- ``default_ulimits = []`` in a containers.conf of the harness's own: with the
  default limits the OCI runtime fails on ``setrlimit RLIMIT_NOFILE/NPROC``;
- ``runtime = "runc"`` and ``cgroup_manager = "cgroupfs"``: with crun and the
  systemd manager, podman stops with "cgroups in hybrid mode not supported";
- ``--network host`` (``HOST_NETWORK``) on every build and run: the local stack
  listens on loopback only.

The containers.conf is the harness's (``CONTAINERS_CONF``), so the machine's own
podman settings are neither read nor changed. ``make prepare`` installs the
packages with apt-get (see the Makefile).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.cache import cache_root
from tests.harness.processes import HarnessError

CONTAINERS_CONF = """\
# Written by tests/harness/podman.py: the settings this machine's podman needs.
[containers]
# The OCI runtime cannot set the default RLIMIT_NOFILE/NPROC here.
default_ulimits = []

[engine]
# crun with the systemd cgroup manager fails with "cgroups in hybrid mode not supported".
runtime = "runc"
cgroup_manager = "cgroupfs"
# No journald here.
events_logger = "file"
"""

HOST_NETWORK = "--network=host"
_PACKAGES = ("podman", "runc")


@dataclass(frozen=True)
class Podman:
    """The ``podman`` command with the harness's containers.conf."""

    binary: Path
    conf: Path

    def env(self) -> dict[str, str]:
        """The environment of every call: PATH for its helpers, and the conf."""
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "CONTAINERS_CONF": str(self.conf)}  # fmt: skip

    def command(self, *args: str) -> list[str]:
        """``podman args...`` as an argv."""
        return [str(self.binary), *args]

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman args...``; with ``check``, fail with its output when it fails."""
        result = subprocess.run(
            self.command(*args),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"podman {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def image_exists(self, reference: str) -> bool:
        """Whether the local storage holds ``reference``."""
        return self.run("image", "exists", reference, check=False).returncode == 0

    def image_size(self, reference: str) -> int:
        """The image's size in bytes, as ``podman image inspect`` reports it."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", reference).stdout)


def ensure_podman() -> Podman:
    """Podman with the harness's containers.conf, or a clear error saying how to get it."""
    missing = [name for name in _PACKAGES if shutil.which(name) is None]
    if missing:
        raise HarnessError(
            f"{' and '.join(missing)} not installed: `make prepare` installs Debian's "
            f"{' '.join(_PACKAGES)} with apt-get (as root)"
        )
    conf = cache_root() / "podman" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    binary = shutil.which("podman")
    assert binary is not None
    return Podman(Path(binary), conf)
