"""People for end-to-end tests: a kubeconfig that acts as a named user in named groups.

The API server authenticates the harness admin's client certificate and then, since
the admin may impersonate (``system:masters``), acts as the user and groups the
kubeconfig names (``as`` and ``as-groups``, what ``kubectl --as --as-group`` sends).
Authorization (RBAC) and admission (``request.userInfo`` in a
ValidatingAdmissionPolicy) see that user and those groups, as they would for a
client certificate with ``CN=user`` and ``O=group``; the groups also include
``system:authenticated``, as every authenticated user's do. The harness's CA key is
not kept once the control plane is up, so no new client certificate can be signed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.controlplane import ControlPlane


@dataclass(frozen=True)
class User:
    """A user with a kubeconfig of their own, and kubectl run as them."""

    control_plane: ControlPlane
    name: str
    groups: tuple[str, ...]
    kubeconfig: Path

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """The pinned kubectl as this user (not checked unless ``check``)."""
        return subprocess.run(
            [str(self.control_plane.binaries.kubectl), "--kubeconfig", str(self.kubeconfig)]
            + list(args),
            input=input_text,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


def user_kubeconfig(
    control_plane: ControlPlane, name: str, groups: Sequence[str], path: Path
) -> User:
    """Write a kubeconfig at ``path`` that acts as user ``name`` in ``groups``."""
    config: dict[str, Any] = json.loads(control_plane.kubeconfig.read_text())
    (entry,) = config["users"]
    credentials = {
        key: value
        for key, value in entry["user"].items()
        if key in ("client-certificate-data", "client-key-data")
    }
    credentials["as"] = name
    credentials["as-groups"] = list(groups)
    config["users"] = [{"name": name, "user": credentials}]
    (context,) = config["contexts"]
    context["context"]["user"] = name
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return User(control_plane, name, tuple(groups), path)
