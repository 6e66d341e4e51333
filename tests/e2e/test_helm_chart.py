"""The Helm chart, checked by real Helm (built from helm.sh/helm/v4): linted, rendered
equal to ``manifests/`` with the same settings, and installed, upgraded and
uninstalled on the real apiserver, where a promotion succeeds with the RBAC it
installed.

The rendering tests need only the built ``helm`` and ``kubectl`` (no stack).
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import StartOperator
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.binaries import ensure_binaries
from tests.harness.controlplane import ControlPlane
from tests.harness.helm import Helm, ensure_helm
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.simulator import Simulator

pytestmark = [pytest.mark.e2e, pytest.mark.late_build("helm")]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "seldon-promotion-operator"
MANIFESTS = ROOT / "manifests"
RELEASE_NAMESPACE = "promotion-operator"

#: The MLflow Model Registry as manifests/components/mlflow-registry sets it.
MLFLOW_REGISTRY = {"trackingUri": "https://mlflow.example.com",
                   "credentialsSecret": "mlflow-credentials"}  # fmt: skip
#: One install said twice: the chart's values, and the kustomize directory.
SAME_INSTALL: dict[str, tuple[dict[str, Any], str]] = {
    "cluster-wide": ({}, ""),
    "namespaced": ({"watchNamespaces": ["ml-promotions"]}, "namespaced"),
    "federated": ({"credentials": {"mode": "serviceAccountToken"}}, "overlays/federated"),
    "registry": ({"registry": {"mlflow": MLFLOW_REGISTRY}}, "overlays/registry"),
}
#: Bookkeeping labels each tool sets its own way (Helm's release, kustomize's
#: per-directory labels); selectors and pod labels are compared in full.
_BOOKKEEPING_LABELS = ("app.kubernetes.io/", "helm.sh/")

Key = tuple[str, str, str]
#: Helm 4 applies crds/ server-side; the session applied the same CRD with
#: `kubectl apply` (as a manifests/ install does), whose field manager then
#: conflicts on .spec.versions. Taking those fields over is what docs/install.md
#: tells users who move from manifests/ to the chart.
_CRD_ALREADY_APPLIED = ("--force-conflicts",)


def _values_file(directory: Path, values: dict[str, Any]) -> Path:
    path = directory / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    home = tmp_path_factory.mktemp("helm-home")
    kubeconfig = home / "no-cluster.kubeconfig"  # rendering tests reach no cluster
    return Helm(ensure_helm(), kubeconfig, home)


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return ensure_binaries().kubectl


def render_chart(helm: Helm, values: dict[str, Any], chart: Path = CHART) -> str:
    """``helm template`` with the chart's CRD, into the release namespace."""
    return helm.run(
        "template", "promotion-operator", str(chart), "--namespace", RELEASE_NAMESPACE,
        "--include-crds", "--values", str(_values_file(helm.home, values)),
    ).stdout  # fmt: skip


def render_kustomize(kubectl: Path, directory: str | Path) -> str:
    """``kubectl kustomize`` of a directory of ``manifests/`` (or any directory)."""
    return subprocess.run(
        [str(kubectl), "kustomize", str(MANIFESTS / directory)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


def composed(directory: Path, base: str, components: list[str]) -> Path:
    """A kustomization of a user's own: a directory of ``manifests/`` with some of its
    components, as docs/install.md tells users to compose them."""
    directory.mkdir()

    def relative(path: Path) -> str:  # kustomize refuses absolute paths
        return os.path.relpath(path, directory)

    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [relative(MANIFESTS / base)],
            "components": [relative(MANIFESTS / "components" / name) for name in components],
        })
    )  # fmt: skip
    return directory


def objects(rendered: str) -> dict[Key, dict[str, Any]]:
    """The rendered objects by kind, namespace and name, without bookkeeping labels.

    The Namespace is left out: Helm installs into a namespace that exists or that
    ``--create-namespace`` makes, and does not own it."""
    found: dict[Key, dict[str, Any]] = {}
    for document in yaml.safe_load_all(rendered):
        if not document or document["kind"] == "Namespace":
            continue
        metadata = document["metadata"]
        labels = {
            key: value
            for key, value in (metadata.get("labels") or {}).items()
            if not key.startswith(_BOOKKEEPING_LABELS)
        }
        metadata.pop("labels", None)
        if labels:
            metadata["labels"] = labels
        key = (document["kind"], metadata.get("namespace", ""), metadata["name"])
        assert key not in found, f"rendered twice: {key}"
        found[key] = document
    return found


