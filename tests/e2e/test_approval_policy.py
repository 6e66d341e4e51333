"""Who may approve a ModelPromotion is decided by the API server: the
ValidatingAdmissionPolicies of ``manifests/policies/``, installed from that directory,
on the real kube-apiserver (no operator needed).

alice is in ``release-managers``, bob is not; both are bound to the approver role
(``manifests/roles/``) in the test's namespace, paula to the promoter role.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import manifest
from tests.harness.users import User, user_kubeconfig

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
POLICIES = MANIFESTS / "policies"
ROLES = MANIFESTS / "roles"
APPROVE = "deploy.mlops.dev/approve"
GROUPS = ["release-managers", "ml-leads"]
SPEC: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
    "approval": {"required": True, "groups": GROUPS},
}
ANY_APPROVER: dict[str, Any] = {**SPEC, "approval": {"required": True}}


# The kubernetes client is untyped.
_new_client: Callable[..., Any] = kubernetes.config.new_client_from_config


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, crds: None) -> None:
    """The policies and roles as ``manifests/`` ships them (cluster-scoped, idempotent:
    what installing ``manifests/`` applies anyway)."""
    control_plane.kubectl("apply", "-k", str(POLICIES))
    control_plane.kubectl("apply", "-k", str(ROLES))


@pytest.fixture
def people(
    control_plane: ControlPlane, namespace: str, installed: None, tmp_path: Path
) -> dict[str, User]:
    users = {
        "alice": user_kubeconfig(control_plane, "alice", ["release-managers"], tmp_path / "a"),
        "bob": user_kubeconfig(control_plane, "bob", ["data-scientists"], tmp_path / "b"),
        "paula": user_kubeconfig(control_plane, "paula", ["ml-platform"], tmp_path / "p"),
    }
    for role, subjects in (("approver", ["alice", "bob"]), ("promoter", ["paula"])):
        control_plane.kubectl(
            "create", "rolebinding", f"modelpromotion-{role}", "-n", namespace,
            f"--clusterrole=modelpromotion-{role}", *(f"--user={s}" for s in subjects),
        )  # fmt: skip
    return users


@pytest.fixture
def promotion(
    control_plane: ControlPlane, namespace: str, people: dict[str, User]
) -> Iterator[str]:
    """ModelPromotion ``iris`` needing approval by GROUPS, once the policy is enforced."""
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=manifest("iris", SPEC)
    )  # fmt: skip
    _wait_until_enforced(people["bob"], namespace)
    yield "iris"


def _wait_until_enforced(approver: User, namespace: str) -> None:
    """A new policy takes a moment to be enforced: try what each refuses (dry runs)."""
    spec_change = json.dumps({"spec": {"overrides": {"replicas": 1}}})
    attempts = {
        "approval": ["annotate", "mp", "iris", f"{APPROVE}=someone-else"],
        "spec-writers": ["patch", "mp", "iris", "--type=merge", "-p", spec_change],
    }
    deadline = time.monotonic() + 30
    for policy, args in attempts.items():
        while True:
            tried = approver.kubectl(*args, "-n", namespace, "--dry-run=server")
            if tried.returncode != 0 and f"modelpromotion-{policy}" in tried.stderr:
                break
            assert time.monotonic() < deadline, f"{policy} is not enforced: {tried.stderr}"
            time.sleep(0.5)


def _approve(
    user: User, namespace: str, value: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return user.kubectl(
        "annotate", "mp", "iris", "-n", namespace, f"{APPROVE}={value}", "--overwrite", *extra
    )


def _annotations(control_plane: ControlPlane, namespace: str) -> dict[str, str]:
    got = control_plane.kubectl("get", "mp", "iris", "-n", namespace, "-o", "json").stdout
    annotations: dict[str, str] = json.loads(got)["metadata"].get("annotations") or {}
    return annotations


def _refused(result: subprocess.CompletedProcess[str], policy: str) -> str:
    """The policy's message in a refusal, on one line."""
    assert result.returncode != 0, result.stdout
    message = one_line(result.stderr)
    assert message.startswith("Error from server (Forbidden): "), message
    assert f"ValidatingAdmissionPolicy '{policy}.deploy.mlops.dev'" in message, message
    return message.split("denied request: ", 1)[1]


def test_a_member_of_the_groups_approves_as_themselves(
    control_plane: ControlPlane, namespace: str, people: dict[str, User], promotion: str
) -> None:
    approved = _approve(people["alice"], namespace, "alice")
    assert approved.returncode == 0, approved.stderr
    assert _annotations(control_plane, namespace)[APPROVE] == "alice"


def test_approving_in_another_users_name_is_refused(
    control_plane: ControlPlane, namespace: str, people: dict[str, User], promotion: str
) -> None:
    message = _refused(_approve(people["alice"], namespace, "bob"), "modelpromotion-approval")
    assert message == (
        "deploy.mlops.dev/approve must be your own user name: you may approve only as "
        'yourself, so set it to "alice", not "bob"'
    )
    # A long value is cut short in the message.
    long = _refused(_approve(people["alice"], namespace, "b" * 300), "modelpromotion-approval")
    assert long.endswith(f'not "{"b" * 64}..."'), long
    assert APPROVE not in _annotations(control_plane, namespace)


def test_a_user_outside_the_groups_is_refused(
    control_plane: ControlPlane, namespace: str, people: dict[str, User], promotion: str
) -> None:
    message = _refused(_approve(people["bob"], namespace, "bob"), "modelpromotion-approval")
    assert message == (
        f"bob may not approve ModelPromotion {namespace}/iris: only members of "
        "spec.approval.groups (release-managers, ml-leads) may approve it, and bob is in "
        "none of them"
    )
    assert APPROVE not in _annotations(control_plane, namespace)


