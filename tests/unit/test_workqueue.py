"""The work queue: due times, one worker per key, work asked for during work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from promotion_operator.control.workqueue import WorkQueue
from tests.unit.fake_clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    # One loop for the whole test: the queue's wake-up belongs to the loop it first ran on.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


def take_due(queue: WorkQueue[str]) -> list[str]:
    """The keys due now, in order (without waiting for later ones)."""

    async def drain() -> list[str]:
        taken: list[str] = []
        while True:
            try:
                taken.append(await asyncio.wait_for(queue.get(), timeout=0.01))
            except TimeoutError:
                return taken

    return asyncio.get_event_loop().run_until_complete(drain())


def test_keys_come_out_when_due_earliest_first(clock: Clock) -> None:
    queue: WorkQueue[str] = WorkQueue(clock)
    queue.add("late", 5)
    queue.add("soon", 1)
    queue.add("later", 60)
    clock.now += 10

    assert take_due(queue) == ["soon", "late"]


def test_asking_again_only_moves_the_due_time_earlier(clock: Clock) -> None:
    queue: WorkQueue[str] = WorkQueue(clock)
    queue.add("a", 1)
    queue.add("a", 30)  # later: ignored
    clock.now += 2

    assert take_due(queue) == ["a"]
    assert len(queue) == 0


def test_a_key_being_worked_on_is_not_handed_out_again(clock: Clock) -> None:
    queue: WorkQueue[str] = WorkQueue(clock)
    queue.add("a")
    assert take_due(queue) == ["a"]

    queue.add("a")  # asked for while a worker has it

    assert take_due(queue) == []
    queue.done("a")
    assert take_due(queue) == ["a"]


def test_done_without_new_work_leaves_nothing(clock: Clock) -> None:
    queue: WorkQueue[str] = WorkQueue(clock)
    queue.add("a")
    take_due(queue)

    queue.done("a")

    assert take_due(queue) == [] and len(queue) == 0


def test_a_forgotten_key_never_comes_out(clock: Clock) -> None:
    queue: WorkQueue[str] = WorkQueue(clock)
    queue.add("gone")
    queue.add("kept")

    queue.forget("gone")

    assert take_due(queue) == ["kept"]


def test_a_waiting_worker_wakes_for_a_key_added_later() -> None:
    async def scenario() -> str:
        queue: WorkQueue[str] = WorkQueue()
        waiting = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        queue.add("new")
        return await asyncio.wait_for(waiting, timeout=1)

    assert asyncio.get_event_loop().run_until_complete(scenario()) == "new"


class Recorder:
    """A ``QueueObserver`` that keeps what it heard."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.late: list[float] = []

    def sized(self, waiting: int, working: int) -> None:
        self.sizes.append((waiting, working))

    def taken(self, late_seconds: float) -> None:
        self.late.append(late_seconds)


def test_the_observer_hears_the_size_after_adds(clock: Clock) -> None:
    observer = Recorder()
    queue: WorkQueue[str] = WorkQueue(clock, observer=observer)
    queue.add("a", 5)
    queue.add("b", 1)

    assert observer.sizes[-1] == (2, 0)


def test_the_observer_hears_a_taken_key_move_to_working(clock: Clock) -> None:
    observer = Recorder()
    queue: WorkQueue[str] = WorkQueue(clock, observer=observer)
    queue.add("a")
    queue.add("b", 60)
    take_due(queue)

    assert observer.sizes[-1] == (1, 1)


def test_the_observer_hears_how_late_a_key_was_taken(clock: Clock) -> None:
    observer = Recorder()
    queue: WorkQueue[str] = WorkQueue(clock, observer=observer)
    queue.add("a", 5)
    clock.now += 7
    take_due(queue)

    assert observer.late == [2]


def test_the_observer_hears_done_and_forget_empty_the_queue(clock: Clock) -> None:
    observer = Recorder()
    queue: WorkQueue[str] = WorkQueue(clock, observer=observer)
    queue.add("a")
    queue.add("b", 60)
    take_due(queue)
    queue.done("a")
    queue.forget("b")

    assert observer.sizes[-1] == (0, 0)
