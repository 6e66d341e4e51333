"""``kubectl promotion path``: promoting a manual stage, holding and releasing a stage,
the view of a path, and ``path watch``."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from promotion_operator.core import paths as core
from promotion_operator.kubectl_plugin import cli
from promotion_operator.kubectl_plugin.kube import Kube, OfKind, PluginError
from promotion_operator.kubectl_plugin.paths import (
    HOLD_PREFIX,
    PATH_PLURAL,
    PROMOTABLE,
    PROMOTE_PREFIX,
    FreightFollowed,
    decide_hold,
    decide_promote,
    decide_release,
    hold_value,
    path_view,
    render_path,
    soak_left,
)
from promotion_operator.kubectl_plugin.resource import ExitCode
from promotion_operator.kubectl_plugin.watching import Watcher
from tests.unit.test_kubectl_plugin_flow import Clock, FakeWatchApi, modified

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


# -- hold and release ------------------------------------------------------------------------

HELD = hold_value("alice", "INC-42", NOW)


def test_holding_a_stage_writes_who_why_and_when() -> None:
    decision = decide_hold(path(), "production", HELD)
    assert decision.annotations == {"deploy.mlops.dev/hold-production": HELD}
    assert decision.exit_code is ExitCode.SUCCEEDED
    assert "kubectl promotion path release iris production" in decision.message
    assert core.holds_from(dict(decision.annotations)) == {  # type: ignore[arg-type]
        "production": core.Hold("alice", "INC-42", NOW)
    }


def test_holding_a_held_stage_keeps_the_first_hold() -> None:
    theirs = hold_value("bob", "CHG-1", NOW)
    decision = decide_hold(path(**{"deploy.mlops.dev/hold-production": theirs}), "production", HELD)
    assert (decision.annotations, decision.exit_code) == (None, ExitCode.SUCCEEDED)
    assert decision.message == "stage production is already held by bob (CHG-1)"


def test_releasing_a_held_stage_removes_the_hold() -> None:
    decision = decide_release(path(**{"deploy.mlops.dev/hold-production": HELD}), "production")
    assert decision.annotations == {"deploy.mlops.dev/hold-production": None}
    assert decision.message == "stage production released (it was held by alice (INC-42))"


def test_releasing_a_stage_that_is_not_held_does_nothing() -> None:
    decision = decide_release(path(), "production")
    assert (decision.annotations, decision.exit_code) == (None, ExitCode.SUCCEEDED)


def test_holding_or_releasing_an_unknown_stage_is_not_found() -> None:
    assert decide_hold(path(), "qa", HELD).exit_code is ExitCode.NOT_FOUND
    assert decide_release(path(), "qa").exit_code is ExitCode.NOT_FOUND


def test_a_hold_left_on_a_stage_the_spec_no_longer_has_can_be_released() -> None:
    decision = decide_release(path(**{"deploy.mlops.dev/hold-qa": HELD}), "qa")
    assert decision.annotations == {"deploy.mlops.dev/hold-qa": None}


def test_the_hold_names_are_the_operators() -> None:
    assert HOLD_PREFIX == core.HOLD_PREFIX
    assert "Held" in {str(phase) for phase in core.StagePhase}


class FakePaths:
    """The API as ``path`` commands use it: one path, whose version moves on each write."""

    default_namespace = "ops"

    def __init__(self, body: dict[str, Any], *, refuse: PluginError | None = None) -> None:
        self.body = body
        self.body["metadata"]["resourceVersion"] = "1"
        self.refuse = refuse
        self.patches: list[Mapping[str, str | None]] = []

    def username(self) -> str:
        return "alice"

    def get(self, namespace: str, name: str, *, plural: str = "") -> dict[str, Any]:
        assert (namespace, name, plural) == ("ops", "iris", PATH_PLURAL)
        return copy.deepcopy(self.body)

    def patch(
        self,
        namespace: str,
        name: str,
        version: str,
        patch: Mapping[str, Any],
        *,
        plural: str = "",
    ) -> dict[str, Any]:
        assert plural == PATH_PLURAL
        if self.refuse is not None:
            raise self.refuse
        annotations = patch["metadata"]["annotations"]
        self.patches.append(annotations)
        kept = self.body["metadata"]["annotations"]
        for key, value in annotations.items():
            if value is None:
                kept.pop(key, None)
            else:
                kept[key] = value
        return self.body


def run(fake: FakePaths, *argv: str) -> ExitCode:
    args = cli.build_parser().parse_args(list(argv))
    return cast(ExitCode, args.run(cli.Session(args, cast(Kube, fake))))


def test_path_hold_then_release_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePaths(path())
    assert run(fake, "path", "hold", "iris", "production", "--reason", "INC-42") == 0
    written = fake.body["metadata"]["annotations"]["deploy.mlops.dev/hold-production"]
    assert core.holds_from({"deploy.mlops.dev/hold-production": written})["production"].by == (
        "alice"
    )
    assert run(fake, "path", "release", "iris", "production") == 0
    assert "deploy.mlops.dev/hold-production" not in fake.body["metadata"]["annotations"]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("promotionpath.deploy.mlops.dev/iris: stage production held: ")
    assert out[1] == (
        "promotionpath.deploy.mlops.dev/iris: stage production released "
        "(it was held by alice (INC-42))"
    )


def test_path_hold_of_an_unknown_stage_exits_5(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakePaths(path()), "path", "hold", "iris", "qa") == ExitCode.NOT_FOUND
    assert "no stage 'qa' (the stages: dev, production)" in capsys.readouterr().err


def test_a_hold_the_api_server_refuses_exits_6_with_its_message() -> None:
    refused = PluginError('Error from server (Forbidden): promotionpaths "iris" is forbidden')
    fake = FakePaths(path(), refuse=refused)
    with pytest.raises(PluginError) as failed:
        run(fake, "path", "hold", "iris", "production")
    assert failed.value.exit_code == ExitCode.ERROR


# -- path watch ------------------------------------------------------------------------------


def watched(
    version: int, *stages: tuple[str, str, str], newest: str = "3-abcdef"
) -> dict[str, Any]:
    """The path at ``version`` with its stages as (phase, freight, reason) and the
    last stage's ``promoted`` the freight of a Succeeded last stage."""
    names = ["dev", "staging", "production"]
    shown = []
    for name, (phase, freight, reason) in zip(names, stages, strict=False):
        stage = {"name": name, "phase": phase, "freight": freight, "reason": reason}
        if phase == "Succeeded":
            stage["promoted"] = freight
        shown.append(stage)
    return {
        "metadata": {
            "namespace": "ops",
            "name": "iris",
            "generation": 1,
            "resourceVersion": str(version),
        },
        "status": {"observedGeneration": 1, "freight": [{"id": newest}], "stages": shown},
    }


