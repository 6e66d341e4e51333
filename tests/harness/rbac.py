"""The operator's identity from ``manifests/``: its ServiceAccount with exactly its RBAC.

End-to-end tests run the operator with a TokenRequest token of this
ServiceAccount, so a permission missing from the manifests fails the tests.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.harness.controlplane import ControlPlane

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
OPERATOR_NAMESPACE = "promotion-operator"
SERVICE_ACCOUNT = "promotion-operator"
NAMESPACED_EXAMPLE = "ml-promotions"


def render(control_plane: ControlPlane, overlay: str = "") -> str:
    """``kubectl kustomize`` of ``manifests/`` or one of its overlays."""
    return control_plane.kubectl("kustomize", str(MANIFESTS / overlay)).stdout


def install_cluster_wide(control_plane: ControlPlane, kubeconfig: Path) -> Path:
    """Apply ``manifests/`` (all of it) and write a kubeconfig for its ServiceAccount."""
    control_plane.kubectl("apply", "-f", "-", input_text=render(control_plane))
    return control_plane.service_account_kubeconfig(OPERATOR_NAMESPACE, SERVICE_ACCOUNT, kubeconfig)


def install_namespaced(
    control_plane: ControlPlane, watched: str, operator_namespace: str, kubeconfig: Path
) -> Path:
    """Apply ``manifests/namespaced/`` for namespace ``watched``; return its kubeconfig.

    The operator's own namespace is renamed so that this ServiceAccount is not
    the cluster-wide one (which a ClusterRoleBinding already empowers).
    """
    documents = []
    for document in yaml.safe_load_all(render(control_plane, "namespaced")):
        if document["kind"] == "CustomResourceDefinition":
            continue
        text = yaml.safe_dump(document)
        text = text.replace(NAMESPACED_EXAMPLE, watched)
        text = text.replace(f"namespace: {OPERATOR_NAMESPACE}", f"namespace: {operator_namespace}")
        renamed = yaml.safe_load(text)
        metadata = renamed["metadata"]
        if renamed["kind"] == "Namespace":
            metadata["name"] = operator_namespace
        if renamed["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            metadata["name"] = f"{metadata['name']}-{operator_namespace}"
            if renamed["kind"] == "ClusterRoleBinding":
                renamed["roleRef"]["name"] = f"{renamed['roleRef']['name']}-{operator_namespace}"
        if renamed["kind"] == "RoleBinding":
            renamed["roleRef"]["name"] = f"{renamed['roleRef']['name']}-{operator_namespace}"
        documents.append(renamed)
    control_plane.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(documents))
    return control_plane.service_account_kubeconfig(operator_namespace, SERVICE_ACCOUNT, kubeconfig)
