"""Who this process is: its name in Leases and Events, and the User-Agent it sends.

A replica is named after its pod (``POD_NAME``, else the host name, which is the
pod's name in a pod) plus a short
random suffix made once per start, so a restarted pod is a new holder of the Lease
and its requests can be told from those of the process before it.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from importlib import metadata

PRODUCT = "seldon-promotion-operator"


@dataclass(frozen=True)
class Replica:
    """One running operator process."""

    name: str
    version: str

    @property
    def user_agent(self) -> str:
        """The User-Agent of every request this process sends: product, version, replica."""
        return f"{PRODUCT}/{self.version} (replica {self.name})"


def _version() -> str:
    try:
        return metadata.version(PRODUCT)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _this_replica() -> Replica:
    host = os.environ.get("POD_NAME") or socket.gethostname() or "promotion-operator"
    return Replica(f"{host}_{uuid.uuid4().hex[:8]}", _version())


#: This process, named once at start-up.
THIS_REPLICA = _this_replica()
