"""The Helm chart's files that must match the project's, checked without Helm
(tests/e2e/test_helm_chart.py renders and installs the chart with real Helm)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from promotion_operator.config import settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "seldon-promotion-operator"
CRDS = (
    "modelpromotions.deploy.mlops.dev.yaml",
    "promotionpolicies.deploy.mlops.dev.yaml",
    "promotionpaths.deploy.mlops.dev.yaml",
)


def test_chart_version_and_app_version_are_the_projects() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    assert (chart["version"], chart["appVersion"]) == (version, version)


def test_chart_crds_are_the_crds_of_crds_byte_for_byte() -> None:
    """Helm installs only the chart's crds/; it is a copy of crds/."""
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == sorted(CRDS)
    for crd in CRDS:
        assert (CHART / "crds" / crd).read_bytes() == (ROOT / "crds" / crd).read_bytes(), crd


def test_the_mlflow_variables_of_the_chart_and_the_components_are_the_operators() -> None:
    """A misspelt variable would be ignored by the operator, not refused."""
    known = {value for name, value in vars(settings).items() if name.startswith("ENV_MLFLOW_")}
    sources = [
        CHART / "templates" / "configmap.yaml",
        ROOT / "manifests" / "components" / "mlflow-registry" / "settings-patch.yaml",
        ROOT / "manifests" / "components" / "mlflow-ca" / "kustomization.yaml",
    ]
    found = {
        variable
        for source in sources
        for variable in re.findall(r"\b(MLFLOW_[A-Z_]+):", source.read_text())
    }

    assert found == known
