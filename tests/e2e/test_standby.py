"""Two replicas with leader election: one leads, one stands by; the standby finishes
every run when the leader is SIGKILLed mid-batch, writing nothing twice."""

from __future__ import annotations

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


def test_the_standby_finishes_every_run_when_the_leader_is_killed(
    seldon: Simulator,
    operator_factory: StartOperator,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    control_plane.kubectl("delete", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "--ignore-not-found")
    seldon.control.set_delays(rollout_seconds=3.0)
    leader = operator_factory(extra_args=ELECTION)
    wait_for("the first replica leads", lambda: leads(leader), 30)
    standby = operator_factory(extra_args=ELECTION)
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
    identity = re.search(r"leading as (\S+)", standby.log())
    assert identity is not None and holder(control_plane) == identity.group(1)
