"""The Argo CD health check for ModelPromotion (``manifests/argocd/health.lua``).

The script runs the way Argo CD runs it: in a Lua 5.1 VM (Argo CD embeds gopher-lua,
a Lua 5.1) without the standard libraries other than base and table, with the live
object as the global ``obj`` in Lua tables (objects keyed by field name, arrays
1-based, nulls absent). The cases are in ``argocd_cases/health_test.yaml``, shaped
like the ``health_test.yaml`` files of Argo CD's ``resource_customizations``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51  # type: ignore[import-untyped]
import pytest
import yaml

from promotion_operator.core.conditions import AWAITING_APPROVAL, AWAITING_RESUME, WORKING_REASONS
from promotion_operator.core.promotion import ANNOTATION_PREFIX
from promotion_operator.core.requests import APPROVE_ANNOTATION
from promotion_operator.core.run import Phase

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "manifests" / "argocd" / "health.lua"
PATCH = ROOT / "manifests" / "argocd" / "argocd-cm-patch.yaml"
CRD = ROOT / "crds" / "modelpromotions.deploy.mlops.dev.yaml"
CASES_DIR = Path(__file__).with_name("argocd_cases")
CASES_FILE = CASES_DIR / "health_test.yaml"
HEALTH_KEY = "resource.customizations.health.deploy.mlops.dev_ModelPromotion"
# What a person sets to end a canary's pause without a duration (the CRD says so too).
RESUME_ANNOTATION = f"{ANNOTATION_PREFIX}/resume"
# The statuses Argo CD accepts from a health script; anything else becomes Unknown.
HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
# Libraries Argo CD does not open for a script from argocd-cm (useOpenLibs false). It
# does offer a reduced `os`; the script needs none of it, so it is removed too.
NOT_IN_ARGOCD = ("string", "math", "io", "os", "debug", "coroutine", "python")


def _load_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text())["tests"]
    return cases


CASES = _load_cases()


def _to_lua(runtime: Any, value: Any) -> Any:
    """``value`` as Argo CD hands it to Lua (its ``decodeValue``)."""
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = _to_lua(runtime, item)
        return table
    if isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"not a JSON value: {value!r} (quote timestamps in the samples)")


def run_health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD would show them for ``obj``."""
    runtime = lupa.lua51.LuaRuntime(register_eval=False, register_builtins=False)
    runtime.execute('getmetatable("").__index = nil')  # no ("x"):method() without `string`
    lua_globals = runtime.globals()
    for name in NOT_IN_ARGOCD:
        lua_globals[name] = None
    lua_globals.obj = _to_lua(runtime, obj)
    hs = runtime.execute(SCRIPT.read_text())
    assert lupa.lua51.lua_type(hs) == "table", f"the script returned {hs!r}, not a table"
    status, message = hs["status"], hs["message"]
    if status not in HEALTH_STATUSES:
        return "Unknown", "Lua returned an invalid health status"
    return status, message or ""


def _sample(case: dict[str, Any]) -> dict[str, Any]:
    sample: dict[str, Any] = yaml.safe_load((CASES_DIR / case["inputPath"]).read_text())
    return sample


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_health(case: dict[str, Any]) -> None:
    expected = case["expected"]
    assert run_health(_sample(case)) == (expected["status"], expected["message"])


def test_every_phase_the_operator_writes_has_a_case() -> None:
    phases = {(_sample(case).get("status") or {}).get("phase") for case in CASES}
    assert {str(phase) for phase in Phase} <= phases


def test_every_phase_the_crd_allows_has_a_case() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    allowed = set(schema["properties"]["status"]["properties"]["phase"]["enum"])
    phases = {(_sample(case).get("status") or {}).get("phase") for case in CASES}
    assert allowed <= phases


def _cases_in(phase: Phase) -> list[dict[str, Any]]:
    return [case for case in CASES if (_sample(case).get("status") or {}).get("phase") == phase]


def _ready_reason(case: dict[str, Any]) -> str | None:
    conditions = (_sample(case).get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)


def test_a_pause_is_suspended_exactly_when_it_waits_for_a_person() -> None:
    paused = _cases_in(Phase.PAUSED)
    reasons = {_ready_reason(case) for case in paused}
    # The operator's Ready reasons for a timed and a manual pause, and no Ready at all.
    assert {WORKING_REASONS[Phase.PAUSED], AWAITING_RESUME, None} <= reasons
    for case in paused:
        status, message = run_health(_sample(case))
        waits = _ready_reason(case) == AWAITING_RESUME or (
            _ready_reason(case) is None and "pauseUntil" not in _sample(case)["status"]["canary"]
        )
        assert status == ("Suspended" if waits else "Progressing"), case["name"]
        if waits:  # says how to resume, with the operator's annotation
            assert f"annotate mp iris-to-production {RESUME_ANNOTATION}=true" in message, message


def test_a_bake_is_progressing_with_the_operators_reason() -> None:
    baking = _cases_in(Phase.BAKING)
    assert {WORKING_REASONS[Phase.BAKING], None} <= {_ready_reason(case) for case in baking}
    for case in baking:
        status, message = run_health(_sample(case))
        assert status == "Progressing", case["name"]
        assert message.startswith("Baking: ") or message == "The promotion run is Baking"


def test_waiting_for_approval_is_suspended_and_says_how_to_approve() -> None:
    waiting = _cases_in(Phase.AWAITING_APPROVAL)
    assert {AWAITING_APPROVAL, None} <= {_ready_reason(case) for case in waiting}
    for case in waiting:
        status, message = run_health(_sample(case))
        assert status == "Suspended", case["name"]
        # The plugin's command, and (from the operator or the script) the annotation.
        assert "promotion approve iris-to-production" in message, message
        assert APPROVE_ANNOTATION in message, message


def test_an_aborted_run_is_degraded_with_the_reason_it_ended() -> None:
    aborted = _cases_in(Phase.ABORTED)
    assert {"Aborted", None} <= {_ready_reason(case) for case in aborted}
    for case in aborted:
        status, message = run_health(_sample(case))
        assert status == "Degraded", case["name"]
        assert message == _sample(case)["status"]["outcome"]["message"]


def test_every_sample_object_is_a_case() -> None:
    samples = {path.name for path in CASES_DIR.glob("*.yaml")} - {CASES_FILE.name}
    assert samples == {case["inputPath"] for case in CASES}


def _patch() -> dict[str, Any]:
    patch: dict[str, Any] = yaml.safe_load(PATCH.read_text())
    return patch


def test_argocd_cm_patch_embeds_health_lua_verbatim() -> None:
    assert _patch()["data"][HEALTH_KEY] == SCRIPT.read_text(), (
        f"{PATCH.name} is out of date: indent health.lua by four spaces under {HEALTH_KEY}"
    )


def test_argocd_cm_patch_is_the_argocd_configmap() -> None:
    patch = _patch()
    assert (patch["apiVersion"], patch["kind"]) == ("v1", "ConfigMap")
    assert (patch["metadata"]["name"], patch["metadata"]["namespace"]) == ("argocd-cm", "argocd")
    # A ConfigMap's data is a map of strings (`true` or `5` would be refused).
    assert all(isinstance(value, str) for value in patch["data"].values())