OK3 = ("Succeeded", "3-abcdef", "Succeeded")
IDLE = ("Idle", "", "")


def watch_path(
    first: dict[str, Any], *events: dict[str, Any], timeout: float = 60
) -> tuple[ExitCode, list[str]]:
    clock = Clock()
    api = FakeWatchApi(clock, first, [modified(event) for event in events])
    out: list[str] = []
    watcher = Watcher(
        api, "ops", "iris", timeout, follow=FreightFollowed(), out=out.append,
        note=out.append, monotonic=clock.monotonic, sleep=clock.sleep, now=lambda: NOW,
    )  # fmt: skip
    return watcher.run(), out


def test_path_watch_prints_the_stages_at_each_change_until_the_freight_reaches_the_end() -> None:
    code, out = watch_path(
        watched(1, ("Running", "3-abcdef", "Running"), IDLE, IDLE),
        watched(2, ("Running", "3-abcdef", "Running"), IDLE, IDLE),  # nothing visible changed
        watched(3, OK3, ("Soaking", "3-abcdef", "Soaking"), IDLE),
        watched(4, OK3, OK3, ("Running", "3-abcdef", "Running")),
        watched(5, OK3, OK3, OK3),
    )
    assert code is ExitCode.SUCCEEDED
    assert out == [
        "2026-01-01T12:00:00Z  freight 3-abcdef  dev: Running 3-abcdef | staging: Idle"
        " | production: Idle",
        "2026-01-01T12:00:00Z  freight 3-abcdef  dev: Succeeded 3-abcdef | staging: Soaking"
        " 3-abcdef | production: Idle",
        "2026-01-01T12:00:00Z  freight 3-abcdef  dev: Succeeded 3-abcdef | staging: Succeeded"
        " 3-abcdef | production: Running 3-abcdef",
        "2026-01-01T12:00:00Z  freight 3-abcdef  dev: Succeeded 3-abcdef | staging: Succeeded"
        " 3-abcdef | production: Succeeded 3-abcdef",
        "ops/iris: freight 3-abcdef reached stage production",
    ]


