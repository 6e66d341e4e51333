"""Free loopback ports for the harness's servers.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the
same range it takes the local ports of outgoing connections from. Between
choosing such a port and the server binding it, any of the thousands of
connections a test run makes may take it, and the server fails to start with
"address already in use". So the servers' ports come from below that range,
where no outgoing connection ever lands, at random so that two harnesses (a test
of the harness itself beside the session's stack) rarely try the same one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: The lowest port handed out: above the well-known and most registered services' ports.
_LOWEST = 10000
_TRIES = 200
#: Ports this process handed out already: two servers started one after the other
#: (etcd's client and peer ports, say) never get the same one.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the
    ephemeral range where it could be taken by an outgoing connection."""
    ceiling = _ephemeral_start()
    for _ in range(_TRIES if ceiling > _LOWEST else 0):
        port = random.randrange(_LOWEST, ceiling)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    return _any_port()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _any_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
