"""``manifests/`` installs, and its RBAC is least privilege, on the real apiserver."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.rbac import NAMESPACED_EXAMPLE, install_namespaced, render
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e


def _as(
    control_plane: ControlPlane, kubeconfig: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(control_plane.binaries.kubectl), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("overlay", ["", "namespaced"], ids=["cluster-wide", "namespaced"])
def test_rendered_manifests_pass_a_server_side_dry_run(
    control_plane: ControlPlane, crds: None, overlay: str
) -> None:
    # A dry run creates nothing, so the namespaces the objects live in must exist.
    for namespace in ("promotion-operator", NAMESPACED_EXAMPLE):
        control_plane.kubectl("create", "namespace", namespace, check=False)
    applied = control_plane.kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        input_text=render(control_plane, overlay),
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    # "created" on a fresh apiserver; other tests may have installed it for real already.
    assert re.search(
        r"deployment.apps/promotion-operator (created|configured|unchanged) \(server dry run\)",
        applied.stdout,
    ), applied.stdout


@pytest.mark.parametrize(
    "forbidden",
    [
        ("get", "secrets", "-n", "promotion-operator"),
        ("get", "secrets", "--all-namespaces"),
        ("create", "configmap", "sneaky", "-n", "default"),
        ("delete", "modelpromotion", "anything", "-n", "default"),
        ("create", "deployment", "sneaky", "--image=busybox", "-n", "default"),
        ("delete", "customresourcedefinition", "modelpromotions.deploy.mlops.dev"),
        ("delete", "promotionpolicy", "anything", "-n", "default"),
    ],
    ids=["read-own-secrets", "read-all-secrets", "write-configmaps", "delete-promotions",
         "write-deployments", "delete-the-crd", "delete-promotion-policies"],
)  # fmt: skip
def test_operator_identity_is_refused_what_it_must_not_do(
    control_plane: ControlPlane, operator_kubeconfig: Path, forbidden: tuple[str, ...]
) -> None:
    refused = _as(control_plane, operator_kubeconfig, *forbidden)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    assert "system:serviceaccount:promotion-operator:promotion-operator" in refused.stderr


def test_operator_identity_may_do_what_the_operator_does(
    control_plane: ControlPlane, operator_kubeconfig: Path
) -> None:
    for verb, resource in [
        ("watch", "modelpromotions.deploy.mlops.dev"),
        ("patch", "modelpromotions.deploy.mlops.dev/status"),
        ("create", "events"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("list", "promotionpolicies.deploy.mlops.dev"),
    ]:
        allowed = _as(control_plane, operator_kubeconfig, "auth", "can-i", verb, resource, "-A")
        assert allowed.stdout.strip() == "yes", (verb, resource)


def test_namespaced_install_promotes_in_its_namespace_only(
    control_plane: ControlPlane,
    seldon: Simulator,
    operator_factory: StartOperator,
    promotions: Promotions,
    tmp_path: Path,
) -> None:
    own_namespace = f"po-{uuid.uuid4().hex[:6]}"
    kubeconfig = install_namespaced(
        control_plane, promotions.namespace, own_namespace, tmp_path / "namespaced.kubeconfig"
    )
    operator_factory(kubeconfig=kubeconfig)
    promotions.apply("iris", PROMOTE_IRIS)

    assert promotions.wait_for_phase("iris", FINISHED_PHASES)["phase"] == "Succeeded"
    elsewhere = _as(control_plane, kubeconfig, "get", "modelpromotions", "-n", "default")
    assert elsewhere.returncode != 0 and "Forbidden" in elsewhere.stderr
