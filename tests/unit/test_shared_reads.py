"""Shared reads: GETs while few runs read a namespace, one list for many, never a list
from before a run's own write, and runs woken when their deployment changes."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from promotion_operator.control.shared_reads import SharedReads
from promotion_operator.core.spec import DeploymentRef, Kind
from promotion_operator.errors import PromotionError, SeldonDeployUnavailable
from tests.unit.fake_clock import Clock

DEPLOYMENT = Kind.SELDON_DEPLOYMENT


class Reader:
    """A namespace of deployments in memory, counting calls."""

    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.error: PromotionError | None = None

    def put(self, name: str, state: str) -> None:
        self.deployments[name] = {
            "metadata": {"name": name, "generation": 1},
            "spec": {},
            "status": {"state": state},
        }

    def find(self, namespace: str, name: str, *, kind: Kind = DEPLOYMENT) -> dict[str, Any] | None:
        self.calls.append(f"GET {name}")
        return copy.deepcopy(self.deployments.get(name))

    def list(self, namespace: str, *, kind: Kind = DEPLOYMENT) -> list[dict[str, Any]]:
        self.calls.append("LIST")
        if self.error is not None:
            raise self.error
        return [copy.deepcopy(d) for d in self.deployments.values()]


def ref(name: str) -> DeploymentRef:
    return DeploymentRef("production", name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reader() -> Reader:
    reader = Reader()
    for i in range(5):
        reader.put(f"m{i}", "Creating")
    return reader


@pytest.fixture
def reads(reader: Reader, clock: Clock) -> SharedReads:
    return SharedReads(lambda _: reader, max_age=1.0, list_from=3, clock=clock)


def watch_all(reads: SharedReads, count: int) -> None:
    for i in range(count):
        reads.watch(f"run{i}", [ref(f"m{i}")])


def everyone_read_once(reads: SharedReads, count: int) -> list[str]:
    """``count`` runs watching and having read their deployment; the runs woken later."""
    woken: list[str] = []
    reads.on_change = woken.append
    watch_all(reads, count)
    for i in range(count):
        reads.find(f"run{i}", ref(f"m{i}"))
    return woken


def test_a_namespace_few_runs_read_is_read_with_gets(reads: SharedReads, reader: Reader) -> None:
    watch_all(reads, 2)

    reads.find("run0", ref("m0"))
    reads.find("run1", ref("m1"))

    assert reader.calls == ["GET m0", "GET m1"]


def test_one_list_answers_every_run_of_a_busy_namespace(reads: SharedReads, reader: Reader) -> None:
    watch_all(reads, 5)

    found = [reads.find(f"run{i}", ref(f"m{i}")) for i in range(5)]

    assert reader.calls == ["LIST"]
    assert [f["metadata"]["name"] for f in found if f] == ["m0", "m1", "m2", "m3", "m4"]


def test_a_deployment_missing_from_the_list_is_not_found(
    reads: SharedReads, reader: Reader
) -> None:
    watch_all(reads, 5)
    reads.watch("run9", [ref("absent")])

    assert reads.find("run9", ref("absent")) is None


def test_a_list_older_than_the_maximum_age_is_not_used(
    reads: SharedReads, reader: Reader, clock: Clock
) -> None:
    watch_all(reads, 5)
    reads.find("run0", ref("m0"))
    clock.now += 1.5

    reads.find("run1", ref("m1"))

    assert reader.calls == ["LIST", "LIST"]


def test_a_run_never_reads_its_deployment_from_a_list_made_before_its_write(
    reads: SharedReads, reader: Reader, clock: Clock
) -> None:
    watch_all(reads, 5)
    reads.find("run0", ref("m0"))
    clock.now += 0.1
    reads.written("run1", ref("m1"))
    reader.put("m1", "Available")  # what the write did

    found = reads.find("run1", ref("m1"))

    assert reader.calls == ["LIST", "LIST"]
    assert found is not None and found["status"]["state"] == "Available"


def test_a_poll_never_reads_the_same_list_twice(
    reads: SharedReads, reader: Reader, clock: Clock
) -> None:
    watch_all(reads, 5)
    reads.find("run0", ref("m0"))
    clock.now += 0.2

    reads.find("run0", ref("m0"))  # its next poll: something newer is needed
    reads.find("run1", ref("m1"))  # another run: the new list is news to it too

    assert reader.calls == ["LIST", "LIST"]


def test_runs_asking_while_a_list_is_under_way_share_the_next_one(
    reads: SharedReads, reader: Reader
) -> None:
    watch_all(reads, 5)
    entered, release = threading.Event(), threading.Event()
    original = reader.list

    def slow_list(namespace: str, *, kind: Kind = DEPLOYMENT) -> list[dict[str, Any]]:
        entered.set()
        release.wait(5)
        return original(namespace, kind=kind)

    reader.list = slow_list  # type: ignore[method-assign]
    first = threading.Thread(target=reads.find, args=("run0", ref("m0")))
    first.start()
    entered.wait(5)
    others = [
        threading.Thread(target=reads.find, args=(f"run{i}", ref(f"m{i}"))) for i in range(1, 5)
    ]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(5)

    assert reader.calls == ["LIST"]  # the list under way was fresh enough for all


def test_a_failed_list_fails_the_reads_that_waited_for_it(
    reads: SharedReads, reader: Reader
) -> None:
    watch_all(reads, 5)
    reader.error = SeldonDeployUnavailable("down", http_status=503)

    with pytest.raises(SeldonDeployUnavailable):
        reads.find("run0", ref("m0"))
    with pytest.raises(SeldonDeployUnavailable):
        reads.find("run1", ref("m1"))  # the same failed list answers it

    assert reader.calls == ["LIST"]


def test_a_run_whose_deployment_changed_is_woken(
    reads: SharedReads, reader: Reader, clock: Clock
) -> None:
    woken = everyone_read_once(reads, 5)
    reader.put("m3", "Available")
    clock.now += 2

    reads.find("run0", ref("m0"))  # run0's poll lists the namespace

    assert woken == ["run3"]


def test_a_run_that_ended_is_no_longer_woken_nor_counted(
    reads: SharedReads, reader: Reader, clock: Clock
) -> None:
    woken = everyone_read_once(reads, 3)
    reads.unwatch("run2")
    reader.put("m2", "Available")
    clock.now += 2

    reads.find("run0", ref("m0"))

    assert woken == []
    assert reader.calls[-1] == "GET m0"  # two runs left: below the list threshold


def test_a_run_that_reads_the_list_is_not_woken_by_it(
    reads: SharedReads, reader: Reader, clock: Clock
) -> None:
    woken = everyone_read_once(reads, 5)
    reader.put("m0", "Available")
    clock.now += 2

    found = reads.find("run0", ref("m0"))  # run0's own poll sees the change

    assert found is not None and found["status"]["state"] == "Available"
    assert woken == []
