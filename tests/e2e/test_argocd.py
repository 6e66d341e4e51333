"""Promotions kept in git and synced by a real Argo CD (repo server and application
controller, built from Argo CD's Go module), with the operator as its own process
running them: the health Argo CD shows is Argo CD's own verdict, from the health
check of ``manifests/argocd/`` installed as its README says.

Each test commits its promotion under ``apps/<its namespace>/`` of the harness git
repository and has an Application sync that path into its namespace (automated,
with pruning). What the operator did is read through the status contract and the
simulator's request log. A PromotionPath kept in git is pruned as Argo CD prunes by
default, in the foreground: its runs go through the real garbage collector.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import WRITERS
from tests.harness.argocd import (
    HEALTH_KEY,
    NAMESPACE,
    ROOT,
    ArgoCD,
    resource_health,
    sync_status,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotion_paths import Paths, path_manifest, stage, stage_is
from tests.harness.promotions import FINISHED_PHASES, Promotions, manifest
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = [pytest.mark.e2e, pytest.mark.late_build("argocd")]

HEALTH_LUA = ROOT / "manifests" / "argocd" / "health.lua"
KIND = "ModelPromotion"
NAME = "iris"
PROMOTE_IRIS: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
    "overrides": {"replicas": 3},
    "verification": {"timeout": "2m"},
}
# The Ready reasons of a run at work (docs/contract.md), as the check prefixes them.
WORKING_REASONS = ("Pending", "Validating", "Promoting", "WaitingForAvailable", "RollingBack")
# Phases of a run before it ends ("": no status yet).
RUN_AT_WORK = ("", "Pending", "Validating", "Promoting", "Verifying")
TARGET_PUT = ("PUT", "/seldon-deploy/api/v1alpha1/namespaces/production/seldondeployments/iris")
#: A finalizer of the test's own: it keeps one stage run while its path is deleted.
HOLD = "e2e.mlops.dev/hold"
GC_TIMEOUT = 120.0  # the garbage collector finds a new kind within its 30 s discovery resync


@dataclass
class GitOps:
    """This test's path in the repository and its Application (named after the namespace)."""

    argocd: ArgoCD
    namespace: str

    @property
    def app(self) -> str:
        return self.namespace

    def path(self, name: str) -> str:
        return f"apps/{self.namespace}/{name}.yaml"

    def commit(self, name: str, spec: dict[str, Any], message: str) -> str:
        """Commit the promotion's manifest (as people keep it: no status) and push."""
        return self.commit_manifest(name, manifest(name, spec), message)

    def commit_manifest(self, name: str, text: str, message: str) -> str:
        """Commit a manifest (JSON) of any kind as ``<name>.yaml`` and push."""
        as_yaml = json.dumps(json.loads(text), indent=2) + "\n"
        return self._pushed(self.argocd.git.commit({self.path(name): as_yaml}, message))

    def remove(self, name: str, message: str) -> str:
        """Delete the manifest from git, adding a ConfigMap to the path in the same commit:
        an automated sync refuses to prune an Application's last resource ("auto-sync will
        wipe out all resources") unless its syncPolicy allows an empty Application."""
        other = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "promotions-notes"},
            "data": {"note": "iris was promoted"},
        }
        files = {self.path(name): None, f"apps/{self.namespace}/notes.yaml": json.dumps(other)}
        return self._pushed(self.argocd.git.commit(files, message))

    def _pushed(self, revision: str) -> str:
        # What a git webhook to Argo CD does (its API server refreshes the Applications
        # of the repository); without one Argo CD polls, by default every 2 to 3 minutes.
        applications = self.argocd.control_plane.kubectl(
            "get", "application", self.app, "-n", NAMESPACE, check=False
        )
        if applications.returncode == 0:
            self.argocd.refresh(self.app)
        return revision

    def application(self) -> dict[str, Any]:
        return self.argocd.application(self.app)

    def health(self, name: str = NAME) -> dict[str, Any]:
        return resource_health(self.application(), KIND, name)

    def wait_for_health(self, status: str, name: str = NAME, timeout: float = 120.0) -> str:
        """Wait until Argo CD shows ``status`` for the promotion; return its message."""
        body = self.argocd.wait_for(
            self.app,
            lambda app: resource_health(app, KIND, name).get("status") == status,
            f"health {status} for {KIND} {name}",
            timeout,
        )
        return str(resource_health(body, KIND, name).get("message", ""))

    def wait_synced_to(self, revision: str) -> dict[str, Any]:
        """Wait until the Application is Synced to ``revision``."""
        return self.argocd.wait_for(
            self.app,
            lambda app: (
                sync_status(app) == "Synced"
                and (app.get("status") or {}).get("sync", {}).get("revision") == revision
            ),
            f"Synced to {revision[:8]}",
        )


