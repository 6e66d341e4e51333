"""Promotion windows and freezes on the real stack: a PromotionPolicy of the test's
namespace holds a run's first write (the operator as its own process), and the API
server refuses approvals and new ModelPromotions into a frozen namespace (the
ValidatingAdmissionPolicies of ``manifests/policies/``, with the PromotionPolicy as
their parameter). A break-glass by a member of the policy's group is let through and
recorded. ``kubectl promotion freeze`` and ``unfreeze`` write the freeze admission
applies.

The window's clock is its cron schedule: a deny window that started at the current
minute and ends 20 s from now. Nothing in the operator is faked.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.controlplane import ControlPlane
from tests.harness.operating import (
    APPROVE,
    ENDED,
    annotations_of,
    reasons,
    target_writes,
)
from tests.harness.operating import (
    SPEC as OPERATED,
)
from tests.harness.operator_process import OperatorProcess
from tests.harness.promotions import Promotions, explain, manifest, ready_reason_is
from tests.harness.simulator import Simulator
from tests.harness.users import User, user_kubeconfig

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
BREAK_GLASS = "deploy.mlops.dev/break-glass"
REASON = "year-end change freeze, CHG-4711"
FREEZE: dict[str, Any] = {
    "targetNamespaces": ["production"],
    "freeze": {"enabled": True, "reason": REASON},
    "breakGlass": {"groups": ["incident-commanders"]},
}
APPROVAL: dict[str, Any] = {**OPERATED, "approval": {"required": True}}


@pytest.fixture(scope="module")
def admission(control_plane: ControlPlane, crds: None) -> None:
    """The admission policies and the people's roles, as ``manifests/`` ships them."""
    control_plane.kubectl("apply", "-k", str(MANIFESTS / "policies"))
    control_plane.kubectl("apply", "-k", str(MANIFESTS / "roles"))


@pytest.fixture
def people(
    control_plane: ControlPlane, namespace: str, admission: None, tmp_path: Path
) -> dict[str, User]:
    """alice approves (release-managers); carol (incident-commanders) and paula
    (ml-platform) are promoters: only carol may break the glass."""
    people = {
        "alice": user_kubeconfig(control_plane, "alice", ["release-managers"], tmp_path / "a"),
        "carol": user_kubeconfig(control_plane, "carol", ["incident-commanders"], tmp_path / "c"),
        "paula": user_kubeconfig(control_plane, "paula", ["ml-platform"], tmp_path / "p"),
    }
    for role, subjects in (("approver", ["alice"]), ("promoter", ["carol", "paula"])):
        control_plane.kubectl(
            "create", "rolebinding", f"modelpromotion-{role}", "-n", namespace,
            f"--clusterrole=modelpromotion-{role}", *(f"--user={s}" for s in subjects),
        )  # fmt: skip
    return people


def apply_policy(control_plane: ControlPlane, namespace: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": "deploy.mlops.dev/v1alpha1",
        "kind": "PromotionPolicy",
        "metadata": {"name": "production-rules", "namespace": namespace},
        "spec": spec,
    }
    control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(body))


def create_as(
    user: User, namespace: str, name: str, spec: dict[str, Any], *extra: str, glass: str = ""
) -> Any:
    body = json.loads(manifest(name, spec))
    if glass:
        body["metadata"]["annotations"] = {BREAK_GLASS: glass}
    return user.kubectl("create", "-n", namespace, "-f", "-", *extra, input_text=json.dumps(body))


def one_line(text: str) -> str:
    return " ".join(text.split())


def wait_until_frozen(user: User, namespace: str) -> None:
    """A new PromotionPolicy reaches the API server's admission a moment after it is
    stored: try a creation (dry run) until it is refused."""
    deadline = time.monotonic() + 30
    while True:
        tried = create_as(user, namespace, "probe", OPERATED, "--dry-run=server")
        if tried.returncode != 0 and "modelpromotion-freeze" in tried.stderr:
            return
        assert time.monotonic() < deadline, f"the freeze is not enforced: {tried}"
        time.sleep(0.5)


