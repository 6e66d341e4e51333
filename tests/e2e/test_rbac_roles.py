"""The ClusterRoles for people in ``manifests/roles/``: each grants what its comment says,
and nothing more, on the real kube-apiserver (installed from that directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import manifest
from tests.harness.users import User, user_kubeconfig

pytestmark = pytest.mark.e2e

ROLES = Path(__file__).resolve().parents[2] / "manifests" / "roles"
RESOURCE = "modelpromotions.deploy.mlops.dev"
SPEC: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
}
READ = {"get", "list", "watch"}
# role -> (verbs on modelpromotions, the built-in roles it is aggregated to)
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "modelpromotion-viewer": (READ, {"view", "edit", "admin"}),
    "modelpromotion-promoter": (READ | {"create", "update", "patch", "delete"}, {"edit", "admin"}),
    "modelpromotion-approver": (READ | {"patch"}, set()),
}
ALL_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


def _shipped() -> dict[str, dict[str, Any]]:
    return {
        document["metadata"]["name"]: document
        for document in yaml.safe_load_all((ROLES / "clusterroles.yaml").read_text())
    }


def test_the_roles_grant_the_documented_verbs_on_modelpromotions_only() -> None:
    roles = _shipped()
    assert set(roles) == set(EXPECTED)
    for name, (verbs, _) in EXPECTED.items():
        (rule,) = roles[name]["rules"]
        assert rule == {
            "apiGroups": ["deploy.mlops.dev"],
            "resources": ["modelpromotions"],  # never modelpromotions/status
            "verbs": [v for v in ALL_VERBS if v in verbs],
        }, name


def test_the_aggregation_labels_match_the_built_in_roles(
    control_plane: ControlPlane, crds: None
) -> None:
    # No controller-manager runs here to aggregate; the selectors are the API server's own.
    roles = _shipped()
    for name, (_, aggregated_to) in EXPECTED.items():
        labels = roles[name]["metadata"].get("labels") or {}
        for built_in in ("view", "edit", "admin"):
            found = control_plane.kubectl("get", "clusterrole", built_in, "-o", "json").stdout
            selectors = json.loads(found)["aggregationRule"]["clusterRoleSelectors"]
            selected = any(
                all(labels.get(k) == v for k, v in s["matchLabels"].items()) for s in selectors
            )
            assert selected == (built_in in aggregated_to), (name, built_in)


@pytest.fixture
def people(
    control_plane: ControlPlane, namespace: str, crds: None, tmp_path: Path
) -> dict[str, User]:
    control_plane.kubectl("apply", "-k", str(ROLES))
    users = {}
    for role in ("viewer", "promoter", "approver"):
        name = f"{role}-1"
        users[role] = user_kubeconfig(control_plane, name, ["ml"], tmp_path / name)
        control_plane.kubectl(
            "create", "rolebinding", name, "-n", namespace,
            f"--clusterrole=modelpromotion-{role}", f"--user={name}",
        )  # fmt: skip
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input_text=manifest("iris", SPEC))
    return users


def _can(user: User, verb: str, resource: str, namespace: str, *extra: str) -> bool:
    answer = user.kubectl("auth", "can-i", verb, resource, "-n", namespace, *extra)
    return answer.stdout.strip() == "yes"


@pytest.mark.parametrize("role", list(EXPECTED))
def test_each_role_may_do_exactly_its_verbs_in_its_namespace(
    people: dict[str, User], namespace: str, role: str
) -> None:
    user = people[role.removeprefix("modelpromotion-")]
    verbs, _ = EXPECTED[role]
    allowed = {verb for verb in ALL_VERBS if _can(user, verb, RESOURCE, namespace)}
    assert allowed == verbs
    assert not _can(user, "patch", RESOURCE, namespace, "--subresource=status")
    assert not _can(user, "update", RESOURCE, namespace, "--subresource=status")
    assert not _can(user, "get", RESOURCE, "default")  # bound in one namespace only
    assert not _can(user, "get", "secrets", namespace)


def test_the_viewer_reads_but_cannot_annotate(people: dict[str, User], namespace: str) -> None:
    viewer = people["viewer"]
    listed = viewer.kubectl("get", "mp", "-n", namespace, "-o", "name")
    assert listed.stdout.split() == ["modelpromotion.deploy.mlops.dev/iris"], listed.stderr
    refused = viewer.kubectl(
        "annotate", "mp", "iris", "-n", namespace, "deploy.mlops.dev/abort=now"
    )
    assert refused.returncode != 0
    assert 'User "viewer-1" cannot patch resource "modelpromotions"' in refused.stderr


def test_the_promoter_creates_changes_and_deletes(people: dict[str, User], namespace: str) -> None:
    promoter = people["promoter"]
    created = promoter.kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=manifest("iris-2", SPEC)
    )
    assert created.returncode == 0, created.stderr
    changed = {**SPEC, "overrides": {"replicas": 2}}
    applied = promoter.kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=manifest("iris-2", changed)
    )
    assert applied.returncode == 0, applied.stderr
    deleted = promoter.kubectl("delete", "mp", "iris-2", "-n", namespace)
    assert deleted.returncode == 0, deleted.stderr


def test_the_approver_annotates_but_cannot_create_or_delete(
    people: dict[str, User], namespace: str
) -> None:
    approver = people["approver"]
    annotated = approver.kubectl(
        "annotate", "mp", "iris", "-n", namespace, "deploy.mlops.dev/abort=now"
    )
    assert annotated.returncode == 0, annotated.stderr
    created = approver.kubectl(
        "create", "-n", namespace, "-f", "-", input_text=manifest("iris-3", SPEC)
    )
    assert 'cannot create resource "modelpromotions"' in created.stderr
    deleted = approver.kubectl("delete", "mp", "iris", "-n", namespace)
    assert 'cannot delete resource "modelpromotions"' in deleted.stderr
