"""The Lua VM of the unit tests and real Argo CD agree on every sample object.

``tests/unit/test_argocd_health.py`` runs ``manifests/argocd/health.lua`` in a
Lua 5.1 VM that imitates Argo CD's restrictions (fast, no Argo CD needed). Here
every sample of ``tests/unit/argocd_cases/`` is judged by Argo CD itself, the
built v3.6.1 binary's ``argocd admin settings resource-overrides health`` with the
shipped ``argocd-cm-patch.yaml``: the health function the application controller
calls, with the script loaded from the ConfigMap as the controller loads it. Both
must give the case's expected status and message.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.harness.argocd import health_script_from_patch, judge_health
from tests.harness.argocd_build import ArgoCDBinary, ensure_argocd
from tests.unit.test_argocd_health import CASES, CASES_DIR, SCRIPT, run_health

pytestmark = [pytest.mark.e2e, pytest.mark.late_build("argocd")]


@pytest.fixture(scope="session")
def argocd_binary() -> ArgoCDBinary:
    """The built Argo CD (no servers: the CLI judges files)."""
    return ensure_argocd()


def test_the_patch_argo_cd_reads_carries_health_lua() -> None:
    # So Argo CD below judges with the very script the Lua VM runs.
    assert health_script_from_patch() == SCRIPT.read_text()


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_argo_cd_and_the_lua_vm_agree(argocd_binary: ArgoCDBinary, case: dict[str, Any]) -> None:
    sample = CASES_DIR / case["inputPath"]
    expected = (case["expected"]["status"], case["expected"]["message"])
    by_argocd = judge_health(argocd_binary, sample)
    by_lua_vm = run_health(yaml.safe_load(sample.read_text()))

    assert by_argocd == by_lua_vm
    assert by_argocd == expected
