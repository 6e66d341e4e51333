"""Toxiproxy, a real TCP fault proxy, between the operator and each server.

The server (``toxiproxy-server``, built from the Go module like the other
binaries) runs on a free loopback port (:func:`start_toxiproxy`);
:func:`proxy_stack` creates one proxy per server of the stack, each listening on
its own loopback port. Faults are driven through Toxiproxy's HTTP API:

- a :class:`Toxic` (latency, timeout, reset_peer, bandwidth, limit_data) is
  added to a proxy and removed again; it acts on open connections as on new ones;
- a :class:`Cut` disables the proxy: it closes every open connection and refuses
  new ones until enabled again.

:meth:`StackProxies.reset` enables every proxy and removes every toxic (between
tests). A proxy passes bytes, so TLS goes through untouched: the kube-apiserver's
certificate names 127.0.0.1, which the proxy's address is too.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import requests
import yaml

from tests.harness.binaries import ensure_binaries
from tests.harness.ports import free_port
from tests.harness.processes import (
    HarnessError,
    ManagedProcess,
    make_temp_dir,
    remove_temp_dir,
)
from tests.harness.progress import say
from tests.harness.stack import Stack

_START_TIMEOUT = 30.0
_API_TIMEOUT = 10.0

#: Which way a toxic acts: on what the client sends, or on what the server answers.
Stream = Literal["upstream", "downstream"]


class Fault(Protocol):
    """Something wrong with the network to one server, put on a proxy and taken off."""

    @property
    def label(self) -> str:
        """A short name for test ids and reports."""
        ...

    def inject(self, proxy: Proxy) -> None: ...

    def clear(self, proxy: Proxy) -> None: ...


@dataclass(frozen=True)
class Toxic:
    """A Toxiproxy toxic: its ``type``, ``attributes`` and ``stream``."""

    type: str
    attributes: Mapping[str, int] = field(default_factory=dict)
    stream: Stream = "downstream"

    @property
    def name(self) -> str:
        return f"{self.type}_{self.stream}"

    @property
    def label(self) -> str:
        return self.type

    def inject(self, proxy: Proxy) -> None:
        proxy.api(
            "POST",
            "/toxics",
            json={
                "name": self.name,
                "type": self.type,
                "stream": self.stream,
                "toxicity": 1.0,
                "attributes": dict(self.attributes),
            },
        )

    def clear(self, proxy: Proxy) -> None:
        proxy.api("DELETE", f"/toxics/{self.name}")


@dataclass(frozen=True)
class Cut:
    """The proxy disabled: open connections closed, new ones refused."""

    label: str = "cut"

    def inject(self, proxy: Proxy) -> None:
        proxy.set_enabled(False)

    def clear(self, proxy: Proxy) -> None:
        proxy.set_enabled(True)


def latency(milliseconds: int, jitter: int = 0) -> Toxic:
    """Every chunk of the answers is held ``milliseconds`` (+- ``jitter``)."""
    return Toxic("latency", {"latency": milliseconds, "jitter": jitter})


def timeout(milliseconds: int) -> Toxic:
    """No data passes; each connection is closed after ``milliseconds`` (0: held open)."""
    return Toxic("timeout", {"timeout": milliseconds}, stream="upstream")


def reset_peer(milliseconds: int = 0, stream: Stream = "downstream") -> Toxic:
    """A TCP RST ``milliseconds`` after the first data. Downstream (the default) the
    request reaches the server and its answer is lost: a write may have happened."""
    return Toxic("reset_peer", {"timeout": milliseconds}, stream=stream)


def bandwidth(kilobytes_per_second: int) -> Toxic:
    """Answers trickle at ``kilobytes_per_second``."""
    return Toxic("bandwidth", {"rate": kilobytes_per_second})


def limit_data(byte_count: int) -> Toxic:
    """Each connection is closed once ``byte_count`` bytes of answers passed."""
    return Toxic("limit_data", {"bytes": byte_count})


CUT = Cut()


@dataclass(frozen=True)
class Proxy:
    """One proxy: it listens on ``listen`` and forwards to ``upstream`` (host:port)."""

    api_url: str
    name: str
    listen: str
    upstream: str

    def url_for(self, server_url: str) -> str:
        """``server_url`` (scheme, host, port, path) with the proxy's host and port."""
        parts = urllib.parse.urlsplit(server_url)
        return urllib.parse.urlunsplit(parts._replace(netloc=self.listen))

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call Toxiproxy's API for this proxy; the answer's JSON (None if empty)."""
        return _call(method, f"{self.api_url}/proxies/{self.name}{path}", **kwargs)

    def set_enabled(self, enabled: bool) -> None:
        self.api("POST", "", json={"enabled": enabled})

    def toxics(self) -> list[dict[str, Any]]:
        """The toxics on the proxy now."""
        found: list[dict[str, Any]] = self.api("GET", "/toxics")
        return found

    @contextmanager
    def faulty(self, fault: Fault) -> Iterator[None]:
        """``fault`` on this proxy for the ``with`` block."""
        fault.inject(self)
        try:
            yield
        finally:
            fault.clear(self)


@dataclass(eq=False)
class Toxiproxy:
    """A running Toxiproxy server and its proxies by name."""

    url: str
    workdir: Path
    process: ManagedProcess
    proxies: dict[str, Proxy] = field(default_factory=dict)

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/version", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def add_proxy(self, name: str, upstream_url: str) -> Proxy:
        """A new proxy to the host and port of ``upstream_url``, on a free loopback port."""
        upstream = urllib.parse.urlsplit(upstream_url).netloc
        listen = f"127.0.0.1:{free_port()}"
        _call(
            "POST",
            f"{self.url}/proxies",
            json={"name": name, "listen": listen, "upstream": upstream, "enabled": True},
        )
        proxy = Proxy(self.url, name, listen, upstream)
        self.proxies[name] = proxy
        say(f"toxiproxy: {name} on {listen} -> {upstream}")
        return proxy

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        _call("POST", f"{self.url}/reset")

    def stop(self) -> None:
        self.process.stop()
        remove_temp_dir(self.workdir)


def _call(method: str, url: str, **kwargs: Any) -> Any:
    response = requests.request(method, url, timeout=_API_TIMEOUT, **kwargs)
    if response.status_code >= 300:
        raise HarnessError(f"toxiproxy {method} {url}: HTTP {response.status_code} {response.text}")
    return response.json() if response.content else None


def start_toxiproxy() -> Toxiproxy:
    """Start ``toxiproxy-server`` on a free loopback port; return once its API answers."""
    binary = ensure_binaries().toxiproxy
    workdir = make_temp_dir("toxiproxy")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"starting Toxiproxy on {url}")
    process = ManagedProcess(
        "toxiproxy",
        [str(binary), "-host", "127.0.0.1", "-port", str(port)],
        workdir / "toxiproxy.log",
        # Its request log at info level is one line per API call; warnings are enough.
        env={"LOG_LEVEL": "warn"},
        cwd=workdir,
    )
    toxiproxy = Toxiproxy(url, workdir, process)
    process.wait_until(toxiproxy.ready, _START_TIMEOUT, "its API answered /version")
    return toxiproxy


@dataclass(frozen=True)
class StackProxies:
    """One proxy in front of each server the operator calls."""

    server: Toxiproxy
    kube_apiserver: Proxy
    keycloak: Proxy
    seldon_deploy: Proxy
    prometheus: Proxy

    def by_server(self) -> dict[str, Proxy]:
        """The proxies by a short server name (for test ids)."""
        return {
            "kube": self.kube_apiserver,
            "keycloak": self.keycloak,
            "seldon": self.seldon_deploy,
            "prometheus": self.prometheus,
        }

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self.server.reset()


def proxy_stack(toxiproxy: Toxiproxy, stack: Stack) -> StackProxies:
    """Proxies to the stack's kube-apiserver, Keycloak, simulator and Prometheus."""
    return StackProxies(
        server=toxiproxy,
        kube_apiserver=toxiproxy.add_proxy("kube-apiserver", stack.control_plane.url),
        keycloak=toxiproxy.add_proxy("keycloak", stack.keycloak.url),
        seldon_deploy=toxiproxy.add_proxy("seldon-deploy", stack.simulator.url),
        prometheus=toxiproxy.add_proxy("prometheus", stack.prometheus.url),
    )


def kubeconfig_through(proxy: Proxy, kubeconfig: Path, path: Path) -> Path:
    """A copy of ``kubeconfig`` at ``path`` whose clusters are reached through ``proxy``.

    The server certificate stays valid: it names 127.0.0.1, not a port."""
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = proxy.url_for(cluster["cluster"]["server"])
    path.write_text(yaml.safe_dump(config))
    return path
