"""The run's state machine (docs/contract.md, phases and failures), pass by pass.

Each pass (:func:`reconcile`): ``start_run`` -> ``reads_for`` -> ``Observed`` ->
``decide`` -> the action, if any -> ``after_action`` -> Events. Tests call the
decisions directly with fixed instants, or drive whole passes through
:func:`tests.unit.core_builders.drive` against a fake Seldon.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from promotion_operator.core.conditions import Event, transition_events
from promotion_operator.core.machine import after_action, decide, reads_for, reconcile, start_run
from promotion_operator.core.pass_io import (
    Action,
    Context,
    Decision,
    Observed,
    Purpose,
    RetryPolicy,
)
from promotion_operator.core.planning import GENERATION_ANNOTATION, spec_hash
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import (
    ActionKind,
    Failure,
    Phase,
    PreviousTarget,
    Run,
    from_status,
    to_status,
)
from promotion_operator.core.spec import ComponentOverride, Overrides, PromotionSpec
from promotion_operator.core.transitions import is_settled
from tests.unit.core_builders import (
    DEFAULT_POLICY,
    PROMOTION,
    SPEC,
    T0,
    FakeSeldon,
    Pass,
    at,
    change_for,
    condition,
    context,
    drive,
    failure,
    foreign_target,
    make_spec,
    our_target,
    plan_for,
    previous_of,
    promoting_run,
    rolling_back_run,
    run_in,
    source_deployment,
    verifying_run,
)

NO_ROLLBACK = make_spec(rollback_on_failure=False)
LONG_TIMEOUT = make_spec(timeout_seconds=3600.0)
WRITES = ("Create", "Update", "Delete")


def seen(target: dict[str, Any] | None = None, **changes: Any) -> Observed:
    """What a pass reads: the source, and ``target`` (None: not found)."""
    return replace(Observed(source=source_deployment(), target=target), **changes)


def requeue(step: Decision) -> str:
    """``step.requeue_after`` as a word: none (settled), now (0) or later (> 0)."""
    if step.requeue_after is None:
        return "none"
    return "now" if step.requeue_after == 0 else "later"


def ready(run: Run) -> tuple[str, str]:
    found = condition(run, "Ready")
    return found["status"], found["reason"]


def progressing(run: Run) -> tuple[str, str]:
    found = condition(run, "Progressing")
    return found["status"], found["reason"]


def final(passes: list[Pass]) -> Run:
    assert passes, "the loop made no pass"
    return passes[-1].step.run


def phases(passes: list[Pass]) -> list[Phase]:
    """The phases the run went through, without repeats."""
    out: list[Phase] = []
    for one in passes:
        if not out or out[-1] != one.step.run.phase:
            out.append(one.step.run.phase)
    return out


# --- what a pass reads ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "reads"),
    [
        pytest.param(Phase.PENDING, (True, True), id="pending-reads-both"),
        pytest.param(Phase.VALIDATING, (True, True), id="validating-reads-both"),
        pytest.param(Phase.PROMOTING, (True, True), id="promoting-reads-both"),
        pytest.param(Phase.VERIFYING, (False, True), id="verifying-reads-target"),
        pytest.param(Phase.ROLLING_BACK, (False, True), id="rolling-back-reads-target"),
        pytest.param(Phase.SUSPENDED, (False, False), id="suspended-reads-nothing"),
        pytest.param(Phase.SUCCEEDED, (False, False), id="succeeded-reads-nothing"),
        pytest.param(Phase.FAILED, (False, False), id="failed-reads-nothing"),
        pytest.param(Phase.ROLLED_BACK, (False, False), id="rolled-back-reads-nothing"),
    ],
)
def test_reads_for_phase(phase: Phase, reads: tuple[bool, bool]) -> None:
    assert reads_for(phase) == reads


# --- happy path, pass by pass -----------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "planned"),
    [
        pytest.param(None, "Create", id="target-absent"),
        pytest.param(foreign_target(), "Update", id="target-present"),
    ],
)
def test_pending_run_validates_the_plan_first(target: dict[str, Any] | None, planned: str) -> None:
    step = decide(context(), run_in(Phase.PENDING), seen(target))

    assert step.action == Action(ActionKind.VALIDATE, plan_for().deployment, "")
    assert step.run.phase == Phase.VALIDATING
    assert step.run.attempts == 1
    assert step.run.plan == change_for(target)
    assert step.run.plan is not None and step.run.plan.action == planned
    assert step.run.previous == previous_of(target)
    assert ready(step.run) == ("False", "Validating")
    assert progressing(step.run) == ("True", "Validating")


def test_successful_validation_moves_to_promoting_and_requeues_at_once() -> None:
    validating = run_in(Phase.VALIDATING, plan=change_for(None), previous=previous_of(None))
    validate = Action(ActionKind.VALIDATE, plan_for().deployment, "")

    step = after_action(context(1), validating, validate, {"type": "Success"}, None)

    assert step.run.phase == Phase.PROMOTING
    assert step.action is None
    assert step.requeue_after == 0.0
    assert ready(step.run) == ("False", "Promoting")


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        pytest.param(None, "Create", id="target-absent-create"),
        pytest.param(foreign_target(), "Update", id="target-present-update"),
    ],
)
def test_promoting_run_writes_the_plan(target: dict[str, Any] | None, kind: str) -> None:
    step = decide(context(2), promoting_run(target), seen(target))

    assert step.action is not None
    assert step.action.kind == kind
    assert step.action.deployment == plan_for().deployment
    assert step.action.rollback is False
    assert step.run.phase == Phase.PROMOTING


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            SPEC,
            "Promote staging/iris to production/iris "
            "(ModelPromotion ml-promotions/iris-to-prod, generation 2)",
            id="default-message",
        ),
        pytest.param(
            make_spec(gitops_message="Release iris 1.0"), "Release iris 1.0", id="gitops-message"
        ),
    ],
)
def test_write_carries_the_commit_message(spec: PromotionSpec, message: str) -> None:
    step = decide(context(2, spec=spec), promoting_run(None), seen(None))

    assert step.action is not None
    assert step.action.message == message


@pytest.mark.parametrize(
    ("kind", "result_generation", "applied"),
    [
        pytest.param("Create", 1, 1, id="create"),
        pytest.param("Update", 8, 8, id="update"),
        pytest.param("Update", None, None, id="answer-without-generation"),
    ],
)
def test_successful_write_moves_to_verifying(
    kind: str, result_generation: int | None, applied: int | None
) -> None:
    result: dict[str, Any] = {"metadata": {}}
    if result_generation is not None:
        result["metadata"]["generation"] = result_generation
    write = Action(ActionKind(kind), plan_for().deployment, "msg")

    step = after_action(context(3), promoting_run(None), write, result, None)

    assert step.run.phase == Phase.VERIFYING
    assert step.run.applied_generation == applied
    assert step.run.applied_at == at(3)
    assert step.action is None
    assert requeue(step) == "later"
    assert ready(step.run) == ("False", "WaitingForAvailable")
    assert progressing(step.run) == ("True", "WaitingForAvailable")


def test_happy_path_end_to_end_creates_once_and_succeeds() -> None:
    seldon = FakeSeldon(source=source_deployment())

    passes = drive(seldon)

    assert [a.kind for a in seldon.calls] == ["Validate", "Create"]
    run = final(passes)
    assert run.phase == Phase.SUCCEEDED
    assert run.finished_at is not None
    assert ready(run) == ("True", "Succeeded")
    assert progressing(run) == ("False", "Succeeded")
    assert passes[-1].step.requeue_after is None


def test_happy_path_update_of_an_existing_target() -> None:
    seldon = FakeSeldon(source=source_deployment(), target=foreign_target())

    run = final(drive(seldon))

    assert [a.kind for a in seldon.calls] == ["Validate", "Update"]
    assert run.phase == Phase.SUCCEEDED
    assert run.applied_generation == 8
    assert run.previous == previous_of(foreign_target())


def test_happy_path_passes_through_every_working_phase() -> None:
    passes = drive(FakeSeldon(source=source_deployment()))

    # A pass that acts reports the phase after the action: Validate lands in
    # Promoting, the write in Verifying.
    assert phases(passes) == [Phase.PROMOTING, Phase.VERIFYING, Phase.SUCCEEDED]
    assert [p.action.kind if p.action else None for p in passes[:2]] == ["Validate", "Create"]


# --- verifying ------------------------------------------------------------------------


VERIFY_TABLE = [
    pytest.param(
        our_target(state="Creating", observed_generation=1),
        5,
        SPEC,
        Phase.VERIFYING,
        "WaitingForAvailable",
        "later",
        id="creating-waits",
    ),
    pytest.param(
        our_target(),
        5,
        SPEC,
        Phase.VERIFYING,
        "WaitingForAvailable",
        "later",
        id="no-status-yet-waits",
    ),
    pytest.param(
        our_target(state="Available", observed_generation=1),
        5,
        SPEC,
        Phase.SUCCEEDED,
        "Succeeded",
        "none",
        id="available-for-our-generation-succeeds",
    ),
    pytest.param(
        our_target(generation=2, state="Available", observed_generation=2),
        5,
        SPEC,
        Phase.SUCCEEDED,
        "Succeeded",
        "none",
        id="available-for-a-newer-generation-succeeds",
    ),
    pytest.param(
        our_target(state="Failed", observed_generation=1),
        5,
        SPEC,
        Phase.ROLLING_BACK,
        "RollingBack",
        "now",
        id="failed-with-rollback-rolls-back",
    ),
    pytest.param(
        our_target(state="Failed", observed_generation=1),
        5,
        NO_ROLLBACK,
        Phase.FAILED,
        "TargetFailed",
        "none",
        id="failed-without-rollback-fails",
    ),
    pytest.param(
        our_target(state="Creating", observed_generation=1),
        599,
        SPEC,
        Phase.VERIFYING,
        "WaitingForAvailable",
        "later",
        id="just-before-timeout-waits",
    ),
    pytest.param(
        our_target(state="Creating", observed_generation=1),
        600,
        SPEC,
        Phase.ROLLING_BACK,
        "RollingBack",
        "now",
        id="timeout-with-rollback-rolls-back",
    ),
    pytest.param(
        our_target(state="Creating", observed_generation=1),
        600,
        NO_ROLLBACK,
        Phase.FAILED,
        "VerificationTimedOut",
        "none",
        id="timeout-without-rollback-fails",
    ),
    pytest.param(None, 5, SPEC, Phase.FAILED, "TargetChanged", "none", id="target-deleted"),
    pytest.param(
        foreign_target(), 5, SPEC, Phase.FAILED, "TargetChanged", "none", id="target-overwritten"
    ),
]


@pytest.mark.parametrize(("target", "seconds", "spec", "phase", "reason", "when"), VERIFY_TABLE)
def test_verifying(
    target: dict[str, Any] | None,
    seconds: float,
    spec: PromotionSpec,
    phase: Phase,
    reason: str,
    when: str,
) -> None:
    step = decide(context(seconds, spec=spec), verifying_run(), Observed(target=target))

    assert step.action is None
    assert step.run.phase == phase
    assert ready(step.run)[1] == reason
    assert requeue(step) == when


@pytest.mark.parametrize(
    ("target", "seconds", "spec", "outcome"),
    [
        pytest.param(
            our_target(state="Failed", observed_generation=1), 5, SPEC, "TargetFailed", id="failed"
        ),
        pytest.param(
            our_target(state="Creating", observed_generation=1),
            600,
            SPEC,
            "VerificationTimedOut",
            id="timed-out",
        ),
        pytest.param(None, 5, SPEC, "TargetChanged", id="deleted"),
        pytest.param(
            our_target(state="Failed", observed_generation=1),
            5,
            NO_ROLLBACK,
            "TargetFailed",
            id="failed-no-rollback",
        ),
    ],
)
def test_verification_failure_is_recorded_as_the_outcome(
    target: dict[str, Any] | None, seconds: float, spec: PromotionSpec, outcome: str
) -> None:
    step = decide(context(seconds, spec=spec), verifying_run(), Observed(target=target))

    assert step.run.outcome is not None
    assert step.run.outcome.reason == outcome
    assert step.run.last_error is None


def test_target_failed_message_carries_the_target_description() -> None:
    target = our_target(state="Failed", observed_generation=1)
    target["status"]["description"] = "ImagePullBackOff for seldonio/iris:1.0"

    step = decide(context(5, spec=NO_ROLLBACK), verifying_run(), Observed(target=target))

    assert "ImagePullBackOff" in condition(step.run, "Ready")["message"]


def test_verification_deadline_counts_from_the_write() -> None:
    run = verifying_run(applied_at=at(100), phase_since=at(0))
    target = our_target(state="Creating", observed_generation=1)

    waiting = decide(context(650), run, Observed(target=target))
    timed_out = decide(context(700), run, Observed(target=target))

    assert waiting.run.phase == Phase.VERIFYING
    assert timed_out.run.phase == Phase.ROLLING_BACK


@pytest.mark.parametrize(
    ("seconds", "phase"),
    [
        pytest.param(5, Phase.VERIFYING, id="before-deadline-retries"),
        pytest.param(600, Phase.ROLLING_BACK, id="after-deadline-times-out"),
    ],
)
def test_verifying_target_read_errors_are_retried_until_the_deadline(
    seconds: float, phase: Phase
) -> None:
    error = failure("SeldonDeployUnavailable", 503, retryable=True)

    step = decide(context(seconds), verifying_run(), Observed(target_error=error))

    assert step.run.phase == phase
    assert step.action is None
    if phase == Phase.ROLLING_BACK:
        assert step.run.outcome is not None
        assert step.run.outcome.reason == "VerificationTimedOut"
    else:
        assert progressing(step.run) == ("True", "Retrying")


# --- GitOps: status is evidence only for the generation it observed ---------------------


@pytest.mark.parametrize(
    "status",
    [
        pytest.param({"state": "Available", "observedGeneration": 7}, id="old-available"),
        pytest.param({"state": "Failed", "observedGeneration": 7}, id="old-failed"),
        pytest.param({"state": "Available"}, id="available-no-observed-generation"),
        pytest.param({}, id="no-status"),
    ],
)
def test_status_of_an_older_generation_is_not_evidence(status: dict[str, Any]) -> None:
    target = our_target(generation=8)
    target["status"] = status

    step = decide(
        context(5), verifying_run(foreign_target(), applied_generation=8), Observed(target=target)
    )

    assert step.run.phase == Phase.VERIFYING
    assert requeue(step) == "later"
    message = condition(step.run, "Ready")["message"]
    assert "GitOps" in message
    assert "observe generation 8" in message


def test_gitops_update_succeeds_only_once_status_catches_up() -> None:
    seldon = FakeSeldon(source=source_deployment(), target=foreign_target(), rollout_seconds=30)

    passes = drive(seldon)

    succeeded = [p for p in passes if p.step.run.phase == Phase.SUCCEEDED]
    assert len(succeeded) == 1
    assert succeeded[0].at >= at(30)
    waiting = [p for p in passes if p.step.run.phase == Phase.VERIFYING and p.action is None]
    assert waiting, "the run should have waited for the status to catch up"
    assert all("GitOps" in condition(p.step.run, "Ready")["message"] for p in waiting)


# --- dry run, suspend, settled runs -------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [pytest.param(None, id="target-absent"), pytest.param(foreign_target(), id="target-present")],
)
def test_dry_run_validates_reports_and_writes_nothing(target: dict[str, Any] | None) -> None:
    seldon = FakeSeldon(source=source_deployment(), target=target)

    passes = drive(seldon, spec=make_spec(dry_run=True))

    run = final(passes)
    assert seldon.writes() == []
    assert [a.kind for a in seldon.calls] == ["Validate"]
    assert run.phase == Phase.SUCCEEDED
    assert ready(run) == ("True", "DryRun")
    assert progressing(run) == ("False", "DryRun")
    assert run.plan == change_for(target)
    assert "would" in condition(run, "Ready")["message"]
    assert run.applied_generation is None


def test_suspend_stops_after_validation_without_writing() -> None:
    seldon = FakeSeldon(source=source_deployment(), target=foreign_target())

    passes = drive(seldon, spec=make_spec(suspend=True))

    run = final(passes)
    assert seldon.writes() == []
    assert run.phase == Phase.SUSPENDED
    assert ready(run) == ("False", "Suspended")
    assert progressing(run) == ("False", "Suspended")
    assert passes[-1].step.requeue_after is None
    assert "spec.suspend" in condition(run, "Ready")["message"]


@pytest.mark.parametrize(
    "phase",
    [Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK, Phase.SUSPENDED],
    ids=str,
)
def test_settled_run_does_nothing(phase: Phase) -> None:
    run = run_in(phase, attempts=5)
    observed = seen(our_target(state="Failed", observed_generation=1))

    step = decide(context(9999), run, observed)

    assert is_settled(run)
    assert step == Decision(run)
    assert step.action is None
    assert step.requeue_after is None


@pytest.mark.parametrize(
    "phase",
    [Phase.PENDING, Phase.VALIDATING, Phase.PROMOTING, Phase.VERIFYING, Phase.ROLLING_BACK],
    ids=str,
)
def test_working_run_is_not_settled(phase: Phase) -> None:
    assert not is_settled(run_in(phase))


def test_every_pass_counts_an_attempt() -> None:
    run = verifying_run(attempts=3)

    step = decide(context(5), run, Observed(target=our_target(state="Creating")))

    assert step.run.attempts == 4


# --- crash recovery -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_before", "generation"),
    [
        pytest.param(None, 1, id="after-create"),
        pytest.param(foreign_target(), 8, id="after-update"),
    ],
)
def test_promoting_adopts_its_own_write_instead_of_writing_again(
    target_before: dict[str, Any] | None, generation: int
) -> None:
    landed = our_target(generation=generation)

    step = decide(context(4), promoting_run(target_before), seen(landed))

    assert step.action is None
    assert step.run.phase == Phase.VERIFYING
    assert step.run.applied_generation == generation
    assert step.run.applied_at == at(4)
    assert step.requeue_after == 0.0


@pytest.mark.parametrize(
    ("recorded", "now", "planned"),
    [
        pytest.param(None, foreign_target(), "Update", id="appeared-since-validation"),
        pytest.param(foreign_target(), None, "Create", id="deleted-since-validation"),
        pytest.param(
            foreign_target(),
            foreign_target(image="seldonio/iris:0.8"),
            "Update",
            id="edited-since-validation",
        ),
    ],
)
def test_promoting_revalidates_a_target_that_changed_since_validation(
    recorded: dict[str, Any] | None, now: dict[str, Any] | None, planned: str
) -> None:
    step = decide(context(4), promoting_run(recorded), seen(now))

    assert step.action is not None
    assert step.action.kind == "Validate"
    assert step.run.phase == Phase.VALIDATING
    assert step.run.previous == previous_of(now)
    assert step.run.plan is not None and step.run.plan.action == planned


def test_target_with_an_older_generation_of_this_promotion_is_not_adopted() -> None:
    older = our_target()
    older["metadata"]["annotations"][GENERATION_ANNOTATION] = "1"

    step = decide(context(4), promoting_run(older), seen(older))

    assert step.action is not None
    assert step.action.kind == "Update"


@pytest.mark.parametrize(
    "target",
    [pytest.param(None, id="create"), pytest.param(foreign_target(), id="update")],
)
def test_crash_right_after_the_write_neither_writes_twice_nor_loses_it(
    target: dict[str, Any] | None,
) -> None:
    seldon = FakeSeldon(source=source_deployment(), target=target)

    passes = drive(seldon, crash_after_first_write=True)

    assert [a.kind for a in seldon.writes()] == ["Create" if target is None else "Update"]
    assert final(passes).phase == Phase.SUCCEEDED


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.VALIDATING], ids=str)
def test_runs_before_promoting_only_validate_whatever_the_target(phase: Phase) -> None:
    step = decide(context(1), run_in(phase), seen(foreign_target()))

    assert step.action is not None
    assert step.action.kind == "Validate"


# --- errors -----------------------------------------------------------------------


def test_missing_source_is_retried_before_the_deadline() -> None:
    step = decide(context(10), run_in(Phase.PENDING), Observed(source=None, target=None))

    assert step.action is None
    assert step.run.phase == Phase.PENDING
    assert step.run.last_error is not None
    assert step.run.last_error.reason == "SourceNotFound"
    assert step.run.last_error.http_status == 404
    assert step.run.error_since == at(10)
    assert ready(step.run) == ("False", "SourceNotFound")
    assert progressing(step.run) == ("True", "Retrying")
    assert step.requeue_after is not None and step.requeue_after > 0


def test_a_source_at_the_pinned_generation_is_planned() -> None:
    step = decide(context(), run_in(Phase.PENDING), seen(None))
    pinned = decide(context(spec=make_spec(source_generation=5)), run_in(Phase.PENDING), seen(None))

    assert pinned.run.phase == step.run.phase == Phase.VALIDATING
    assert pinned.action == step.action


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.VALIDATING, Phase.PROMOTING], ids=str)
def test_a_source_at_another_generation_than_pinned_fails_before_any_write(phase: Phase) -> None:
    run = promoting_run(None) if phase == Phase.PROMOTING else run_in(phase)
    step = decide(context(spec=make_spec(source_generation=4)), run, seen(None))

    assert step.action is None
    assert step.run.phase == Phase.FAILED
    assert step.run.outcome is not None and step.run.outcome.reason == "SourceChanged"
    assert "generation 5, not the generation 4" in step.run.outcome.message
    assert ready(step.run) == ("False", "SourceChanged")


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.VALIDATING, Phase.PROMOTING], ids=str)
def test_missing_source_fails_at_the_deadline(phase: Phase) -> None:
    run = run_in(phase, last_error=failure("SourceNotFound", 404), error_since=at(1))

    step = decide(context(600), run, Observed(source=None, target=None))

    assert step.run.phase == Phase.FAILED
    assert step.requeue_after is None
    assert step.run.outcome is not None and step.run.outcome.reason == "SourceNotFound"
    assert step.run.last_error is None
    assert ready(step.run) == ("False", "SourceNotFound")
    assert progressing(step.run) == ("False", "SourceNotFound")


RETRYABLE = [
    pytest.param(
        Observed(source_error=failure("AuthenticationFailed", 401, retryable=True)),
        "AuthenticationFailed",
        id="source-read-401",
    ),
    pytest.param(
        Observed(source_error=failure("SeldonDeployUnavailable", 503, retryable=True)),
        "SeldonDeployUnavailable",
        id="source-read-503",
    ),
    pytest.param(
        seen(target_error=failure("SeldonDeployUnavailable", None, retryable=True)),
        "SeldonDeployUnavailable",
        id="target-read-connection-error",
    ),
    pytest.param(
        seen(target_error=failure("AuthenticationFailed", 401, retryable=True)),
        "AuthenticationFailed",
        id="target-read-401",
    ),
]


@pytest.mark.parametrize(("observed", "reason"), RETRYABLE)
@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.VALIDATING, Phase.PROMOTING], ids=str)
def test_retryable_read_errors_are_retried(phase: Phase, observed: Observed, reason: str) -> None:
    step = decide(context(10), promoting_run(None, phase=phase), observed)

    assert step.action is None
    assert step.run.phase == phase
    assert ready(step.run) == ("False", reason)
    assert progressing(step.run) == ("True", "Retrying")
    assert requeue(step) == "later"


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        pytest.param(
            "Validate", failure("SeldonDeployUnavailable", 503, retryable=True), id="validate-503"
        ),
        pytest.param(
            "Validate", failure("AuthenticationFailed", 401, retryable=True), id="validate-401"
        ),
        pytest.param("Create", failure("Conflict", 409, retryable=True), id="create-409"),
        pytest.param(
            "Update", failure("SeldonDeployUnavailable", 429, retryable=True), id="update-429"
        ),
    ],
)
def test_retryable_action_failures_keep_the_phase(kind: str, error: Failure) -> None:
    phase = Phase.VALIDATING if kind == "Validate" else Phase.PROMOTING
    run = promoting_run(None, phase=phase)

    step = after_action(
        context(10), run, Action(ActionKind(kind), plan_for().deployment, ""), None, error
    )

    assert step.run.phase == phase
    assert step.run.last_error == error
    assert progressing(step.run) == ("True", "Retrying")
    assert requeue(step) == "later"


def test_retryable_write_failure_is_written_again_on_the_next_pass() -> None:
    error = failure("SeldonDeployUnavailable", 503, retryable=True)
    failed = after_action(
        context(2), promoting_run(None), Action(ActionKind.CREATE, {}, ""), None, error
    )

    step = decide(context(5), failed.run, seen(None))

    assert step.action is not None
    assert step.action.kind == "Create"


FATAL = [
    pytest.param(
        "decide", Observed(source_error=failure("Forbidden", 403)), "Forbidden", id="source-403"
    ),
    pytest.param(
        "decide", seen(target_error=failure("Forbidden", 403)), "Forbidden", id="target-403"
    ),
    pytest.param("Validate", failure("Invalid", 422), "Invalid", id="validate-422"),
    pytest.param("Validate", failure("Invalid", 400), "Invalid", id="validate-400"),
    pytest.param("Validate", failure("Forbidden", 403), "Forbidden", id="validate-403"),
    pytest.param("Create", failure("Invalid", 422), "Invalid", id="create-422"),
    pytest.param("Update", failure("Forbidden", 403), "Forbidden", id="update-403"),
]


@pytest.mark.parametrize(("where", "error", "reason"), FATAL)
def test_forbidden_and_invalid_fail_at_once(
    where: str, error: Observed | Failure, reason: str
) -> None:
    phase = Phase.VALIDATING if where in ("decide", "Validate") else Phase.PROMOTING
    run = promoting_run(None, phase=phase)
    if isinstance(error, Observed):
        step = decide(context(1), run, error)
    else:
        step = after_action(
            context(1), run, Action(ActionKind(where), plan_for().deployment, ""), None, error
        )

    assert step.run.phase == Phase.FAILED
    assert step.action is None
    assert step.requeue_after is None
    assert step.run.outcome is not None and step.run.outcome.reason == reason
    assert ready(step.run) == ("False", reason)
    assert progressing(step.run) == ("False", reason)


def test_retryable_validation_failure_fails_after_the_deadline() -> None:
    error = failure("SeldonDeployUnavailable", 503, retryable=True)
    run = promoting_run(None, phase=Phase.VALIDATING)

    step = after_action(context(600), run, Action(ActionKind.VALIDATE, {}, ""), None, error)

    assert step.run.phase == Phase.FAILED
    assert step.run.outcome == error


def test_override_that_does_not_fit_fails_as_invalid_naming_the_field() -> None:
    spec = make_spec(overrides=Overrides(components=(ComponentOverride("scorer", image="x:1"),)))

    step = decide(context(1, spec=spec), run_in(Phase.PENDING), seen(None))

    assert step.action is None
    assert step.run.phase == Phase.FAILED
    assert step.run.outcome is not None
    assert step.run.outcome.reason == "Invalid"
    assert "spec.overrides.components" in step.run.outcome.message
    assert ready(step.run) == ("False", "Invalid")


def test_retry_delays_grow_with_the_time_spent_failing() -> None:
    error = failure("AuthenticationFailed", 401, retryable=True)
    run = run_in(Phase.PENDING)
    delays = []
    for seconds in (0, 10, 100, 1000):
        step = decide(context(seconds, spec=LONG_TIMEOUT), run, Observed(source_error=error))
        assert step.run.error_since == T0
        delays.append(step.requeue_after)
        run = step.run

    # The delay is the time already spent failing (doubling gaps), floored and capped.
    assert delays == [0.5, 10.0, 60.0, 60.0]


def test_a_different_error_restarts_the_backoff() -> None:
    run = run_in(
        Phase.PENDING, last_error=failure("SourceNotFound", 404, retryable=True), error_since=T0
    )
    error = failure("AuthenticationFailed", 401, retryable=True)

    step = decide(context(100), run, Observed(source_error=error))

    assert step.run.error_since == at(100)
    assert step.requeue_after == 0.5


@pytest.mark.parametrize(
    ("seconds", "retry_after", "delay"),
    [
        pytest.param(0, 30.0, 30.0, id="retry-after-above-backoff-wins"),
        pytest.param(20, 5.0, 20.0, id="backoff-above-retry-after-wins"),
        pytest.param(0, None, 0.5, id="no-retry-after"),
    ],
)
def test_retry_after_is_a_minimum_delay(
    seconds: float, retry_after: float | None, delay: float
) -> None:
    error = failure("SeldonDeployUnavailable", 429, retryable=True, retry_after=retry_after)
    run = run_in(Phase.PENDING, last_error=error, error_since=T0)

    step = decide(context(seconds), run, Observed(source_error=error))

    assert step.requeue_after == delay


# --- rolling back -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_before", "target_now", "kind"),
    [
        pytest.param(foreign_target(), our_target(generation=8), "Update", id="restore-previous"),
        pytest.param(foreign_target(), None, "Create", id="recreate-deleted-previous"),
        pytest.param(None, our_target(), "Delete", id="remove-new-target"),
    ],
)
def test_rolling_back_restores_what_was_there(
    target_before: dict[str, Any] | None, target_now: dict[str, Any] | None, kind: str
) -> None:
    step = decide(context(1), rolling_back_run(target_before), Observed(target=target_now))

    assert step.action is not None
    assert step.action.kind == kind
    assert step.action.rollback is True
    assert step.action.deployment == previous_of(target_before).deployment
    assert "TargetFailed" in step.action.message
    assert step.run.phase == Phase.ROLLING_BACK
    assert ready(step.run) == ("False", "RollingBack")


@pytest.mark.parametrize(
    ("target_before", "target_now"),
    [
        pytest.param(foreign_target(), foreign_target(), id="previous-spec-already-restored"),
        pytest.param(None, None, id="new-target-already-removed"),
    ],
)
def test_rolling_back_an_already_restored_target_writes_nothing(
    target_before: dict[str, Any] | None, target_now: dict[str, Any] | None
) -> None:
    step = decide(context(1), rolling_back_run(target_before), Observed(target=target_now))

    assert step.action is None
    assert step.run.phase == Phase.ROLLED_BACK
    assert ready(step.run) == ("False", "RolledBack")


@pytest.mark.parametrize(
    ("target_before", "kind", "error", "what"),
    [
        pytest.param(
            foreign_target(), "Update", None, "restored its previous spec", id="update-ok"
        ),
        pytest.param(None, "Delete", None, "removed it", id="delete-ok"),
        pytest.param(
            None, "Delete", Failure("NotFound", "gone", 404), "removed it", id="delete-404-is-done"
        ),
    ],
)
def test_successful_rollback_ends_rolled_back_naming_the_cause(
    target_before: dict[str, Any] | None, kind: str, error: Failure | None, what: str
) -> None:
    run = rolling_back_run(target_before)
    action = Action(
        ActionKind(kind), previous_of(target_before).deployment, "rollback", Purpose.ROLLBACK
    )

    step = after_action(context(2), run, action, None, error)

    assert step.run.phase == Phase.ROLLED_BACK
    assert step.run.finished_at == at(2)
    assert step.requeue_after is None
    assert step.run.outcome is not None and step.run.outcome.reason == "TargetFailed"
    ready_condition = condition(step.run, "Ready")
    assert (ready_condition["status"], ready_condition["reason"]) == ("False", "RolledBack")
    assert "TargetFailed" in ready_condition["message"]
    assert what in ready_condition["message"]
    assert progressing(step.run)[0] == "False"


@pytest.mark.parametrize(
    ("seconds", "error", "phase", "reason"),
    [
        pytest.param(
            10,
            failure("SeldonDeployUnavailable", 503, retryable=True),
            Phase.ROLLING_BACK,
            "SeldonDeployUnavailable",
            id="retryable-before-deadline-retries",
        ),
        pytest.param(
            600,
            failure("SeldonDeployUnavailable", 503, retryable=True),
            Phase.FAILED,
            "RollbackFailed",
            id="retryable-past-deadline-fails",
        ),
        pytest.param(
            10, failure("Forbidden", 403), Phase.FAILED, "RollbackFailed", id="forbidden-fails"
        ),
        pytest.param(
            10,
            Failure("NotFound", "gone", 404),
            Phase.FAILED,
            "RollbackFailed",
            id="update-404-is-not-done",
        ),
    ],
)
def test_failed_rollback_write(seconds: float, error: Failure, phase: Phase, reason: str) -> None:
    run = rolling_back_run(foreign_target())
    action = Action(
        ActionKind.UPDATE, previous_of(foreign_target()).deployment, "rb", Purpose.ROLLBACK
    )

    step = after_action(context(seconds), run, action, None, error)

    assert step.run.phase == phase
    assert ready(step.run) == ("False", reason)
    if phase == Phase.FAILED:
        assert step.run.outcome is not None
        assert "TargetFailed" in step.run.outcome.message
        assert step.requeue_after is None
    else:
        assert requeue(step) == "later"


def test_rollback_deadline_counts_from_entering_rolling_back() -> None:
    run = rolling_back_run(foreign_target(), started_at=T0, phase_since=at(500))
    error = failure("SeldonDeployUnavailable", 503, retryable=True)

    step = decide(context(1000), run, Observed(target_error=error))

    assert step.run.phase == Phase.ROLLING_BACK


def test_failed_verification_rolls_back_end_to_end() -> None:
    seldon = FakeSeldon(source=source_deployment(), target=foreign_target(), rollout_state="Failed")

    passes = drive(seldon)

    run = final(passes)
    assert [a.kind for a in seldon.writes()] == ["Update", "Update"]
    assert seldon.writes()[1].rollback is True
    assert seldon.target is not None
    assert spec_hash(seldon.target["spec"]) == spec_hash(foreign_target()["spec"])
    assert run.phase == Phase.ROLLED_BACK
    assert ready(run) == ("False", "RolledBack")


def test_failed_creation_is_removed_end_to_end() -> None:
    seldon = FakeSeldon(source=source_deployment(), rollout_state="Failed")

    run = final(drive(seldon))

    assert [a.kind for a in seldon.writes()] == ["Create", "Delete"]
    assert seldon.target is None
    assert run.phase == Phase.ROLLED_BACK


# --- events ---------------------------------------------------------------------------


EVENT_TABLE = [
    pytest.param(
        run_in(Phase.PENDING),
        context(1),
        seen(None),
        [("Normal", "Validating")],
        id="to-validating",
    ),
    pytest.param(
        verifying_run(),
        context(5),
        Observed(target=our_target(state="Available", observed_generation=1)),
        [("Normal", "Succeeded")],
        id="to-succeeded",
    ),
    pytest.param(
        verifying_run(),
        context(5),
        Observed(target=our_target(state="Failed", observed_generation=1)),
        [("Warning", "RollingBack")],
        id="to-rolling-back",
    ),
    pytest.param(
        verifying_run(),
        context(5, spec=NO_ROLLBACK),
        Observed(target=our_target(state="Failed", observed_generation=1)),
        [("Warning", "TargetFailed")],
        id="to-failed",
    ),
    pytest.param(
        rolling_back_run(None),
        context(5),
        Observed(target=None),
        [("Warning", "RolledBack")],
        id="to-rolled-back",
    ),
    pytest.param(
        run_in(Phase.PENDING),
        context(5),
        Observed(source=None),
        [("Warning", "SourceNotFound")],
        id="new-error",
    ),
    pytest.param(
        run_in(Phase.PENDING, last_error=failure("SourceNotFound", 404), error_since=T0),
        context(5),
        Observed(source=None),
        [],
        id="same-error-again",
    ),
    pytest.param(
        run_in(Phase.PENDING, last_error=failure("SourceNotFound", 404), error_since=T0),
        context(5),
        Observed(source_error=failure("AuthenticationFailed", 401, retryable=True)),
        [("Warning", "AuthenticationFailed")],
        id="different-error",
    ),
    pytest.param(
        verifying_run(),
        context(5),
        Observed(target=our_target(state="Creating", observed_generation=1)),
        [],
        id="poll-without-change",
    ),
]


@pytest.mark.parametrize(("before", "ctx", "observed", "expected"), EVENT_TABLE)
def test_events_of_a_pass(
    before: Run, ctx: Context, observed: Observed, expected: list[tuple[str, str]]
) -> None:
    events = transition_events(before, decide(ctx, before, observed).run)

    assert [(e.type, e.reason) for e in events] == expected


def test_phase_change_event_carries_the_ready_message() -> None:
    before = verifying_run()
    observed = Observed(target=our_target(state="Available", observed_generation=1))

    events = transition_events(before, decide(context(5), before, observed).run)

    assert events == (
        Event("Normal", "Succeeded", "production/iris is Available with the promoted spec"),
    )


def test_suspending_posts_a_normal_event() -> None:
    before = promoting_run(None, phase=Phase.VALIDATING)
    action = Action(ActionKind.VALIDATE, {}, "")
    step = after_action(context(1, spec=make_spec(suspend=True)), before, action, {}, None)

    assert [(e.type, e.reason) for e in transition_events(before, step.run)] == [
        ("Normal", "Suspended")
    ]


def test_end_to_end_events_one_per_phase_change() -> None:
    passes = drive(FakeSeldon(source=source_deployment()))

    events = [(e.type, e.reason) for p in passes for e in p.events]
    assert events == [
        ("Normal", "Promoting"),
        ("Normal", "WaitingForAvailable"),
        ("Normal", "Succeeded"),
    ]


# --- conditions through the machine ---------------------------------------------------


def test_conditions_transition_times_move_only_on_flips() -> None:
    passes = drive(FakeSeldon(source=source_deployment(), rollout_seconds=20))

    run = final(passes)
    done = passes[-1].at
    assert done > T0
    for type_ in ("Ready", "Progressing"):
        found = condition(run, type_)
        assert found["lastTransitionTime"] == done.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert found["observedGeneration"] == PROMOTION.generation
    middle = passes[1].step.run  # Verifying: still not Ready, still Progressing since T0
    assert condition(middle, "Ready")["lastTransitionTime"] == "2025-03-01T12:00:00Z"
    assert condition(middle, "Progressing")["lastTransitionTime"] == "2025-03-01T12:00:00Z"


# --- start_run ---------------------------------------------------------------------


def test_start_run_without_a_recorded_run_starts_pending() -> None:
    run = start_run(context(7), None)

    assert run.phase == Phase.PENDING
    assert (run.generation, run.attempts) == (2, 0)
    assert run.started_at == run.phase_since == at(7)
    assert (run.source, run.target) == ("staging/iris", "production/iris")
    assert ready(run) == ("False", "Pending")
    assert progressing(run) == ("True", "Pending")
    assert condition(run, "Ready")["observedGeneration"] == 2


@pytest.mark.parametrize(
    "recorded",
    [
        pytest.param(run_in(Phase.VERIFYING, attempts=4), id="working"),
        pytest.param(run_in(Phase.SUCCEEDED, attempts=9, finished_at=T0), id="finished"),
    ],
)
def test_start_run_keeps_the_recorded_run_of_the_same_generation(recorded: Run) -> None:
    assert start_run(context(99), recorded) is recorded


def test_start_run_starts_afresh_for_a_new_generation() -> None:
    recorded = replace(final(drive(FakeSeldon(source=source_deployment()))), attempts=9)
    assert recorded.phase == Phase.SUCCEEDED

    newer = replace(PROMOTION, generation=3)
    run = start_run(replace(context(500), promotion=newer), from_status(to_status(recorded)))

    assert run.phase == Phase.PENDING
    assert (run.generation, run.attempts) == (3, 0)
    assert run.started_at == at(500)
    assert run.plan is None
    assert run.previous is None
    assert run.applied_generation is None
    assert run.applied_at is None
    assert run.outcome is None
    assert run.last_error is None
    assert run.finished_at is None
    assert ready(run) == ("False", "Pending")
    assert condition(run, "Ready")["observedGeneration"] == 3
    assert condition(run, "Ready")["lastTransitionTime"] == "2025-03-01T12:08:20Z"


def test_status_round_trip_between_passes_changes_nothing() -> None:
    # drive() records every pass through to_status/from_status; compare with a loop that
    # keeps the run in memory.
    seldon_a = FakeSeldon(source=source_deployment())
    through_status = final(drive(seldon_a))
    ctx = context()
    run = start_run(ctx, None)
    seldon_b = FakeSeldon(source=source_deployment())
    now = T0
    while not is_settled(run):
        ctx = replace(ctx, now=now)
        seldon_b.now = now
        read_source, read_target = reads_for(run.phase)
        observed = Observed(
            source=seldon_b.read_source().deployment if read_source else None,
            target=seldon_b.read_target().deployment if read_target else None,
        )
        step = decide(ctx, run, observed)
        if step.action is not None:
            result, error = seldon_b.perform(step.action)
            step = after_action(ctx, step.run, step.action, result, error)
        # A pass that changed nothing but its count is not recorded (see reconcile).
        if to_status(replace(step.run, attempts=run.attempts)) != to_status(run):
            run = step.run
        assert step.requeue_after is not None or is_settled(run)
        now += datetime.timedelta(seconds=step.requeue_after or 0)

    assert to_status(run) == to_status(through_status)


# --- delays -------------------------------------------------------------------------


def poll_delay(
    seconds_waiting: float, jitter: float, policy: RetryPolicy = DEFAULT_POLICY
) -> float:
    """The requeue of a Verifying pass that has waited ``seconds_waiting`` since the write."""
    run = verifying_run(phase_since=T0, applied_at=at(seconds_waiting))
    ctx = replace(context(seconds_waiting, spec=LONG_TIMEOUT, jitter=jitter), policy=policy)
    step = decide(ctx, run, Observed(target=our_target(state="Creating", observed_generation=1)))
    assert step.requeue_after is not None
    return step.requeue_after


def retry_delay(
    seconds_failing: float, jitter: float, policy: RetryPolicy = DEFAULT_POLICY
) -> float:
    """The requeue of a Pending pass that has failed for ``seconds_failing``."""
    error = failure("SeldonDeployUnavailable", 503, retryable=True)
    run = run_in(Phase.PENDING, last_error=error, error_since=T0)
    spec = make_spec(timeout_seconds=10_000.0)
    ctx = replace(context(seconds_failing, spec=spec, jitter=jitter), policy=policy)
    step = decide(ctx, run, Observed(source_error=error))
    assert step.requeue_after is not None
    return step.requeue_after


@pytest.mark.parametrize(
    ("waited", "nominal"),
    [
        pytest.param(0, 0.5, id="floor-min-delay"),
        pytest.param(0.2, 0.5, id="a-short-wait-floored"),
        pytest.param(4, 2.0, id="half-the-wait"),
        pytest.param(20, 10.0, id="at-max-poll"),
        pytest.param(5000, 10.0, id="capped-at-max-poll"),
    ],
)
def test_poll_delay_is_half_the_wait_so_far_clamped(waited: float, nominal: float) -> None:
    assert poll_delay(waited, jitter=0.5) == nominal


@pytest.mark.parametrize(
    ("failing", "nominal"),
    [
        pytest.param(0, 0.5, id="floor-min-delay"),
        pytest.param(15, 15.0, id="the-wait-again"),
        pytest.param(60, 60.0, id="at-max-delay"),
        pytest.param(9000, 60.0, id="capped-at-max-delay"),
    ],
)
def test_retry_delay_is_the_wait_so_far_clamped(failing: float, nominal: float) -> None:
    assert retry_delay(failing, jitter=0.5) == nominal


def test_custom_policy_is_honoured() -> None:
    policy = RetryPolicy(min_delay=2.0, max_delay=30.0, max_poll=5.0)

    assert poll_delay(0, 0.5, policy) == 2.0
    assert poll_delay(3, 0.5, policy) == 2.0
    assert poll_delay(8, 0.5, policy) == 4.0
    assert poll_delay(1000, 0.5, policy) == 5.0
    assert retry_delay(10, 0.5, policy) == 10.0
    assert retry_delay(1000, 0.5, policy) == 30.0


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999])
@pytest.mark.parametrize(
    ("delay", "nominal"),
    [
        pytest.param(lambda j: poll_delay(8, j), 4.0, id="poll"),
        pytest.param(lambda j: retry_delay(15, j), 15.0, id="retry"),
    ],
)
def test_jitter_spreads_delays_within_a_quarter_of_nominal(
    delay: Callable[[float], float], nominal: float, jitter: float
) -> None:
    value = delay(jitter)

    assert 0.75 * nominal <= value <= 1.25 * nominal
    assert value == pytest.approx(nominal * (0.75 + 0.5 * jitter), abs=1e-3)


def test_different_jitter_gives_different_delays() -> None:
    assert len({poll_delay(8, j) for j in (0.0, 0.3, 0.6, 0.9)}) == 4


@pytest.mark.parametrize(
    "jitter",
    [
        pytest.param(0.0, id="jitter-low"),
        pytest.param(0.5, id="jitter-mid"),
        pytest.param(0.999, id="jitter-high"),
    ],
)
def test_delays_never_exceed_the_policy_ceiling(jitter: float) -> None:
    policy = RetryPolicy()

    assert poll_delay(5000, jitter) <= policy.max_poll
    assert retry_delay(9000, jitter) <= policy.max_delay


# --- regressions found by these tests ------------------------------------------------------


@pytest.mark.parametrize(
    "scenario",
    ["source-appears-after-SourceNotFound", "validate-succeeds-after-503", "suspend-after-503"],
)
def test_a_resolved_error_is_cleared_when_the_run_moves_on(scenario: str) -> None:
    if scenario == "source-appears-after-SourceNotFound":
        missing = decide(context(1), run_in(Phase.PENDING), Observed(source=None))
        step = decide(context(5), missing.run, seen(None))
        expected = Phase.VALIDATING
    else:
        spec = make_spec(suspend=scenario == "suspend-after-503")
        validating = promoting_run(None, phase=Phase.VALIDATING)
        validate = Action(ActionKind.VALIDATE, plan_for().deployment, "")
        error = failure("SeldonDeployUnavailable", 503, retryable=True)
        retried = after_action(context(1, spec=spec), validating, validate, None, error)
        again = decide(context(3, spec=spec), retried.run, seen(None))
        step = after_action(context(4, spec=spec), again.run, validate, {}, None)
        expected = Phase.SUSPENDED if spec.suspend else Phase.PROMOTING

    assert step.run.phase == expected
    assert step.run.last_error is None
    assert step.run.error_since is None
    assert ready(step.run)[1] == str(expected)
    assert progressing(step.run)[1] != "Retrying"


def test_promoting_revalidates_when_the_source_changed_since_validation() -> None:
    run = promoting_run(None)  # validated against source_deployment()
    changed = source_deployment()
    changed["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["image"] = (
        "seldonio/iris:1.1-unvalidated"
    )

    step = decide(context(4), run, Observed(source=changed, target=None))

    assert step.action is not None
    assert step.action.kind == "Validate"
    assert step.run.phase == Phase.VALIDATING


@pytest.mark.parametrize(
    "source_read",
    [
        pytest.param(Observed(source=None), id="source-deleted"),
        pytest.param(Observed(source_error=failure("Forbidden", 403)), id="source-forbidden"),
    ],
)
def test_promoting_adopts_its_write_even_if_the_source_is_gone(source_read: Observed) -> None:
    observed = replace(source_read, target=our_target())

    step = decide(context(4), promoting_run(None), observed)

    assert step.action is None
    assert step.run.phase == Phase.VERIFYING
    assert step.run.applied_generation == 1


def test_rollback_never_deletes_a_target_that_existed_before() -> None:
    run = rolling_back_run(foreign_target(), previous=PreviousTarget(True, "h", None))

    step = decide(context(1), run, Observed(target=our_target(generation=8)))

    assert step.action is None or step.action.kind != "Delete"
    assert step.run.phase == Phase.FAILED
    assert ready(step.run) == ("False", "RollbackFailed")


def test_a_poll_that_sees_the_target_still_rolling_out_records_nothing() -> None:
    seldon = FakeSeldon(source=source_deployment(), rollout_seconds=3600)
    verifying = final(drive(seldon, max_passes=3))
    assert verifying.phase == Phase.VERIFYING
    seldon.now = at(30)

    result = reconcile(replace(context(), now=at(30)), to_status(verifying), seldon)

    assert result.status is None  # no write: the run is where it was
    assert result.events == ()
    assert result.requeue_after is not None


def test_a_poll_that_sees_the_target_behind_a_gitops_sync_says_so() -> None:
    seldon = FakeSeldon(source=source_deployment(), rollout_seconds=3600)
    verifying = final(drive(seldon, max_passes=3))
    assert seldon.target is not None
    seldon.target["status"] = {"state": "Available", "observedGeneration": 0}
    seldon.now = at(30)

    result = reconcile(replace(context(), now=at(30)), to_status(verifying), seldon)

    assert result.status is not None
    assert "status to observe generation" in result.message


def test_a_retry_ignored_while_the_run_waits_is_recorded_so_it_is_said_once() -> None:
    seldon = FakeSeldon(source=source_deployment(), rollout_seconds=3600)
    verifying = final(drive(seldon, max_passes=3))
    asked = replace(context(), now=at(30), requests=Requests(retry="token-1"))

    first = reconcile(asked, to_status(verifying), seldon)
    assert first.status is not None and first.status["lastRetry"] == "token-1"
    again = reconcile(replace(asked, now=at(40)), first.status, seldon)

    assert [e.reason for e in first.events] == ["RetryIgnored"]
    assert again.events == () and again.status is None
