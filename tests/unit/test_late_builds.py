"""The e2e files that need a late build run last, in the order the builds are made."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness.late_builds import ORDER, build_all


def _collected_files(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        check=True,
        timeout=120,
    )
    files = [line.split("::")[0] for line in result.stdout.splitlines() if "::" in line]
    return list(dict.fromkeys(files))


def test_the_files_needing_a_late_build_come_last_in_build_order() -> None:
    files = _collected_files("tests/e2e")
    late = {
        "tests/e2e/test_alert_rules.py": "promtool",
        "tests/e2e/test_container.py": "container-base",
        "tests/e2e/test_registry.py": "mlflow",
        "tests/e2e/test_helm_chart.py": "helm",
        "tests/e2e/test_argocd.py": "argocd",
        "tests/e2e/test_argocd_health_agreement.py": "argocd",
    }
    tail = files[-len(late) :]
    assert set(tail) == set(late)
    assert [ORDER[late[name]] for name in tail] == sorted(ORDER[late[name]] for name in tail)


def test_an_unknown_late_build_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no late build named grafana"):
        build_all(["grafana"])
