"""Leader election over a Kubernetes Lease, as client-go's leaderelection does it.

One replica holds the Lease and renews it every ``retry_seconds``; the others
watch it. A Lease whose record has not changed for ``lease_seconds`` (by the
watcher's own clock, so clock skew between nodes does not matter) is taken
over. A leader that cannot renew for ``renew_deadline`` seconds stops leading
before its Lease can expire, so two replicas never lead at once on a healthy
network. On a clean shutdown the leader gives the Lease up, so the standby
takes over at its next attempt instead of after ``lease_seconds``.

Leading is also a fence: :meth:`LeaderElection.time_left` is asked right before
each write, so a replica that was paused past its renew deadline writes nothing
when it wakes up, even before its next attempt tells it that it lost the Lease.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promotion_operator.control.kube_api import KubeApi, KubeError, ObjectChanged

log = logging.getLogger(__name__)


def _micro_time(at: datetime.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElection:
    """One replica's side of the election for the Lease ``namespace/name``."""

    api: KubeApi
    namespace: str
    name: str
    identity: str
    lease_seconds: float = 15.0
    renew_deadline: float = 10.0
    retry_seconds: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _observed: Any = None  # the Lease spec last read
    _observed_at: float = field(default=-float("inf"))
    _renewed_at: float = field(default=-float("inf"))
    _leading: bool = False

    def describe(self) -> str:
        """The Lease, as ``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    def time_left(self) -> float:
        """The seconds this replica may still act as the leader: until the renew
        deadline after its last renewal; 0 when it does not lead.

        The fence of every write: a replica paused past its deadline (SIGSTOP, a long
        GC, a frozen node) sees 0 here when it wakes, before the election notices."""
        if not self._leading:
            return 0.0
        return max(0.0, self._renewed_at + self.renew_deadline - self.clock())

    def attempt(self) -> bool:
        """Acquire or renew the Lease once; whether this replica leads now."""
        if self._leading and self.clock() - self._renewed_at > self.renew_deadline:
            self._leading = False  # stop before the Lease can expire under another replica
        # Counted from before the write: the others count from when they saw it, later.
        started = self.clock()
        try:
            self._leading = self._try()
            if self._leading:
                self._renewed_at = started
        except ObjectChanged:
            self._leading = False  # another replica wrote it first
        except KubeError as error:
            log.warning("could not read or write the Lease %s: %s", self.describe(), error)
            if self._leading and self.clock() - self._renewed_at > self.renew_deadline:
                self._leading = False
        return self._leading

    def release(self) -> None:
        """Give the Lease up if this replica holds it (on shutdown)."""
        if not self._leading:
            return
        self._leading = False
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == (
                self.identity
            ):
                spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
                self.api.replace_lease(lease, spec)
                log.info("gave up the Lease %s", self.describe())
        except KubeError as error:
            log.warning("could not give up the Lease %s: %s", self.describe(), error)

    def _try(self) -> bool:
        # Each call is bounded, so an attempt ends well within the renew deadline.
        timeout = max(1.0, self.retry_seconds)
        now = datetime.datetime.now(datetime.UTC)
        lease = self.api.get_lease(self.namespace, self.name, timeout=timeout)
        mine = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "acquireTime": _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": 0,
        }
        if lease is None:
            self.api.create_lease(self.namespace, self.name, mine, timeout=timeout)
            return True
        spec: Mapping[str, Any] = lease.get("spec") or {}
        if spec != self._observed:
            self._observed, self._observed_at = dict(spec), self.clock()
        holder = spec.get("holderIdentity")
        if holder == self.identity:
            self.api.replace_lease(lease, {**spec, "renewTime": _micro_time(now)}, timeout=timeout)
            return True
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and self.clock() - self._observed_at < duration:
            return False  # held, and renewed recently as far as this replica saw
        transitions = int(spec.get("leaseTransitions") or 0) + 1
        self.api.replace_lease(lease, {**mine, "leaseTransitions": transitions}, timeout=timeout)
        log.info("took over the Lease %s from %s", self.describe(), holder or "a replica that left")
        return True
