"""The approval gate (issue 10), with the operator as its own process: a run that needs
approval waits without writing; a member of the approval groups approves it as
themselves and the run goes on; anyone else is refused by the API server.

Who may approve is the API server's decision, through the admission policy shipped in
``manifests/policies/`` and the approver role of ``manifests/roles/``, installed here
as ``manifests/`` installs them; the people are kubeconfigs of tests/harness/users.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.operating import (
    APPROVE,
    ENDED,
    annotations_of,
    quiet,
    reasons,
    target_writes,
    wait_until_removed,
)
from tests.harness.operating import (
    SPEC as OPERATED,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import Promotions, ready_reason_is
from tests.harness.simulator import Simulator
from tests.harness.users import User, user_kubeconfig

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
SPEC: dict[str, Any] = {
    **OPERATED,
    "approval": {"required": True, "groups": ["release-managers"]},
}


@pytest.fixture(scope="module")
def admission(control_plane: ControlPlane, crds: None) -> None:
    """The approval policies and the people's roles, as ``manifests/`` ships them
    (cluster-scoped and idempotent)."""
    control_plane.kubectl("apply", "-k", str(MANIFESTS / "policies"))
    control_plane.kubectl("apply", "-k", str(MANIFESTS / "roles"))


@pytest.fixture
def people(
    control_plane: ControlPlane, namespace: str, admission: None, tmp_path: Path
) -> dict[str, User]:
    """alice (release-managers) and bob (data-scientists), both with the approver role
    in the test's namespace: only the policy tells them apart."""
    people = {
        "alice": user_kubeconfig(control_plane, "alice", ["release-managers"], tmp_path / "a"),
        "bob": user_kubeconfig(control_plane, "bob", ["data-scientists"], tmp_path / "b"),
    }
    control_plane.kubectl(
        "create", "rolebinding", "approvers", "-n", namespace,
        "--clusterrole=modelpromotion-approver", "--user=alice", "--user=bob",
    )  # fmt: skip
    return people


def _approve(user: User, promotions: Promotions) -> Any:
    return user.kubectl(
        "annotate", "mp", "iris", "-n", promotions.namespace, f"{APPROVE}={user.name}"
    )


def _awaiting(promotions: Promotions) -> dict[str, Any]:
    promotions.apply("iris", SPEC)
    status = promotions.wait_for_phase("iris", {"AwaitingApproval"}, timeout=20)
    promotions.wait_for("iris", ready_reason_is("AwaitingApproval"), "Ready AwaitingApproval")
    return status


def _wait_until_enforced(user: User, promotions: Promotions) -> None:
    """A policy just installed takes a moment to be enforced: try (dry run) until refused."""
    deadline = time.monotonic() + 30
    while True:
        tried = _approve_dry_run(user, promotions)
        if tried.returncode != 0 and "modelpromotion-approval" in tried.stderr:
            return
        assert time.monotonic() < deadline, f"the approval policy is not enforced: {tried}"
        time.sleep(0.5)


def _approve_dry_run(user: User, promotions: Promotions) -> Any:
    return user.kubectl(
        "annotate", "mp", "iris", "-n", promotions.namespace, f"{APPROVE}={user.name}",
        "--dry-run=server",
    )  # fmt: skip


def test_a_run_needing_approval_waits_in_awaiting_approval_without_writing(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions
) -> None:
    status = _awaiting(promotions)
    ready = promotions.ready("iris")
    status, events = quiet(promotions, "iris")

    assert status["phase"] == "AwaitingApproval"
    assert (ready["status"], ready["reason"]) == ("False", "AwaitingApproval")
    assert "release-managers" in ready["message"]
    assert status["plan"]["action"] == "Create"  # validated and planned before waiting
    assert status.get("approval") is None
    assert events.count("AwaitingApproval") == 1
    [event] = [e for e in promotions.events("iris") if e["reason"] == "AwaitingApproval"]
    assert event["type"] == "Normal"
    assert target_writes(seldon) == []
    assert all(entry["method"] == "GET" for entry in seldon.control.requests_log())


def test_a_release_manager_approves_and_the_run_succeeds_with_the_approver_recorded(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    people: dict[str, User],
) -> None:
    waiting = _awaiting(promotions)
    _wait_until_enforced(people["bob"], promotions)  # alice passes the enforced policy
    alice = people["alice"]

    approved = _approve(alice, promotions)

    assert approved.returncode == 0, approved.stderr
    status = promotions.wait_for_phase("iris", ENDED, timeout=20)
    assert status["phase"] == "Succeeded", status
    assert status["approval"]["by"] == "alice"
    assert waiting["phaseSince"] <= status["approval"]["at"] <= status["finishedAt"]
    [entry] = status["history"]
    assert (entry["outcome"], entry["approvedBy"]) == ("Succeeded", "alice")
    wait_until_removed(promotions, "iris", APPROVE)
    assert target_writes(seldon) == ["POST"]
    names = reasons(promotions, "iris")
    assert names.index("AwaitingApproval") < names.index("Succeeded")


def test_a_user_outside_the_approval_groups_is_refused_by_the_api_server(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    people: dict[str, User],
) -> None:
    _awaiting(promotions)
    bob = people["bob"]
    _wait_until_enforced(bob, promotions)

    refused = _approve(bob, promotions)

    assert refused.returncode != 0, refused.stdout
    message = " ".join(refused.stderr.split())
    assert message.startswith("Error from server (Forbidden): "), message
    assert "modelpromotion-approval.deploy.mlops.dev" in message
    assert (
        f"bob may not approve ModelPromotion {promotions.namespace}/iris: only members of "
        "spec.approval.groups (release-managers) may approve it"
    ) in message
    assert APPROVE not in annotations_of(promotions, "iris")
    status, _ = quiet(promotions, "iris")
    assert (status["phase"], status.get("approval")) == ("AwaitingApproval", None)
    assert target_writes(seldon) == []
