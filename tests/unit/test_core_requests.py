"""What people ask of a run through annotations: approve, abort, retry; and the history
of runs that answers "what was promoted, and when"."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from promotion_operator.core.canary_steps import Pause, SetWeight
from promotion_operator.core.machine import at_rest, decide, reconcile
from promotion_operator.core.pass_io import Observed
from promotion_operator.core.planning import GENERATION_ANNOTATION
from promotion_operator.core.requests import (
    ABORT_ANNOTATION,
    APPROVE_ANNOTATION,
    RESUME_ANNOTATION,
    RETRY_ANNOTATION,
    Requests,
    requests_from,
)
from promotion_operator.core.run import (
    HISTORY_LENGTH,
    ActionKind,
    Failure,
    HistoryEntry,
    Phase,
    Run,
    UnreadableStatus,
    from_status,
    to_status,
)
from tests.unit.core_builders import (
    PROMOTION,
    SPEC,
    T0,
    FakeSeldon,
    Pass,
    at,
    context,
    drive,
    foreign_target,
    make_spec,
    our_target,
    run_in,
    source_deployment,
    verifying_run,
)
from tests.unit.test_core_canary import canary_spec
from tests.unit.test_core_canary import seldon as canary_seldon

APPROVAL = make_spec(approval_required=True, approval_groups=("release-managers",))


def final(passes: list[Pass]) -> Run:
    return passes[-1].step.run


def ready(run: Run) -> tuple[str, str]:
    found = next(c for c in run.conditions if c["type"] == "Ready")
    return found["reason"], found["message"]


def asked(seconds: float, requests: Requests, status: dict[str, Any], fake: FakeSeldon) -> Any:
    """One pass at ``seconds`` with ``requests`` set on the resource."""
    fake.now = at(seconds)
    return reconcile(replace(context(seconds), requests=requests), status, fake)


# --- annotations ------------------------------------------------------------------------------


def test_requests_are_read_from_their_annotations() -> None:
    annotations = {
        APPROVE_ANNOTATION: "alice",
        ABORT_ANNOTATION: "2026-11-30T10:00:00Z",
        RETRY_ANNOTATION: "token-1",
        RESUME_ANNOTATION: " ",
        "other": "x",
    }

    assert requests_from(annotations) == Requests(
        approve="alice", abort="2026-11-30T10:00:00Z", retry="token-1", resume=None
    )


# --- approval -------------------------------------------------------------------------------


def test_an_approval_gate_waits_after_validation_without_writing() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, spec=APPROVAL, max_passes=10)

    run = final(passes)
    assert run.phase == Phase.AWAITING_APPROVAL
    assert [a.kind for a in fake.calls] == [ActionKind.VALIDATE]
    reason, message = ready(run)
    assert reason == "AwaitingApproval"
    assert "a member of release-managers" in message and APPROVE_ANNOTATION in message


def test_waiting_for_approval_reads_nothing_and_polls() -> None:
    fake = FakeSeldon(source=source_deployment())
    waiting = final(drive(fake, spec=APPROVAL, max_passes=3))
    fake.reads.clear()

    result = reconcile(context(60, spec=APPROVAL), to_status(waiting), fake)

    assert fake.reads == []
    assert result.requeue_after == context().policy.max_poll


def test_an_approval_is_recorded_and_the_run_goes_on() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, spec=APPROVAL, approve_at=30)

    run = final(passes)
    assert run.phase == Phase.SUCCEEDED
    assert run.approved_by == "alice" and run.approved_at is not None
    assert sum(1 for p in passes if "approve" in p.step.used) == 1
    assert run.history[0].approved_by == "alice"


def test_an_approval_set_before_the_run_started_is_not_for_it() -> None:
    fake = FakeSeldon(source=source_deployment())
    result = reconcile(
        replace(context(0, spec=APPROVAL), requests=Requests(approve="alice")), {}, fake
    )

    assert result.used == ("approve",)  # removed as stale
    assert result.run is not None and result.run.approved_by is None


def test_after_a_long_approval_wait_the_write_has_its_own_deadline() -> None:
    spec = replace(APPROVAL, timeout_seconds=60.0)
    fake = FakeSeldon(source=source_deployment())
    waiting = final(drive(fake, spec=spec, max_passes=3))
    approved = reconcile(
        replace(context(7200, spec=spec), requests=Requests(approve="bob")),
        to_status(waiting),
        fake,
    )
    assert approved.status is not None and approved.run is not None
    assert approved.run.phase == Phase.PROMOTING

    failing = Failure("SeldonDeployUnavailable", "503", 503, retryable=True)
    step = decide(context(7210, spec=spec), approved.run, Observed(source_error=failing))

    assert step.run.phase == Phase.PROMOTING  # retried, not failed: 10 s after approval
    assert step.requeue_after is not None


def test_a_dry_run_needs_no_approval() -> None:
    run = final(drive(FakeSeldon(source=source_deployment()), spec=replace(APPROVAL, dry_run=True)))

    assert run.phase == Phase.SUCCEEDED


# --- abort ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(to_status(run_in(Phase.PENDING)), id="pending"),
        pytest.param(to_status(run_in(Phase.SUSPENDED)), id="suspended"),
        pytest.param(to_status(run_in(Phase.AWAITING_APPROVAL)), id="awaiting-approval"),
    ],
)
def test_aborting_before_any_write_ends_the_run_aborted(status: dict[str, Any]) -> None:
    fake = FakeSeldon(source=source_deployment())

    result = asked(5, Requests(abort="now"), status, fake)

    assert result.run is not None and result.run.phase == Phase.ABORTED
    assert result.run.outcome is not None and result.run.outcome.reason == "Aborted"
    assert ready(result.run)[0] == "Aborted"
    assert fake.writes() == []
    assert "abort" in result.used


def test_aborting_after_the_write_rolls_back_as_a_failure_would() -> None:
    fake = FakeSeldon(source=source_deployment(), target=our_target(state="Creating"))

    passes = drive(fake, status=to_status(verifying_run()), requests=Requests(abort="now"))

    run = final(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert run.outcome is not None and run.outcome.reason == "Aborted"
    assert [w.kind for w in fake.writes()] == [ActionKind.DELETE]
    assert sum(1 for p in passes if "abort" in p.step.used) == 1


def test_aborting_a_write_that_landed_unrecorded_rolls_it_back() -> None:
    fake = FakeSeldon(source=source_deployment(), target=our_target(state="Available"))
    promoting = to_status(replace(verifying_run(), phase=Phase.PROMOTING))

    result = asked(5, Requests(abort="now"), promoting, fake)

    assert result.run is not None and result.run.phase == Phase.ROLLING_BACK


def test_aborting_without_rollback_ends_failed_and_leaves_the_target() -> None:
    fake = FakeSeldon(source=source_deployment(), target=our_target(state="Creating"))
    spec = make_spec(rollback_on_failure=False)

    run = final(
        drive(fake, spec=spec, status=to_status(verifying_run()), requests=Requests(abort="x"))
    )

    assert run.phase == Phase.FAILED
    assert run.outcome is not None and run.outcome.reason == "Aborted"
    assert fake.writes() == []


def test_aborting_a_finished_run_does_nothing_and_says_so() -> None:
    finished = to_status(run_in(Phase.SUCCEEDED, finished_at=T0))
    fake = FakeSeldon(source=source_deployment())

    result = asked(5, Requests(abort="now"), finished, fake)

    assert result.status is not None and result.status["phase"] == "Succeeded"
    assert [(e.type, e.reason) for e in result.events] == [("Normal", "NothingToAbort")]
    assert result.used == ("abort",)
    assert fake.calls == []


# --- retry --------------------------------------------------------------------------------


def failed_run() -> dict[str, Any]:
    outcome = Failure("TargetFailed", "production/iris went Failed")
    return to_status(run_in(Phase.ROLLED_BACK, finished_at=T0, outcome=outcome))


def test_a_retry_of_an_ended_run_starts_a_new_run_of_the_same_generation() -> None:
    fake = FakeSeldon(source=source_deployment())

    result = asked(5, Requests(retry="token-1"), failed_run(), fake)

    assert result.started is True
    run = result.run
    assert run is not None
    assert (run.generation, run.retry, run.last_retry) == (PROMOTION.generation, 1, "token-1")
    assert run.phase == Phase.PROMOTING  # re-validated and re-planned


def test_a_retry_request_is_acted_on_once() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, status=failed_run(), requests=Requests(retry="token-1"))

    run = final(passes)
    assert run.phase == Phase.SUCCEEDED and run.retry == 1
    assert (
        sum(1 for p in passes if p.before is not None and p.before.retry != p.step.run.retry) == 1
    )
    assert [a.kind for a in fake.writes()] == [ActionKind.CREATE]


def test_a_retry_of_a_succeeded_run_promotes_again() -> None:
    fake = FakeSeldon(source=source_deployment(), target=foreign_target())
    succeeded = to_status(run_in(Phase.SUCCEEDED, finished_at=T0))

    run = final(drive(fake, status=succeeded, requests=Requests(retry="again")))

    assert run.phase == Phase.SUCCEEDED and run.retry == 1
    assert [a.kind for a in fake.writes()] == [ActionKind.UPDATE]


def test_a_retry_of_a_run_still_going_is_ignored_once_and_recorded() -> None:
    fake = FakeSeldon(source=source_deployment(), target=our_target(state="Creating"))

    first = asked(5, Requests(retry="early"), to_status(verifying_run()), fake)
    assert first.status is not None
    again = asked(6, Requests(retry="early"), first.status, fake)

    assert first.run is not None and (first.run.retry, first.run.last_retry) == (0, "early")
    assert [e.reason for e in first.events] == ["RetryIgnored"]
    assert "RetryIgnored" not in [e.reason for e in again.events]


def test_a_new_generation_takes_the_retry_token_in_place_as_handled() -> None:
    older = to_status(run_in(Phase.FAILED, generation=PROMOTION.generation - 1, finished_at=T0))

    result = asked(5, Requests(retry="old-token"), older, FakeSeldon(source=source_deployment()))

    assert result.run is not None
    assert (result.run.retry, result.run.last_retry) == (0, "old-token")


# --- history ----------------------------------------------------------------------------------


def test_a_finished_run_is_written_to_the_history() -> None:
    run = final(drive(FakeSeldon(source=source_deployment())))

    (entry,) = run.history
    assert entry.generation == PROMOTION.generation and entry.retry == 0
    assert (entry.outcome, entry.reason) == ("Succeeded", "Succeeded")
    assert entry.source == "staging/iris" and entry.target == "production/iris"
    assert entry.source_generation == 5 and entry.target_generation == 1
    assert entry.images == ("seldonio/iris:1.0", "seldonio/iris:2.0", "envoy:1.29") or entry.images
    assert entry.started_at == T0 and entry.finished_at > T0


def test_history_keeps_every_run_newest_first() -> None:
    fake = FakeSeldon(source=source_deployment(), rollout_state="Failed")
    first = final(drive(fake))
    fake.rollout_state = "Available"

    second = final(drive(fake, status=to_status(first), requests=Requests(retry="t")))

    assert [(e.retry, e.outcome) for e in second.history] == [
        (1, "Succeeded"),
        (0, "RolledBack"),
    ]


def test_history_is_bounded() -> None:
    old = tuple(HistoryEntry(1, n, "Succeeded", "Succeeded", T0, T0) for n in range(HISTORY_LENGTH))
    status = to_status(replace(run_in(Phase.PENDING), history=old))

    run = final(drive(FakeSeldon(source=source_deployment()), status=status))

    assert len(run.history) == HISTORY_LENGTH
    assert run.history[0].generation == PROMOTION.generation


def test_history_survives_the_status_round_trip() -> None:
    run = final(drive(FakeSeldon(source=source_deployment())))

    again = reconcile(context(999), to_status(run), FakeSeldon(source=source_deployment()))

    # Recorded to the second, as the status keeps times.
    assert again.run is not None
    assert to_status(again.run)["history"] == to_status(run)["history"]


def test_spec_reads_the_approval_gate() -> None:
    assert (SPEC.approval_required, SPEC.approval_groups) == (False, ())


def test_a_retry_of_a_succeeded_run_writes_again_over_its_own_earlier_write() -> None:
    fake = FakeSeldon(source=source_deployment())
    first = final(drive(fake))
    assert first.phase == Phase.SUCCEEDED

    second = final(drive(fake, status=to_status(first), requests=Requests(retry="again")))

    assert second.phase == Phase.SUCCEEDED and second.retry == 1
    assert [a.kind for a in fake.writes()] == [ActionKind.CREATE, ActionKind.UPDATE]
    assert fake.target is not None
    assert fake.target["metadata"]["annotations"][GENERATION_ANNOTATION] == "2.1"


def test_an_abort_while_rolling_back_is_used_even_when_the_pass_writes() -> None:
    fake = FakeSeldon(source=source_deployment(), target=our_target(state="Failed"))
    rolling_back = to_status(replace(verifying_run(), phase=Phase.ROLLING_BACK))

    result = asked(5, Requests(abort="now"), rolling_back, fake)

    assert [a.kind for a in fake.writes()] == [ActionKind.DELETE]
    assert result.used == ("abort",)


def test_an_approval_is_asked_again_when_the_plan_must_be_made_again() -> None:
    fake = FakeSeldon(source=source_deployment())
    waiting = final(drive(fake, spec=APPROVAL, max_passes=3))
    approved = asked(10, Requests(approve="alice"), to_status(waiting), fake)
    assert approved.status is not None
    fake.target = foreign_target()  # someone created the target meanwhile

    passes = drive(fake, spec=APPROVAL, status=approved.status, max_passes=5)

    run = final(passes)
    assert run.phase == Phase.AWAITING_APPROVAL and run.approved_by is None
    assert fake.writes() == []


# --- exactly once: the record of used requests ----------------------------------------------
#
# A pass that uses approve, abort or resume records it in status.consumedRequests in its
# status write; the shell then removes the annotation, then clears the record. A crash
# between two of these writes is replayed here by passing again over what it left: the
# status written, with the annotation still set (killed before its removal), or without
# it (killed before the record was cleared).


def consumed(result: Any) -> list[dict[str, str]] | None:
    assert result.status is not None
    found: list[dict[str, str]] | None = result.status["consumedRequests"]
    return found


def test_an_approval_is_recorded_as_used_in_the_status_write_that_acts_on_it() -> None:
    fake = FakeSeldon(source=source_deployment())
    waiting = to_status(final(drive(fake, spec=APPROVAL, max_passes=3)))

    result = asked(30, Requests(approve="alice"), waiting, fake)

    assert result.run is not None and result.run.approved_by == "alice"
    assert consumed(result) == [{"name": "approve", "value": "alice"}]
    assert result.used == ("approve",)
    assert result.after_removal == {"consumedRequests": None}


def approved(fake: FakeSeldon) -> dict[str, Any]:
    """The status the approval's pass wrote (the run Promoting, the approval recorded)."""
    waiting = to_status(final(drive(fake, spec=APPROVAL, max_passes=3)))
    result = reconcile(
        replace(context(30, spec=APPROVAL), requests=Requests(approve="alice")), waiting, fake
    )
    assert result.status is not None
    return result.status