@pytest.fixture
def gitops(argocd: ArgoCD, namespace: str) -> Iterator[GitOps]:
    """This test's Application (created at its first commit by :func:`start`)."""
    yield GitOps(argocd, namespace)
    argocd.delete_application(namespace)


def start(gitops: GitOps, spec: dict[str, Any], message: str = "Promote iris") -> str:
    """Commit the promotion, create the Application (automated sync, prune) and wait
    until Argo CD applied the commit; return the commit."""
    revision = gitops.commit(NAME, spec, message)
    gitops.argocd.create_application(gitops.app, f"apps/{gitops.namespace}", gitops.namespace)
    gitops.wait_synced_to(revision)
    return revision


def _settle(promotions: Promotions) -> None:
    """Give the operator time to act on the latest change, if it were going to (as
    test_promotion's re-apply test does): it has seen the current generation, plus 3 s."""
    generation = promotions.get(NAME)["metadata"]["generation"]
    promotions.wait_for(
        NAME,
        lambda body: (body.get("status") or {}).get("observedGeneration") == generation,
        "the operator's view of the latest generation",
    )
    time.sleep(3)


def test_argocd_cm_holds_the_shipped_health_check(argocd: ArgoCD) -> None:
    # Installed with the README's `kubectl patch --patch-file`, from the file itself.
    out = argocd.control_plane.kubectl(
        "get", "configmap", "argocd-cm", "-n", NAMESPACE, "-o", "json"
    )
    data = json.loads(out.stdout)["data"]
    assert data[HEALTH_KEY] == HEALTH_LUA.read_text()
    # Argo CD's own defaults stay (the install's ignoreResourceUpdates and exclusions).
    assert "resource.customizations.ignoreResourceUpdates.all" in data
    assert "resource.exclusions" in data


def test_a_committed_promotion_is_progressing_while_it_runs_then_healthy(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, gitops: GitOps
) -> None:
    # A slow rollout keeps the run in Verifying long enough to be seen there.
    seldon.control.set_delays(rollout_seconds=8.0)
    start(gitops, PROMOTE_IRIS)

    seen: list[tuple[str, str, str]] = []  # (health, message, the run's phase then)
    deadline = time.monotonic() + 120
    while not seen or seen[-1][0] != "Healthy":
        assert time.monotonic() < deadline, f"never Healthy; saw {seen}"
        health = gitops.health()
        phase = str(promotions.status(NAME).get("phase", ""))
        observation = (str(health.get("status", "")), str(health.get("message", "")), phase)
        if health and (not seen or seen[-1][:2] != observation[:2]):
            seen.append(observation)
        time.sleep(0.2)

    progressing = [(message, phase) for health, message, phase in seen if health == "Progressing"]
    # Seen while the run was at work (or not yet started), with the check's messages.
    assert any(phase in RUN_AT_WORK for _, phase in progressing), seen
    for message, _ in progressing:
        assert message.startswith(WORKING_REASONS) or message.startswith(
            "Waiting for the operator to start the run"
        ), message
    assert {health for health, _, _ in seen} <= {"Progressing", "Healthy"}, seen
    status = promotions.status(NAME)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Succeeded"
    assert seen[-1][:2] == ("Healthy", ready["message"])
    # The operator's status writes (and Kopf's annotations) do not make it OutOfSync.
    app = gitops.application()
    assert sync_status(app) == "Synced"
    assert app["status"]["health"]["status"] == "Healthy"
    assert writes(seldon) == [("POST", TARGET_PUT[1].rsplit("/", 1)[0])]


