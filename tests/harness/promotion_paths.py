"""PromotionPath helpers for end-to-end tests: apply, read, wait, the runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import poll_until


def stage(name: str, **extra: Any) -> dict[str, Any]:
    """A stage whose target is the namespace of its name."""
    return {"name": name, "target": {"namespace": name}, **extra}


def path_manifest(
    name: str, *stages: dict[str, Any], source: Mapping[str, str] | None = None
) -> str:
    """A PromotionPath manifest (JSON is YAML), polling every second."""
    return json.dumps(
        {
            "apiVersion": "deploy.mlops.dev/v1alpha1",
            "kind": "PromotionPath",
            "metadata": {"name": name},
            "spec": {
                "source": dict(source or {"namespace": "build", "name": "iris"}),
                "pollInterval": "1s",
                "stages": list(stages),
            },
        }
    )


class Paths:
    """PromotionPaths of one namespace, through the pinned kubectl."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        self.kube = control_plane
        self.namespace = namespace

    def apply(
        self, name: str, *stages: dict[str, Any], source: Mapping[str, str] | None = None
    ) -> None:
        manifest = path_manifest(name, *stages, source=source)
        self.kube.kubectl("apply", "-n", self.namespace, "-f", "-", input_text=manifest)

    def get(self, name: str) -> dict[str, Any]:
        out = self.kube.kubectl("get", "promotionpath", name, "-n", self.namespace, "-o", "json")
        body: dict[str, Any] = json.loads(out.stdout)
        return body

    def stage(self, name: str, stage_name: str) -> dict[str, Any]:
        stages = (self.get(name).get("status") or {}).get("stages") or []
        return next((s for s in stages if s["name"] == stage_name), {})

    def wait_for(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        return poll_until(
            lambda: self.get(name), predicate, f"path {name}", what, timeout,
            interval=0.5, status_chars=4000,
        )  # fmt: skip

    def runs(self, name: str) -> list[dict[str, Any]]:
        out = self.kube.kubectl(
            "get", "mp", "-n", self.namespace, "-l", f"deploy.mlops.dev/path={name}", "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items


def stage_is(stage_name: str, **fields: str) -> Callable[[dict[str, Any]], bool]:
    def check(body: dict[str, Any]) -> bool:
        stages = (body.get("status") or {}).get("stages") or []
        found: dict[str, Any] = next((s for s in stages if s["name"] == stage_name), {})
        return all(found.get(key) == value for key, value in fields.items())

    return check


def newest_freight(body: Mapping[str, Any]) -> str:
    freight = (body.get("status") or {}).get("freight") or [{}]
    return str(freight[0].get("id") or "")


def history(body: Mapping[str, Any], stage_name: str, freight: str) -> dict[str, Any]:
    entries = (body.get("status") or {}).get("history") or []
    return next((e for e in entries if e["stage"] == stage_name and e["freight"] == freight), {})
