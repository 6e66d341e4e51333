"""The path controller's pass: reads, the runs it creates (once), the status it writes."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from promotion_operator.control.bodies import slim
from promotion_operator.control.kube_api import ObjectChanged, ObjectRef
from promotion_operator.control.metrics import Metrics
from promotion_operator.control.path_controller import PathController
from promotion_operator.core.spec import DeploymentRef
from tests.simulator.testing import deployment_body


def available(namespace: str, generation: int = 1) -> dict[str, Any]:
    body = deployment_body("iris", image="iris:1")
    body["metadata"].update(namespace=namespace, generation=generation)
    body["status"] = {"state": "Available", "observedGeneration": generation}
    return body


class FakeReads:
    def __init__(self, deployments: Mapping[str, dict[str, Any]]) -> None:
        self.deployments = dict(deployments)
        self.watched: dict[str, tuple[DeploymentRef, ...]] = {}

    def watch(self, run: str, refs: Any) -> None:
        self.watched[run] = tuple(refs)

    def unwatch(self, run: str) -> None:
        self.watched.pop(run, None)

    def find(self, run: str, ref: DeploymentRef) -> dict[str, Any] | None:
        return copy.deepcopy(self.deployments.get(ref.namespace))


class FakeRuntime:
    def __init__(self, reads: FakeReads) -> None:
        self.reads = reads
        self.metrics = Metrics()


class FakeApi:
    def __init__(self) -> None:
        self.promotions: dict[str, dict[str, Any]] = {}
        self.creates: list[str] = []
        self.status_patches: list[dict[str, Any]] = []

    def create_promotion(self, body: Mapping[str, Any]) -> bool:
        name = body["metadata"]["name"]
        self.creates.append(name)
        if name in self.promotions:
            return False
        created = copy.deepcopy(dict(body))
        created["metadata"]["creationTimestamp"] = "2026-01-01T12:00:00Z"
        created["metadata"]["generation"] = 1
        self.promotions[name] = created
        return True

    def list_owned_promotions(self, namespace: str, label: str, value: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(p) for p in self.promotions.values()]

    def patch_path_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> dict[str, Any]:
        self.status_patches.append(dict(status))
        if len(self.status_patches) == 99:
            raise ObjectChanged("never")
        return {"metadata": {"resourceVersion": str(len(self.status_patches))}, "status": status}


PATH = {
    "metadata": {"namespace": "ops", "name": "iris", "uid": "u-1", "generation": 1},
    "spec": {
        "source": {"namespace": "build", "name": "iris"},
        "stages": [
            {"name": "dev", "target": {"namespace": "dev"}},
            {"name": "prod", "target": {"namespace": "prod"}, "policy": "manual"},
        ],
    },
}


def controller(api: FakeApi) -> PathController:
    reads = FakeReads({"build": available("build", 3)})
    return PathController(FakeRuntime(reads), api)  # type: ignore[arg-type]


def test_a_pass_creates_the_first_stages_run_owned_by_the_path_and_records_it() -> None:
    api = FakeApi()
    delay, written = controller(api).process(PATH)
    [name] = api.promotions
    run = api.promotions[name]
    assert run["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert run["spec"]["target"] == {"namespace": "dev", "name": "iris"}
    assert written is not None and written["status"]["stages"][0]["phase"] == "Running"
    assert delay == 30.0  # the default poll interval


def test_a_replayed_pass_creates_nothing_twice() -> None:
    api = FakeApi()
    paths = controller(api)
    paths.process(PATH)  # its status write lost, as after a SIGKILL
    paths.process(PATH)
    assert len(api.promotions) == 1
    assert api.creates == [next(iter(api.promotions))]  # the second pass saw the run


def test_a_path_being_deleted_starts_no_run_and_writes_nothing() -> None:
    # Foreground deletion: the garbage collector has deleted the runs, the path waits.
    api = FakeApi()
    deleting: dict[str, Any] = copy.deepcopy(PATH)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    _, written = controller(api).process(slim(deleting))
    assert api.creates == [] and written is None and api.status_patches == []


def test_a_pass_that_changes_nothing_writes_nothing() -> None:
    api = FakeApi()
    paths = controller(api)
    _, written = paths.process(PATH)
    assert written is not None
    again = {**PATH, "status": written["status"]}
    _, second = paths.process(again)
    assert second is None and len(api.status_patches) == 1


def test_the_path_reads_its_source_and_targets_through_the_shared_reads() -> None:
    api = FakeApi()
    paths = controller(api)
    paths.process(PATH)
    refs = paths.runtime.reads.watched["path:u-1"]  # type: ignore[attr-defined]
    assert [ref.namespace for ref in refs] == ["build", "dev", "prod"]


def test_a_created_run_is_counted_once_per_stage() -> None:
    api = FakeApi()
    paths = controller(api)
    paths.process(PATH)
    paths.process(PATH)  # replayed: the run is there, nothing is created or counted
    registry = paths.runtime.metrics.registry
    labels = {"namespace": "ops", "path": "iris", "stage": "dev"}
    assert registry.get_sample_value("promotionpath_stage_runs_started_total", labels) == 1.0


def test_a_hold_and_its_release_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi()
    paths = controller(api)
    hold = {"deploy.mlops.dev/hold-dev": '{"by": "alice", "reason": "INC-42"}'}
    held_path: dict[str, Any] = copy.deepcopy(PATH)
    held_path["metadata"]["annotations"] = hold
    with caplog.at_level(logging.INFO, logger="promotion_operator.control.path_controller"):
        _, written = paths.process(held_path)
        assert written is not None and api.promotions == {}  # held: dev did not start
        paths.process({**PATH, "status": written["status"]})
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith("[ops/iris] stage dev: held by alice: INC-42; ")
    assert "[ops/iris] stage dev: no longer held" in said
