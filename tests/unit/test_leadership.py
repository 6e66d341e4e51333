"""Leader election over a Lease: who leads, when a standby takes over, stepping down."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast

import pytest

from promotion_operator.control.kube_api import KubeApi, KubeError, ObjectChanged
from promotion_operator.control.leadership import LeaderElection
from tests.unit.fake_clock import Clock


class Leases:
    """One Lease in memory, with the API's optimistic concurrency on resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise KubeError("GET lease: ConnectTimeoutError")

    def get_lease(self, namespace: str, name: str, *, timeout: float = 30) -> Any:
        self._check()
        return copy.deepcopy(self.lease)

    def create_lease(
        self, namespace: str, name: str, spec: Mapping[str, Any], *, timeout: float = 30
    ) -> Any:
        self._check()
        if self.lease is not None:
            raise ObjectChanged("already exists", 409)
        metadata = {"namespace": namespace, "name": name, "resourceVersion": "1"}
        self.lease = {"metadata": metadata, "spec": dict(spec)}
        return copy.deepcopy(self.lease)

    def replace_lease(
        self, lease: Mapping[str, Any], spec: Mapping[str, Any], *, timeout: float = 30
    ) -> Any:
        self._check()
        assert self.lease is not None
        version = self.lease["metadata"]["resourceVersion"]
        if lease["metadata"]["resourceVersion"] != version:
            raise ObjectChanged("the object has been modified", 409)
        self.lease = {
            "metadata": {**self.lease["metadata"], "resourceVersion": str(int(version) + 1)},
            "spec": dict(spec),
        }
        return copy.deepcopy(self.lease)

    def holder(self) -> str | None:
        return None if self.lease is None else self.lease["spec"].get("holderIdentity")


@pytest.fixture
def leases() -> Leases:
    return Leases()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def replica(leases: Leases, clock: Clock, identity: str) -> LeaderElection:
    return LeaderElection(
        cast(KubeApi, leases),
        "promotion-operator",
        "promotion-operator",
        identity,
        lease_seconds=15,
        renew_deadline=10,
        retry_seconds=2,
        clock=clock,
    )


def test_the_first_replica_takes_a_free_lease(leases: Leases, clock: Clock) -> None:
    assert replica(leases, clock, "a").attempt()
    assert leases.holder() == "a"


def test_a_standby_does_not_take_a_lease_that_is_renewed(leases: Leases, clock: Clock) -> None:
    a, b = replica(leases, clock, "a"), replica(leases, clock, "b")
    a.attempt()
    for _ in range(20):
        clock.now += 2
        assert a.attempt()
        assert not b.attempt()

    assert leases.holder() == "a"


def test_a_standby_takes_over_a_lease_left_unrenewed_for_its_duration(
    leases: Leases, clock: Clock
) -> None:
    a, b = replica(leases, clock, "a"), replica(leases, clock, "b")
    a.attempt()
    assert not b.attempt()  # a is now silent (killed)
    clock.now += 14
    assert not b.attempt()

    clock.now += 2

    assert b.attempt()
    assert leases.holder() == "b"
    assert leases.lease is not None and leases.lease["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_steps_down_before_its_lease_expires(
    leases: Leases, clock: Clock
) -> None:
    a = replica(leases, clock, "a")
    a.attempt()
    leases.down = True
    clock.now += 8
    assert a.attempt()  # still within the renew deadline

    clock.now += 3

    assert not a.attempt()


def test_a_leader_stopping_cleanly_hands_the_lease_over_at_once(
    leases: Leases, clock: Clock
) -> None:
    a, b = replica(leases, clock, "a"), replica(leases, clock, "b")
    a.attempt()
    assert not b.attempt()

    a.release()
    clock.now += 2

    assert b.attempt()
    assert leases.holder() == "b"


def test_a_leader_may_write_until_the_renew_deadline_after_its_last_renewal(
    leases: Leases, clock: Clock
) -> None:
    a = replica(leases, clock, "a")
    assert a.time_left() == 0.0  # not leading yet
    a.attempt()
    clock.now += 3

    assert a.time_left() == pytest.approx(7.0)


def test_a_leader_paused_past_its_renew_deadline_may_not_write_when_it_wakes(
    leases: Leases, clock: Clock
) -> None:
    a = replica(leases, clock, "a")
    a.attempt()

    clock.now += 10.5  # SIGSTOP, a long GC, a frozen node: no renewal meanwhile

    assert a.time_left() == 0.0


def test_a_replica_that_lost_the_lease_may_not_write(leases: Leases, clock: Clock) -> None:
    a, b = replica(leases, clock, "a"), replica(leases, clock, "b")
    a.attempt()
    b.attempt()
    clock.now += 16
    assert b.attempt()

    assert not a.attempt()
    assert a.time_left() == 0.0
