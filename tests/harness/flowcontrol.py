"""API Priority and Fairness on the harness apiserver: a tiny share for chosen identities.

The stack's apiserver runs with APF off. :func:`throttled` restarts it with APF on
and a smaller total concurrency, and gives the chosen ServiceAccounts a priority
level of their own with one seat, no borrowing and a queue of two: past that the
apiserver answers 429 with ``Retry-After``, as a busy production apiserver does to
a low-priority client. :func:`noisy_neighbour` takes the level's places (the seat and
the queue) from another ServiceAccount of the same level: first every one, so that
the operator's calls are answered 429, then, once the test has seen that,
:meth:`NoisyNeighbour.leave_one_place`: the operator always has a place for one call,
and a second call at the same time is answered 429. (Kept full, the level would
starve the operator by chance: its calls would get in only when they happened to
arrive as a place freed.) On the way out both are undone and the apiserver runs
with APF off again.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.harness.controlplane import ControlPlane
from tests.harness.progress import say

NAME = "harness-throttled"
#: Places in the throttled level's one queue (its one seat besides).
QUEUE_LENGTH = 2
#: APF on, with 150 seats in all, so that one nominal share is one seat.
APF_ON = (
    "--enable-priority-and-fairness=true",
    "--max-requests-inflight=100",
    "--max-mutating-requests-inflight=50",
)
#: The stack's own settings (the apiserver's defaults for the two limits).
APF_OFF = (
    "--enable-priority-and-fairness=false",
    "--max-requests-inflight=400",
    "--max-mutating-requests-inflight=200",
)
_REJECTED = re.compile(
    r'^apiserver_flowcontrol_rejected_requests_total\{[^}]*flow_schema="'
    + NAME
    + r'"[^}]*\} (\S+)$',
    re.MULTILINE,
)


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def _objects(subjects: Sequence[ServiceAccount]) -> list[dict[str, Any]]:
    level: dict[str, Any] = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": NAME},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 1,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {
                    "type": "Queue",
                    "queuing": {"queues": 1, "handSize": 1, "queueLengthLimit": QUEUE_LENGTH},
                },
            },
        },
    }
    schema: dict[str, Any] = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": NAME},
        "spec": {
            "priorityLevelConfiguration": {"name": NAME},
            # Before every built-in schema but `exempt` and `probes` (1, 2).
            "matchingPrecedence": 500,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"namespace": s.namespace, "name": s.name},
                        }
                        for s in subjects
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }
    return [level, schema]


@dataclass
class Throttle:
    """The priority level in force; what the apiserver rejected in it."""

    control_plane: ControlPlane

    def rejected(self) -> int:
        """Requests of the throttled identities the apiserver answered 429 (its metrics)."""
        text = self.control_plane.kubectl("get", "--raw", "/metrics").stdout
        return int(sum(float(value) for value in _REJECTED.findall(text)))


@contextlib.contextmanager
def throttled(
    control_plane: ControlPlane, subjects: Sequence[ServiceAccount]
) -> Iterator[Throttle]:
    """APF on, and ``subjects`` limited to one seat and a queue of :data:`QUEUE_LENGTH`
    (which :meth:`NoisyNeighbour.leave_one_place` counts on)."""
    say("restarting kube-apiserver with API Priority and Fairness on")
    control_plane.restart_apiserver(flags=APF_ON)
    document = {"apiVersion": "v1", "kind": "List", "items": _objects(subjects)}
    try:
        control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(document))
        yield Throttle(control_plane)
    finally:
        control_plane.kubectl(
            "delete", "flowschema,prioritylevelconfiguration", NAME, "--ignore-not-found"
        )
        say("restarting kube-apiserver with API Priority and Fairness off")
        control_plane.restart_apiserver(flags=APF_OFF)


@dataclass
class NoisyNeighbour:
    """Threads listing ModelPromotions as fast as they can, as one ServiceAccount."""

    requests: int = 0
    throttled: int = 0
    _stops: list[threading.Event] = field(default_factory=list)

    def leave_one_place(self) -> None:
        """Stop the threads but :data:`QUEUE_LENGTH`: one call in the seat, the others
        queued, and one place of the level left free."""
        for stop in self._stops[QUEUE_LENGTH:]:
            stop.set()


@contextlib.contextmanager
def noisy_neighbour(
    control_plane: ControlPlane,
    account: ServiceAccount,
    namespace: str,
    *,
    threads: int = 6,
) -> Iterator[NoisyNeighbour]:
    """``account`` (made here, allowed to list ModelPromotions in ``namespace``) lists
    them from ``threads`` threads until the block ends (or the thread is stopped)."""
    kubectl = control_plane.kubectl
    kubectl("create", "serviceaccount", account.name, "-n", account.namespace)
    kubectl(
        "create", "clusterrole", f"{account.name}-lister",
        "--verb=list", "--resource=modelpromotions.deploy.mlops.dev",
    )  # fmt: skip
    kubectl(
        "create", "clusterrolebinding", f"{account.name}-lister",
        f"--clusterrole={account.name}-lister",
        f"--serviceaccount={account.namespace}:{account.name}",
    )  # fmt: skip
    token = kubectl("create", "token", account.name, "-n", account.namespace).stdout.strip()
    url = (
        f"{control_plane.url}/apis/deploy.mlops.dev/v1alpha1/namespaces/{namespace}/modelpromotions"
    )
    neighbour = NoisyNeighbour()
    lock = threading.Lock()

    def hammer(stop: threading.Event) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        while not stop.is_set():
            try:
                status = session.get(url, timeout=30, verify=str(control_plane.ca_cert)).status_code
            except requests.RequestException:
                status = 0  # the apiserver restarting
            with lock:
                neighbour.requests += 1
                neighbour.throttled += status == 429

    neighbour._stops = [threading.Event() for _ in range(threads)]
    workers = [
        threading.Thread(target=hammer, args=(stop,), daemon=True) for stop in neighbour._stops
    ]
    for worker in workers:
        worker.start()
    try:
        yield neighbour
    finally:
        for stop in neighbour._stops:
            stop.set()
        for worker in workers:
            worker.join(timeout=60)
        kubectl("delete", "clusterrolebinding,clusterrole", f"{account.name}-lister")
        kubectl("delete", "serviceaccount", account.name, "-n", account.namespace)
