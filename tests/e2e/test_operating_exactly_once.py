"""Approve, abort and resume are acted on exactly once when the operator is killed
between the writes that record a request.

A pass that uses a request writes three times: the status (what the request led
to, and the request in ``status.consumedRequests``), the metadata (the annotation
removed), the status again (the record cleared). Nothing in the operator helps
the test: a ValidatingAdmissionPolicy of the real API server refuses the second
write (or the third) for this test's namespace, the operator is SIGKILLed once it
has made the first and been refused the next, the policy is deleted, and a new
operator takes over. It must act on nothing twice and lose nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.operating import (
    ABORT,
    APPROVE,
    ENDED,
    SPEC,
    annotate,
    annotations_of,
    quiet,
    target_writes,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

RESUME = "deploy.mlops.dev/resume"
#: An annotation only the test sets, in a server-side dry run: refused once the policy is.
PROBE = "e2e.mlops.dev/probe"
REQUESTS = (APPROVE, ABORT, RESUME)

#: The policy's refusal of each crash point's write, as CEL over the admission request.
REFUSED = {
    # The metadata patch that removes a request annotation (the main resource).
    "removal": (
        "request.subResource != '' || !has(oldObject.metadata.annotations) || "
        f"{json.dumps(list(REQUESTS))}.all(key, !(key in oldObject.metadata.annotations) "
        "|| (has(object.metadata.annotations) && key in object.metadata.annotations))"
    ),
    # The status write that clears the record of the used requests.
    "clear": (
        "request.subResource != 'status' || !has(oldObject.status) || "
        "!has(oldObject.status.consumedRequests) || "
        "(has(object.status) && has(object.status.consumedRequests))"
    ),
}
#: What the operator logs when the write after the status write is refused.
REFUSAL_LOGGED = "could not remove the used requests of iris"


class Refusal:
    """A ValidatingAdmissionPolicy (and its binding) refusing one of the operator's
    writes in one namespace, with a probe to tell when it is (no longer) enforced."""

    def __init__(self, control_plane: ControlPlane, namespace: str, point: str) -> None:
        self.control_plane = control_plane
        self.namespace = namespace
        self.name = f"e2e-refuse-{point}-{namespace}"
        self.point = point

    def install(self) -> None:
        policy = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": self.name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["deploy.mlops.dev"],
                            "apiVersions": ["*"],
                            "operations": ["UPDATE"],
                            "resources": ["modelpromotions", "modelpromotions/status"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": f"!has(object.metadata.annotations) || "
                        f"!('{PROBE}' in object.metadata.annotations)",
                        "message": "probe",
                    },
                    {"expression": REFUSED[self.point], "message": f"refused: {self.point}"},
                ],
            },
        }
        binding = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": self.name},
            "spec": {
                "policyName": self.name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": self.namespace}
                    }
                },
            },
        }
        for manifest in (policy, binding):
            self.control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
        self._wait_until(enforced=True)

    def delete(self) -> None:
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            self.control_plane.kubectl("delete", kind, self.name, "--ignore-not-found")
        self._wait_until(enforced=False)

    def _wait_until(self, *, enforced: bool) -> None:
        """A policy takes a moment to be enforced, or to stop being: try the probe (a
        dry run, which writes nothing) until it is refused, or until it is not."""
        deadline = time.monotonic() + 30
        while True:
            tried = self.control_plane.kubectl(
                "annotate", "mp", "iris", "-n", self.namespace, f"{PROBE}=x",
                "--dry-run=server", check=False,
            )  # fmt: skip
            refused = tried.returncode != 0 and self.name in tried.stderr
            if refused == enforced:
                return
            assert time.monotonic() < deadline, f"{self.name} enforced: {not enforced}"
            time.sleep(0.3)


@pytest.fixture
def refusals(control_plane: ControlPlane, namespace: str) -> Iterator[Callable[[str], Refusal]]:
    made: list[Refusal] = []

    def make(point: str) -> Refusal:
        made.append(Refusal(control_plane, namespace, point))
        return made[-1]

    yield make
    for refusal in made:
        refusal.delete()


def refused_then_killed(
    operator: OperatorProcess,
    promotions: Promotions,
    point: str,
    recorded: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """Wait until the status write that used the request landed (``recorded``) and the
    next write was refused, then SIGKILL the operator; the object as it left it."""
    annotation_kept = point == "removal"

    def stopped_there(body: dict[str, Any]) -> bool:
        status = body.get("status") or {}
        kept = any(key in (body["metadata"].get("annotations") or {}) for key in REQUESTS)
        return bool(status.get("consumedRequests")) and kept == annotation_kept and recorded(body)

    promotions.wait_for("iris", stopped_there, f"recorded, then refused the {point}", 30)
    deadline = time.monotonic() + 15
    while REFUSAL_LOGGED not in operator.log():
        assert time.monotonic() < deadline, "the refused write was not logged"
        time.sleep(0.2)
    operator.kill()
    return promotions.get("iris")


def restarted(operator: OperatorProcess, refusal: Refusal) -> None:
    """The policy gone, a new operator."""
    refusal.delete()
    operator.restart()


def finished_with(promotions: Promotions) -> None:
    """Wait until the new operator removed the request annotation and the record."""
    promotions.wait_for(
        "iris",
        lambda body: (
            not (body.get("status") or {}).get("consumedRequests")
            and not any(key in (body["metadata"].get("annotations") or {}) for key in REQUESTS)
        ),
        "the request annotation and its record removed",
        30,
    )


def messages(promotions: Promotions, reason: str) -> list[str]:
    return [str(e["message"]) for e in promotions.events("iris") if e["reason"] == reason]


POINTS = [
    pytest.param("removal", id="killed-before-the-removal"),
    pytest.param("clear", id="killed-before-the-clear"),
]


@pytest.mark.parametrize("point", POINTS)
def test_an_approval_moves_its_gate_exactly_once(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    refusals: Callable[[str], Refusal],
    point: str,
) -> None:
    promotions.apply("iris", {**SPEC, "approval": {"required": True}})
    promotions.wait_for_phase("iris", {"AwaitingApproval"}, timeout=20)
    refusal = refusals(point)
    refusal.install()
    # The shipped approval policy lets a user approve only as themselves.
    me = promotions.kube.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    approver = me.stdout.strip()

    annotate(promotions, "iris", APPROVE, approver)
    left = refused_then_killed(
        operator,
        promotions,
        point,
        lambda body: (
            (body.get("status") or {}).get("approval") is not None
            and any(f"approved by {approver}" in m for m in messages(promotions, "Promoting"))
        ),
    )
    approval = left["status"]["approval"]
    restarted(operator, refusal)

    finished_with(promotions)
    status = promotions.wait_for_phase("iris", ENDED, timeout=30)
    assert status["phase"] == "Succeeded"
    assert status["approval"] == approval  # recorded once, by the pass that acted on it
    approvals = [m for m in messages(promotions, "Promoting") if f"approved by {approver}" in m]
    assert len(approvals) == 1
    assert target_writes(seldon) == ["POST"]


@pytest.mark.parametrize("point", POINTS)
def test_an_abort_aborts_exactly_once(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    refusals: Callable[[str], Refusal],
    point: str,
) -> None:
    seldon.control.set_delays(rollout_seconds=60.0)  # the run sits in Verifying
    promotions.apply("iris", SPEC)
    promotions.wait_for_phase("iris", {"Verifying"}, timeout=20)
    refusal = refusals(point)
    refusal.install()

    annotate(promotions, "iris", ABORT, "2026-11-30T10:00:00Z")
    refused_then_killed(
        operator,
        promotions,
        point,
        lambda body: ((body.get("status") or {}).get("outcome") or {}).get("reason") == "Aborted",
    )
    restarted(operator, refusal)

    finished_with(promotions)
    status = promotions.wait_for_phase("iris", ENDED, timeout=30)
    assert (status["phase"], status["outcome"]["reason"]) == ("RolledBack", "Aborted")
    assert target_writes(seldon) == ["POST", "DELETE"]  # one promotion, one rollback
    after, events = quiet(promotions, "iris")
    assert "NothingToAbort" not in events  # the abort was not seen again as a new one
    assert after["finishedAt"] == status["finishedAt"]
    assert ABORT not in annotations_of(promotions, "iris")


@pytest.mark.parametrize("point", POINTS)
def test_a_resume_ends_one_pause_not_the_next(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    refusals: Callable[[str], Refusal],
    point: str,
) -> None:
    seldon.control.seed_deployment(
        "production", deployment_body("iris", image="seldonio/sklearn-iris:1.3")
    )
    seldon.control.clear_requests_log()
    steps = [{"setWeight": 10}, {"pause": {}}, {"pause": {}}]
    promotions.apply("iris", {**SPEC, "strategy": "Canary", "canary": {"steps": steps}})
    promotions.wait_for(
        "iris",
        lambda body: (body.get("status") or {}).get("phase") == "Paused",
        "the first pause",
        30,
    )
    assert promotions.status("iris")["canary"]["step"] == 1
    refusal = refusals(point)
    refusal.install()

    annotate(promotions, "iris", RESUME, "true")
    refused_then_killed(
        operator,
        promotions,
        point,
        lambda body: ((body.get("status") or {}).get("canary") or {}).get("step") == 2,
    )
    restarted(operator, refusal)

    finished_with(promotions)
    status, _ = quiet(promotions, "iris")
    assert (status["phase"], status["canary"]["step"]) == ("Paused", 2)  # the second pause
    assert target_writes(seldon) == ["PUT"]  # the 10 % only: no final promotion
