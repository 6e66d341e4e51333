"""``make demo``: one promotion on the local stack, from a person's point of view.

Brings the stack up, installs the CRD, gives the simulator a ``staging`` and a
GitOps ``production`` namespace and a source deployment, starts the operator as
its own process with a credentials directory like a mounted Secret, applies
``examples/``, prints each phase change as it happens and ends with a table.
Exit code 0 when every example ended Ready.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.harness.keycloak import DATA_SCIENTIST
from tests.harness.operator_process import install_crds, password_credentials, start_operator
from tests.harness.stack import Stack, start_stack
from tests.simulator.testing import deployment_body

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMESPACE = "default"
_TIMEOUT = 300.0


def _promotions(stack: Stack) -> list[dict[str, Any]]:
    listing = stack.control_plane.kubectl("get", "mp", "-n", NAMESPACE, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(listing)["items"]
    return items


def _ready(item: dict[str, Any]) -> dict[str, Any]:
    conditions = (item.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _settled(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    return status.get("observedGeneration") == item["metadata"]["generation"] and status.get(
        "phase"
    ) in ("Succeeded", "Failed", "RolledBack", "Suspended")


def _prepare_seldon(stack: Stack) -> None:
    control = stack.simulator.control
    writers = {"data-scientists": ["read", "write"]}
    control.add_namespace("staging", groups=writers)
    control.add_namespace("production", gitops=True, groups=writers)
    control.set_delays(rollout_seconds=2.0, gitops_sync_seconds=3.0)
    control.seed_deployment("staging", deployment_body("iris", image="seldonio/sklearn-iris:1.4"))
    print("Seldon Deploy: staging/iris is Available; production is a GitOps namespace")


def run_demo() -> int:
    """Run the demo; 0 when every example promotion ended Ready."""
    stack = start_stack()
    operator = None
    try:
        install_crds(stack.control_plane)
        _prepare_seldon(stack)
        operator = start_operator(
            stack.control_plane, stack.simulator, password_credentials(stack.keycloak)
        )
        print(f"operator running as its own process, signed in as {DATA_SCIENTIST.username}")
        applied = stack.control_plane.kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLES))
        print(applied.stdout.strip())

        started, seen = time.monotonic(), dict[str, tuple[str, str]]()
        while time.monotonic() - started < _TIMEOUT:
            items = _promotions(stack)
            for item in items:
                name, ready = item["metadata"]["name"], _ready(item)
                now = ((item.get("status") or {}).get("phase", ""), ready.get("reason", ""))
                if now != seen.get(name) and now[0]:
                    seen[name] = now
                    print(
                        f"  +{time.monotonic() - started:5.1f}s {name}: {now[0]:<11} "
                        f"{now[1]}: {ready.get('message', '')}"
                    )
            if items and all(_settled(i) for i in items):
                break
            time.sleep(0.3)

        print()
        print(stack.control_plane.kubectl("get", "mp", "-n", NAMESPACE).stdout)
        commits = stack.simulator.control.commits("production")
        for commit in commits:
            print(
                f"GitOps commit in production: {commit['action']} by {commit['author']}: "
                f"{commit['message']}"
            )
        items = _promotions(stack)
        ok = bool(items) and all(_ready(i).get("status") == "True" for i in items)
        print("demo succeeded" if ok else "demo FAILED: not every promotion is Ready")
        return 0 if ok else 1
    finally:
        if operator is not None:
            operator.stop()
        stack.stop()