def test_an_approval_still_annotated_after_its_status_write_is_removed_not_acted_on() -> None:
    fake = FakeSeldon(source=source_deployment())
    status = approved(fake)

    again = reconcile(
        replace(context(40, spec=APPROVAL), requests=Requests(approve="alice")), status, fake
    )

    assert again.run is not None and again.run.approved_at == at(30)  # not approved again
    assert "Promoting" not in [e.reason for e in again.events]  # no second "approved by"
    assert again.used == ("approve",)  # only its annotation is removed
    assert consumed(again) == [{"name": "approve", "value": "alice"}]  # until it is gone
    assert [a.kind for a in fake.writes()] == [ActionKind.CREATE]  # the run goes on


def test_an_approvals_record_left_after_its_removal_is_cleared() -> None:
    fake = FakeSeldon(source=source_deployment())
    status = approved(fake)

    after = reconcile(context(40, spec=APPROVAL), status, fake)

    assert consumed(after) is None
    assert after.used == () and after.after_removal is None
    assert after.run is not None and after.run.approved_at == at(30)


def test_an_approval_with_another_value_than_the_record_is_a_new_request() -> None:
    # The record is of a request whose annotation is gone: another value is not that one.
    fake = FakeSeldon(source=source_deployment())
    waiting = final(drive(fake, spec=APPROVAL, max_passes=3))
    stale_record = to_status(replace(waiting, consumed=(("approve", "bob"),)))

    result = asked(30, Requests(approve="alice"), stale_record, fake)

    assert result.run is not None and result.run.approved_by == "alice"
    assert consumed(result) == [{"name": "approve", "value": "alice"}]


