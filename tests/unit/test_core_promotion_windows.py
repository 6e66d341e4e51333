"""A run's first write and the PromotionPolicies of its namespace: held outside the
promotion windows and while frozen, let through when the window opens or by a
break-glass request, which is recorded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from promotion_operator.core.machine import may_reach_first_write, reconcile
from promotion_operator.core.requests import BREAK_GLASS_ANNOTATION, Requests, requests_from
from promotion_operator.core.run import Phase, Run, from_status, to_status
from promotion_operator.core.windows import Policies
from tests.unit.core_builders import (
    PROMOTION_WRITES,
    FakeSeldon,
    Pass,
    at,
    context,
    drive,
    source_deployment,
)

# T0 is 2025-03-01 12:00:00 UTC: a deny window from 12:00 for one minute covers it.
DENY_NOW = {"kind": "deny", "schedule": "0 12 * * *", "duration": "1m"}


def policy(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "mlops", "name": "production-rules"}, "spec": spec}


FROZEN = Policies((policy(freeze={"enabled": True, "reason": "year-end change freeze"}),))
DENYING = Policies((policy(windows=[DENY_NOW]),))


def ready(run: Run) -> tuple[str, str]:
    found = next(c for c in run.conditions if c["type"] == "Ready")
    return found["reason"], found["message"]


def first_write(passes: list[Pass]) -> Pass:
    return next(p for p in passes if p.action is not None and p.action.kind in PROMOTION_WRITES)


def test_a_deny_window_holds_the_first_write_and_says_until_when() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, policies=DENYING, max_passes=3)

    run = passes[-1].step.run
    assert run.phase == Phase.AWAITING_WINDOW
    assert fake.writes() == []
    reason, message = ready(run)
    assert reason == "OutsidePromotionWindow"
    assert "the next allowed time is 2025-03-01T12:01:00Z" in message
    assert run.window is not None and run.window.next_allowed_at == at(60)


def test_the_held_run_writes_once_the_window_ends() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, policies=DENYING)

    assert passes[-1].step.run.phase == Phase.SUCCEEDED
    assert first_write(passes).at >= at(60)
    assert passes[-1].step.run.window is not None
    assert passes[-1].step.run.window.released_at is not None


def test_waiting_for_the_window_reads_nothing_and_comes_back_by_the_next_allowed_time() -> None:
    fake = FakeSeldon(source=source_deployment())
    held = drive(fake, policies=DENYING, max_passes=3)[-1].step.run
    fake.reads.clear()

    result = reconcile(replace(context(55), policies=DENYING), to_status(held), fake)

    assert fake.reads == []
    assert result.requeue_after == 5.0  # the window ends at 60 s
    assert result.status is None  # the same wait again writes nothing


def test_a_freeze_holds_the_first_write_with_its_reason() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, policies=FROZEN, max_passes=5)

    run = passes[-1].step.run
    assert run.phase == Phase.AWAITING_WINDOW and fake.writes() == []
    reason, message = ready(run)
    assert reason == "Frozen"
    assert "frozen by PromotionPolicy mlops/production-rules: year-end change freeze" in message
    assert any(e.reason == "Frozen" for p in passes for e in p.events)


def test_a_break_glass_overrides_the_freeze_and_is_recorded() -> None:
    fake = FakeSeldon(source=source_deployment())
    held = drive(fake, policies=FROZEN, max_passes=3)[-1].step.run

    passes = drive(
        fake,
        policies=FROZEN,
        status=to_status(held),
        start=30,
        requests=Requests(break_glass="carol"),
    )

    run = passes[-1].step.run
    assert run.phase == Phase.SUCCEEDED
    assert run.break_glass is not None
    assert (run.break_glass.by, run.break_glass.overrode) == ("carol", "Frozen")
    assert run.history[0].break_glass_by == "carol"
    glass = [e for p in passes for e in p.events if e.reason == "BreakGlass"]
    assert len(glass) == 1 and glass[0].type == "Warning" and "carol" in glass[0].message
    assert sum(1 for p in passes if "break_glass" in p.step.used) == 1


def test_a_break_glass_set_when_the_run_is_created_is_for_it() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, policies=FROZEN, requests=Requests(break_glass="carol"))

    run = passes[-1].step.run
    assert run.phase == Phase.SUCCEEDED and run.history[0].break_glass_by == "carol"


def test_a_break_glass_with_the_gate_open_is_removed_and_not_recorded() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, requests=Requests(break_glass="carol"))

    run = passes[-1].step.run
    assert run.phase == Phase.SUCCEEDED and run.break_glass is None
    assert any("break_glass" in p.step.used for p in passes)
    assert not any(e.reason == "BreakGlass" for p in passes for e in p.events)


def test_policies_that_cannot_be_read_hold_the_first_write() -> None:
    fake = FakeSeldon(source=source_deployment())

    run = drive(fake, policies=Policies(error="403 Forbidden"), max_passes=3)[-1].step.run

    assert run.phase == Phase.AWAITING_WINDOW and fake.writes() == []
    assert ready(run)[0] == "PromotionPoliciesUnreadable"


def test_an_abort_while_held_ends_the_run_with_nothing_written() -> None:
    fake = FakeSeldon(source=source_deployment())

    passes = drive(fake, policies=FROZEN, abort_at=20, max_passes=10)

    assert passes[-1].step.run.phase == Phase.ABORTED and fake.writes() == []


def test_a_policy_for_another_target_namespace_holds_nothing() -> None:
    other = Policies(
        (policy(targetNamespaces=["elsewhere"], freeze={"enabled": True, "reason": "r"}),)
    )
    fake = FakeSeldon(source=source_deployment())

    assert drive(fake, policies=other)[-1].step.run.phase == Phase.SUCCEEDED


def test_the_held_run_and_the_override_survive_the_status() -> None:
    fake = FakeSeldon(source=source_deployment())
    held = drive(fake, policies=DENYING, max_passes=3)[-1].step.run

    assert from_status(to_status(held)) == held


def test_only_a_run_past_its_first_write_needs_no_policies() -> None:
    assert may_reach_first_write(2, {})
    assert may_reach_first_write(2, {"observedGeneration": 2, "phase": "AwaitingWindow"})
    assert may_reach_first_write(2, {"observedGeneration": 2, "phase": "Succeeded"})
    assert may_reach_first_write(2, {"observedGeneration": 1, "phase": "Verifying"})
    assert not may_reach_first_write(2, {"observedGeneration": 2, "phase": "Verifying"})


def test_the_break_glass_request_is_read_from_its_annotation() -> None:
    assert requests_from({BREAK_GLASS_ANNOTATION: "carol"}) == Requests(break_glass="carol")


def test_a_break_glass_left_from_an_earlier_run_is_stale_for_the_next() -> None:
    fake = FakeSeldon(source=source_deployment())
    done = drive(fake)[-1].step.run
    later = replace(context(100), policies=FROZEN, requests=Requests(break_glass="carol"))
    newer = replace(later, promotion=replace(later.promotion, generation=done.generation + 1))

    result = reconcile(newer, to_status(done), fake)

    assert result.used == ("break_glass",)  # removed, not acted on
    assert result.run is not None and result.run.phase == Phase.AWAITING_WINDOW
    assert result.run.break_glass is None
