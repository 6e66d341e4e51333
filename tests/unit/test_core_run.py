"""A run's state, its round trip through ``status`` and its conditions (docs/contract.md)."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest

from promotion_operator.core.conditions import find_condition, set_condition
from promotion_operator.core.run import (
    ActionKind,
    Failure,
    Phase,
    PlannedChange,
    PreviousTarget,
    Run,
    UnreadableStatus,
    format_time,
    from_status,
    parse_time,
    to_status,
)
from tests.unit.core_builders import (
    T0,
    at,
    foreign_target,
    previous_of,
    rolling_back_run,
    run_in,
    verifying_run,
)

CONDITIONS = (
    {
        "type": "Ready",
        "status": "False",
        "reason": "Validating",
        "message": "validating",
        "observedGeneration": 2,
        "lastTransitionTime": "2025-03-01T12:00:00Z",
    },
)
PLAN = PlannedChange(ActionKind.UPDATE, "abc123", ("seldonio/iris:1.0",), ("gs://models/iris/v1",))

# Runs as the machine records them; recorded failures never carry transport hints.
RECORDED_RUNS = [
    pytest.param(run_in(Phase.PENDING), id="pending-fresh"),
    pytest.param(
        run_in(
            Phase.VALIDATING,
            attempts=2,
            phase_since=at(3),
            plan=PLAN,
            previous=previous_of(foreign_target()),
            conditions=CONDITIONS,
        ),
        id="validating-with-previous",
    ),
    pytest.param(
        run_in(Phase.PROMOTING, plan=PLAN, previous=PreviousTarget(existed=False)),
        id="promoting-create",
    ),
    pytest.param(verifying_run(foreign_target(), applied_generation=8), id="verifying"),
    pytest.param(rolling_back_run(foreign_target()), id="rolling-back"),
    pytest.param(
        run_in(
            Phase.SUCCEEDED,
            plan=PLAN,
            previous=PreviousTarget(existed=False),
            applied_generation=1,
            applied_at=at(1),
            phase_since=at(40),
            finished_at=at(40),
            attempts=9,
        ),
        id="succeeded",
    ),
    pytest.param(
        run_in(
            Phase.FAILED,
            phase_since=at(1),
            finished_at=at(1),
            outcome=Failure("Forbidden", "no permission on production", 403),
        ),
        id="failed-with-http-status",
    ),
    pytest.param(
        replace(rolling_back_run(None), phase=Phase.ROLLED_BACK, finished_at=at(50)),
        id="rolled-back",
    ),
    pytest.param(run_in(Phase.SUSPENDED, plan=PLAN), id="suspended"),
    pytest.param(
        run_in(
            Phase.PENDING,
            last_error=Failure("SourceNotFound", "staging/iris does not exist (yet)", 404),
            error_since=at(5),
        ),
        id="pending-with-recorded-error",
    ),
]


@pytest.mark.parametrize("run", RECORDED_RUNS)
def test_status_round_trip_gives_back_the_run(run: Run) -> None:
    assert from_status(to_status(run)) == run


def test_status_round_trip_of_a_retrying_run() -> None:
    run = run_in(
        Phase.PENDING,
        last_error=Failure("SeldonDeployUnavailable", "503", 503, retryable=True, retry_after=30.0),
        error_since=at(5),
    )

    assert from_status(to_status(run)) == run


@pytest.mark.parametrize(
    "status",
    [
        pytest.param({}, id="empty"),
        pytest.param({"conditions": [{"type": "Ready", "status": "False"}]}, id="only-conditions"),
    ],
)
def test_from_status_without_a_recorded_run_is_none(status: dict[str, Any]) -> None:
    assert from_status(status) is None


RECORDED = to_status(verifying_run(foreign_target(), applied_generation=8))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param(
            {"startedAt": None},
            "status.startedAt is None, not an RFC 3339 time",
            id="no-startedAt",
        ),
        pytest.param(
            {"observedGeneration": None},
            "status.observedGeneration is None, not an integer",
            id="no-generation",
        ),
        pytest.param({"phase": "Exploded"}, "status.phase is 'Exploded', not one of", id="phase"),
        pytest.param(
            {"phaseSince": "yesterday"},
            "status.phaseSince is 'yesterday', not an RFC 3339 time",
            id="hand-edited-time",
        ),
        pytest.param(
            {"attempts": "many"}, "status.attempts is 'many', not an integer", id="attempts"
        ),
        pytest.param(
            {"plan": {"action": "Explode", "sourceSpecHash": "x"}},
            "status.plan.action is 'Explode', not Create or Update",
            id="plan-action",
        ),
        pytest.param(
            {"lastError": {"message": "no reason"}},
            "status.lastError.reason is None, not a reason",
            id="error-without-reason",
        ),
    ],
)
def test_unreadable_status_names_the_field(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(UnreadableStatus) as raised:
        from_status({**RECORDED, **changes})

    assert problem in str(raised.value)


def test_unreadable_status_names_every_unreadable_field() -> None:
    with pytest.raises(UnreadableStatus) as raised:
        from_status({**RECORDED, "phaseSince": "soon", "appliedAt": 12})

    assert [p.split(" ")[0] for p in raised.value.problems] == [
        "status.phaseSince",
        "status.appliedAt",
    ]


def test_to_status_writes_absent_values_as_null_so_a_merge_patch_clears_them() -> None:
    status = to_status(run_in(Phase.PENDING))

    for key in ("finishedAt", "plan", "previous", "appliedGeneration", "appliedAt"):
        assert key in status
        assert status[key] is None
    assert status["lastError"] is None
    assert status["outcome"] is None


def test_to_status_uses_the_crd_shape() -> None:
    run = verifying_run(
        foreign_target(),
        applied_generation=8,
        last_error=Failure("SeldonDeployUnavailable", "503 from Seldon Deploy", 503),
        error_since=at(7),
        attempts=4,
    )

    status = to_status(run)

    assert status["phase"] == "Verifying"
    assert status["observedGeneration"] == 2
    assert status["source"] == "staging/iris"
    assert status["target"] == "production/iris"
    assert status["attempts"] == 4
    assert status["startedAt"] == "2025-03-01T12:00:00Z"
    assert status["appliedGeneration"] == 8
    assert status["plan"]["action"] == "Update"
    assert status["previous"]["existed"] is True
    assert status["previous"]["deployment"]["metadata"]["name"] == "iris"
    assert "status" not in status["previous"]["deployment"]
    assert status["lastError"] == {
        "reason": "SeldonDeployUnavailable",
        "message": "503 from Seldon Deploy",
        "httpStatus": 503,
        "since": "2025-03-01T12:00:07Z",
    }


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(T0, "2025-03-01T12:00:00Z", id="utc"),
        pytest.param(
            datetime.datetime(
                2025, 3, 1, 13, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
            ),
            "2025-03-01T12:00:00Z",
            id="other-offset-converted-to-utc",
        ),
        pytest.param(
            T0.replace(microsecond=999_999), "2025-03-01T12:00:00Z", id="sub-second-dropped"
        ),
    ],
)
def test_format_time_writes_rfc3339_utc_seconds(moment: datetime.datetime, text: str) -> None:
    assert format_time(moment) == text


def test_parse_time_inverts_format_time() -> None:
    assert parse_time(format_time(at(61))) == at(61)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2025-03-01T12:00:00.123456Z", id="fractional"),
        pytest.param("2025-03-01T12:00:00.5Z", id="short-fraction"),
        pytest.param("2025-03-01T13:00:00+01:00", id="offset"),
        pytest.param("2025-03-01t12:00:00z", id="lower-case"),
        pytest.param("2025-03-01T12:00:00", id="no-offset-is-utc"),
        pytest.param(" 2025-03-01 12:00:00Z ", id="space-separated"),
    ],
)
def test_parse_time_reads_other_rfc3339_forms(text: str) -> None:
    moment = parse_time(text)

    assert moment is not None
    assert moment.replace(microsecond=0) == T0
    assert moment.tzinfo == datetime.UTC


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01T00:00:00Z", "12"])
def test_parse_time_refuses_what_is_no_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize("text", [None, ""])
def test_parse_time_of_nothing_is_none(text: str | None) -> None:
    assert parse_time(text) is None


# --- Run.moved_to ---------------------------------------------------------------------


def test_moving_to_the_same_phase_keeps_the_phase_clock() -> None:
    run = run_in(Phase.VERIFYING, phase_since=at(5))

    assert run.moved_to(Phase.VERIFYING, at(50)) is run


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK])
def test_moving_to_a_finished_phase_sets_finished_at(phase: Phase) -> None:
    moved = run_in(Phase.VERIFYING).moved_to(phase, at(30))

    assert (moved.phase, moved.phase_since, moved.finished_at) == (phase, at(30), at(30))


@pytest.mark.parametrize(
    "phase", [Phase.VALIDATING, Phase.PROMOTING, Phase.ROLLING_BACK, Phase.SUSPENDED]
)
def test_moving_to_an_unfinished_phase_leaves_finished_at_empty(phase: Phase) -> None:
    moved = run_in(Phase.PENDING).moved_to(phase, at(30))

    assert (moved.phase, moved.phase_since, moved.finished_at) == (phase, at(30), None)


# --- conditions -----------------------------------------------------------------------


def test_new_condition_is_appended_with_every_field() -> None:
    conditions = set_condition(
        [], type_="Ready", status=False, reason="Pending", message="queued", generation=2, now="t0"
    )

    assert conditions == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Pending",
            "message": "queued",
            "observedGeneration": 2,
            "lastTransitionTime": "t0",
        }
    ]


@pytest.mark.parametrize(
    ("old_status", "new_status", "expected_time"),
    [
        pytest.param(False, False, "t0", id="false-stays-false"),
        pytest.param(True, True, "t0", id="true-stays-true"),
        pytest.param(False, True, "t1", id="false-to-true"),
        pytest.param(True, False, "t1", id="true-to-false"),
    ],
)
def test_last_transition_time_moves_only_when_status_flips(
    old_status: bool, new_status: bool, expected_time: str
) -> None:
    before = set_condition(
        [], type_="Ready", status=old_status, reason="A", message="a", generation=1, now="t0"
    )

    after = set_condition(
        before, type_="Ready", status=new_status, reason="B", message="b", generation=2, now="t1"
    )

    assert after[0]["lastTransitionTime"] == expected_time
    assert (after[0]["reason"], after[0]["message"], after[0]["observedGeneration"]) == (
        "B",
        "b",
        2,
    )


def test_setting_one_condition_leaves_the_others_alone() -> None:
    conditions = [
        {"type": "Ready", "status": "False", "lastTransitionTime": "t0"},
        {"type": "Progressing", "status": "True", "lastTransitionTime": "t0"},
    ]

    updated = set_condition(
        conditions, type_="Ready", status=True, reason="Ok", message="", generation=1, now="t1"
    )

    assert updated[1] == conditions[1]
    assert [c["type"] for c in updated] == ["Ready", "Progressing"]
    assert conditions[0]["status"] == "False"  # the input is not mutated


def test_find_condition_by_type() -> None:
    conditions = [{"type": "Ready", "status": "True"}, {"type": "Progressing", "status": "False"}]

    assert find_condition(conditions, "Progressing") == {"type": "Progressing", "status": "False"}
    assert find_condition(conditions, "Degraded") is None