def test_a_deny_window_covering_now_holds_the_first_write_until_it_ends(
    control_plane: ControlPlane,
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    started = now.replace(second=0, microsecond=0)
    ends = now.replace(microsecond=0) + datetime.timedelta(seconds=20)
    window = {
        "kind": "deny",
        "schedule": f"{started.minute} {started.hour} * * *",
        "duration": f"{int((ends - started).total_seconds())}s",
    }
    apply_policy(control_plane, promotions.namespace, {"windows": [window]})

    promotions.apply("iris", OPERATED)
    held = promotions.wait_for(
        "iris", ready_reason_is("OutsidePromotionWindow"), "OutsidePromotionWindow", timeout=15
    )["status"]

    expected = ends.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert held["phase"] == "AwaitingWindow"
    assert held["window"]["nextAllowedAt"] == expected
    assert f"the next allowed time is {expected}" in promotions.ready("iris")["message"]
    assert target_writes(seldon) == []
    status = promotions.wait_for_phase("iris", ENDED, timeout=60)
    assert status["phase"] == "Succeeded", status
    assert status["window"]["releasedAt"] >= expected
    assert status["appliedAt"] >= expected  # the write came after the window ended
    assert target_writes(seldon) == ["POST"]
    names = reasons(promotions, "iris")
    assert names.index("OutsidePromotionWindow") < names.index("Promoting")


def test_a_freeze_refuses_an_approval_at_admission_with_its_reason(
    control_plane: ControlPlane, promotions: Promotions, people: dict[str, User]
) -> None:
    promotions.apply("iris", APPROVAL)  # created before the freeze
    apply_policy(control_plane, promotions.namespace, FREEZE)
    wait_until_frozen(people["paula"], promotions.namespace)

    refused = people["alice"].kubectl(
        "annotate", "mp", "iris", "-n", promotions.namespace, f"{APPROVE}=alice"
    )

    assert refused.returncode != 0, refused.stdout
    message = one_line(refused.stderr)
    assert "modelpromotion-freeze.deploy.mlops.dev" in message
    assert (
        f"alice may not approve ModelPromotion {promotions.namespace}/iris: its target "
        f"namespace production is frozen by PromotionPolicy {promotions.namespace}/"
        f"production-rules: {REASON}"
    ) in message
    assert "a member of incident-commanders may override" in message
    assert APPROVE not in annotations_of(promotions, "iris")


def test_a_freeze_refuses_creating_a_model_promotion_into_the_frozen_namespace(
    control_plane: ControlPlane, promotions: Promotions, people: dict[str, User]
) -> None:
    apply_policy(control_plane, promotions.namespace, FREEZE)
    paula = people["paula"]
    wait_until_frozen(paula, promotions.namespace)

    refused = create_as(paula, promotions.namespace, "iris", OPERATED)
    elsewhere = create_as(
        paula, promotions.namespace, "iris-qa", {**OPERATED, "target": {"namespace": "qa"}}
    )

    assert refused.returncode != 0, refused.stdout
    assert (
        f"paula may not create ModelPromotion {promotions.namespace}/iris: its target "
        f"namespace production is frozen by PromotionPolicy"
    ) in one_line(refused.stderr)
    assert REASON in one_line(refused.stderr)
    assert elsewhere.returncode == 0, elsewhere.stderr  # the policy names production only


def test_a_break_glass_only_as_yourself_and_only_by_the_policys_group(
    control_plane: ControlPlane, promotions: Promotions, people: dict[str, User]
) -> None:
    apply_policy(control_plane, promotions.namespace, FREEZE)
    wait_until_frozen(people["paula"], promotions.namespace)

    not_in_group = create_as(people["paula"], promotions.namespace, "a", OPERATED, glass="paula")
    in_another_name = create_as(people["carol"], promotions.namespace, "b", OPERATED, glass="paula")

    assert not_in_group.returncode != 0
    assert (
        f"paula may not break the glass for ModelPromotion {promotions.namespace}/a: "
        f"PromotionPolicy {promotions.namespace}/production-rules lets only members of "
        "spec.breakGlass.groups (incident-commanders) override it"
    ) in one_line(not_in_group.stderr)
    assert in_another_name.returncode != 0
    assert 'so set it to "carol", not "paula"' in one_line(in_another_name.stderr)


def test_a_break_glass_by_the_policys_group_promotes_through_the_freeze_and_is_recorded(
    control_plane: ControlPlane,
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    people: dict[str, User],
) -> None:
    apply_policy(control_plane, promotions.namespace, FREEZE)
    wait_until_frozen(people["paula"], promotions.namespace)

    created = create_as(people["carol"], promotions.namespace, "iris", OPERATED, glass="carol")

    assert created.returncode == 0, created.stderr
    status = promotions.wait_for_phase("iris", ENDED, timeout=60)
    assert status["phase"] == "Succeeded", status
    assert (status["breakGlass"]["by"], status["breakGlass"]["overrode"]) == ("carol", "Frozen")
    [entry] = status["history"]
    assert entry["breakGlassBy"] == "carol"
    [event] = [e for e in promotions.events("iris") if e["reason"] == "BreakGlass"]
    assert event["type"] == "Warning" and "carol overrode Frozen" in event["message"]
    assert target_writes(seldon) == ["POST"]
    promotions.wait_for(
        "iris", lambda body: BREAK_GLASS not in (body["metadata"].get("annotations") or {}),
        "the break-glass annotation removed", timeout=15,
    )  # fmt: skip


def test_a_frozen_run_waits_and_goes_on_when_the_freeze_is_lifted(
    control_plane: ControlPlane,
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
) -> None:
    promotions.apply("iris", OPERATED)
    promotions.wait_for_phase("iris", ENDED, timeout=60)  # a first run, before the freeze
    apply_policy(control_plane, promotions.namespace, {**FREEZE, "breakGlass": {"groups": []}})
    promotions.patch_spec("iris", {"overrides": {"replicas": 2}})  # a new run, not a new object

    held = promotions.wait_for("iris", ready_reason_is("Frozen"), "Frozen", timeout=15)["status"]
    assert held["phase"] == "AwaitingWindow"
    assert REASON in promotions.ready("iris")["message"]
    writes = len(target_writes(seldon))
    apply_policy(control_plane, promotions.namespace, {"freeze": {"enabled": False}})

    status = promotions.wait_for_phase("iris", ENDED, timeout=30)
    assert status["phase"] == "Succeeded", status
    assert len(target_writes(seldon)) == writes + 1


CRD = Path(__file__).resolve().parents[2] / "crds" / "promotionpolicies.deploy.mlops.dev.yaml"


def _fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """Every field under ``schema`` as (kubectl explain path, its description)."""
    for name, field in (schema.get("properties") or {}).items():
        if path == "promotionpolicy" and name in ("apiVersion", "kind", "metadata"):
            continue
        yield f"{path}.{name}", str(field.get("description", ""))
        inner = field.get("items", field) if field.get("type") == "array" else field
        yield from _fields(inner, f"{path}.{name}")


def test_kubectl_explain_teaches_every_field_of_a_promotion_policy(
    control_plane: ControlPlane, crds: None
) -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fields = list(_fields(schema, "promotionpolicy"))
    assert len(fields) >= 12

    for path, description in fields:
        assert description, f"{path} has no description"
        explained = one_line(explain(control_plane, path))
        assert one_line(description)[:60] in explained, (path, explained[:400])


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        (
            {"windows": [{"kind": "sometimes", "schedule": "0 1 * * *", "duration": "1h"}]},
            'spec.windows[0].kind: Unsupported value: "sometimes"',
        ),
        (
            {"windows": [{"kind": "deny", "schedule": "0 1 * *", "duration": "1h"}]},
            "spec.windows[0].schedule: Invalid value",
        ),
        (
            {"windows": [{"kind": "deny", "schedule": "0 1 * * *", "duration": "0s"}]},
            'spec.windows[0].duration: Invalid value: "0s": duration must be longer than 0s',
        ),
        (
            {"windows": [{"kind": "deny", "schedule": "0 1 * * *", "duration": "1 hour"}]},
            "spec.windows[0].duration: Invalid value",
        ),
        (
            {"freeze": {"enabled": True}},
            "spec.freeze: Invalid value: spec.freeze.reason is required when "
            "spec.freeze.enabled is true",
        ),
    ],
    ids=["kind", "schedule", "zero-duration", "duration", "freeze-without-reason"],
)
def test_a_bad_promotion_policy_is_refused_naming_the_field(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], named: str
) -> None:
    body = {
        "apiVersion": "deploy.mlops.dev/v1alpha1",
        "kind": "PromotionPolicy",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": spec,
    }
    refused = control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(body), check=False)

    assert refused.returncode != 0, refused.stdout
    assert named in one_line(refused.stderr), refused.stderr


