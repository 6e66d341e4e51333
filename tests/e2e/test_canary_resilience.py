"""Canary promotions when things break: Prometheus goes away mid-analysis, the
operator is SIGKILLed at every step. Helpers and conventions: ``test_canary``."""

from __future__ import annotations

import collections
import datetime
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_canary import (
    NS,
    TargetHistory,
    Timeline,
    analysis,
    canary_spec,
    error_rate,
    finished,
    follow,
    kill_on_arrival,
    operator_with_prometheus,
    pause,
    seed_model,
    set_weight,
    target,
    target_puts,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import Prometheus
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator
from tests.simulator.records import RequestLogEntry

pytestmark = pytest.mark.e2e

INCONCLUSIVE_REASONS = {"MetricsUnavailable", "AnalysisInconclusive"}
# Three measurements, 2 s apart: Prometheus can be stopped after the first.
SLOW_ANALYSIS = [error_rate(interval="2s", count=3)]


@pytest.fixture
def canary_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    """The operator, measuring analyses on the stack's Prometheus (running again after
    the test)."""
    yield from operator_with_prometheus(operator_factory, prometheus)


def _measured_once(status: Mapping[str, Any]) -> bool:
    progress = (status.get("canary") or {}).get("analysis") or []
    return status.get("phase") == "Analyzing" and any(p["taken"] >= 1 for p in progress)


def _inconclusive(status: Mapping[str, Any]) -> bool:
    return (status.get("lastError") or {}).get("reason") in INCONCLUSIVE_REASONS


def _results(status: Mapping[str, Any]) -> list[str]:
    return [m["result"] for m in status["canary"]["measurements"]]


def test_prometheus_down_mid_analysis_is_inconclusive_then_rolled_back_at_the_deadline(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    prometheus: Prometheus,
) -> None:
    model = seed_model(seldon)
    before = target(seldon, model)
    timeline = Timeline()
    # The analysis' deadline: its 3 x 2 s, then verification.timeout.
    deadline_seconds = 3 * 2 + 5
    steps = [set_weight(10), analysis("error-rate")]
    promotions.apply("iris", canary_spec(model, steps, templates=SLOW_ANALYSIS, timeout="5s"))
    follow(promotions, "iris", _measured_once, timeline=timeline)

    prometheus.stop_server()
    status = follow(promotions, "iris", finished, timeline=timeline)

    assert status["phase"] == "RolledBack", timeline.describe()
    assert status["outcome"]["reason"] == "AnalysisInconclusive"
    # While it retried, the run said why (Ready's reason is the error's).
    retrying = timeline.first(lambda m: m.phase == "Analyzing" and m.last_error is not None)
    assert retrying.last_error in INCONCLUSIVE_REASONS
    assert retrying.reason == retrying.last_error
    results = _results(status)
    assert results[0] == "Passed" and "Inconclusive" in results[1:], results
    # Not given up before the deadline, by the run's own clock: the analysis step's start
    # and the run's end as recorded (both to the second, the deadline counted from the
    # recorded start). Times seen by polling lag by up to a poll and would blur this.
    began = datetime.datetime.fromisoformat(status["canary"]["stepStartedAt"])
    ended = datetime.datetime.fromisoformat(status["finishedAt"])
    assert (ended - began).total_seconds() >= deadline_seconds, timeline.describe()
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Rollback"]
    assert target(seldon, model)["spec"] == before["spec"]


def test_prometheus_back_within_the_deadline_lets_the_canary_pass(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    prometheus: Prometheus,
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None
    timeline = Timeline()
    steps = [set_weight(10), analysis("error-rate")]
    promotions.apply("iris", canary_spec(model, steps, templates=SLOW_ANALYSIS, timeout="30s"))
    follow(promotions, "iris", _measured_once, timeline=timeline)

    prometheus.stop_server()
    follow(promotions, "iris", _inconclusive, timeline=timeline)
    prometheus.start_server()
    status = follow(promotions, "iris", finished, timeline=timeline)

    assert status["phase"] == "Succeeded", timeline.describe()
    assert status.get("lastError") is None
    results = _results(status)
    assert results.count("Passed") == 3 and "Inconclusive" in results, results
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Promote"]
    assert target(seldon, model)["spec"] == source["spec"]


def _wait_for_puts(
    simulator: Simulator, model: str, count: int, timeout: float = 60.0, *, arrived: bool = False
) -> None:
    """Until the target's PUT number ``count`` succeeded (``arrived``: was received)."""
    deadline = time.monotonic() + timeout
    while len(_puts(simulator, model) if arrived else target_puts(simulator, model)) < count:
        assert time.monotonic() < deadline, f"no PUT number {count} within {timeout} s"
        time.sleep(0.005)


def _puts(simulator: Simulator, model: str) -> list[RequestLogEntry]:
    """Every PUT of the target the simulator received, answered or not yet."""
    path = f"/namespaces/{NS}/seldondeployments/{model}"
    return [
        entry
        for entry in simulator.control.requests_log()
        if entry["method"] == "PUT" and entry["path"].endswith(path)
    ]


def _assert_one_put_per_step(simulator: Simulator, model: str, history: TargetHistory) -> None:
    """Three writes, one per write step (10 %, 50 %, promoted), none repeated."""
    puts = target_puts(simulator, model)
    messages = collections.Counter(q.get("message") for q in puts)
    assert len(puts) == 3 and set(messages.values()) == {1}, messages
    assert [v.step for v in history.written()] == ["0", "2", "4"]


def test_sigkill_right_after_each_canary_write_adopts_it_without_writing_again(
    seldon: Simulator, canary_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None
    steps = [set_weight(10), analysis("error-rate"), set_weight(50), pause("1s")]
    spec = canary_spec(model, steps, templates=[error_rate(interval="2s", count=2)])

    # Each write is held 300 ms on its way in: the operator is frozen while it waits,
    # so the write lands and the operator is killed before it can record it.
    path = f"/namespaces/{NS}/seldondeployments/{model}$"
    seldon.control.add_latency(300, method="PUT", path=path)
    with TargetHistory(seldon, model) as history:
        promotions.apply("iris", spec)
        for writes in (1, 2, 3):
            _wait_for_puts(seldon, model, writes, arrived=True)
            canary_operator.process.freeze()
            _wait_for_puts(seldon, model, writes)
            canary_operator.kill()
            canary_operator.restart()
        status = follow(promotions, "iris", finished, timeout=120)

    assert status["phase"] == "Succeeded"
    assert (status["canary"]["step"], status["canary"]["weight"]) == (4, 100)
    _assert_one_put_per_step(seldon, model, history)
    assert target(seldon, model)["spec"] == source["spec"]
    # At least one kill came before the write was recorded: the restarted operator
    # found it on the target and went on verifying it, without writing it again.
    adopted = [e for e in promotions.events("iris") if "found this run's write" in e["message"]]
    assert adopted, [e["message"] for e in promotions.events("iris")]


def test_sigkill_in_every_canary_phase_resumes_at_the_same_step(
    seldon: Simulator, canary_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None
    steps = [set_weight(10), analysis("error-rate"), set_weight(50), pause("2s")]
    spec = canary_spec(model, steps, templates=[error_rate(interval="2s", count=2)])
    timeline, killed = Timeline(), list[tuple[str, int | None]]()
    working = ("Promoting", "Verifying", "Analyzing", "Paused")
    kill = kill_on_arrival(canary_operator, working, killed)

    with TargetHistory(seldon, model) as history:
        promotions.apply("iris", spec)
        status = follow(
            promotions, "iris", finished, timeline=timeline, on_change=kill, timeout=180
        )

    assert status["phase"] == "Succeeded", timeline.describe()
    assert {"Verifying", "Analyzing", "Paused"} <= {phase for phase, _ in killed}, killed
    # Never back to an earlier step, never a step skipped.
    seen = [step for _, step in timeline.phases_and_steps() if step is not None]
    assert seen == sorted(seen) and set(seen) == {0, 1, 2, 3, 4}, timeline.describe()
    _assert_one_put_per_step(seldon, model, history)
    assert target(seldon, model)["spec"] == source["spec"]
