"""The warm copy during a SeldonDeployment's bake: the previous version at traffic 0
beside the promoted one, the traffic switched back to it first when the bake fails,
and removed with one more write when the bake passes."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from promotion_operator.core.pass_io import Alerts, Answer, Purpose
from promotion_operator.core.run import (
    ActionKind,
    BakeState,
    Failure,
    Phase,
    from_status,
    to_status,
)
from promotion_operator.core.spec import Kind, parse_spec
from promotion_operator.core.warm import (
    WARM_PREDICTOR_ANNOTATION,
    warm_name,
    with_warm,
)
from tests.unit.core_builders import (
    SPEC_DICT,
    FakeSeldon,
    Pass,
    at,
    condition,
    drive,
    foreign_target,
    previous_of,
    run_in,
    source_deployment,
)
from tests.unit.test_core_bake import ALERT, BAKE, BAKED, CANARY_BAKED, firing_from, measuring
from tests.unit.test_core_canary import seldon

COLD = replace(BAKED, bake=replace(BAKE, warm=False))


def one_predictor_source() -> dict[str, Any]:
    """The staging source with one serving predictor (``main``), as a warm copy needs."""
    source = source_deployment()
    source["spec"]["predictors"] = source["spec"]["predictors"][:1]
    return source


def fake(**changes: Any) -> FakeSeldon:
    return FakeSeldon(source=one_predictor_source(), target=foreign_target(), **changes)


def traffic(deployment: Any) -> dict[str, Any]:
    return {p["name"]: p.get("traffic") for p in deployment["spec"]["predictors"]}


def purposes(seldon: FakeSeldon) -> list[tuple[ActionKind, Purpose]]:
    return [(w.kind, w.purpose) for w in seldon.writes()]


PROMOTE = (ActionKind.UPDATE, Purpose.PROMOTE)
DROP = (ActionKind.UPDATE, Purpose.DROP_WARM)
SWITCH = (ActionKind.UPDATE, Purpose.SWITCH)
RESTORE = (ActionKind.UPDATE, Purpose.ROLLBACK)


def final_run(passes: list[Pass]) -> Any:
    return passes[-1].step.run


# --- the last write ----------------------------------------------------------------------


def test_the_last_write_keeps_the_previous_predictor_warm_at_traffic_0() -> None:
    seldon = fake()

    drive(seldon, spec=BAKED)

    written = seldon.writes()[0].deployment
    assert written is not None
    assert traffic(written) == {"main": 100, "main-warm": 0}
    warm = written["spec"]["predictors"][1]
    before = foreign_target()["spec"]["predictors"][0]
    assert {k: v for k, v in warm.items() if k not in ("name", "traffic")} == {
        k: v for k, v in before.items() if k != "name"
    }
    assert written["metadata"]["annotations"][WARM_PREDICTOR_ANNOTATION] == "main-warm"


def test_what_is_validated_is_the_write_with_its_warm_copy() -> None:
    seldon = fake()

    drive(seldon, spec=BAKED)

    validated = [c.deployment for c in seldon.calls if c.kind == ActionKind.VALIDATE]
    assert validated == [seldon.writes()[0].deployment]


def test_warm_false_writes_no_copy_and_rolls_back_cold() -> None:
    seldon = fake(alerts=firing_from(45, ALERT))

    run = final_run(drive(seldon, spec=COLD))

    written = seldon.writes()[0].deployment
    assert written is not None and traffic(written) == {"main": None}
    assert purposes(seldon) == [PROMOTE, RESTORE]
    assert run.phase == Phase.ROLLED_BACK and run.bake.warm == ""


def test_a_target_that_did_not_exist_gets_no_warm_copy() -> None:
    seldon = FakeSeldon(source=one_predictor_source())

    run = final_run(drive(seldon, spec=BAKED))

    written = seldon.writes()[0].deployment
    assert written is not None and traffic(written) == {"main": None}
    assert run.phase == Phase.SUCCEEDED
    assert purposes(seldon) == [(ActionKind.CREATE, Purpose.PROMOTE)]


def test_a_spec_with_several_serving_predictors_gets_no_warm_copy() -> None:
    seldon = FakeSeldon(source=source_deployment(), target=foreign_target())

    run = final_run(drive(seldon, spec=BAKED))

    assert run.phase == Phase.SUCCEEDED
    assert purposes(seldon) == [PROMOTE]  # which predictor to switch from: none can tell


def test_the_warm_name_avoids_the_promoted_predictors_names() -> None:
    assert warm_name("main", {"main"}) == "main-warm"
    assert warm_name("main", {"main", "main-warm"}) == "main-warm-2"
    assert warm_name("main", {"main-warm", "main-warm-2"}) == "main-warm-3"


@pytest.mark.parametrize("kind", [Kind.MODEL, Kind.PIPELINE])
def test_models_and_pipelines_keep_no_warm_copy(kind: Kind) -> None:
    spec = replace(BAKED, target=replace(BAKED.target, kind=kind))
    body = {"metadata": {"name": "iris"}, "spec": {"predictors": [{"name": "main"}]}}

    assert with_warm(spec, previous_of(foreign_target()), body) == body


def test_the_spec_reads_bake_warm_true_by_default() -> None:
    bake = {"duration": "1m", "alerts": {"matchLabels": {"namespace": "x"}}}

    assert parse_spec({**SPEC_DICT, "bake": bake}).bake.warm is True  # type: ignore[union-attr]
    cold = parse_spec({**SPEC_DICT, "bake": {**bake, "warm": False}})
    assert cold.bake is not None and cold.bake.warm is False


# --- a bake that passes --------------------------------------------------------------------


def test_a_passing_bake_removes_the_warm_copy_with_one_more_write_then_succeeds() -> None:
    seldon = fake()

    passes = drive(seldon, spec=BAKED)

    run = final_run(passes)
    assert run.phase == Phase.SUCCEEDED
    assert purposes(seldon) == [PROMOTE, DROP]
    assert seldon.target is not None and traffic(seldon.target) == {"main": 100}
    assert WARM_PREDICTOR_ANNOTATION not in seldon.target["metadata"]["annotations"]
    assert run.bake.warm == "main-warm" and run.bake.passed_at is not None
    assert run.applied_generation == seldon.target["metadata"]["generation"]
    assert condition(run, "Ready")["message"].endswith("; removed the warm predictor 'main-warm'")
    # Succeeded only once the removal rolled out (FakeSeldon: 20 s after the write).
    dropped = next(p.at for p in passes if p.action is not None and p.action.purpose is DROP[1])
    assert (passes[-1].at - dropped).total_seconds() >= 20


def test_after_a_passed_bake_the_alerts_are_no_longer_looked_at() -> None:
    seldon = fake()
    seldon.alerts = lambda _labels, _now: (
        Alerts((ALERT,)) if purposes(seldon)[-1] == DROP else Alerts()
    )

    run = final_run(drive(seldon, spec=BAKED))

    assert run.phase == Phase.SUCCEEDED
    assert purposes(seldon) == [PROMOTE, DROP]


@pytest.mark.parametrize("crash", [1, 2])
def test_a_crash_after_a_write_of_a_passing_bake_never_writes_twice(crash: int) -> None:
    seldon = fake()

    run = final_run(drive(seldon, spec=BAKED, crash_after_writes=frozenset({crash})))

    assert run.phase == Phase.SUCCEEDED
    assert purposes(seldon) == [PROMOTE, DROP]
    assert seldon.target is not None and traffic(seldon.target) == {"main": 100}


# --- a bake that fails -------------------------------------------------------------------


def _drive_failing(how: str, crash: frozenset[int] = frozenset()) -> tuple[FakeSeldon, list[Pass]]:
    """A bake that fails by ``how``: an alert, a template, or bob's abort (45 s in)."""
    if how == "alert":
        seldon = fake(alerts=firing_from(45, ALERT))
    elif how == "template":
        seldon = fake(prometheus=measuring(0.2))
    else:
        seldon = fake()
    abort_at = 45.0 if how == "abort" else None
    return seldon, drive(seldon, spec=BAKED, crash_after_writes=crash, abort_at=abort_at)