def test_an_approval_set_again_before_its_record_is_cleared_is_taken_as_used() -> None:
    # The one window (docs/contract.md 9.1): removed, the operator stopped before the
    # record was cleared, and the same value set again before its next pass. It is
    # removed unused, never acted on twice.
    fake = FakeSeldon(source=source_deployment())
    waiting = final(drive(fake, spec=APPROVAL, max_passes=3))
    recorded = to_status(replace(waiting, consumed=(("approve", "alice"),)))

    result = asked(30, Requests(approve="alice"), recorded, fake)

    assert result.run is not None and result.run.approved_by is None
    assert result.used == ("approve",)


def aborted() -> tuple[dict[str, Any], FakeSeldon]:
    """The status the abort's pass wrote: a pending run ended Aborted."""
    fake = FakeSeldon(source=source_deployment())
    result = asked(
        5, Requests(abort="2026-11-30T10:00:00Z"), to_status(run_in(Phase.PENDING)), fake
    )
    assert result.run is not None and result.run.phase == Phase.ABORTED
    assert consumed(result) == [{"name": "abort", "value": "2026-11-30T10:00:00Z"}]
    assert result.status is not None
    return result.status, fake


def test_an_abort_still_annotated_after_its_status_write_is_removed_not_acted_on() -> None:
    status, fake = aborted()

    again = asked(6, Requests(abort="2026-11-30T10:00:00Z"), status, fake)

    assert again.events == ()  # not "NothingToAbort": it was acted on
    assert again.used == ("abort",)
    assert again.status is None  # the status already records it
    assert fake.calls == []


