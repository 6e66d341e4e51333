"""The harness control plane is a real, pinned, RBAC-enforcing kube-apiserver."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness.binaries import KUBERNETES_VERSION
from tests.harness.controlplane import ControlPlane

pytestmark = pytest.mark.e2e


def _crd(schema_spec: str) -> str:
    return f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.probe.example.com
spec:
  group: probe.example.com
  names: {{kind: Widget, plural: widgets, singular: widget}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
{schema_spec}
"""


def test_apiserver_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    version = subprocess.run(
        [str(control_plane.binaries.kube_apiserver), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == f"Kubernetes {KUBERNETES_VERSION}"
    server = control_plane.kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{KUBERNETES_VERSION}"' in server


def test_apiserver_rejects_a_crd_whose_schema_is_not_structural(
    control_plane: ControlPlane,
) -> None:
    # `spec` has properties but no type: not structural, so v1 CRDs refuse it.
    untyped = "            properties:\n              size: {type: integer}"
    refused = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input_text=_crd(untyped), check=False
    )
    assert refused.returncode != 0
    assert "must not be empty for specified object fields" in refused.stderr

    typed = "            type: object\n" + untyped
    accepted = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input_text=_crd(typed), check=False
    )
    assert accepted.returncode == 0, accepted.stderr


def test_service_account_without_a_role_is_refused_a_list(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    control_plane.kubectl("create", "namespace", "rbac-probe")
    control_plane.kubectl("create", "serviceaccount", "nobody", "-n", "rbac-probe")
    kubeconfig = control_plane.service_account_kubeconfig(
        "rbac-probe", "nobody", tmp_path / "nobody.kubeconfig"
    )

    def list_configmaps() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(control_plane.binaries.kubectl), "--kubeconfig", str(kubeconfig)]
            + ["get", "configmaps", "-n", "rbac-probe"],
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = list_configmaps()
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr
    assert 'User "system:serviceaccount:rbac-probe:nobody" cannot list' in refused.stderr

    # The same token is accepted once a Role grants the list: the refusal was RBAC.
    control_plane.kubectl(
        "create", "role", "cm-reader", "-n", "rbac-probe", "--verb=list", "--resource=configmaps"
    )
    control_plane.kubectl(
        "create", "rolebinding", "cm-reader", "-n", "rbac-probe",
        "--role=cm-reader", "--serviceaccount=rbac-probe:nobody",
    )  # fmt: skip
    allowed = list_configmaps()
    assert allowed.returncode == 0, allowed.stderr
