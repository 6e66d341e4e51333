"""A PromotionPath's decisions (core/paths.py): freight, soak, policies, blocking, names."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from promotion_operator.core.paths import (
    Decision,
    Freight,
    Hold,
    Observed,
    PathSpecError,
    Recorded,
    StagePhase,
    StageRun,
    decide,
    freight_id,
    holds_from,
    observe,
    parse_path_spec,
    promotions_from,
    recorded_from,
    run_body,
    run_name,
    stage_run_from,
    status_of,
)
from promotion_operator.core.spec import Kind

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def path_spec(**stages: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": {"namespace": "dev-src", "name": "iris"},
        "pollInterval": "5s",
        "stages": [
            {"name": name, "target": {"namespace": name}, **extra}
            for name, extra in (stages or {"dev": {}, "staging": {}, "production": {}}).items()
        ],
    }


THREE = parse_path_spec(
    path_spec(dev={}, staging={"soak": "10s"}, production={"soak": "10s", "policy": "manual"})
)
SOURCE = Observed(3, True, ("iris:1.0",), ("gs://iris/1",))
F3 = freight_id(3, ("iris:1.0",), ("gs://iris/1",))


def healthy(generation: int) -> Observed:
    return Observed(generation, True)


def run(stage: str, freight: str, phase: str, applied: int | None = None, t: float = 0) -> StageRun:
    return StageRun(run_name("p", stage, freight), stage, freight, phase, applied, at(t))


def again(decision: Decision) -> Recorded:
    """What the next pass reads back from the status ``decision`` wrote."""
    return recorded_from(status_of(decision, THREE, 1))


def test_a_new_source_version_is_a_freight_with_a_record() -> None:
    decision = decide("p", THREE, Recorded(), SOURCE, [None] * 3, [], {}, at(0))
    assert decision.freight == (Freight(F3, 3, ("iris:1.0",), ("gs://iris/1",), at(0)),)


def test_the_same_source_version_is_not_a_new_freight() -> None:
    first = decide("p", THREE, Recorded(), SOURCE, [None] * 3, [], {}, at(0))
    second = decide("p", THREE, again(first), SOURCE, [None] * 3, [], {}, at(5))
    assert [f.id for f in second.freight] == [F3]
    assert second.freight[0].discovered_at == at(0)


def test_the_freight_id_is_derived_from_what_the_source_serves() -> None:
    assert freight_id(3, ("a",), ("b",)) == freight_id(3, ("a",), ("b",))
    assert freight_id(3, ("a",), ("b",)) != freight_id(3, ("a2",), ("b",))
    assert freight_id(3, ("a",), ("b",)).startswith("3-")


def test_only_the_last_n_freight_are_kept() -> None:
    spec = parse_path_spec({**path_spec(), "freightHistory": 2})
    recorded = Recorded()
    for generation in (1, 2, 3):
        decision = decide("p", spec, recorded, healthy(generation), [None] * 3, [], {}, at(0))
        recorded = recorded_from(status_of(decision, spec, 1))
    assert [f.source_generation for f in recorded.freight] == [3, 2]


def test_the_first_stage_starts_the_newest_freight_from_the_source() -> None:
    decision = decide("p", THREE, Recorded(), SOURCE, [None] * 3, [], {}, at(0))
    [start] = decision.starts
    assert (start.stage.name, start.freight.id, start.name) == ("dev", F3, f"p-dev-{F3}")
    assert start.source == THREE.source
    assert decision.stages[0].phase is StagePhase.RUNNING


def test_the_first_stage_run_pins_the_source_generation_of_its_freight() -> None:
    decision = decide("p", THREE, Recorded(), SOURCE, [None] * 3, [], {}, at(0))
    assert decision.starts[0].source_generation == SOURCE.generation


def test_a_later_stage_run_pins_the_generation_the_previous_stage_wrote() -> None:
    no_soak = parse_path_spec(path_spec())
    runs = [run("dev", F3, "Succeeded", applied=7)]
    decision = decide("p", no_soak, Recorded(), SOURCE, [healthy(7), None, None], runs, {}, at(0))
    [start] = decision.starts
    assert (start.stage.name, start.source_generation) == ("staging", 7)


def test_a_running_stage_is_not_started_again_nor_interrupted_by_a_newer_freight() -> None:
    runs = [run("dev", F3, "Promoting")]
    newer = Observed(4, True, ("iris:2.0",), ())
    decision = decide("p", THREE, Recorded(), newer, [None] * 3, runs, {}, at(0))
    assert decision.starts == ()
    assert decision.stages[0].phase is StagePhase.RUNNING
    assert decision.stages[0].freight == F3


def test_the_next_stage_soaks_before_it_starts() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7)]
    targets = [healthy(7), None, None]
    first = decide("p", THREE, Recorded(), SOURCE, targets, runs, {}, at(0))
    assert first.starts == ()
    assert first.stages[1].phase is StagePhase.SOAKING
    assert first.stages[1].soak_until == at(10)
    assert first.requeue_after == 5.0  # the poll interval comes first
    later = decide("p", THREE, again(first), SOURCE, targets, runs, {}, at(9))
    assert later.starts == ()
    assert later.requeue_after == pytest.approx(1.0)
    done = decide("p", THREE, again(later), SOURCE, targets, runs, {}, at(10))
    assert [(s.stage.name, s.freight.id) for s in done.starts] == [("staging", F3)]
    assert done.starts[0].source == THREE.stages[0].target


def test_an_unhealthy_previous_stage_restarts_the_soak() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7)]
    first = decide("p", THREE, Recorded(), SOURCE, [healthy(7), None, None], runs, {}, at(0))
    sick = Observed(7, False)
    second = decide("p", THREE, again(first), SOURCE, [sick, None, None], runs, {}, at(5))
    assert second.stages[1].reason == "PreviousStageUnhealthy"
    third = decide("p", THREE, again(second), SOURCE, [healthy(7), None, None], runs, {}, at(8))
    assert third.stages[1].soak_until == at(18)


def test_a_stage_does_not_start_when_the_previous_target_no_longer_carries_the_freight() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7)]
    changed = healthy(8)  # someone wrote the dev target after the run
    decision = decide("p", THREE, Recorded(), SOURCE, [changed, None, None], runs, {}, at(60))
    assert decision.starts == ()
    assert decision.stages[1].phase is StagePhase.BLOCKED
    assert decision.stages[1].reason == "FreightNotCarried"
    assert "generation 8" in decision.stages[1].message


def test_a_failed_stage_stops_the_path_and_the_next_keeps_its_freight() -> None:
    old = freight_id(2, (), ())
    runs = [
        run("dev", F3, "Succeeded", applied=7, t=10),
        run("staging", old, "Succeeded", applied=4, t=0),
        run("staging", F3, "RolledBack", applied=None, t=20),
        run("production", old, "Succeeded", applied=9, t=5),
    ]
    recorded = Recorded(freight=(Freight(old, 2, (), (), at(0)),))
    targets = [healthy(7), healthy(5), healthy(9)]
    decision = decide("p", THREE, recorded, SOURCE, targets, runs, {}, at(100))
    assert decision.starts == ()
    assert decision.stages[1].phase is StagePhase.FAILED
    assert decision.stages[2].phase is StagePhase.SUCCEEDED
    assert decision.stages[2].promoted == old
    assert decision.stages[2].reason == "PreviousStageFailed"


def test_a_manual_stage_waits_for_a_person_then_starts_that_freight() -> None:
    runs = [
        run("dev", F3, "Succeeded", applied=7),
        run("staging", F3, "Succeeded", applied=4),
    ]
    targets = [healthy(7), healthy(4), None]
    first = decide("p", THREE, Recorded(), SOURCE, targets, runs, {}, at(0))
    waited = decide("p", THREE, again(first), SOURCE, targets, runs, {}, at(60))
    assert waited.starts == ()
    assert waited.stages[2].phase is StagePhase.WAITING
    assert "kubectl promotion path promote p production" in waited.stages[2].message
    stale = decide("p", THREE, again(waited), SOURCE, targets, runs, {"production": "1-x"}, at(61))
    assert stale.starts == ()
    asked = decide("p", THREE, again(waited), SOURCE, targets, runs, {"production": F3}, at(61))
    assert [(s.stage.name, s.freight.id) for s in asked.starts] == [("production", F3)]


def test_a_newer_freight_supersedes_one_that_waits() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7)]
    first = decide("p", THREE, Recorded(), SOURCE, [healthy(7), None, None], runs, {}, at(0))
    assert first.stages[1].freight == F3
    newer = Observed(4, True, ("iris:2.0",), ())
    second = decide("p", THREE, again(first), newer, [healthy(7), None, None], runs, {}, at(1))
    [start] = second.starts  # dev takes the newer freight; staging still waits for F3's soak
    assert start.stage.name == "dev" and start.freight.source_generation == 4
    dev_done = [*runs, run("dev", start.freight.id, "Succeeded", applied=8, t=2)]
    third = decide("p", THREE, again(second), newer, [healthy(8), None, None], dev_done, {}, at(3))
    assert third.stages[1].freight == start.freight.id  # F3 never reaches staging
    assert third.stages[1].soak_until == at(13)


def test_the_history_shows_which_freight_reached_which_stage() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7)]
    decision = decide("p", THREE, Recorded(), SOURCE, [healthy(7), None, None], runs, {}, at(1))
    [entry] = decision.history
    assert (entry.stage, entry.freight, entry.phase, entry.finished_at) == (
        "dev",
        F3,
        "Succeeded",
        at(1),
    )


def test_the_since_time_stays_while_the_stage_stays_in_its_phase() -> None:
    runs = [run("dev", F3, "Promoting")]
    first = decide("p", THREE, Recorded(), SOURCE, [None] * 3, runs, {}, at(0))
    second = decide("p", THREE, again(first), SOURCE, [None] * 3, runs, {}, at(30))
    assert second.stages[0].since == at(0)


def test_run_names_are_deterministic_and_fit_a_name() -> None:
    assert run_name("p", "dev", "3-abc") == "p-dev-3-abc"
    long = run_name("p" * 250, "dev", "3-abc")
    assert len(long) == 253 and long == run_name("p" * 250, "dev", "3-abc")


def test_a_run_is_owned_by_the_path_and_carries_the_template() -> None:
    path = {"metadata": {"namespace": "ops", "name": "p", "uid": "u-1"}}
    spec = parse_path_spec(path_spec(dev={"template": {"verification": {"timeout": "1m"}}}))
    decision = decide("p", spec, Recorded(), SOURCE, [None], [], {}, at(0))
    body = run_body(path, decision.starts[0], api_version="deploy.mlops.dev/v1alpha1")
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "deploy.mlops.dev/v1alpha1",
            "kind": "PromotionPath",
            "name": "p",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert body["spec"] == {
        "verification": {"timeout": "1m"},
        "source": {"namespace": "dev-src", "name": "iris", "generation": 3},
        "target": {"namespace": "dev", "name": "iris"},
    }
    run_back = stage_run_from(
        {
            **body,
            "metadata": {
                **body["metadata"],
                "creationTimestamp": "2026-01-01T12:00:00Z",
                "generation": 1,
            },
        }
    )
    assert run_back is not None and (run_back.stage, run_back.freight) == ("dev", F3)


def test_a_stage_target_instance_defaults_to_the_previous_one() -> None:
    spec = parse_path_spec(
        {
            "source": {"namespace": "a", "name": "iris", "instance": "one"},
            "stages": [
                {"name": "s1", "target": {"namespace": "b"}},
                {"name": "s2", "target": {"namespace": "b", "instance": "two"}},
                {"name": "s3", "target": {"namespace": "c"}},
            ],
        }
    )
    assert [s.target.instance for s in spec.stages] == ["one", "two", "two"]


def test_a_stage_that_targets_its_upstream_is_refused() -> None:
    with pytest.raises(PathSpecError, match=r"spec.stages\[0\].target"):
        parse_path_spec(
            {
                "source": {"namespace": "a", "name": "x"},
                "stages": [{"name": "s", "target": {"namespace": "a"}}],
            }
        )


def test_a_source_that_is_available_at_its_generation_is_healthy() -> None:
    body = {
        "metadata": {"generation": 2},
        "spec": {"predictors": [{"name": "d", "graph": {"name": "c", "modelUri": "gs://m"}}]},
        "status": {"state": "Available", "observedGeneration": 2},
    }
    assert observe(Kind.SELDON_DEPLOYMENT, body) == Observed(2, True, (), ("gs://m",))
    behind = {**body, "status": {"state": "Available", "observedGeneration": 1}}
    assert observe(Kind.SELDON_DEPLOYMENT, behind) == Observed(2, False, (), ("gs://m",))


def test_promotions_are_read_from_the_annotations() -> None:
    annotations = {"deploy.mlops.dev/promote-production": "3-abc", "other": "x"}
    assert promotions_from(annotations) == {"production": "3-abc"}


# -- holds -------------------------------------------------------------------------------------

HOLD = Hold("alice", "INC-42", at(-60))


def test_a_held_auto_stage_does_not_start_after_its_soak_and_says_who_holds_it() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7)]
    targets = [healthy(7), None, None]
    holds = {"staging": HOLD}
    first = decide("p", THREE, Recorded(), SOURCE, targets, runs, {}, at(0), holds)
    held = decide("p", THREE, again(first), SOURCE, targets, runs, {}, at(60), holds)
    assert held.starts == ()
    staging = held.stages[1]
    assert (staging.phase, staging.reason, staging.freight) == (StagePhase.HELD, "Held", F3)
    assert staging.message.startswith("held by alice since 2026-01-01T11:59:00Z: INC-42; ")
    assert "kubectl promotion path release p staging" in staging.message


def test_a_released_stage_starts_at_once_without_soaking_again() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7)]
    targets = [healthy(7), None, None]
    first = decide("p", THREE, Recorded(), SOURCE, targets, runs, {}, at(0), {"staging": HOLD})
    held = decide("p", THREE, again(first), SOURCE, targets, runs, {}, at(60), {"staging": HOLD})
    released = decide("p", THREE, again(held), SOURCE, targets, runs, {}, at(61))
    assert [(s.stage.name, s.freight.id) for s in released.starts] == [("staging", F3)]


def test_the_soak_goes_on_while_a_stage_is_held() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7)]
    targets = [healthy(7), None, None]
    first = decide("p", THREE, Recorded(), SOURCE, targets, runs, {}, at(0))
    held = decide("p", THREE, again(first), SOURCE, targets, runs, {}, at(4), {"staging": HOLD})
    assert held.stages[1].phase is StagePhase.HELD
    assert held.stages[1].soak_until == at(10)
    released = decide("p", THREE, again(held), SOURCE, targets, runs, {}, at(10))
    assert [s.stage.name for s in released.starts] == ["staging"]


def test_a_held_manual_stage_does_not_start_even_when_promoted() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7), run("staging", F3, "Succeeded", applied=4)]
    targets = [healthy(7), healthy(4), None]
    asked = {"production": F3}
    first = decide("p", THREE, Recorded(), SOURCE, targets, runs, asked, at(0))
    held = decide(
        "p", THREE, again(first), SOURCE, targets, runs, asked, at(60), {"production": HOLD}
    )
    assert held.starts == ()
    assert held.stages[2].phase is StagePhase.HELD


def test_a_hold_does_not_interrupt_a_running_stage() -> None:
    runs = [run("dev", F3, "Promoting")]
    decision = decide("p", THREE, Recorded(), SOURCE, [None] * 3, runs, {}, at(0), {"dev": HOLD})
    assert decision.stages[0].phase is StagePhase.RUNNING
    assert decision.stages[0].message.endswith(
        "held by alice since 2026-01-01T11:59:00Z: INC-42; no new run starts"
    )


def test_a_held_stage_with_nothing_waiting_shows_the_hold() -> None:
    decision = decide("p", THREE, Recorded(), None, [None] * 3, [], {}, at(0), {"dev": HOLD})
    assert (decision.stages[0].phase, decision.stages[0].reason) == (StagePhase.HELD, "Held")
    assert decision.starts == ()


def test_a_stage_that_waits_for_a_person_is_looked_at_again_after_the_poll_interval() -> None:
    runs = [run("dev", F3, "Succeeded", applied=7), run("staging", F3, "Succeeded", applied=4)]
    targets = [healthy(7), healthy(4), None]
    first = decide("p", THREE, Recorded(), SOURCE, targets, runs, {}, at(0))
    waited = decide("p", THREE, again(first), SOURCE, targets, runs, {}, at(60))
    assert waited.stages[2].phase is StagePhase.WAITING
    assert waited.requeue_after == THREE.poll_interval  # its ended soak wakes nothing


@pytest.mark.parametrize(
    ("value", "hold"),
    [
        (
            '{"by": "alice", "reason": "INC-42", "at": "2026-01-01T11:59:00Z"}',
            Hold("alice", "INC-42", at(-60)),
        ),
        ("INC-42 ", Hold(reason="INC-42")),
        ("", Hold()),
        ("[1]", Hold(reason="[1]")),
    ],
)
def test_holds_are_read_from_the_annotations(value: str, hold: Hold) -> None:
    annotations = {"deploy.mlops.dev/hold-production": value, "other": "x"}
    assert holds_from(annotations) == {"production": hold}