@pytest.mark.parametrize("how", ["alert", "template", "abort"])
def test_a_failing_bake_switches_the_traffic_to_the_warm_copy_then_restores(how: str) -> None:
    seldon, passes = _drive_failing(how)

    run = final_run(passes)
    assert run.phase == Phase.ROLLED_BACK
    assert purposes(seldon) == [PROMOTE, SWITCH, RESTORE]
    promoted, switch, restore = (w.deployment for w in seldon.writes())
    assert promoted is not None and switch is not None and restore is not None
    assert traffic(switch) == {"main": 0, "main-warm": 100}
    # Nothing but the traffic changed.
    unswitched = copy.deepcopy(dict(switch))
    for predictor in unswitched["spec"]["predictors"]:
        predictor["traffic"] = traffic(promoted)[predictor["name"]]
    assert unswitched["spec"] == promoted["spec"]
    assert unswitched["metadata"]["annotations"] == promoted["metadata"]["annotations"]
    assert restore["spec"] == foreign_target()["spec"]
    assert seldon.target is not None and seldon.target["spec"] == foreign_target()["spec"]
    # The restore waited until the switch was Available (FakeSeldon: 20 s).
    switched_at = next(
        p.at for p in passes if p.action is not None and p.action.purpose is SWITCH[1]
    )
    restored_at = next(
        p.at for p in passes if p.action is not None and p.action.purpose is RESTORE[1]
    )
    assert (restored_at - switched_at).total_seconds() >= 20


