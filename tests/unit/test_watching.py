"""The ModelPromotions' watch loop: a paged list, the watch from its version, bookmarks,
a list again after a 410, and a wait after any other failure (no servers)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from promotion_operator.control.kube_api import KubeError
from promotion_operator.handlers.watching import PromotionWatch, WatchEvent


def obj(uid: str, version: int) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": uid, "resourceVersion": str(version)}}


class FakeSource:
    """Objects listed in pages, and scripted watches (each a list of events or an error)."""

    def __init__(self, objects: Sequence[dict[str, Any]], version: int) -> None:
        self.objects = list(objects)
        self.version = version
        self.watches: list[list[dict[str, Any]] | Exception] = []
        self.calls: list[str] = []
        self.expire_continue = False

    def list_promotions(
        self, namespace: str | None, *, limit: int, continue_token: str = ""
    ) -> dict[str, Any]:
        self.calls.append(f"list {continue_token or 'first'}")
        if continue_token and self.expire_continue:
            self.expire_continue = False
            raise KubeError("GET ...: 410 The provided continue parameter is too old", 410)
        start = int(continue_token or 0)
        end = start + limit
        more = str(end) if end < len(self.objects) else ""
        return {
            "metadata": {"resourceVersion": str(self.version), "continue": more},
            "items": self.objects[start:end],
        }

    def watch_promotions(
        self, namespace: str | None, resource_version: str, *, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        self.calls.append(f"watch {resource_version}")
        script = self.watches.pop(0) if self.watches else []
        if isinstance(script, Exception):
            raise script
        yield from script


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[WatchEvent]] = []

    def __call__(self, events: Sequence[WatchEvent]) -> None:
        self.batches.append(list(events))

    def uids(self, event_type: str | None) -> list[str]:
        return [
            body["metadata"]["uid"]
            for batch in self.batches
            for kind, body in batch
            if kind == event_type
        ]


def watch_of(source: FakeSource, recorder: Recorder) -> PromotionWatch:
    return PromotionWatch(source, "bench", recorder, page_size=2, backoff=(0.0,))


def run_until_watches_are_used(watch: PromotionWatch, source: FakeSource) -> None:
    """Run the loop until it has opened every scripted watch and one more."""
    stopped = threading.Event()
    original = source.watch_promotions
    budget = len(source.watches) + 1

    def counted(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        nonlocal budget
        budget -= 1
        if budget < 0:
            stopped.set()
            return iter(())
        return original(*args, **kwargs)

    source.watch_promotions = counted  # type: ignore[method-assign]
    watch.run(stopped)


def test_the_list_is_read_in_pages_and_each_page_handed_over_before_the_next() -> None:
    source, recorder = FakeSource([obj(f"u{i}", i) for i in range(5)], version=9), Recorder()

    watch_of(source, recorder).relist()

    assert [len(batch) for batch in recorder.batches] == [2, 2, 1]
    assert source.calls == ["list first", "list 2", "list 4"]
    assert recorder.uids(None) == ["u0", "u1", "u2", "u3", "u4"]


def test_the_watch_starts_from_the_lists_version() -> None:
    source, recorder = FakeSource([obj("a", 3)], version=9), Recorder()
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert source.calls[:2] == ["list first", "watch 9"]


def test_watch_events_are_handed_over_and_move_the_version() -> None:
    source, recorder = FakeSource([], version=9), Recorder()
    source.watches = [
        [{"type": "ADDED", "object": obj("a", 10)}, {"type": "MODIFIED", "object": obj("a", 11)}]
    ]
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert [kind for batch in recorder.batches for kind, _ in batch] == ["ADDED", "MODIFIED"]
    assert source.calls[-1] == "watch 11"


def test_a_bookmark_moves_the_version_and_is_not_handed_over() -> None:
    source, recorder = FakeSource([], version=9), Recorder()
    source.watches = [[{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "40"}}}]]
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert recorder.batches == [[]]  # the empty list's page only
    assert source.calls == ["list first", "watch 9", "watch 40"]


def test_a_watch_the_server_ended_is_opened_again_without_a_list() -> None:
    source, recorder = FakeSource([obj("a", 3)], version=9), Recorder()
    source.watches = [[], []]
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert source.calls == ["list first", "watch 9", "watch 9", "watch 9"]


def test_a_410_event_lists_again() -> None:
    source, recorder = FakeSource([obj("a", 3)], version=9), Recorder()
    source.watches = [[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]]
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert source.calls == ["list first", "watch 9", "list first", "watch 9"]


def test_a_410_answer_to_the_watch_lists_again() -> None:
    source, recorder = FakeSource([obj("a", 3)], version=9), Recorder()
    source.watches = [KubeError("GET ...: 410 Expired", 410)]
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert source.calls == ["list first", "watch 9", "list first", "watch 9"]


def test_an_expired_continue_token_lists_from_the_start() -> None:
    source, recorder = FakeSource([obj(f"u{i}", i) for i in range(3)], version=9), Recorder()
    source.expire_continue = True
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert source.calls[:5] == ["list first", "list 2", "list first", "list 2", "watch 9"]


def test_a_failed_watch_is_opened_again_from_the_last_version_after_a_wait() -> None:
    source, recorder = FakeSource([], version=9), Recorder()
    source.watches = [[{"type": "ADDED", "object": obj("a", 12)}], KubeError("GET ...: reset")]
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert source.calls == ["list first", "watch 9", "watch 12", "watch 12"]


def test_objects_deleted_while_the_watch_was_down_are_handed_over_as_deleted() -> None:
    source, recorder = FakeSource([obj("a", 3), obj("b", 4)], version=9), Recorder()
    watch = watch_of(source, recorder)
    watch.relist()

    source.objects = [obj("b", 4)]
    watch.relist()

    assert recorder.uids("DELETED") == ["a"]
    assert watch.known == {"b"}


def test_an_error_event_other_than_410_waits_and_watches_again() -> None:
    source, recorder = FakeSource([], version=9), Recorder()
    source.watches = [[{"type": "ERROR", "object": {"code": 500, "message": "internal"}}]]
    watch = watch_of(source, recorder)

    run_until_watches_are_used(watch, source)

    assert source.calls == ["list first", "watch 9", "watch 9"]
