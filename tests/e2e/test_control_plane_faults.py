"""The control plane fails under running promotions: kube-apiserver restarts, etcd
restarts, the operator's watch expires (410 Gone) and the apiserver throttles the
operator (429 under API Priority and Fairness). Every run still ends as it should,
no Seldon Deploy write is doubled or lost, and the operator is back within
:data:`RECOVERY_BOUND_SECONDS` of the fault clearing (the figure is printed: ``-s``).

These tests restart the session's servers; each leaves them running and ready.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.harness.controlplane import ControlPlane
from tests.harness.flowcontrol import ServiceAccount, noisy_neighbour, throttled
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.rbac import OPERATOR_NAMESPACE, SERVICE_ACCOUNT
from tests.harness.recovery import (
    RECOVERY_BOUND_SECONDS,
    apply_probe,
    has_a_status,
    probe_spec,
    seconds_to_first_status,
)
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

RUNS = 4
FAILING = frozenset({"model-1"})
#: Long enough that every run is verifying when the fault starts, short enough that
#: every rollout has ended when it clears: each run has a status to write then.
ROLLOUT_SECONDS = 5.0
DOWN_SECONDS = 6.0
#: The operator's line when a call of its is answered 429 and sent again.
THROTTLED_LINE = "was throttled (429)"
#: The operator's line when its watch is answered 410 Gone and it lists again.
RELIST_LINE = "the ModelPromotions' watch expired (410); listing them again"


def _spec(name: str) -> dict[str, Any]:
    return {
        "source": {"namespace": "staging", "name": name},
        "target": {"namespace": "production"},
        "overrides": {"replicas": 2},
        "verification": {"timeout": "3m"},
    }


def _start_runs(seldon: Simulator, promotions: Promotions, runs: int = RUNS) -> list[str]:
    seldon.control.set_delays(rollout_seconds=ROLLOUT_SECONDS)
    names = [f"model-{i}" for i in range(runs)]
    for name in names:
        seldon.control.seed_deployment("staging", deployment_body(name, image=f"models/{name}:2"))
        if name in FAILING:
            seldon.control.mark_failing("production", name, description="OOMKilled")
    for name in names:
        promotions.apply(name, _spec(name))
    for name in names:
        # Every run has written its target. Not "is Verifying": a failing target
        # can roll back before the next one is looked at, most of all under throttling.
        promotions.wait_for(name, _target_written, "its target written", timeout=90)
    return names


def _target_written(body: dict[str, Any]) -> bool:
    return "appliedAt" in body.get("status", {})


def _assert_ended_right(
    seldon: Simulator, promotions: Promotions, names: list[str], other_creates: int = 1
) -> None:
    """Each run ended as its target behaved; each target written once (and removed once
    after a failure), with the promoted spec: no duplicate, no lost update. The probe
    (and any other run) created ``other_creates`` more targets."""
    for name in names:
        status = promotions.wait_for_phase(name, FINISHED_PHASES, timeout=180)
        target = seldon.control.get_deployment("production", name)
        if name in FAILING:
            assert status["phase"] == "RolledBack", name
            assert target is None, name
        else:
            assert status["phase"] == "Succeeded", name
            assert target is not None and target["status"]["state"] == "Available", name
            assert target["spec"]["predictors"][0]["replicas"] == 2, name
    done = writes(seldon, "production")
    created = sorted(p for m, p in done if m == "POST")
    deleted = sorted(p.rsplit("/", 1)[-1] for m, p in done if m == "DELETE")
    assert len(created) == len(names) + other_creates, f"one create per target: {done}"
    assert deleted == sorted(FAILING), "exactly one removal per rolled-back new target"


def _report(fault: str, seconds: float) -> None:
    print(f"\n{fault}: a new run had its first status {seconds:.1f} s after the fault cleared")
    assert seconds < RECOVERY_BOUND_SECONDS


#: The restarts, each by the name it is reported under: (fault, restart(control_plane)).
RESTARTS: dict[str, Callable[[ControlPlane], float]] = {
    "kube-apiserver restart": lambda cp: cp.restart_apiserver(down_seconds=DOWN_SECONDS),
    "etcd restart": lambda cp: cp.restart_etcd(down_seconds=DOWN_SECONDS),
}


@pytest.mark.parametrize("fault", sorted(RESTARTS))
def test_a_restart_mid_run_ends_every_run_right(
    fault: str,
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    names = _start_runs(seldon, promotions)

    cleared = RESTARTS[fault](control_plane)

    recovery = seconds_to_first_status(
        promotions, "probe", probe_spec("iris", "production", "probe"), cleared
    )
    _assert_ended_right(seldon, promotions, names)
    _report(fault, recovery)
    assert operator.process.running()


def test_an_expired_watch_is_listed_again_and_forgets_a_run_deleted_meanwhile(
    seldon: Simulator,
    operator_factory: StartOperator,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    operator = operator_factory()
    names = _start_runs(seldon, promotions, runs=RUNS + 1)
    deleted, names = names[-1], names[:-1]

    # Paused (a long GC pause, a starved node), the operator has its watch cut, misses
    # a deletion, and etcd is compacted past everything it saw: its re-watch is 410 Gone.
    operator.process.freeze()
    cleared = control_plane.expire_watches(
        meanwhile=lambda: promotions.kube.kubectl(
            "delete", "mp", deleted, "-n", promotions.namespace
        )
    )
    operator.process.thaw()

    recovery = seconds_to_first_status(
        promotions, "probe", probe_spec("iris", "production", "probe"), cleared
    )
    assert RELIST_LINE in operator.log(), "the watch was not answered 410 Gone"
    # The deleted run's target rolled out meanwhile, so its next pass has a status to
    # write; that write finds the resource gone, and the operator stops passing it.
    _wait_for_line(operator, f"{deleted} is gone; forgetting it")
    calls = _calls_naming(seldon, deleted)
    time.sleep(3.0)  # several poll periods (--max-poll-delay=1)
    assert _calls_naming(seldon, deleted) == calls, "a deleted run is still being passed"

    _assert_ended_right(seldon, promotions, names, other_creates=2)  # the deleted run's too
    _report("expired watch (410 Gone, relist)", recovery)


def test_runs_end_right_while_the_apiserver_throttles_the_operator(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    operator_account = ServiceAccount(OPERATOR_NAMESPACE, SERVICE_ACCOUNT)
    neighbour_account = ServiceAccount(promotions.namespace, "noisy-neighbour")
    with (
        throttled(control_plane, [operator_account, neighbour_account]) as throttle,
        noisy_neighbour(control_plane, neighbour_account, promotions.namespace) as neighbour,
    ):
        # Every place of the level taken: the probe run's calls are answered 429.
        applied = time.monotonic()
        apply_probe(promotions, "probe", probe_spec("iris", "production", "probe"))
        _wait_for_line(operator, THROTTLED_LINE)
        # One place left: each call gets in in turn, two at once are answered 429.
        neighbour.leave_one_place()
        promotions.wait_for("probe", has_a_status, "a first status", timeout=180)
        first_status = time.monotonic() - applied
        started = time.monotonic()
        names = _start_runs(seldon, promotions)
        for name in names:
            promotions.wait_for_phase(name, FINISHED_PHASES, timeout=180)
        settled = time.monotonic() - started
        rejected = throttle.rejected()

    operator_throttled = operator.log().count(THROTTLED_LINE)
    print(
        f"\nAPF: {rejected} requests answered 429 ({neighbour.throttled} of the neighbour's"
        f" {neighbour.requests}); the operator retried {operator_throttled} throttled calls;"
        f" the runs settled in {settled:.0f} s"
    )
    _assert_ended_right(seldon, promotions, names)
    print(
        "429 under API Priority and Fairness: the probe, applied while every place was"
        f" taken, had its first status {first_status:.1f} s after it was applied"
    )
    assert first_status < RECOVERY_BOUND_SECONDS


def _calls_naming(seldon: Simulator, name: str) -> int:
    return sum(1 for e in seldon.control.requests_log() if e["path"].endswith(f"/{name}"))


def _wait_for_line(operator: OperatorProcess, line: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in operator.log():
        assert time.monotonic() < deadline, f"the operator never logged {line!r}"
        time.sleep(0.5)