def differences(chart: dict[Key, Any], kustomize: dict[Key, Any]) -> list[str]:
    """What differs, object by object, as unified diffs of their YAML."""
    found = []
    for key in sorted(set(chart) | set(kustomize)):
        left = yaml.safe_dump(chart.get(key), sort_keys=True).splitlines()
        right = yaml.safe_dump(kustomize.get(key), sort_keys=True).splitlines()
        if left != right:
            diff = difflib.unified_diff(right, left, "manifests/", "chart", lineterm="")
            found.append(f"{'/'.join(key)}:\n" + "\n".join(diff))
    return found


@pytest.mark.parametrize("install", SAME_INSTALL)
def test_chart_renders_the_objects_of_manifests_with_the_same_settings(
    helm: Helm, kubectl: Path, install: str
) -> None:
    values, directory = SAME_INSTALL[install]

    found = differences(
        objects(render_chart(helm, values)), objects(render_kustomize(kubectl, directory))
    )

    assert not found, "\n\n".join(found)


@pytest.mark.parametrize(
    ("values", "base", "components"),
    [
        ({"registry": {"mlflow": {**MLFLOW_REGISTRY, "caConfigMap": "mlflow-ca"}}}, "",
         ["mlflow-registry", "mlflow-ca"]),
        ({"watchNamespaces": ["ml-promotions"], "registry": {"mlflow": MLFLOW_REGISTRY}},
         "namespaced", ["mlflow-registry"]),
    ],
    ids=["registry-with-a-ca", "namespaced-with-registry"],
)  # fmt: skip
def test_chart_renders_the_objects_of_manifests_with_its_mlflow_components(
    helm: Helm, kubectl: Path, tmp_path: Path,
    values: dict[str, Any], base: str, components: list[str],
) -> None:  # fmt: skip
    kustomization = composed(tmp_path / "install", base, components)

    found = differences(
        objects(render_chart(helm, values)), objects(render_kustomize(kubectl, kustomization))
    )

    assert not found, "\n\n".join(found)


def test_comparison_fails_on_a_deliberate_drift(helm: Helm, kubectl: Path, tmp_path: Path) -> None:
    drifted = tmp_path / "chart"
    shutil.copytree(CHART, drifted)
    rbac = drifted / "templates" / "rbac.yaml"
    # The chart's operator may now delete ModelPromotions; manifests/' may not.
    rbac.write_text(
        rbac.read_text().replace(
            "verbs: [get, list, watch, patch, create]",
            "verbs: [get, list, watch, patch, create, delete]",
        )
    )

    found = differences(
        objects(render_chart(helm, {}, drifted)), objects(render_kustomize(kubectl, ""))
    )

    assert len(found) == 1 and found[0].startswith("ClusterRole//promotion-operator:"), found
    assert "+  - delete" in found[0]


@pytest.mark.parametrize("install", SAME_INSTALL)
def test_helm_lint_is_clean(helm: Helm, install: str) -> None:
    values, _ = SAME_INSTALL[install]
    linted = helm.run(
        "lint", "--strict", str(CHART), "--values", str(_values_file(helm.home, values))
    )

    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout, linted.stdout


