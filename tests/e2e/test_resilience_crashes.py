"""The operator and the kube-apiserver die mid-run; no run is lost, doubled or misreported."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.controlplane import ControlPlane
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

RUNS = 20
KILLS = 5


def _image(deployment: dict[str, Any]) -> str:
    spec = deployment["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    return str(spec["containers"][0]["image"])


def test_sigkills_across_a_batch_lose_and_double_nothing(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    rng = random.Random(20261128)
    seldon.control.set_delays(rollout_seconds=3.0)
    failing = {f"model-{i}" for i in range(0, RUNS, 5)}
    for i in range(RUNS):
        name = f"model-{i}"
        seldon.control.seed_deployment("staging", deployment_body(name, image=f"models/{name}:2"))
        if name in failing:
            seldon.control.mark_failing("production", name, description="OOMKilled")
    for i in range(RUNS):
        name = f"model-{i}"
        promotions.apply(name, {**PROMOTE_IRIS, "source": {"namespace": "staging", "name": name}})

    for _ in range(KILLS):
        time.sleep(rng.uniform(0.5, 3.0))
        operator.kill()
        operator.restart()

    for i in range(RUNS):
        name = f"model-{i}"
        status = promotions.wait_for_phase(name, FINISHED_PHASES, timeout=180)
        target = seldon.control.get_deployment("production", name)
        if name in failing:
            assert status["phase"] == "RolledBack", name
            assert target is None, name
        else:
            assert status["phase"] == "Succeeded", name
            assert target is not None and target["status"]["state"] == "Available", name
            assert _image(target) == f"models/{name}:2", name
    done = writes(seldon, "production")
    creates = [path for method, path in done if method == "POST"]
    deletes = sorted(path.rsplit("/", 1)[-1] for method, path in done if method == "DELETE")
    assert len(creates) == RUNS, "exactly one create per new target"
    assert deletes == sorted(failing), "exactly one removal per rolled-back new target"


def test_apiserver_restart_mid_run_loses_no_status_write(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    seldon.control.set_delays(rollout_seconds=6.0)
    promotions.apply("iris", PROMOTE_IRIS)
    promotions.wait_for_phase("iris", {"Verifying"})

    control_plane.restart_apiserver()

    status = promotions.wait_for_phase("iris", FINISHED_PHASES, timeout=180)
    assert status["phase"] == "Succeeded"
    assert status["appliedGeneration"] == 1
    assert [e["reason"] for e in promotions.events("iris")][-1] == "Succeeded"
    assert operator.process.running()
