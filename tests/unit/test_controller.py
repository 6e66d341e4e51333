"""The controller: which events lead to a pass, and how passes are recorded (one
status write per pass that changed something, none for one that did not)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping
from typing import Any, cast

import pytest

from promotion_operator.control.controller import (
    WRITE_RETRY_SECONDS,
    Controller,
    Patches,
    patches_for,
)
from promotion_operator.control.kube_api import KubeApi, KubeError, ObjectChanged, ObjectRef
from promotion_operator.core.conditions import Event
from promotion_operator.core.pass_io import PassResult
from promotion_operator.core.requests import APPROVE_ANNOTATION, RESUME_ANNOTATION
from promotion_operator.errors import NotLeading
from tests.unit.core_builders import PROMOTION, SPEC_DICT
from tests.unit.fake_runtime import FakeClient, FakeRuntime

REF = ObjectRef(PROMOTION.namespace, PROMOTION.name, PROMOTION.uid)
TARGET = ("production", "iris")


def merged(into: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386), as the API server applies it."""
    out = dict(into)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class FakeKube:
    """One ModelPromotion in memory, with resourceVersion preconditions like the API's."""

    identity = "test"

    def __init__(self, **changes: Any) -> None:
        self.body: dict[str, Any] = {
            "metadata": {
                "namespace": REF.namespace,
                "name": REF.name,
                "uid": REF.uid,
                "generation": PROMOTION.generation,
                "resourceVersion": "10",
                "annotations": {},
            },
            "spec": copy.deepcopy(SPEC_DICT),
            **changes,
        }
        self.writes: list[str] = []  # "status" or "metadata", in order
        # Writes the API refuses, by "status" or "metadata" (as an admission policy would).
        self.refuse: dict[str, KubeError] = {}
        self.events: list[Event] = []
        self.deleted = False  # the API answers 404
        self.replaced = False  # another object of the same name: the uid precondition fails
        self.unreachable = False  # no answer at all
        self.policies: list[dict[str, Any]] = []  # the namespace's PromotionPolicies
        self.policy_lists = 0
        self.policies_refused: KubeError | None = None

    def current(self) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    def bump(self) -> None:
        """Someone else changed the object."""
        self.body["metadata"]["resourceVersion"] = str(
            int(self.body["metadata"]["resourceVersion"]) + 1
        )

    def patch_promotion(
        self,
        ref: ObjectRef,
        patch: Mapping[str, Any],
        *,
        resource_version: str | None,
        subresource: str = "",
    ) -> dict[str, Any]:
        self._answer()
        if self.replaced or resource_version not in (
            None,
            self.body["metadata"]["resourceVersion"],
        ):
            raise ObjectChanged("the object has been modified", 409)
        if (refused := self.refuse.get(subresource or "metadata")) is not None:
            raise refused
        self.writes.append(subresource or "metadata")
        field = "status" if subresource else "metadata"
        self.body[field] = merged(self.body.get(field) or {}, patch[field])
        self.bump()
        return self.current()

    def get_promotion(self, ref: ObjectRef) -> dict[str, Any] | None:
        self._answer()
        return None if self.replaced else self.current()

    def _answer(self) -> None:
        if self.unreachable:
            raise KubeError("GET: MaxRetryError")
        if self.deleted:
            raise KubeError("not found", 404)

    def post_event(self, ref: ObjectRef, event: Event) -> None:
        self.events.append(event)

    def list_policies(self, namespace: str) -> list[dict[str, Any]]:
        self.policy_lists += 1
        if self.policies_refused is not None:
            raise self.policies_refused
        return copy.deepcopy(self.policies)


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def controller(runtime: FakeRuntime, kube: FakeKube) -> Controller:
    return Controller(runtime, cast(KubeApi, kube))


def test_a_stopped_controller_ends_cleanly_after_posting_its_events(
    controller: Controller, kube: FakeKube
) -> None:
    async def start_then_stop() -> None:
        task = asyncio.create_task(controller.run())
        await asyncio.sleep(0.05)
        controller.process(REF, kube.current())  # queues Events to post
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # a failure on the way out would raise here

    asyncio.run(start_then_stop())

    assert kube.events  # posted before the end