def test_prometheus_and_notification_values_set_their_variables_and_mounts(helm: Helm) -> None:
    values = {
        "prometheus": {"url": "http://prometheus.monitoring.svc:9090",
                       "bearerTokenSecret": "prometheus-token"},
        "notifications": {"secretName": "notify", "slackKey": "slack-url",
                          "cloudEventsKey": "ce-url"},
    }  # fmt: skip
    rendered = objects(render_chart(helm, values))
    settings = rendered[("ConfigMap", RELEASE_NAMESPACE, "promotion-operator-settings")]["data"]
    pod = rendered[("Deployment", RELEASE_NAMESPACE, "promotion-operator")]["spec"]["template"]
    mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    volumes = pod["spec"]["volumes"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in volumes if "secret" in v}

    assert settings["PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"
    assert settings["PROMETHEUS_BEARER_TOKEN_FILE"] == "/var/run/secrets/prometheus/token"
    assert settings["NOTIFY_SLACK_URL_FILE"] == "/var/run/secrets/notifications/slack-url"
    assert settings["NOTIFY_CLOUDEVENTS_URL_FILE"] == "/var/run/secrets/notifications/ce-url"
    assert mounts["prometheus-token"] == "/var/run/secrets/prometheus"
    assert mounts["notifications"] == "/var/run/secrets/notifications"
    assert secrets["prometheus-token"] == "prometheus-token"
    assert secrets["notifications"] == "notify"


def _settings_and_pod(helm: Helm, values: dict[str, Any]) -> tuple[dict[str, str], Any]:
    rendered = objects(render_chart(helm, values))
    settings = rendered[("ConfigMap", RELEASE_NAMESPACE, "promotion-operator-settings")]["data"]
    pod = rendered[("Deployment", RELEASE_NAMESPACE, "promotion-operator")]["spec"]["template"]
    return settings, pod


def test_registry_credentials_are_mounted_files_named_by_their_variables(helm: Helm) -> None:
    settings, pod = _settings_and_pod(helm, {"registry": {"mlflow": MLFLOW_REGISTRY}})
    container = pod["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "mlflow-credentials"]

    assert settings["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert settings["MLFLOW_USERNAME_FILE"] == "/var/run/secrets/mlflow/username"
    assert settings["MLFLOW_PASSWORD_FILE"] == "/var/run/secrets/mlflow/password"
    assert "MLFLOW_TOKEN_FILE" not in settings
    assert mounts["mlflow-credentials"] == "/var/run/secrets/mlflow"
    assert volume["secret"]["secretName"] == "mlflow-credentials"
    assert [item["key"] for item in volume["secret"]["items"]] == ["username", "password"]
    # Secrets only as files: nothing of the Secret reaches the environment.
    assert not any("secretKeyRef" in str(v) for v in container.get("env", []))


def test_a_registry_token_is_the_one_key_mounted(helm: Helm) -> None:
    values = {"registry": {"mlflow": {**MLFLOW_REGISTRY, "credentialsType": "token"}}}
    settings, pod = _settings_and_pod(helm, values)
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "mlflow-credentials"]

    assert settings["MLFLOW_TOKEN_FILE"] == "/var/run/secrets/mlflow/token"
    assert "MLFLOW_USERNAME_FILE" not in settings and "MLFLOW_PASSWORD_FILE" not in settings
    assert volume["secret"]["items"] == [{"key": "token", "path": "token"}]


def test_without_a_tracking_uri_nothing_of_mlflow_is_rendered(helm: Helm) -> None:
    settings, pod = _settings_and_pod(helm, {})

    assert not [key for key in settings if key.startswith("MLFLOW_")]
    assert not [v for v in pod["spec"]["volumes"] if v["name"].startswith("mlflow")]


def test_policies_and_people_roles_are_left_out_when_disabled(helm: Helm) -> None:
    disabled = {"approvalPolicies": {"enabled": False}, "peopleRoles": {"enabled": False}}
    everything = set(objects(render_chart(helm, {})))
    left = set(objects(render_chart(helm, disabled)))

    assert {key[0] for key in everything - left} == {
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ClusterRole",
    }  # fmt: skip
    assert {key[2] for key in everything - left if key[0] == "ClusterRole"} == {
        "modelpromotion-viewer", "modelpromotion-promoter", "modelpromotion-approver",
        "promotionpath-viewer", "promotionpath-editor", "promotionpath-releaser",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"leaderElection": {"enabled": False}},
         "replicas: more than one replica needs leaderElection.enabled=true"),
        ({"credentials": {"mode": "token"}},
         'credentials.mode: "token" is not one of secret, serviceAccountToken'),
        ({"notifications": {"slackKey": "url"}}, "notifications: set notifications.secretName"),
        ({"registry": {"mlflow": {"credentialsSecret": "mlflow-credentials"}}},
         "registry.mlflow: credentialsSecret or caConfigMap is set but trackingUri is not"),
        ({"registry": {"mlflow": {**MLFLOW_REGISTRY, "credentialsType": "oidc"}}},
         'registry.mlflow.credentialsType: "oidc" is not one of basic, token'),
    ],
    ids=["two-replicas-without-leader-election", "unknown-credentials-mode",
         "sink-without-secret", "registry-secret-without-uri", "unknown-registry-credentials"],
)  # fmt: skip
def test_bad_values_stop_the_render_saying_what_to_change(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    refused = helm.run(
        "template", "x", str(CHART), "--values", str(_values_file(helm.home, values)),
        check=False,
    )  # fmt: skip

    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr


# --- Install, upgrade and uninstall on the real apiserver


@pytest.fixture
def release(
    control_plane: ControlPlane, crds: None, tmp_path: Path, namespace: str
) -> Iterator[tuple[Helm, str]]:
    """A Helm client on the harness's apiserver, and a release namespace and name of
    this test's own (the session's manifests/ install owns the default names)."""
    name = f"spo-helm-{uuid.uuid4().hex[:6]}"
    helm = Helm(ensure_helm(), control_plane.kubeconfig, tmp_path / "helm-home")
    yield helm, name
    helm.run("uninstall", name, "--namespace", name, "--ignore-not-found", check=False)
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _install_values(name: str, watched: list[str]) -> dict[str, Any]:
    """A namespaced install under its own name. The admission policies and people's
    roles are cluster-wide and already installed by the session's manifests/ (a
    second owner of them would be refused); the rendering tests compare them."""
    return {
        "name": name,
        "watchNamespaces": watched,
        "approvalPolicies": {"enabled": False},
        "peopleRoles": {"enabled": False},
    }


def test_install_upgrade_and_uninstall_on_the_apiserver(
    control_plane: ControlPlane, release: tuple[Helm, str], namespace: str
) -> None:
    helm, name = release
    other = f"{name}-more"
    control_plane.kubectl("create", "namespace", other)
    try:
        values = _values_file(helm.home.parent, _install_values(name, [namespace]))
        helm.run("install", name, str(CHART), "--namespace", name, "--create-namespace",
                 *_CRD_ALREADY_APPLIED, "--values", str(values))  # fmt: skip
        assert (
            control_plane.kubectl("get", "rolebinding", name, "-n", other, check=False).returncode
            != 0
        )

        upgraded = _values_file(helm.home.parent, _install_values(name, [namespace, other]))
        helm.run("upgrade", name, str(CHART), "--namespace", name, "--values", str(upgraded),
                 "--set", "replicas=3")  # fmt: skip
        status = helm.run("status", name, "--namespace", name, "--output", "json").stdout
        deployment = control_plane.kubectl(
            "get", "deployment", name, "-n", name, "-o", "jsonpath={.spec.replicas}"
        ).stdout
        assert '"version":2' in status.replace(" ", "")
        assert deployment == "3"
        control_plane.kubectl("get", "rolebinding", name, "-n", other)

        helm.run("uninstall", name, "--namespace", name)
        for kind, where in [("clusterrole", ()), ("rolebinding", ("-n", other)),
                            ("deployment", ("-n", name))]:  # fmt: skip
            gone = control_plane.kubectl("get", kind, name, *where, check=False)
            assert gone.returncode != 0 and "NotFound" in gone.stderr, (kind, gone.stdout)
        # Helm never deletes what crds/ installed: the ModelPromotions would go with it.
        control_plane.kubectl("get", "crd", "modelpromotions.deploy.mlops.dev")
    finally:
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_promotion_succeeds_with_the_rbac_the_chart_installed(
    control_plane: ControlPlane,
    release: tuple[Helm, str],
    seldon: Simulator,
    operator_factory: StartOperator,
    promotions: Promotions,
    namespace: str,
    tmp_path: Path,
) -> None:
    helm, name = release
    values = _values_file(tmp_path, _install_values(name, [namespace]))
    helm.run("install", name, str(CHART), "--namespace", name, "--create-namespace",
             *_CRD_ALREADY_APPLIED, "--values", str(values))  # fmt: skip
    kubeconfig = control_plane.service_account_kubeconfig(name, name, tmp_path / "sa.kubeconfig")

    operator_factory(
        kubeconfig=kubeconfig,
        extra_args=("--leader-election", f"--leader-election-namespace={name}",
                    f"--leader-election-name={name}"),
    )  # fmt: skip
    promotions.apply("iris", PROMOTE_IRIS)

    assert promotions.wait_for_phase("iris", FINISHED_PHASES)["phase"] == "Succeeded"
    lease = control_plane.kubectl("get", "lease", name, "-n", name, "-o", "name").stdout
    assert lease.strip() == f"lease.coordination.k8s.io/{name}"
