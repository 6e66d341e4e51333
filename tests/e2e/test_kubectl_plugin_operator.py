"""``kubectl promotion`` with the operator running: a CI job's ``retry --watch`` of a
failed promotion whose cause was fixed, on the real stack."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from promotion_operator.kubectl_plugin.resource import RETRY_ANNOTATION
from tests.harness.controlplane import ControlPlane
from tests.harness.kubectl_plugin import Plugin
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e


@pytest.fixture
def plugin(control_plane: ControlPlane, namespace: str) -> Iterator[Plugin]:
    running = Plugin(control_plane, namespace, control_plane.kubeconfig)
    yield running
    running.stop_all()


def test_retry_watch_of_a_failed_run_that_then_succeeds(
    control_plane: ControlPlane,
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    plugin: Plugin,
) -> None:
    # The source does not exist yet: the run waits for it until its deadline, then fails.
    spec = {
        "source": {"namespace": "staging", "name": "late"},
        "target": {"namespace": "production"},
        "verification": {"timeout": "5s"},
    }
    promotions.apply("late", spec)
    failed = promotions.wait_for_phase("late", FINISHED_PHASES, timeout=60)
    assert (failed["phase"], failed["outcome"]["reason"]) == ("Failed", "SourceNotFound")
    watched = plugin.run("watch", "late")
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert watched.stdout.splitlines()[-1] == (
        f"{plugin.namespace}/late: run 1.0 failed (Failed, SourceNotFound)"
    )

    # The cause fixed, a CI job retries and waits for the outcome.
    seldon.control.seed_deployment("staging", deployment_body("late", image="seldonio/iris:2"))
    retrying = plugin.start("retry", "late", "--watch", "--timeout", "90s")
    asked = retrying.wait_for_line(lambda line: "retry requested (" in line)
    token = plugin.annotations("late")[RETRY_ANNOTATION]
    assert asked.endswith(f"retry requested ({token}) of run 1.0 (Failed)")
    retrying.wait_for_line(lambda line: "run 1.1" in line, timeout=30)

    assert retrying.wait(90) == 0, retrying.lines + [retrying.stderr]
    lines = retrying.lines
    # Before the operator acted, the watch shows the old run, waiting; after, only the
    # new run: the old Failed never ended the watch.
    new_run = next(i for i, line in enumerate(lines) if "run 1.1" in line)
    assert all("not started yet" in line for line in lines[1:new_run]), lines
    assert all("run 1.1" in line for line in lines[new_run:]), lines
    assert lines[-1] == f"{plugin.namespace}/late: run 1.1 succeeded (Succeeded, Succeeded)"
    status = promotions.status("late")
    assert (status["retry"], status["phase"]) == (1, "Succeeded")
    assert status["lastRetry"] == token

    history = json.loads(plugin.run("history", "late", "-o", "json").stdout)
    assert [(e["generation"], e["retry"], e["outcome"], e["reason"]) for e in history] == [
        (1, 1, "Succeeded", "Succeeded"),
        (1, 0, "Failed", "SourceNotFound"),
    ]
    assert history[0]["images"] == ["seldonio/iris:2"]
    table = plugin.run("history", "late").stdout.splitlines()
    assert [row.split()[:3] for row in table[1:]] == [
        ["1.1", "Succeeded", "Succeeded"],
        ["1.0", "Failed", "SourceNotFound"],
    ]