def plugin(control_plane: ControlPlane, namespace: str, *args: str) -> Any:
    """``kubectl promotion ARGS -n NAMESPACE`` as the cluster's admin."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "promotion_operator.kubectl_plugin", *args,
         "-n", namespace, "--kubeconfig", str(control_plane.kubeconfig)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_freeze_by_the_plugin_is_applied_at_admission_and_unfreeze_lifts_it(
    control_plane: ControlPlane, namespace: str, people: dict[str, User]
) -> None:
    apply_policy(
        control_plane,
        namespace,
        {"targetNamespaces": ["production"], "breakGlass": {"groups": ["incident-commanders"]}},
    )
    missing = plugin(control_plane, namespace, "freeze", "no-such-policy", "--reason", "x")
    assert missing.returncode == 5 and "not found" in missing.stderr, missing
    no_reason = plugin(control_plane, namespace, "freeze", "production-rules")
    assert no_reason.returncode == 6, no_reason
    assert "spec.freeze.reason is required" in one_line(no_reason.stderr)

    frozen = plugin(control_plane, namespace, "freeze", "production-rules", "--reason", REASON)
    assert frozen.returncode == 0, frozen.stderr
    paula = people["paula"]
    wait_until_frozen(paula, namespace)
    refused = create_as(paula, namespace, "iris", OPERATED)
    assert refused.returncode != 0
    assert f"frozen by PromotionPolicy {namespace}/production-rules: {REASON}" in one_line(
        refused.stderr
    )

    lifted = plugin(control_plane, namespace, "unfreeze", "production-rules")
    assert lifted.returncode == 0, lifted.stderr
    deadline = time.monotonic() + 30
    while (tried := create_as(paula, namespace, "iris", OPERATED)).returncode != 0:
        assert time.monotonic() < deadline, f"still refused after unfreeze: {tried.stderr}"
        time.sleep(0.5)
