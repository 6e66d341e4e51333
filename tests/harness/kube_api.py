"""The Kubernetes API over HTTP as the harness admin, for work in bulk.

``ControlPlane.kubectl`` starts a process per call, which is right for a test
and far too slow for thousands of objects. This client keeps one pooled
``requests`` session per thread (the admin client certificate, the harness CA),
runs a call over many items on a thread pool with progress lines, watches a
namespace's ModelPromotions (or PromotionPaths) and reads the apiserver's own
``/metrics``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, NamedTuple, TypeVar

import requests

from tests.harness.controlplane import ControlPlane
from tests.harness.progress import say
from tests.harness.promotions import API_VERSION

_MERGE = {"Content-Type": "application/merge-patch+json"}
_JSON = {"Content-Type": "application/json"}
T = TypeVar("T")


class Resource(NamedTuple):
    """A kind of the operator's API group, as the client names it."""

    kind: str
    plural: str


MODELPROMOTION = Resource("ModelPromotion", "modelpromotions")
PROMOTIONPATH = Resource("PromotionPath", "promotionpaths")


class KubeApi:
    """ModelPromotions (or another ``resource`` of the operator's group) of the harness's
    apiserver, as the admin, from any thread."""

    def __init__(self, control_plane: ControlPlane, resource: Resource = MODELPROMOTION) -> None:
        self.resource = resource
        self.url = control_plane.url
        self._cert = (str(control_plane.admin.cert), str(control_plane.admin.key))
        self._ca = str(control_plane.ca_cert)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.cert = self._cert
            self._local.session = session
        return session

    def _path(self, namespace: str, name: str | None = None) -> str:
        path = f"{self.url}/apis/{API_VERSION}/namespaces/{namespace}/{self.resource.plural}"
        return f"{path}/{name}" if name else path

    def _send(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        # verify per request: REQUESTS_CA_BUNDLE would override a session's (psf/requests#3829).
        response = self._session().request(method, url, timeout=60, verify=self._ca, **kwargs)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {url} -> {response.status_code}: {response.text[:500]}")
        body: dict[str, Any] = response.json()
        return body

    def create(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object; the API's answer (with uid, generation, timestamps)."""
        body = json.dumps(
            {
                "apiVersion": API_VERSION,
                "kind": self.resource.kind,
                "metadata": {"name": name},
                "spec": spec,
            }
        )
        return self._send("POST", self._path(namespace), data=body, headers=_JSON)

    def patch(
        self, namespace: str, name: str, patch: dict[str, Any], *, status: bool = False
    ) -> dict[str, Any]:
        """A merge patch of the object, or of its status subresource."""
        url = self._path(namespace, name) + ("/status" if status else "")
        return self._send("PATCH", url, data=json.dumps(patch), headers=_MERGE)

    def list_all(self, namespace: str) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``namespace`` and the list's resourceVersion."""
        body = self._send("GET", self._path(namespace))
        return list(body["items"]), str(body["metadata"]["resourceVersion"])

    def watch(
        self, namespace: str, resource_version: str, timeout_seconds: int = 60
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) of each watch event from ``resource_version`` until the server
        ends the watch; ``ERROR`` events are yielded too (410 Gone: list again)."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
        }
        with self._session().get(
            self._path(namespace),
            params=params,
            stream=True,
            timeout=(10, timeout_seconds + 30),
            verify=self._ca,
        ) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line:
                    event = json.loads(line)
                    yield str(event["type"]), dict(event["object"])

    def events(self, namespace: str) -> list[dict[str, Any]]:
        """The core/v1 Events of ``namespace``."""
        return list(self._send("GET", f"{self.url}/api/v1/namespaces/{namespace}/events")["items"])

    def metrics(self) -> str:
        """The apiserver's own ``/metrics`` page (text format)."""
        response = self._session().get(f"{self.url}/metrics", timeout=60, verify=self._ca)
        response.raise_for_status()
        return response.text


def in_parallel(
    items: Sequence[T], call: Callable[[T], object], what: str, *, threads: int = 16
) -> float:
    """``call`` every item on ``threads`` threads, saying how far it got every few
    seconds; the seconds it took. The first failure is raised once all have ended."""
    started = last_said = time.monotonic()
    done = 0
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(call, item) for item in items]
        for future in as_completed(futures):
            done += 1
            error = future.exception()
            if error is not None and failure is None:
                failure = error
            if time.monotonic() - last_said >= 3 or done == len(items):
                last_said = time.monotonic()
                say(f"{what}: {done}/{len(items)} ({last_said - started:.0f} s)")
    if failure is not None:
        raise failure
    return time.monotonic() - started
