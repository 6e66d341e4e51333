"""``kubectl promotion``: the write loop (conflicts re-read, never lost) and the watch
loop (resumed, re-read, polled, timed out), against fake APIs with a fake clock."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator
from typing import Any, cast

import pytest

from promotion_operator.kubectl_plugin import cli
from promotion_operator.kubectl_plugin.kube import (
    Expired,
    Kube,
    ObjectChanged,
    PluginError,
    Unreachable,
)
from promotion_operator.kubectl_plugin.resource import (
    ABORT_ANNOTATION,
    RETRY_ANNOTATION,
    Decision,
    ExitCode,
    Promotion,
    RetryWait,
    decide_abort,
    decide_retry,
)
from promotion_operator.kubectl_plugin.watching import POLL_INTERVAL, RunFollowed, Watcher

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)


def body(
    phase: str | None,
    version: int,
    *,
    generation: int = 1,
    retry: int = 0,
    last_retry: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "generation": generation,
            "resourceVersion": str(version),
            "annotations": dict(annotations or {}),
        },
        "spec": {},
    }
    if phase is not None:
        out["status"] = {
            "phase": phase,
            "observedGeneration": generation,
            "retry": retry,
            "lastRetry": last_retry,
            "conditions": [{"type": "Ready", "status": "False", "reason": phase, "message": ""}],
        }
    return out


# --- writes -----------------------------------------------------------------------------


class FakeKube:
    """An object whose resourceVersion moves when someone else writes it."""

    default_namespace = "ml"

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.reads = 0
        self.patches: list[tuple[str, dict[str, str | None]]] = []
        self.others: list[dict[str, str]] = []  # what other writers do after each read

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        assert (namespace, name) == ("ml", "iris")
        self.reads += 1
        read = copy.deepcopy(self.obj)
        if self.others:
            self._write(self.others.pop(0))
        return read

    def _write(self, annotations: dict[str, str]) -> None:
        self.obj["metadata"]["annotations"].update(annotations)
        version = int(self.obj["metadata"]["resourceVersion"]) + 1
        self.obj["metadata"]["resourceVersion"] = str(version)

    def annotate(
        self, namespace: str, name: str, version: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        self.patches.append((version, dict(annotations)))
        if version != self.obj["metadata"]["resourceVersion"]:
            raise ObjectChanged()
        self._write({k: v for k, v in annotations.items() if v is not None})
        return self.obj


def session(fake: FakeKube, *argv: str) -> cli.Session:
    args = cli.build_parser().parse_args(list(argv))
    return cli.Session(args, cast(Kube, fake))


def test_a_conflict_is_read_again_and_written_with_the_new_version() -> None:
    fake = FakeKube(body("Verifying", 10))
    fake.others = [{"team/owner": "ml"}, {"team/owner": "ops"}]  # two writes in between
    decision = cli.request(session(fake, "abort", "iris"), "iris", ABORT_ANNOTATION, _abort)
    assert decision.value == "2026-03-01T12:00:00Z"
    assert fake.reads == 3
    assert [version for version, _ in fake.patches] == ["10", "11", "12"]
    # Nothing lost: the other writer's change and the request are both there.
    annotations = fake.obj["metadata"]["annotations"]
    assert annotations == {"team/owner": "ops", ABORT_ANNOTATION: "2026-03-01T12:00:00Z"}


def _abort(p: Promotion) -> Decision:
    return decide_abort(p, NOW)


def test_someone_elses_request_between_read_and_write_is_not_overwritten() -> None:
    fake = FakeKube(body("Failed", 10))
    fake.others = [{RETRY_ANNOTATION: "theirs"}]
    decision = cli.request(
        session(fake, "retry", "iris"), "iris", RETRY_ANNOTATION, lambda p: decide_retry(p, "mine")
    )
    # The write of "mine" lost the race; the re-read found "theirs" pending and joined it.
    assert [a for _, a in fake.patches] == [{RETRY_ANNOTATION: "mine"}]
    assert fake.obj["metadata"]["annotations"][RETRY_ANNOTATION] == "theirs"
    assert decision.value is None
    assert decision.watch == RetryWait("theirs", (1, 0), True)


def test_conflicts_are_retried_a_bounded_number_of_times() -> None:
    fake = FakeKube(body("Verifying", 10))
    fake.others = [{"x": str(i)} for i in range(cli.CONFLICT_ATTEMPTS)]
    with pytest.raises(PluginError) as failed:
        cli.request(session(fake, "abort", "iris"), "iris", ABORT_ANNOTATION, _abort)
    assert failed.value.exit_code == ExitCode.ERROR
    assert "was not written after 5 conflicts" in failed.value.message
    assert fake.reads == len(fake.patches) == cli.CONFLICT_ATTEMPTS
    assert ABORT_ANNOTATION not in fake.obj["metadata"]["annotations"]


def test_verbose_says_each_conflict(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeKube(body("Verifying", 10))
    fake.others = [{"x": "1"}]
    cli.request(session(fake, "abort", "iris", "-v"), "iris", ABORT_ANNOTATION, _abort)
    assert capsys.readouterr().err == (
        "conflict: ml/iris changed since it was read (resourceVersion 10); reading it again (1/5)\n"
    )


# --- watch ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeWatchApi:
    """Scripted answers: each watch call takes the next script entry, a list of events
    (or an exception to raise, or the ``"window"`` marker: the stream lasts its timeout)."""

    def __init__(self, clock: Clock, first: dict[str, Any], *scripts: Any) -> None:
        self.clock = clock
        self.obj = first
        self.scripts = list(scripts)
        self.watches: list[tuple[str, int]] = []
        self.gets = 0
        # What each read answers, in turn: an exception, or a new object; then self.obj.
        self.reads: list[Exception | dict[str, Any]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        if self.reads:
            answer = self.reads.pop(0)
            if isinstance(answer, Exception):
                raise answer
            self.obj = answer
        return self.obj

    def watch(
        self, namespace: str, name: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        self.watches.append((resource_version, timeout_seconds))
        script: Exception | str | list[dict[str, Any]] = (
            self.scripts.pop(0) if self.scripts else "window"
        )
        if isinstance(script, Exception):
            raise script
        if isinstance(script, str):  # "window"
            self.clock.now += timeout_seconds
            return
        for event in script:
            self.clock.now += 1
            if event["type"] != "BOOKMARK":
                self.obj = event["object"]
            yield event


def run_watch(
    api: FakeWatchApi, clock: Clock, timeout: float = 60, **kwargs: Any
) -> tuple[ExitCode, list[str], list[str]]:
    out: list[str] = []
    notes: list[str] = []
    watcher = Watcher(
        api, "ml", "iris", timeout, out=out.append, note=notes.append,
        monotonic=clock.monotonic, sleep=clock.sleep, **kwargs,
    )  # fmt: skip
    return watcher.run(), out, notes


def modified(obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": "MODIFIED", "object": obj}


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        ("Succeeded", ExitCode.SUCCEEDED),
        ("Failed", ExitCode.FAILED),
        ("RolledBack", ExitCode.ROLLED_BACK),
        ("Aborted", ExitCode.ABORTED),
    ],
)
def test_watch_prints_each_change_and_exits_with_the_outcome(phase: str, code: ExitCode) -> None:
    clock = Clock()
    events = [
        modified(body("Promoting", 11)),
        modified(body("Promoting", 12)),  # nothing a person would see changed
        modified(body("Verifying", 13)),
        modified(body(phase, 14)),
    ]
    api = FakeWatchApi(clock, body("Pending", 10), events)
    exit_code, out, _ = run_watch(api, clock)
    assert exit_code == code
    phases = [line.split("  ")[2] for line in out[:-1]]
    assert phases == ["Pending", "Promoting", "Verifying", phase]
    assert out[-1].startswith("ml/iris: run 1.0 ")
    assert api.watches == [("10", 60)]


def test_a_finished_run_exits_at_once() -> None:
    clock = Clock()
    api = FakeWatchApi(clock, body("Failed", 10))
    assert run_watch(api, clock)[0] == ExitCode.FAILED
    assert api.watches == []


def test_watch_resumes_from_the_last_version_when_the_server_ends_it() -> None:
    clock = Clock()
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}}
    api = FakeWatchApi(
        clock,
        body("Verifying", 10),
        [modified(body("Verifying", 15)), bookmark],
        "window",
        [modified(body("Succeeded", 30))],
    )
    code, _, _ = run_watch(api, clock, timeout=1000)
    assert code == ExitCode.SUCCEEDED
    assert [version for version, _ in api.watches] == ["10", "20", "20"]
    # Each request asks for the rest of the time, at most five minutes.
    assert [window for _, window in api.watches] == [300, 300, 300]


def test_an_expired_version_is_read_again() -> None:
    clock = Clock()
    api = FakeWatchApi(clock, body("Verifying", 10), Expired(), [modified(body("Failed", 40))])
    api.reads = [body("Verifying", 10), body("Verifying", 35)]
    code, out, _ = run_watch(api, clock)
    assert code == ExitCode.FAILED
    assert api.gets == 2
    assert [version for version, _ in api.watches] == ["10", "35"]
    assert len(out) == 3  # Verifying once (the re-read changed nothing visible), then Failed


def test_a_refused_watch_falls_back_to_polling() -> None:
    clock = Clock()
    refused = PluginError("Error from server (Forbidden): cannot watch")
    api = FakeWatchApi(clock, body("Verifying", 10), refused)
    # The first read, the re-read when the watch is refused, then one poll a period.
    api.reads = [body("Verifying", 10), body("Verifying", 10), body("Verifying", 11)]
    api.reads.append(body("RolledBack", 12))
    code, _, notes = run_watch(api, clock)
    assert code == ExitCode.ROLLED_BACK
    assert len(api.watches) == 1
    assert api.gets == 4
    assert clock.now == 2 * POLL_INTERVAL
    assert notes == [
        f"Error from server (Forbidden): cannot watch; polling every {POLL_INTERVAL:g}s instead"
    ]


def test_a_broken_connection_is_retried_until_the_deadline() -> None:
    clock = Clock()
    down = Unreachable("error: cannot reach the Kubernetes API server at x: refused")
    api = FakeWatchApi(clock, body("Verifying", 10), down, down, down, down, down, down)
    api.reads = [body("Verifying", 10), down, down]
    code, out, notes = run_watch(api, clock, timeout=9)
    assert code == ExitCode.TIMED_OUT
    assert out[-1] == "ml/iris: timed out after 9s waiting for the run to end: run 1.0 is Verifying"
    assert all(note.endswith("; trying again") for note in notes)
    assert clock.now >= 9


def test_deletion_while_watching_is_not_found() -> None:
    clock = Clock()
    api = FakeWatchApi(
        clock, body("Verifying", 10), [{"type": "DELETED", "object": body("Verifying", 11)}]
    )
    with pytest.raises(PluginError) as failed:
        run_watch(api, clock)
    assert failed.value.exit_code == ExitCode.NOT_FOUND
    assert failed.value.message == "error: ml/iris was deleted"


def test_watch_times_out_with_where_the_run_is() -> None:
    clock = Clock()
    api = FakeWatchApi(clock, body("Paused", 10))
    code, out, _ = run_watch(api, clock, timeout=30)
    assert code == ExitCode.TIMED_OUT
    assert api.watches == [("10", 30)]
    assert out[-1] == "ml/iris: timed out after 30s waiting for the run to end: run 1.0 is Paused"


def test_watch_of_a_new_generation_ignores_the_previous_outcome() -> None:
    clock = Clock()
    old = body("Succeeded", 10, generation=1)
    old["metadata"]["generation"] = 2  # the spec changed; the operator has not started yet
    api = FakeWatchApi(
        clock,
        old,
        [modified(body("Pending", 11, generation=2)), modified(body("Failed", 12, generation=2))],
    )
    code, out, _ = run_watch(api, clock)
    assert code == ExitCode.FAILED
    assert "[generation 2 not started yet]" in out[0]


def test_retry_watch_waits_past_the_previous_runs_final_phase() -> None:
    clock = Clock()
    asked = RetryWait("t2", (1, 0), finished_before=True)
    previous = body("Failed", 10, last_retry="t1", annotations={RETRY_ANNOTATION: "t2"})
    events = [
        # Someone else touches the object: still the old run, still Failed.
        modified(
            body("Failed", 11, last_retry="t1", annotations={RETRY_ANNOTATION: "t2", "x": "y"})
        ),
        modified(body("Pending", 12, retry=1, last_retry="t2")),
        modified(body("Succeeded", 13, retry=1, last_retry="t2")),
    ]
    api = FakeWatchApi(clock, previous, events)
    code, out, _ = run_watch(api, clock, follow=RunFollowed(asked))
    assert code == ExitCode.SUCCEEDED
    assert "[retry t2 requested, not started yet]" in out[0]
    assert out[-1] == "ml/iris: run 1.1 succeeded (Succeeded, Succeeded)"


def test_retry_watch_times_out_naming_the_retry_not_started() -> None:
    clock = Clock()
    asked = RetryWait("t2", (1, 0), finished_before=True)
    api = FakeWatchApi(clock, body("Failed", 10, last_retry="t1"))
    code, out, _ = run_watch(api, clock, timeout=5, follow=RunFollowed(asked))
    assert code == ExitCode.TIMED_OUT
    assert out[-1].endswith("run 1.0 is Failed; retry t2 has not started yet")