def become_available(fake: FakeClient) -> None:
    fake.deployments[TARGET]["status"] = {"state": "Available", "observedGeneration": 1}


# --- recording passes -----------------------------------------------------------------------


def test_validation_and_the_write_follow_each_other_in_one_go(
    controller: Controller, kube: FakeKube, fake: FakeClient
) -> None:
    outcome = controller.process(REF, kube.current())

    assert kube.writes == ["status", "status"]  # the plan, then the write
    assert kube.body["status"]["phase"] == "Verifying"
    assert [call[0] for call in fake.calls] == ["find", "find", "validate", "create"]
    assert outcome.requeue_after is not None and outcome.requeue_after > 0


def test_a_poll_of_a_target_still_rolling_out_writes_nothing(
    controller: Controller, kube: FakeKube
) -> None:
    controller.process(REF, kube.current())

    controller.process(REF, kube.current())

    assert kube.writes == ["status", "status"]


def test_a_replace_run_is_recorded_in_three_status_writes(
    controller: Controller, kube: FakeKube, fake: FakeClient
) -> None:
    controller.process(REF, kube.current())
    controller.process(REF, kube.current())
    become_available(fake)

    outcome = controller.process(REF, kube.current())

    assert kube.writes == ["status", "status", "status"]
    assert kube.body["status"]["phase"] == "Succeeded"
    assert outcome.requeue_after is None


FREEZE = {
    "metadata": {"namespace": REF.namespace, "name": "rules"},
    "spec": {"freeze": {"enabled": True, "reason": "year-end change freeze"}},
}


def test_a_frozen_namespace_holds_the_run_before_its_write(
    controller: Controller, kube: FakeKube, fake: FakeClient
) -> None:
    kube.policies = [FREEZE]

    outcome = controller.process(REF, kube.current())

    assert kube.body["status"]["phase"] == "AwaitingWindow"
    assert kube.body["status"]["window"]["reason"] == "Frozen"
    assert outcome.requeue_after is not None and outcome.requeue_after > 0
    assert [e.reason for e in kube.events][-1] == "Frozen"


def test_policies_that_cannot_be_listed_hold_the_run(
    controller: Controller, kube: FakeKube
) -> None:
    kube.policies_refused = KubeError("GET promotionpolicies: forbidden", 403)

    controller.process(REF, kube.current())

    assert kube.body["status"]["window"]["reason"] == "PromotionPoliciesUnreadable"


def test_a_run_past_its_first_write_does_not_list_the_policies(
    controller: Controller, kube: FakeKube, fake: FakeClient
) -> None:
    controller.process(REF, kube.current())
    controller.process(REF, kube.current())  # written: Verifying
    listed = kube.policy_lists

    controller.process(REF, kube.current())

    assert kube.body["status"]["phase"] == "Verifying"
    assert kube.policy_lists == listed


