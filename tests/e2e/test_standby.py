"""Two replicas with leader election: one leads, one stands by; the standby finishes
every run when the leader is SIGKILLed mid-batch, writing nothing twice; and a leader
frozen past its Lease (SIGSTOP) writes nothing when it wakes up (SIGCONT): its writes
are fenced by the time left on its Lease."""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.controlplane import ControlPlane
from tests.harness.operator_process import OperatorProcess
from tests.harness.progress import say
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.rbac import OPERATOR_NAMESPACE
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

RUNS = 12
LEASE = "promotion-operator"  # the name the manifests' Role lets the operator renew
ELECTION = (
    "--leader-election",
    f"--leader-election-namespace={OPERATOR_NAMESPACE}",
    f"--leader-election-name={LEASE}",
    "--lease-seconds=6",
)


def holder(control_plane: ControlPlane) -> str | None:
    out = control_plane.kubectl(
        "get", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "-o", "json", check=False
    )
    if out.returncode != 0:
        return None
    spec = json.loads(out.stdout).get("spec") or {}
    found = spec.get("holderIdentity")
    return str(found) if found else None


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting until {what}")


def leads(operator: OperatorProcess) -> bool:
    return "leading as" in operator.log()


def leader_and_standby(
    operator_factory: StartOperator, control_plane: ControlPlane
) -> tuple[OperatorProcess, OperatorProcess]:
    """Two replicas with a fresh Lease: the first leads before the second starts."""
    control_plane.kubectl("delete", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "--ignore-not-found")
    leader = operator_factory(extra_args=ELECTION)
    wait_for("the first replica leads", lambda: leads(leader), 30)
    return leader, operator_factory(extra_args=ELECTION)


def replica_name(operator: OperatorProcess) -> str:
    """The replica's name in the Lease (and in its User-Agent), from its log."""
    found = re.search(r"leading as (\S+)", operator.log())
    assert found is not None, "it never led"
    return found.group(1)


def writes_by(seldon: Simulator, replica: str, *, since: float = 0.0) -> list[tuple[str, str]]:
    """(method, path) of every write ``replica`` sent from POSIX time ``since`` on
    (answered or not: a write that reached Seldon Deploy counts)."""
    return [
        (entry["method"], entry["path"])
        for entry in seldon.control.requests_log()
        if entry["method"] in ("POST", "PUT", "DELETE")
        and f"(replica {replica})" in (entry["agent"] or "")
        and datetime.datetime.fromisoformat(entry["time"]).timestamp() >= since
    ]


def test_the_standby_finishes_every_run_when_the_leader_is_killed(
    seldon: Simulator,
    operator_factory: StartOperator,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    seldon.control.set_delays(rollout_seconds=3.0)
    leader, standby = leader_and_standby(operator_factory, control_plane)
    for i in range(RUNS):
        name = f"model-{i}"
        seldon.control.seed_deployment("staging", deployment_body(name, image=f"models/{name}:2"))
    for i in range(RUNS):
        name = f"model-{i}"
        promotions.apply(name, {**PROMOTE_IRIS, "source": {"namespace": "staging", "name": name}})
    wait_for(
        "the leader has written some targets",
        lambda: len(writes(seldon, "production")) >= 3,
        60,
    )
    assert not leads(standby)  # it stood by while the leader worked

    leader.kill()
    killed_at = time.monotonic()
    wait_for("the standby took over", lambda: leads(standby), 60)
    say(f"standby took over {time.monotonic() - killed_at:.1f} s after the SIGKILL")

    for i in range(RUNS):
        name = f"model-{i}"
        status = promotions.wait_for_phase(name, FINISHED_PHASES, timeout=120)
        assert status["phase"] == "Succeeded", (name, status.get("conditions"))
        target = seldon.control.get_deployment("production", name)
        assert target is not None and target["status"]["state"] == "Available", name
    # One create per run, none twice (a create's path carries no name: count them).
    assert [method for method, _ in writes(seldon, "production")] == ["POST"] * RUNS
    assert holder(control_plane) == replica_name(standby)


VALIDATE = "/namespaces/production/seldondeployments/validate"


def test_a_leader_frozen_past_its_lease_writes_nothing_when_it_wakes(
    seldon: Simulator,
    operator_factory: StartOperator,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    seldon.control.set_delays(rollout_seconds=1.0)
    leader, standby = leader_and_standby(operator_factory, control_plane)
    old = replica_name(leader)
    # Each validation answers after 5 s: the leader is frozen inside passes whose
    # next step is the write (a pass already running when its Lease lapses).
    slow = seldon.control.add_latency(5000, method="GET", path=VALIDATE)
    names = [f"frozen-{i}" for i in range(RUNS)]
    for name in names:
        seldon.control.seed_deployment("staging", deployment_body(name, image=f"models/{name}:2"))
    for name in names:
        promotions.apply(name, {**PROMOTE_IRIS, "source": {"namespace": "staging", "name": name}})

    def validating() -> int:
        return sum(
            1
            for entry in seldon.control.requests_log()
            if entry["path"].endswith(VALIDATE) and f"(replica {old})" in (entry["agent"] or "")
        )

    wait_for("the leader is validating every run", lambda: validating() >= RUNS, 60)
    leader.pause()
    frozen_at = time.time()
    seldon.control.remove_fault(slow)
    try:
        wait_for("the standby took over", lambda: leads(standby), 60)
    finally:
        # Woken as the new leader starts: both now run passes over the same runs.
        leader.resume()
    for name in names:
        status = promotions.wait_for_phase(name, FINISHED_PHASES, timeout=120)
        assert status["phase"] == "Succeeded", (name, status.get("conditions"))
    wait_for("the old leader stands by", lambda: "lost the Lease" in leader.log(), 30)
    assert writes_by(seldon, old, since=frozen_at) == []
    # Each target created once: by the old leader before it froze (on a slow machine a
    # validation may end before the freeze), the others by the new leader.
    before = [path for method, path in writes_by(seldon, old) if method == "POST"]
    new = replica_name(standby)
    after = [path for method, path in writes_by(seldon, new) if method == "POST"]
    assert len(before) + len(after) == RUNS
    assert after, "the old leader created every target before it froze: nothing was fenced"
    # The validations it was frozen in answered when it woke; each pass they ended
    # (one per target it had not created) was fenced off.
    wait_for(
        "the old leader's passes are fenced off",
        lambda: leader.log().count("pass left unrecorded") >= len(after),
        30,
    )
    say(
        f"{len(before)} targets created before the freeze; "
        f"{leader.log().count('pass left unrecorded')} passes of the woken leader unrecorded"
    )
    for name in names:
        target = seldon.control.get_deployment("production", name)
        assert target is not None and target["status"]["state"] == "Available", name
    assert holder(control_plane) == new
