"""Operating a run from the outside, as a person does: request annotations
(approve, abort, retry), and what the operator did about them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from tests.harness.promotions import Promotions
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator

APPROVE = "deploy.mlops.dev/approve"
ABORT = "deploy.mlops.dev/abort"
RETRY = "deploy.mlops.dev/retry"

#: The promotion these tests operate: staging/iris to production, 20 s to verify.
SPEC: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
    "verification": {"timeout": "20s"},
}

#: What every run of these tests ends in (Aborted too, unlike FINISHED_PHASES).
ENDED = frozenset({"Succeeded", "Failed", "RolledBack", "Aborted"})
#: Long enough for Kopf to have handled a change, had it been going to (it takes
#: well under a second here); used where the point is that nothing happens.
QUIET_SECONDS = 3.0


def token() -> str:
    """A new retry token, as ``kubectl promotion retry`` makes one."""
    return uuid.uuid4().hex[:12]


def annotate(promotions: Promotions, name: str, key: str, value: str) -> None:
    """Set (or overwrite) an annotation as the harness admin."""
    promotions.kube.kubectl(
        "annotate", "mp", name, "-n", promotions.namespace, "--overwrite", f"{key}={value}"
    )


def unannotate(promotions: Promotions, name: str, key: str) -> None:
    """Remove an annotation as the harness admin (no error if absent)."""
    promotions.kube.kubectl("annotate", "mp", name, "-n", promotions.namespace, f"{key}-")


def annotations_of(promotions: Promotions, name: str) -> dict[str, str]:
    return dict(promotions.get(name)["metadata"].get("annotations") or {})


def wait_until_removed(promotions: Promotions, name: str, key: str, timeout: float = 15.0) -> None:
    """Wait until the operator removed the annotation ``key`` (it does, once used)."""
    promotions.wait_for(
        name,
        lambda body: key not in (body["metadata"].get("annotations") or {}),
        f"{key} removed",
        timeout,
    )


def status_is(**expected: Any) -> Callable[[dict[str, Any]], bool]:
    """A predicate for :meth:`Promotions.wait_for`: status fields have these values."""

    def check(body: dict[str, Any]) -> bool:
        status = body.get("status") or {}
        return all(status.get(key) == value for key, value in expected.items())

    return check


def reasons(promotions: Promotions, name: str) -> list[str]:
    """The reasons of the Events on the promotion, oldest first."""
    return [str(event["reason"]) for event in promotions.events(name)]


def target_writes(seldon: Simulator) -> list[str]:
    """The methods of the successful writes in ``production`` (the target), in order."""
    return [method for method, _ in writes(seldon, "production")]


def quiet(
    promotions: Promotions, name: str, seconds: float = QUIET_SECONDS
) -> tuple[dict[str, Any], list[str]]:
    """Let the operator act if it were going to; then the status and Event reasons."""
    time.sleep(seconds)
    return promotions.status(name), reasons(promotions, name)
