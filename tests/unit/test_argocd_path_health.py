"""The Argo CD health check for PromotionPath (``manifests/argocd/path-health.lua``),
run as Argo CD runs it (see test_argocd_health.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51  # type: ignore[import-untyped]
import pytest
import yaml

from promotion_operator.core.paths import StagePhase
from tests.unit.test_argocd_health import NOT_IN_ARGOCD, PATCH, _to_lua

SCRIPT = Path(PATCH).with_name("path-health.lua")
HEALTH_KEY = "resource.customizations.health.deploy.mlops.dev_PromotionPath"


def health(status: dict[str, Any] | None, generation: int = 1) -> tuple[str, str]:
    runtime = lupa.lua51.LuaRuntime(register_eval=False, register_builtins=False)
    runtime.execute('getmetatable("").__index = nil')
    lua_globals = runtime.globals()
    for name in NOT_IN_ARGOCD:
        lua_globals[name] = None
    body: dict[str, Any] = {"metadata": {"generation": generation}}
    if status is not None:
        body["status"] = status
    lua_globals.obj = _to_lua(runtime, body)
    hs = runtime.execute(SCRIPT.read_text())
    return str(hs["status"]), str(hs["message"])


def stages(*phases: str) -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "stages": [
            {"name": f"s{i}", "phase": phase, "message": f"m{i}"} for i, phase in enumerate(phases)
        ],
    }


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        (("Succeeded", "Succeeded", "Idle"), "Healthy"),
        (("Succeeded", "Running", "Idle"), "Progressing"),
        (("Succeeded", "Soaking", "Idle"), "Progressing"),
        (("Succeeded", "Succeeded", "WaitingForPromotion"), "Suspended"),
        (("Succeeded", "Held", "Idle"), "Suspended"),
        (("Succeeded", "Held", "Failed"), "Degraded"),
        (("Succeeded", "Failed", "Succeeded"), "Degraded"),
        (("Succeeded", "Running", "Blocked"), "Degraded"),
    ],
)
def test_the_path_health_follows_its_worst_stage(phases: tuple[str, ...], expected: str) -> None:
    assert health(stages(*phases))[0] == expected


def test_the_message_names_the_stage_and_says_why() -> None:
    assert health(stages("Succeeded", "Failed")) == ("Degraded", "stage s1 Failed: m1")


def test_a_path_the_operator_has_not_read_is_progressing() -> None:
    assert health(None)[0] == "Progressing"
    assert health({"observedGeneration": 1}, generation=2)[0] == "Progressing"


def test_the_script_knows_every_stage_phase() -> None:
    text = SCRIPT.read_text()
    assert all(str(p) in text for p in StagePhase)


def test_the_configmap_patch_carries_the_script_verbatim() -> None:
    patch = yaml.safe_load(PATCH.read_text())
    assert patch["data"][HEALTH_KEY] == SCRIPT.read_text()