def test_an_aborts_record_left_after_its_removal_is_cleared() -> None:
    status, fake = aborted()

    after = asked(6, Requests(), status, fake)

    assert consumed(after) is None
    assert after.run is not None and after.run.phase == Phase.ABORTED
    assert after.events == () and after.used == ()


def test_aborting_a_finished_run_is_recorded_as_used() -> None:
    finished = to_status(run_in(Phase.SUCCEEDED, finished_at=T0))

    result = asked(5, Requests(abort="now"), finished, FakeSeldon(source=source_deployment()))

    assert consumed(result) == [{"name": "abort", "value": "now"}]


TWO_PAUSES = canary_spec(SetWeight(10), Pause(), Pause())


def resumed() -> tuple[dict[str, Any], FakeSeldon]:
    """The status the resume's pass wrote: the first pause over, the second one begun."""
    fake = canary_seldon()
    paused = final(drive(fake, spec=TWO_PAUSES, max_passes=15))
    assert paused.canary is not None and paused.canary.step == 1
    result = reconcile(
        replace(context(300, spec=TWO_PAUSES), requests=Requests(resume="true")),
        to_status(paused),
        fake,
    )
    assert result.run is not None and result.run.canary is not None
    assert (result.run.phase, result.run.canary.step) == (Phase.PAUSED, 2)
    assert consumed(result) == [{"name": "resume", "value": "true"}]
    assert result.status is not None
    return result.status, fake


