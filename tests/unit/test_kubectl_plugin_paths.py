"""``kubectl promotion path``: promoting a manual stage, and the view of a path."""

from __future__ import annotations

import datetime
from typing import Any

from promotion_operator.core import paths as core
from promotion_operator.kubectl_plugin.paths import (
    PROMOTABLE,
    PROMOTE_PREFIX,
    decide_promote,
    path_view,
    render_path,
    soak_left,
)
from promotion_operator.kubectl_plugin.resource import ExitCode

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def path(
    phase: str = "WaitingForPromotion", policy: str = "manual", **annotations: str
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ops", "name": "iris", "annotations": annotations},
        "spec": {
            "source": {"namespace": "build", "name": "iris"},
            "stages": [
                {"name": "dev", "target": {"namespace": "dev"}},
                {
                    "name": "production",
                    "target": {"namespace": "production"},
                    "policy": policy,
                    "soak": "10s",
                },
            ],
        },
        "status": {
            "freight": [{"id": "3-abcdef"}],
            "stages": [
                {
                    "name": "dev",
                    "phase": "Succeeded",
                    "freight": "3-abcdef",
                    "promoted": "3-abcdef",
                    "since": "2026-01-01T11:59:00Z",
                },
                {
                    "name": "production",
                    "phase": phase,
                    "freight": "3-abcdef",
                    "since": "2026-01-01T11:59:30Z",
                    "message": "waits",
                },
            ],
        },
    }


def test_promoting_a_waiting_manual_stage_annotates_its_freight() -> None:
    decision = decide_promote(path(), "production")
    assert decision.annotations == {"deploy.mlops.dev/promote-production": "3-abcdef"}
    assert decision.exit_code is ExitCode.SUCCEEDED


def test_promoting_an_automatic_stage_is_refused() -> None:
    decision = decide_promote(path(policy="auto"), "production")
    assert (decision.annotations, decision.exit_code) == (None, ExitCode.ERROR)
    assert "policy auto" in decision.message


def test_promoting_a_stage_with_nothing_waiting_is_refused() -> None:
    decision = decide_promote(path(phase="Running"), "production")
    assert (decision.annotations, decision.exit_code) == (None, ExitCode.ERROR)


def test_promoting_an_unknown_stage_says_which_stages_there_are() -> None:
    decision = decide_promote(path(), "qa")
    assert decision.exit_code is ExitCode.NOT_FOUND
    assert "dev, production" in decision.message


def test_promoting_the_same_freight_again_is_already_done() -> None:
    done = path(**{"deploy.mlops.dev/promote-production": "3-abcdef"})
    decision = decide_promote(done, "production")
    assert (decision.annotations, decision.exit_code) == (None, ExitCode.SUCCEEDED)


def test_the_view_shows_the_stages_side_by_side_with_their_freight() -> None:
    text = render_path(path(), NOW)
    assert "STAGE       POLICY  SOAK  PHASE                FREIGHT   PROMOTED  SINCE  RUN" in text
    assert "production  manual  10s   WaitingForPromotion  3-abcdef  -" in text
    assert "production: waits" in text


def test_the_path_names_are_the_operators() -> None:
    assert PROMOTE_PREFIX == core.PROMOTE_PREFIX
    assert {str(phase) for phase in core.StagePhase} >= PROMOTABLE


def test_the_view_reads_each_stage_in_the_specs_order_with_its_status() -> None:
    view = path_view(path())
    assert (view.namespace, view.name, view.source, view.newest_freight) == (
        "ops",
        "iris",
        "build/iris",
        "3-abcdef",
    )
    assert [(s.name, s.policy, s.soak, s.phase, s.promoted) for s in view.stages] == [
        ("dev", "auto", "0s", "Succeeded", "3-abcdef"),
        ("production", "manual", "10s", "WaitingForPromotion", ""),
    ]


def test_a_stage_not_started_reads_as_empty_not_as_an_error() -> None:
    body = path()
    del body["status"]
    assert [s.phase for s in path_view(body).stages] == ["", ""]
    assert "dev         auto    0s    -" in render_path(body, NOW)


def test_the_soak_left_counts_to_its_end_and_not_past_it() -> None:
    body = path(phase="Soaking")
    body["status"]["stages"][1]["soakUntil"] = "2026-01-01T12:01:05Z"
    soaking = path_view(body).stages[1]
    assert soak_left(soaking, NOW) == "65s"
    assert soak_left(soaking, NOW + datetime.timedelta(minutes=5)) == "0s"
    assert soak_left(path_view(path()).stages[0], NOW) == ""