def test_a_pass_whose_write_was_fenced_off_records_nothing_and_comes_again(
    controller: Controller, kube: FakeKube, fake: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fenced(*_args: Any, **_kwargs: Any) -> None:
        raise NotLeading("POST not sent: this replica does not hold the Lease")

    monkeypatch.setattr(fake, "create", fenced)

    outcome = controller.process(REF, kube.current())

    assert kube.writes == ["status"]  # the plan; the write's pass is not recorded
    assert kube.body["status"]["phase"] == "Promoting"  # as the plan left it
    assert outcome.requeue_after == WRITE_RETRY_SECONDS


def test_a_replica_that_lost_the_lease_during_a_pass_does_not_record_it(
    runtime: FakeRuntime, kube: FakeKube, fake: FakeClient
) -> None:
    runtime.fence = lambda: 0.0  # the Lease lapsed while the pass ran
    controller = Controller(runtime, cast(KubeApi, kube))

    outcome = controller.process(REF, kube.current())

    assert kube.writes == []
    assert kube.events == []
    assert outcome.requeue_after == WRITE_RETRY_SECONDS


def test_events_are_posted_after_their_status_is_written(
    controller: Controller, kube: FakeKube
) -> None:
    controller.process(REF, kube.current())
    controller.drain_events()

    assert [e.reason for e in kube.events] == ["Promoting", "WaitingForAvailable"]


def test_a_resource_changed_since_it_was_read_is_read_again_and_passed_at_once(
    controller: Controller, kube: FakeKube
) -> None:
    stale = kube.current()
    kube.bump()

    outcome = controller.process(REF, stale)
    controller.drain_events()

    assert kube.writes == [] and kube.events == []
    assert outcome.requeue_after == 0.0
    assert outcome.body == kube.current()


def test_a_resource_changed_then_unreadable_is_passed_again_after_the_write_retry_delay(
    controller: Controller, kube: FakeKube
) -> None:
    stale = kube.current()
    kube.bump()
    kube.unreachable = True  # the apiserver went away between the conflict and the read

    outcome = controller.process(REF, stale)

    assert outcome.requeue_after == WRITE_RETRY_SECONDS and not outcome.gone


def test_a_resource_deleted_unseen_is_forgotten_at_its_next_record(
    controller: Controller, kube: FakeKube
) -> None:
    # Listed again after a 410 Gone: a deletion in the gap has no DELETED event.
    controller.observe(None, event_body(kube, 11))
    kube.deleted = True

    outcome = controller.process(REF, kube.current())
    controller._settle(REF.uid, outcome)

    assert outcome.gone
    assert controller.queued() == [] and controller.kept() == 0


def test_a_resource_replaced_unseen_by_one_of_the_same_name_is_forgotten(
    controller: Controller, kube: FakeKube
) -> None:
    controller.observe(None, event_body(kube, 11))
    kube.replaced = True

    outcome = controller.process(REF, kube.current())
    controller._settle(REF.uid, outcome)

    assert outcome.gone and kube.writes == []
    assert controller.queued() == [] and controller.kept() == 0


def awaiting_approval(runtime: FakeRuntime) -> tuple[FakeKube, Controller]:
    kube = FakeKube()
    kube.body["spec"]["approval"] = {"required": True}
    controller = Controller(runtime, cast(KubeApi, kube))
    controller.process(REF, kube.current())
    assert kube.body["status"]["phase"] == "AwaitingApproval"
    return kube, controller


def approve(kube: FakeKube, value: str = "alice") -> None:
    kube.body["metadata"]["annotations"][APPROVE_ANNOTATION] = value
    kube.bump()


def test_a_used_request_is_recorded_then_removed_then_its_record_cleared(
    runtime: FakeRuntime, fake: FakeClient
) -> None:
    kube, controller = awaiting_approval(runtime)
    approve(kube)
    before = len(kube.writes)

    controller.process(REF, kube.current())

    # approved and recorded, annotation removed, record cleared; then the write's pass
    assert kube.writes[before : before + 4] == ["status", "metadata", "status", "status"]
    assert APPROVE_ANNOTATION not in kube.body["metadata"]["annotations"]
    assert "consumedRequests" not in kube.body["status"]
    assert kube.body["status"]["approval"]["by"] == "alice"
    assert [call[0] for call in fake.calls].count("create") == 1


def test_a_refused_removal_leaves_the_request_recorded_and_acted_on_once(
    runtime: FakeRuntime, fake: FakeClient
) -> None:
    kube, controller = awaiting_approval(runtime)
    approve(kube)
    kube.refuse["metadata"] = KubeError("denied by an admission policy", 403)

    outcome = controller.process(REF, kube.current())

    status = kube.body["status"]
    assert (status["phase"], status["approval"]["by"]) == ("Promoting", "alice")
    assert status["consumedRequests"] == [{"name": "approve", "value": "alice"}]
    assert kube.body["metadata"]["annotations"][APPROVE_ANNOTATION] == "alice"
    assert outcome.requeue_after == 0.0  # passed again at once (the write is due)
    # The operator is killed now; the next one passes over what it left.
    del kube.refuse["metadata"]
    approved_at = status["approval"]["at"]

    controller.process(REF, kube.current())

    assert APPROVE_ANNOTATION not in kube.body["metadata"]["annotations"]
    assert "consumedRequests" not in kube.body["status"]
    assert kube.body["status"]["approval"]["at"] == approved_at
    assert [call[0] for call in fake.calls].count("create") == 1  # the write, once


def test_a_refused_clear_leaves_a_record_the_next_pass_clears(runtime: FakeRuntime) -> None:
    kube, controller = awaiting_approval(runtime)
    approve(kube)
    original = kube.patch_promotion

    def refuse_the_clear(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if kwargs["resource_version"] is None:  # the clear is the write without one
            raise KubeError("the API server is unavailable", 503)
        return original(*args, **kwargs)

    kube.patch_promotion = refuse_the_clear  # type: ignore[method-assign]
    outcome = controller.process(REF, kube.current())
    kube.patch_promotion = original  # type: ignore[method-assign]
    assert APPROVE_ANNOTATION not in kube.body["metadata"]["annotations"]
    assert kube.body["status"]["consumedRequests"] == [{"name": "approve", "value": "alice"}]
    assert outcome.requeue_after is not None

    controller.process(REF, kube.current())

    assert "consumedRequests" not in kube.body["status"]
    assert kube.body["status"]["approval"]["by"] == "alice"


def test_a_request_set_again_while_its_record_is_cleared_is_a_new_one(
    runtime: FakeRuntime,
) -> None:
    kube, controller = awaiting_approval(runtime)
    approve(kube)
    original = kube.patch_promotion

    def set_again_before_the_clear(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if kwargs.get("resource_version") is None:
            approve(kube)  # alice approves again between the removal and the clear
        return original(*args, **kwargs)

    kube.patch_promotion = set_again_before_the_clear  # type: ignore[method-assign]

    controller.process(REF, kube.current())

    assert "consumedRequests" not in kube.body["status"]  # cleared all the same
    assert kube.body["metadata"]["annotations"][APPROVE_ANNOTATION] == "alice"  # kept


# --- the patches of a pass -------------------------------------------------------------------


def test_a_pass_that_changed_nothing_has_nothing_to_write() -> None:
    assert patches_for(PassResult(None, None, requeue_after=2.0), {}) == Patches()


def test_the_status_is_one_merge_patch() -> None:
    patches = patches_for(PassResult(None, {"phase": "Verifying"}), {})

    assert patches.status == {"status": {"phase": "Verifying"}}


def test_a_used_resume_request_is_removed_from_the_annotations_then_its_record() -> None:
    cleared = {"consumedRequests": None}
    result = PassResult(None, {"phase": "Analyzing"}, used=("resume",), after_removal=cleared)

    patches = patches_for(result, {RESUME_ANNOTATION: "yes"})

    assert patches.metadata == {"metadata": {"annotations": {RESUME_ANNOTATION: None}}}
    assert patches.cleared == {"status": cleared}


def test_a_record_is_not_cleared_by_a_pass_that_removes_no_request() -> None:
    cleared = {"consumedRequests": None}
    result = PassResult(None, None, used=("resume",), after_removal=cleared)

    patches = patches_for(result, {"kopf.deploy.mlops.dev/x": "{}"})  # resume gone already

    assert patches.metadata == {"metadata": {"annotations": {"kopf.deploy.mlops.dev/x": None}}}
    assert patches.cleared is None


def test_kopf_bookkeeping_of_earlier_versions_is_removed() -> None:
    old = {
        "kopf.deploy.mlops.dev/last-handled-configuration": "{}",
        "kopf.deploy.mlops.dev/run_promotion": "{}",
        "team": "ml",
    }

    patches = patches_for(PassResult(None, None), old)

    assert patches.metadata == {
        "metadata": {
            "annotations": {
                "kopf.deploy.mlops.dev/last-handled-configuration": None,
                "kopf.deploy.mlops.dev/run_promotion": None,
            }
        }
    }


# --- which events lead to a pass -------------------------------------------------------------


def event_body(kube: FakeKube, version: int, **changes: Any) -> dict[str, Any]:
    body = merged(kube.current(), changes)
    body["metadata"]["resourceVersion"] = str(version)
    return body


SUCCEEDED = {"status": {"phase": "Succeeded", "observedGeneration": PROMOTION.generation}}


def test_a_run_at_rest_is_neither_queued_nor_kept(controller: Controller, kube: FakeKube) -> None:
    controller.observe(None, event_body(kube, 11, **SUCCEEDED))

    assert controller.queued() == []
    assert controller.kept() == 0


def test_a_working_run_listed_at_start_up_is_queued(controller: Controller, kube: FakeKube) -> None:
    controller.observe(None, event_body(kube, 11))

    assert controller.queued() == [REF.uid]
    assert controller.kept() == 1


def test_a_status_change_alone_queues_nothing(controller: Controller, kube: FakeKube) -> None:
    controller.observe(None, event_body(kube, 11))
    controller.forget_queued(REF.uid)

    controller.observe("MODIFIED", event_body(kube, 12, status={"phase": "Verifying"}))

    assert controller.queued() == []


def test_a_spec_change_queues_a_pass(controller: Controller, kube: FakeKube) -> None:
    controller.observe(None, event_body(kube, 11, **SUCCEEDED))

    changed = event_body(kube, 12, **SUCCEEDED)
    changed["metadata"]["generation"] += 1
    controller.observe("MODIFIED", changed)

    assert controller.queued() == [REF.uid]


def test_a_request_on_a_settled_run_queues_a_pass(controller: Controller, kube: FakeKube) -> None:
    controller.observe(None, event_body(kube, 11, **SUCCEEDED))

    asked = event_body(kube, 12, **SUCCEEDED)
    asked["metadata"]["annotations"] = {"deploy.mlops.dev/abort": "yes"}
    controller.observe("MODIFIED", asked)

    assert controller.queued() == [REF.uid]


def test_an_event_older_than_what_is_known_is_ignored(
    controller: Controller, kube: FakeKube
) -> None:
    controller.observe(None, event_body(kube, 20, **SUCCEEDED))

    controller.observe("MODIFIED", event_body(kube, 15, status={"phase": "Verifying"}))

    assert controller.queued() == [] and controller.kept() == 0


def test_a_deleted_resource_is_forgotten(controller: Controller, kube: FakeKube) -> None:
    controller.observe(None, event_body(kube, 11))

    controller.observe("DELETED", event_body(kube, 12))

    assert controller.queued() == [] and controller.kept() == 0


def test_a_new_retry_token_on_a_suspended_run_queues_a_pass(
    controller: Controller, kube: FakeKube
) -> None:
    suspended = {"status": {"phase": "Suspended", "observedGeneration": PROMOTION.generation}}
    controller.observe(None, event_body(kube, 11, **suspended))
    assert controller.queued() == []

    asked = event_body(kube, 12, **suspended)
    asked["metadata"]["annotations"] = {"deploy.mlops.dev/retry": "token-1"}
    controller.observe("MODIFIED", asked)

    assert controller.queued() == [REF.uid]


def test_a_finished_run_being_deleted_is_not_run_again(
    controller: Controller, kube: FakeKube
) -> None:
    controller.observe(None, event_body(kube, 11, **SUCCEEDED))

    # Held by a finalizer, the deletion leaves the object with a deletionTimestamp,
    # and the API server raises its generation: no new run for it.
    deleting = event_body(kube, 12, **SUCCEEDED)
    deleting["metadata"]["generation"] += 1
    deleting["metadata"]["deletionTimestamp"] = "2026-12-08T01:04:57Z"
    controller.observe("MODIFIED", deleting)

    assert controller.queued() == [] and controller.kept() == 0


def test_a_run_being_deleted_gets_no_pass(
    controller: Controller, kube: FakeKube, fake: FakeClient
) -> None:
    kube.body["metadata"]["deletionTimestamp"] = "2026-12-08T01:04:57Z"

    outcome = controller.process(REF, kube.current())

    assert kube.writes == [] and fake.calls == []
    assert outcome.requeue_after is None