def test_a_failing_target_is_degraded_after_the_rollback_with_the_reason(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, gitops: GitOps
) -> None:
    seldon.control.seed_deployment(
        "production", deployment_body("iris", image="seldonio/sklearn-iris:1.3")
    )
    seldon.control.mark_failing(
        "production", "iris", description="ImagePullBackOff", spec_contains="sklearn-iris:1.4"
    )
    start(gitops, PROMOTE_IRIS)

    message = gitops.wait_for_health("Degraded")

    status = promotions.status(NAME)
    assert status["phase"] == "RolledBack"
    assert status["outcome"]["reason"] == "TargetFailed"
    assert "after TargetFailed" in message and "ImagePullBackOff" in message, message
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert message == ready["message"]
    assert gitops.application()["status"]["health"]["status"] == "Degraded"


def test_a_suspended_promotion_is_suspended(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, gitops: GitOps
) -> None:
    start(gitops, {**PROMOTE_IRIS, "suspend": True})

    message = gitops.wait_for_health("Suspended")

    assert promotions.status(NAME)["phase"] == "Suspended"
    assert "spec.suspend=false" in message, message
    assert writes(seldon) == []


def test_a_promotion_waiting_for_approval_is_suspended_with_how_to_approve(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, gitops: GitOps
) -> None:
    start(gitops, {**PROMOTE_IRIS, "approval": {"required": True, "groups": ["release-managers"]}})

    message = gitops.wait_for_health("Suspended")

    assert promotions.status(NAME)["phase"] == "AwaitingApproval"
    assert f"promotion approve {NAME}" in message, message
    assert "release-managers" in message, message
    assert writes(seldon) == []


def test_a_resync_and_a_hard_refresh_of_an_unchanged_promotion_start_no_run(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, gitops: GitOps
) -> None:
    revision = start(gitops, PROMOTE_IRIS)
    gitops.wait_for_health("Healthy")
    before = promotions.get(NAME)
    writes_after_run = writes(seldon)
    assert writes_after_run  # the run wrote the target once

    gitops.argocd.sync(gitops.app)  # initiated by "e2e", unlike the automated one
    gitops.argocd.wait_for(
        gitops.app,
        lambda app: (
            (op := (app.get("status") or {}).get("operationState") or {}).get("phase")
            == "Succeeded"
            and op["operation"].get("initiatedBy", {}).get("username") == "e2e"
            and op.get("syncResult", {}).get("revision") == revision
        ),
        "a second sync of the same revision Succeeded",
    )
    gitops.argocd.refresh(gitops.app, hard=True)
    gitops.argocd.wait_for(
        gitops.app,
        lambda app: "argocd.argoproj.io/refresh" not in (app["metadata"].get("annotations") or {}),
        "the hard refresh done",
    )
    _settle(promotions)

    after = promotions.get(NAME)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"]["startedAt"] == before["status"]["startedAt"]
    assert after["status"]["phase"] == "Succeeded"
    assert writes(seldon) == writes_after_run
    assert gitops.health()["status"] == "Healthy"
    assert sync_status(gitops.application()) == "Synced"


def test_a_commit_that_changes_the_spec_starts_exactly_one_new_run(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, gitops: GitOps
) -> None:
    start(gitops, PROMOTE_IRIS)
    gitops.wait_for_health("Healthy")
    first = promotions.status(NAME)
    before = len(writes(seldon))

    revision = gitops.commit(
        NAME, {**PROMOTE_IRIS, "overrides": {"replicas": 5}}, "iris: 5 replicas"
    )
    gitops.wait_synced_to(revision)
    second = promotions.wait_for_phase(NAME, FINISHED_PHASES)
    gitops.wait_for_health("Healthy")
    _settle(promotions)

    assert second["phase"] == "Succeeded"
    assert second["observedGeneration"] == first["observedGeneration"] + 1
    assert writes(seldon)[before:] == [TARGET_PUT]
    target = seldon.control.get_deployment("production", "iris")
    assert target is not None
    assert target["spec"]["predictors"][0]["replicas"] == 5


def test_deleting_the_promotion_from_git_with_pruning_leaves_the_target_untouched(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, gitops: GitOps
) -> None:
    start(gitops, PROMOTE_IRIS)
    gitops.wait_for_health("Healthy")
    target_before = seldon.control.get_deployment("production", "iris")
    writes_before = writes(seldon)

    revision = gitops.remove(NAME, "Remove the iris promotion")
    gitops.wait_synced_to(revision)
    kube = promotions.kube
    deadline = time.monotonic() + 60
    while kube.kubectl("get", "mp", NAME, "-n", promotions.namespace, check=False).returncode == 0:
        assert time.monotonic() < deadline, "Argo CD did not prune the ModelPromotion"
        time.sleep(0.3)
    time.sleep(3)  # as _settle: time for the operator to act on the deletion, if it would

    assert writes(seldon) == writes_before
    assert seldon.control.get_deployment("production", "iris") == target_before
    assert resource_health(gitops.application(), KIND, NAME) == {}