@pytest.mark.parametrize("how", ["alert", "template", "abort"])
@pytest.mark.parametrize("crash", [2, 3])
def test_a_crash_after_the_switch_or_the_restore_never_writes_twice(how: str, crash: int) -> None:
    seldon, passes = _drive_failing(how, frozenset({crash}))

    assert final_run(passes).phase == Phase.ROLLED_BACK
    assert purposes(seldon) == [PROMOTE, SWITCH, RESTORE]
    assert seldon.target is not None and seldon.target["spec"] == foreign_target()["spec"]


def test_a_crash_after_the_promotion_still_switches_first() -> None:
    seldon = fake(alerts=firing_from(45, ALERT))

    run = final_run(drive(seldon, spec=BAKED, crash_after_writes=frozenset({1})))

    assert run.phase == Phase.ROLLED_BACK
    assert purposes(seldon) == [PROMOTE, SWITCH, RESTORE]


def test_a_switch_seldon_refuses_goes_on_to_the_restore() -> None:
    seldon = fake(alerts=firing_from(45, ALERT))
    perform = seldon.perform

    def refusing(action: Any) -> Any:
        if action.purpose is Purpose.SWITCH:
            seldon.calls.append(action)
            return Answer(failure=Failure("Invalid", "traffic refused", 422))
        return perform(action)

    seldon.perform = refusing  # type: ignore[method-assign]
    run = final_run(drive(seldon, spec=BAKED))

    assert run.phase == Phase.ROLLED_BACK
    assert purposes(seldon) == [PROMOTE, SWITCH, RESTORE]
    assert run.bake.warm == ""
    assert seldon.target is not None and seldon.target["spec"] == foreign_target()["spec"]


def test_a_failed_verification_of_the_last_write_restores_without_a_switch() -> None:
    seldon = fake(rollout_state="Failed")

    run = final_run(drive(seldon, spec=BAKED))

    assert run.phase == Phase.ROLLED_BACK
    assert purposes(seldon) == [PROMOTE, RESTORE]  # the warm copy was never seen Available


# --- a canary ------------------------------------------------------------------------------


def test_a_canarys_final_write_keeps_the_stable_predictor_warm() -> None:
    target = seldon()

    run = final_run(drive(target, spec=CANARY_BAKED, max_passes=100))

    assert run.phase == Phase.SUCCEEDED
    final = [w for w in target.writes() if w.purpose is Purpose.PROMOTE][-1].deployment
    assert final is not None and traffic(final) == {"main": 100, "main-warm": 0}
    assert target.writes()[-1].purpose is Purpose.DROP_WARM
    assert target.target is not None and traffic(target.target) == {"main": 100}


def test_a_canary_rolled_back_by_its_bake_switches_to_the_warm_stable_first() -> None:
    target = seldon(alerts=lambda _labels, _now: Alerts((ALERT,)))

    run = final_run(drive(target, spec=CANARY_BAKED, max_passes=100))

    assert run.phase == Phase.ROLLED_BACK
    assert [w.purpose for w in target.writes()][-2:] == [Purpose.SWITCH, Purpose.ROLLBACK]
    switch = target.writes()[-2].deployment
    assert switch is not None and traffic(switch) == {"main": 0, "main-warm": 100}
    assert target.target is not None and target.target["spec"] == foreign_target()["spec"]


# --- status ----------------------------------------------------------------------------------


def test_the_warm_predictor_and_the_passed_bake_round_trip_through_status() -> None:
    bake = BakeState(at(100), at(160), warm="main-warm", passed_at=at(160))
    run = run_in(Phase.BAKING, phase_since=at(100), bake=bake)

    status = to_status(run)

    assert status["bake"]["warmPredictor"] == "main-warm"
    assert status["bake"]["passedAt"] == "2025-03-01T12:02:40Z"
    assert from_status(status) == run
    cold = to_status(run_in(Phase.BAKING, bake=BakeState(at(0), at(60))))
    assert cold["bake"]["warmPredictor"] is None and cold["bake"]["passedAt"] is None