def test_even_a_cluster_admin_approves_only_as_themselves(
    control_plane: ControlPlane, namespace: str, promotion: str
) -> None:
    # The harness admin (system:masters) passes RBAC, not the policy.
    refused = control_plane.kubectl(
        "annotate", "mp", "iris", "-n", namespace, f"{APPROVE}=alice", check=False
    )
    assert "you may approve only as yourself" in _refused(refused, "modelpromotion-approval")


def test_without_groups_any_approver_may_approve_as_themselves(
    control_plane: ControlPlane, namespace: str, people: dict[str, User], promotion: str
) -> None:
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=manifest("iris", ANY_APPROVER)
    )  # fmt: skip
    approved = _approve(people["bob"], namespace, "bob")
    assert approved.returncode == 0, approved.stderr
    refused = _approve(people["alice"], namespace, "paula")
    assert 'set it to "alice", not "paula"' in _refused(refused, "modelpromotion-approval")
    # Replacing a pending approval with one's own is setting it, and allowed.
    replaced = _approve(people["alice"], namespace, "alice")
    assert replaced.returncode == 0, replaced.stderr
    assert _annotations(control_plane, namespace)[APPROVE] == "alice"


def test_removing_the_annotation_is_allowed_as_the_operator_does(
    control_plane: ControlPlane,
    namespace: str,
    people: dict[str, User],
    promotion: str,
    operator_kubeconfig: Path,
) -> None:
    assert _approve(people["alice"], namespace, "alice").returncode == 0
    # The operator's own identity (manifests/ installed; it may patch, not get), with a
    # merge patch, as the operator sends it.
    api = _new_client(config_file=str(operator_kubeconfig))
    with api:
        kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "deploy.mlops.dev", "v1alpha1", namespace, "modelpromotions", "iris",
            {"metadata": {"annotations": {APPROVE: None}}},
        )  # fmt: skip
    assert APPROVE not in _annotations(control_plane, namespace)
    # And by anyone with patch, e.g. bob, who may not approve.
    assert _approve(people["alice"], namespace, "alice").returncode == 0
    withdrawn = people["bob"].kubectl("annotate", "mp", "iris", "-n", namespace, f"{APPROVE}-")
    assert withdrawn.returncode == 0, withdrawn.stderr


def test_other_changes_leave_a_pending_approval_alone(
    control_plane: ControlPlane, namespace: str, people: dict[str, User], promotion: str
) -> None:
    assert _approve(people["alice"], namespace, "alice").returncode == 0
    # paula is no approver, but her apply keeps alice's annotation as it is: not refused.
    changed = {**SPEC, "overrides": {"replicas": 2}}
    applied = people["paula"].kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=manifest("iris", changed)
    )
    assert applied.returncode == 0, applied.stderr
    labelled = people["bob"].kubectl("label", "mp", "iris", "-n", namespace, "team=ml")
    assert labelled.returncode == 0, labelled.stderr
    assert _annotations(control_plane, namespace)[APPROVE] == "alice"


def test_an_approval_set_at_creation_is_checked_too(
    namespace: str, people: dict[str, User], promotion: str
) -> None:
    body = json.loads(manifest("born-approved", SPEC))
    body["metadata"]["annotations"] = {APPROVE: "alice"}
    created = people["paula"].kubectl(
        "create", "-n", namespace, "-f", "-", input_text=json.dumps(body)
    )
    message = _refused(created, "modelpromotion-approval")
    assert 'set it to "paula", not "alice"' in message
    body["metadata"]["annotations"] = {APPROVE: "paula"}
    created = people["paula"].kubectl(
        "create", "-n", namespace, "-f", "-", input_text=json.dumps(body)
    )
    assert "paula may not approve ModelPromotion" in _refused(created, "modelpromotion-approval")


@pytest.mark.parametrize(
    "change",
    [
        {"approval": {"groups": ["data-scientists"]}},
        {"approval": {"required": False}},
        {"overrides": {"replicas": 3}},
    ],
    ids=["add-own-group", "drop-approval", "change-what-is-promoted"],
)
def test_an_approver_may_not_change_the_spec(
    control_plane: ControlPlane,
    namespace: str,
    people: dict[str, User],
    promotion: str,
    change: dict[str, Any],
) -> None:
    # patch lets bob annotate; without update he may not rewrite the spec, so he cannot
    # put his own group into spec.approval.groups (or drop the approval) and approve.
    patch = json.dumps({"spec": change})
    refused = people["bob"].kubectl(
        "patch", "mp", "iris", "-n", namespace, "--type=merge", "-p", patch
    )
    assert _refused(refused, "modelpromotion-spec-writers") == (
        f"bob may not change the spec of ModelPromotion {namespace}/iris: that needs the "
        "update verb on modelpromotions (the promoter role); with patch alone (the approver "
        "role) you may annotate it (approve, abort, retry), not change what it promotes or "
        "who may approve it"
    )
    # Nor in the same request as his own approval.
    both = json.dumps({"spec": change, "metadata": {"annotations": {APPROVE: "bob"}}})
    refused = people["bob"].kubectl(
        "patch", "mp", "iris", "-n", namespace, "--type=merge", "-p", both
    )
    assert refused.returncode != 0
    assert APPROVE not in _annotations(control_plane, namespace)
    # A promoter may (and a spec change is a new generation: a new run, approved anew).
    before = json.loads(
        control_plane.kubectl("get", "mp", "iris", "-n", namespace, "-o", "json").stdout
    )["metadata"]["generation"]
    changed = people["paula"].kubectl(
        "patch", "mp", "iris", "-n", namespace, "--type=merge", "-p", patch, "-o", "json"
    )
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["metadata"]["generation"] == before + 1
