"""ModelPromotion helpers for end-to-end tests: apply, read, wait, events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from tests.harness.controlplane import ControlPlane

API_VERSION = "deploy.mlops.dev/v1alpha1"
FINISHED_PHASES = frozenset({"Succeeded", "Failed", "RolledBack"})


def ready_reason_is(reason: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for :meth:`Promotions.wait_for`: the Ready condition has ``reason``."""

    def check(body: dict[str, Any]) -> bool:
        conditions = (body.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["reason"] == reason for c in conditions)

    return check


def poll_until(
    read: Callable[[], dict[str, Any]],
    predicate: Callable[[dict[str, Any]], bool],
    described: str,
    what: str,
    timeout: float,
    *,
    interval: float = 0.3,
    status_chars: int = 3000,
) -> dict[str, Any]:
    """Read an object until ``predicate`` holds for it; fail with its last status."""
    deadline = time.monotonic() + timeout
    body = read()
    while not predicate(body):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{described} did not reach {what} in {timeout:.0f}s; "
                f"status: {json.dumps(body.get('status'), indent=1)[:status_chars]}"
            )
        time.sleep(interval)
        body = read()
    return body


def manifest(name: str, spec: Mapping[str, Any]) -> str:
    """A ModelPromotion manifest (JSON is YAML) for ``kubectl apply -f -``."""
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "ModelPromotion",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def apply_json(control_plane: ControlPlane, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Apply a ModelPromotion in ``default``; the object as the API server stored it."""
    applied = control_plane.kubectl(
        "apply", "-n", "default", "-f", "-", "-o", "json",
        input_text=manifest(name, spec), check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr[:2000]
    body: dict[str, Any] = json.loads(applied.stdout)
    return body


def refusal(control_plane: ControlPlane, spec: Mapping[str, Any]) -> str:
    """What the API server says when it refuses a ModelPromotion with ``spec`` at admission."""
    refused = control_plane.kubectl(
        "apply", "-n", "default", "-f", "-", input_text=manifest("bad", spec), check=False
    )
    assert refused.returncode != 0, "accepted"
    return refused.stderr


def explain(control_plane: ControlPlane, field: str) -> str:
    """``kubectl explain field``, once discovery has the CRD (a moment after it is established)."""
    for _ in range(50):
        explained = control_plane.kubectl("explain", field, check=False)
        if explained.returncode == 0:
            return explained.stdout
        time.sleep(0.2)
    raise AssertionError(explained.stderr)


class Promotions:
    """ModelPromotions of one namespace, through the pinned kubectl."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        self.kube = control_plane
        self.namespace = namespace

    def apply(self, name: str, spec: Mapping[str, Any]) -> None:
        """``kubectl apply`` a ModelPromotion."""
        self.kube.kubectl("apply", "-n", self.namespace, "-f", "-", input_text=manifest(name, spec))

    def patch_spec(self, name: str, spec: Mapping[str, Any]) -> None:
        """Merge-patch the spec."""
        self.kube.kubectl(
            "patch", "mp", name, "-n", self.namespace, "--type=merge",
            "-p", json.dumps({"spec": spec}),
        )  # fmt: skip

    def get(self, name: str) -> dict[str, Any]:
        """The resource as the API serves it."""
        out = self.kube.kubectl("get", "mp", name, "-n", self.namespace, "-o", "json").stdout
        body: dict[str, Any] = json.loads(out)
        return body

    def status(self, name: str) -> dict[str, Any]:
        """Its status (empty before the operator wrote one)."""
        return dict(self.get(name).get("status") or {})

    def ready(self, name: str) -> dict[str, Any]:
        """Its Ready condition (empty if absent)."""
        conditions = self.status(name).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def wait_for(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 90.0,
    ) -> dict[str, Any]:
        """Poll until ``predicate(resource)`` holds; fail with the last status otherwise."""
        return poll_until(
            lambda: self.get(name), predicate, f"{self.namespace}/{name}", what, timeout
        )

    def wait_for_phase(
        self, name: str, phases: Collection[str], timeout: float = 90.0
    ) -> dict[str, Any]:
        """Wait until the run of the current generation is in one of ``phases``."""

        def current(body: dict[str, Any]) -> bool:
            status = body.get("status") or {}
            return (
                status.get("observedGeneration") == body["metadata"]["generation"]
                and status.get("phase") in phases
            )

        return dict(self.wait_for(name, current, f"phase {'/'.join(phases)}", timeout)["status"])

    def events(self, name: str) -> list[dict[str, Any]]:
        """Events on the resource, oldest first."""
        out = self.kube.kubectl(
            "get", "events", "-n", self.namespace,
            "--field-selector", f"involvedObject.name={name},involvedObject.kind=ModelPromotion",
            "-o", "json",
        ).stdout  # fmt: skip
        items: list[dict[str, Any]] = json.loads(out)["items"]
        # eventTime has microseconds; the other timestamps only seconds.
        return sorted(items, key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")
