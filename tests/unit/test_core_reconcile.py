"""One pass as the shell runs it (``reconcile``): what it reads, what it does, what it
records, and how long it waits, including a server's Retry-After and the run's deadline."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from promotion_operator.core.conditions import find_condition
from promotion_operator.core.machine import STATUS_UNREADABLE, reconcile
from promotion_operator.core.pass_io import Action, Answer, RetryPolicy
from promotion_operator.core.run import ActionKind, Failure, Phase, to_status
from tests.unit.core_builders import (
    PROMOTION,
    SPEC,
    FakeSeldon,
    context,
    make_spec,
    our_target,
    promoting_run,
    run_in,
    source_deployment,
    verifying_run,
)

TEN_MINUTES = 600.0


class FailingSeldon(FakeSeldon):
    """A Seldon Deploy whose every call fails with ``failure``."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(source=source_deployment())
        self.failure = failure

    def read_source(self) -> Answer:
        self.reads.append("source")
        return Answer(failure=self.failure)

    def read_target(self) -> Answer:
        self.reads.append("target")
        return Answer(failure=self.failure)

    def perform(self, action: Action) -> Answer:
        self.calls.append(action)
        return Answer(failure=self.failure)


def unavailable(retry_after: float | None) -> Failure:
    return Failure("SeldonDeployUnavailable", "503", 503, retryable=True, retry_after=retry_after)


# --- what a pass reads and does ---------------------------------------------------------


def test_first_pass_reads_both_validates_and_starts_the_run() -> None:
    seldon = FakeSeldon(source=source_deployment())

    result = reconcile(context(), {}, seldon)

    assert seldon.reads == ["source", "target"]
    assert [call.kind for call in seldon.calls] == [ActionKind.VALIDATE]
    assert result.started is True
    assert result.run is not None and result.run.phase == Phase.PROMOTING
    assert result.status == to_status(result.run)
    assert [e.reason for e in result.events] == ["Promoting"]
    assert result.requeue_after == 0.0


def test_a_verifying_pass_reads_only_the_target() -> None:
    seldon = FakeSeldon(source=source_deployment(), target=our_target(state="Creating"))

    result = reconcile(context(1), to_status(verifying_run()), seldon)

    assert seldon.reads == ["target"]
    assert seldon.calls == []
    assert result.started is False


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED, Phase.SUSPENDED])
def test_a_settled_run_reads_nothing_and_records_nothing(phase: Phase) -> None:
    seldon = FakeSeldon(source=source_deployment())

    result = reconcile(context(5), to_status(run_in(phase)), seldon)

    assert (seldon.reads, seldon.calls) == ([], [])
    assert (result.status, result.events, result.requeue_after) == (None, (), None)


def test_a_new_generation_starts_a_new_run() -> None:
    finished = to_status(run_in(Phase.SUCCEEDED, generation=PROMOTION.generation - 1))

    result = reconcile(context(5), finished, FakeSeldon(source=source_deployment()))

    assert result.started is True
    assert result.run is not None and result.run.generation == PROMOTION.generation


def test_the_ready_message_comes_with_the_result() -> None:
    result = reconcile(context(), {}, FakeSeldon(source=source_deployment()))

    assert result.message.startswith("validated; create production/iris")


# --- an unreadable status ----------------------------------------------------------------


def broken_status() -> dict[str, Any]:
    return {**to_status(promoting_run(None)), "phaseSince": "not a time"}


def test_an_unreadable_status_is_reported_not_acted_on() -> None:
    seldon = FakeSeldon(source=source_deployment())

    result = reconcile(context(5), broken_status(), seldon)

    assert (seldon.reads, seldon.calls) == ([], [])
    assert result.run is None and result.status is not None
    assert set(result.status) == {"conditions"}
    ready = find_condition(result.status["conditions"], "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", STATUS_UNREADABLE)
    assert "status.phaseSince is 'not a time'" in ready["message"]
    assert [(e.type, e.reason) for e in result.events] == [("Warning", STATUS_UNREADABLE)]


def test_an_unreadable_status_is_looked_at_again_later() -> None:
    result = reconcile(context(5), broken_status(), FakeSeldon(source=source_deployment()))

    assert result.requeue_after == RetryPolicy().max_delay


def test_an_unreadable_status_posts_its_event_once() -> None:
    first = reconcile(context(5), broken_status(), FakeSeldon(source=source_deployment()))
    assert first.status is not None

    again = reconcile(
        context(65), {**broken_status(), **first.status}, FakeSeldon(source=source_deployment())
    )

    assert again.events == ()