def _operation_is(phase: str, revision: str, message: str = "") -> Callable[[dict[str, Any]], bool]:
    """The Application's sync of ``revision`` is in ``phase``, its message starting so."""

    def check(app: dict[str, Any]) -> bool:
        operation = (app.get("status") or {}).get("operationState") or {}
        return bool(
            operation.get("phase") == phase
            and operation.get("syncResult", {}).get("revision") == revision
            and str(operation.get("message", "")).startswith(message)
        )

    return check


def test_a_path_pruned_in_the_foreground_goes_with_its_runs_and_leaves_the_targets(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, gitops: GitOps
) -> None:
    seldon.control.add_namespace("dev", groups=WRITERS)
    kube, namespace = promotions.kube, promotions.namespace
    paths = Paths(kube, namespace)
    path = path_manifest(
        NAME, stage("dev"), stage("production"), source={"namespace": "staging", "name": "iris"}
    )
    revision = gitops.commit_manifest(NAME, path, "A path for iris")
    gitops.argocd.create_application(
        gitops.app, f"apps/{namespace}", namespace, prune_propagation="foreground"
    )
    gitops.wait_synced_to(revision)
    paths.wait_for(NAME, stage_is("production", phase="Succeeded"), "production Succeeded")
    runs = {r["metadata"]["labels"]["deploy.mlops.dev/stage"]: r for r in paths.runs(NAME)}
    assert sorted(runs) == ["dev", "production"]
    targets = {ns: seldon.control.get_deployment(ns, "iris") for ns in ("dev", "production")}
    writes_before = writes(seldon)
    held = runs["dev"]["metadata"]["name"]
    hold = {"metadata": {"finalizers": [HOLD]}}
    kube.kubectl("patch", "mp", held, "-n", namespace, "--type=merge", "-p", json.dumps(hold))

    revision = gitops.remove(NAME, "Remove the iris path")
    # Argo CD prunes it with propagationPolicy=Foreground (its sync ends there; the app
    # shows the path "Pending deletion; blocked by finalizers: foregroundDeletion"). In
    # the foreground the path stays until its runs are gone: the garbage collector
    # deleted the production run and began deleting the held one.
    paths.wait_for(
        NAME,
        lambda body: "foregroundDeletion" in (body["metadata"].get("finalizers") or []),
        "deleted in the foreground",
    )
    deadline = time.monotonic() + GC_TIMEOUT
    while True:
        left = paths.runs(NAME)
        names = [r["metadata"]["name"] for r in left]
        if names == [held] and left[0]["metadata"].get("deletionTimestamp"):
            break
        assert time.monotonic() < deadline, f"the garbage collector left {left}"
        time.sleep(0.5)
    time.sleep(3)  # as _settle: time for the operator to start a run again, if it would
    assert [r["metadata"]["name"] for r in paths.runs(NAME)] == [held]
    # The deletion raised the held run's generation; the finished run was not run again.
    being_deleted = paths.runs(NAME)[0]
    assert being_deleted["metadata"]["generation"] > runs["dev"]["metadata"]["generation"]
    assert being_deleted["status"]["phase"] == "Succeeded"
    assert writes(seldon) == writes_before
    assert paths.get(NAME)["metadata"].get("deletionTimestamp")

    release = {"metadata": {"finalizers": None}}
    kube.kubectl("patch", "mp", held, "-n", namespace, "--type=merge", "-p", json.dumps(release))
    deadline = time.monotonic() + GC_TIMEOUT
    while kube.kubectl("get", "ppath", NAME, "-n", namespace, check=False).returncode == 0:
        assert time.monotonic() < deadline, "the garbage collector did not finish the deletion"
        time.sleep(0.5)

    assert paths.runs(NAME) == []
    gitops.argocd.wait_for(gitops.app, _operation_is("Succeeded", revision), "the sync Succeeded")
    gitops.wait_synced_to(revision)
    assert writes(seldon) == writes_before
    for ns, before in targets.items():
        assert seldon.control.get_deployment(ns, "iris") == before