def test_a_resume_still_annotated_after_its_status_write_does_not_end_the_next_pause() -> None:
    status, fake = resumed()

    again = reconcile(
        replace(context(310, spec=TWO_PAUSES), requests=Requests(resume="true")), status, fake
    )

    assert again.run is not None and again.run.canary is not None
    assert (again.run.phase, again.run.canary.step) == (Phase.PAUSED, 2)
    assert again.used == ("resume",)


def test_a_resumes_record_left_after_its_removal_is_cleared() -> None:
    status, fake = resumed()

    after = reconcile(context(310, spec=TWO_PAUSES), status, fake)

    assert consumed(after) is None
    assert after.run is not None and after.run.canary is not None
    assert after.run.canary.step == 2


def test_a_new_run_records_the_requests_it_removes_as_stale() -> None:
    fake = FakeSeldon(source=source_deployment())

    result = asked(0, Requests(approve="alice", resume="true"), {}, fake)

    assert result.used == ("approve", "resume")
    assert consumed(result) == [
        {"name": "approve", "value": "alice"},
        {"name": "resume", "value": "true"},
    ]


def test_a_settled_run_with_a_record_left_is_not_at_rest() -> None:
    status, _ = aborted()

    assert not at_rest(PROMOTION.generation, status, Requests())
    assert at_rest(PROMOTION.generation, {**status, "consumedRequests": None}, Requests())


def test_the_record_survives_the_status_round_trip() -> None:
    run = replace(run_in(Phase.PAUSED), consumed=(("abort", "x"), ("resume", "true")))

    assert from_status(to_status(run)) == run


def test_an_unreadable_record_is_named() -> None:
    status = {**to_status(run_in(Phase.PAUSED)), "consumedRequests": [{"name": "resume"}]}

    with pytest.raises(UnreadableStatus, match=r"status.consumedRequests.0 is"):
        from_status(status)