def test_an_unreadable_status_of_an_older_generation_does_not_block_a_new_run() -> None:
    older = {**broken_status(), "observedGeneration": PROMOTION.generation - 1}

    result = reconcile(context(5), older, FakeSeldon(source=source_deployment()))

    assert result.started is True
    assert result.run is not None and result.run.phase == Phase.PROMOTING


def test_a_repaired_status_resumes_the_run() -> None:
    seldon = FakeSeldon(source=source_deployment())
    reported = reconcile(context(5), broken_status(), seldon)
    assert reported.status is not None
    repaired = {**to_status(promoting_run(None)), **reported.status}

    result = reconcile(context(70), repaired, seldon)

    assert [call.kind for call in seldon.calls] == [ActionKind.CREATE]
    assert result.run is not None and result.run.phase == Phase.VERIFYING


# --- Retry-After and the deadline -----------------------------------------------------------


@pytest.mark.parametrize("retry_after", [86400.0, 300.0, 61.0])
def test_retry_after_never_exceeds_the_maximum_delay(retry_after: float) -> None:
    spec = make_spec(timeout_seconds=3600.0)

    result = reconcile(context(1, spec=spec), {}, FailingSeldon(unavailable(retry_after)))

    assert result.requeue_after == RetryPolicy().max_delay


def test_retry_after_below_the_maximum_is_honoured_as_a_minimum() -> None:
    spec = make_spec(timeout_seconds=3600.0)

    result = reconcile(context(1, spec=spec), {}, FailingSeldon(unavailable(42.0)))

    assert result.requeue_after == 42.0


def test_retry_after_under_a_smaller_configured_maximum() -> None:
    ctx = replace(
        context(1, spec=make_spec(timeout_seconds=3600.0)), policy=RetryPolicy(max_delay=5)
    )

    result = reconcile(ctx, {}, FailingSeldon(unavailable(86400.0)))

    assert result.requeue_after == 5.0


def test_retry_after_never_reaches_past_the_deadline() -> None:
    spec = make_spec(timeout_seconds=30.0)

    started_at_t0 = to_status(run_in(Phase.PENDING))

    result = reconcile(context(12.5, spec=spec), started_at_t0, FailingSeldon(unavailable(86400.0)))

    assert result.requeue_after == 17.5


def test_at_the_deadline_the_run_ends_as_a_timeout_would() -> None:
    spec = make_spec(timeout_seconds=30.0)
    seldon = FailingSeldon(unavailable(86400.0))
    first = reconcile(context(12.5, spec=spec), {}, seldon)
    assert first.status is not None and first.requeue_after is not None

    last = reconcile(context(12.5 + first.requeue_after, spec=spec), first.status, seldon)

    assert last.run is not None and last.run.phase == Phase.FAILED
    assert last.requeue_after is None
    assert last.run.outcome is not None
    assert last.run.outcome.reason == "SeldonDeployUnavailable"


def test_retry_after_while_verifying_ends_in_a_rollback_at_the_deadline() -> None:
    spec = make_spec(timeout_seconds=20.0)
    seldon = FailingSeldon(unavailable(86400.0))
    first = reconcile(context(15, spec=spec), to_status(verifying_run()), seldon)
    assert first.status is not None and first.requeue_after == 5.0

    last = reconcile(context(20, spec=spec), first.status, seldon)

    assert last.run is not None and last.run.phase == Phase.ROLLING_BACK
    assert last.run.outcome is not None
    assert last.run.outcome.reason == "VerificationTimedOut"


def test_polling_while_verifying_stops_at_the_deadline() -> None:
    spec = make_spec(timeout_seconds=22.0)
    seldon = FakeSeldon(source=source_deployment(), target=our_target(state="Creating"))
    seldon.written_at = None  # the rollout never finishes

    result = reconcile(context(20, spec=spec), to_status(verifying_run()), seldon)

    assert result.requeue_after == 2.0


def test_default_spec_retry_delays_stay_within_the_ten_minute_timeout() -> None:
    assert SPEC.timeout_seconds == TEN_MINUTES
    seldon = FailingSeldon(unavailable(86400.0))
    status: dict[str, Any] = {}
    now = 0.0
    while True:
        result = reconcile(context(now), status, seldon)
        status = result.status if result.status is not None else status
        if result.requeue_after is None:
            break
        now += result.requeue_after

    assert now == TEN_MINUTES