@pytest.mark.parametrize(
    ("run_phase", "code"),
    [("Failed", ExitCode.FAILED), ("RolledBack", ExitCode.ROLLED_BACK), ("Aborted", 3)],
)
def test_path_watch_exits_with_the_run_outcome_when_a_stage_fails_the_newest_freight(
    run_phase: str, code: ExitCode
) -> None:
    failed = watched(2, OK3, ("Failed", "3-abcdef", run_phase), IDLE)
    exit_code, out = watch_path(watched(1, OK3, ("Running", "3-abcdef", "Running"), IDLE), failed)
    assert exit_code == code
    assert out[-1] == f"ops/iris: stage staging did not promote freight 3-abcdef ({run_phase})"


def test_an_older_freights_failure_does_not_end_the_path_watch() -> None:
    old_failure = ("Failed", "2-000000", "Failed")
    code, _ = watch_path(
        watched(1, ("Running", "3-abcdef", "Running"), old_failure, IDLE),
        watched(2, OK3, OK3, OK3),
    )
    assert code is ExitCode.SUCCEEDED


def test_path_watch_exits_7_on_a_blocked_stage_with_nothing_moving_before_it() -> None:
    blocked = ("Blocked", "2-000000", "FreightNotCarried")
    code, out = watch_path(watched(1, OK3, blocked, IDLE))
    assert code is ExitCode.BLOCKED
    assert out[-1] == "ops/iris: stage staging is Blocked (FreightNotCarried)"
    moving, _ = watch_path(watched(1, ("Running", "3-abcdef", "Running"), blocked, IDLE), timeout=5)
    assert moving is ExitCode.TIMED_OUT


def test_path_watch_times_out_saying_where_the_freight_is() -> None:
    code, out = watch_path(watched(1, OK3, ("Held", "3-abcdef", "Held"), IDLE), timeout=9)
    assert code is ExitCode.TIMED_OUT
    assert out[-1] == (
        "ops/iris: timed out after 9s waiting for the newest freight to reach the last stage: "
        "freight 3-abcdef: dev: Succeeded 3-abcdef | staging: Held 3-abcdef | production: Idle"
    )


def test_a_status_of_an_older_spec_is_not_taken_for_the_end() -> None:
    stale = watched(1, OK3, OK3, OK3)
    stale["metadata"]["generation"] = 2
    code, out = watch_path(stale, timeout=5)
    assert code is ExitCode.TIMED_OUT
    assert "no status of this spec yet" in out[0]


def test_the_path_api_gets_and_watches_promotionpaths() -> None:
    calls: list[tuple[str, str]] = []

    class Recording:
        def get(self, namespace: str, name: str, *, plural: str) -> dict[str, Any]:
            calls.append(("get", plural))
            return {}

        def watch(self, *args: Any, plural: str) -> Iterator[dict[str, Any]]:
            calls.append(("watch", plural))
            return iter(())

    api = OfKind(cast(Kube, Recording()), PATH_PLURAL)
    api.get("ops", "iris")
    list(api.watch("ops", "iris", "1", 10))
    assert calls == [("get", "promotionpaths"), ("watch", "promotionpaths")]


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
