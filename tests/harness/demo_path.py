"""``make demo``'s last round: ``examples/paths/iris-path.yaml``, made short.

The example's path as it is, but for what would make the demo long or need more
than the demo's stack: the soaks are seconds (staging 5 s, production 3 s, not 10
minutes and an hour), the path polls every second, staging does not bake, and
production is a Replace on the demo's one Seldon Deploy instance (the canary and bake
rounds have shown those). A new
version of ``build/iris`` moves through ``dev``, ``staging`` and ``production``;
production is manual, so once it waits the demo promotes it with ``kubectl
promotion path promote``, as a release manager would. Each change of the stages is
printed, side by side, as ``kubectl promotion path watch`` prints it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from promotion_operator.kubectl_plugin.paths import stages_line
from tests.harness.stack import Stack
from tests.simulator.testing import deployment_body

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "paths" / "iris-path.yaml"
#: The version at the source that the path moves through its stages.
IMAGE = "seldonio/sklearn-iris:2.0"
#: The demo's soaks (the example's are 10m and 1h).
SOAKS = {"staging": "5s", "production": "3s"}
_TIMEOUT = 180.0


def short_path(example: dict[str, Any]) -> dict[str, Any]:
    """The example path with the demo's soaks, a 1 s poll, no bake, and production a
    Replace on the default instance."""
    path = copy.deepcopy(example)
    spec = path["spec"]
    spec["pollInterval"] = "1s"
    for stage in spec["stages"]:
        if stage["name"] in SOAKS:
            stage["soak"] = SOAKS[stage["name"]]
        stage["target"].pop("instance", None)
        template = stage.setdefault("template", {})
        for measured in ("strategy", "canary", "analysis", "bake"):
            template.pop(measured, None)
        template["verification"] = {"timeout": "2m"}
    return path


def _read(stack: Stack, namespace: str, name: str) -> dict[str, Any]:
    out = stack.control_plane.kubectl(
        "get", "promotionpath", name, "-n", namespace, "-o", "json"
    ).stdout
    body: dict[str, Any] = json.loads(out)
    return body


def _plugin(stack: Stack, namespace: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-P", "-m", "promotion_operator.kubectl_plugin", *args,
         "-n", namespace, "--kubeconfig", str(stack.control_plane.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return (done.stdout + done.stderr).strip()


def run_path_round(stack: Stack, namespace: str, started: float) -> bool:
    """Move a new version of build/iris through the example's stages; True once the
    last stage carries it."""
    control = stack.simulator.control
    writers = {"data-scientists": ["read", "write"]}
    for where in ("build", "dev"):
        control.add_namespace(where, groups=writers)
    control.seed_deployment("build", deployment_body("iris", image=IMAGE))
    print(f"Seldon Deploy: build/iris runs {IMAGE} (the path's source); dev is empty")
    path = short_path(yaml.safe_load(EXAMPLE.read_text()))
    name = str(path["metadata"]["name"])
    applied = stack.control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input_text=json.dumps(path)
    )
    print(f"{applied.stdout.strip()} (soaks {', '.join(f'{k} {v}' for k, v in SOAKS.items())})")
    deadline = time.monotonic() + _TIMEOUT
    shown = ""
    promoted = False
    while time.monotonic() < deadline:
        status = _read(stack, namespace, name).get("status") or {}
        line = stages_line(status)
        if line != shown:
            shown = line
            print(f"  +{time.monotonic() - started:5.1f}s {name}: {line}")
        stages = status.get("stages") or []
        freight = ((status.get("freight") or [{}])[0]).get("id")
        last = stages[-1] if stages else {}
        if freight and last.get("phase") == "Succeeded" and last.get("promoted") == freight:
            print()
            print(_plugin(stack, namespace, "path", "get", name))
            return True
        if not promoted and last.get("phase") == "WaitingForPromotion":
            print(f"$ kubectl promotion path promote {name} {last.get('name')}")
            print(_plugin(stack, namespace, "path", "promote", name, str(last.get("name"))))
            promoted = True
        time.sleep(0.3)
    print(f"timed out after {_TIMEOUT:.0f}s waiting for path {name}")
    return False
