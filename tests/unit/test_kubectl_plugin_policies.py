"""``kubectl promotion freeze`` and ``unfreeze``: the patch of a PromotionPolicy's
``spec.freeze``, a missing policy, and the API server's refusal."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException

from promotion_operator.kubectl_plugin import cli
from promotion_operator.kubectl_plugin.kube import Kube, ObjectChanged, PluginError, api_error
from promotion_operator.kubectl_plugin.policies import (
    POLICY_PLURAL,
    decide_freeze,
    decide_unfreeze,
)
from promotion_operator.kubectl_plugin.resource import ExitCode


def policy(freeze: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"targetNamespaces": ["production"]}
    if freeze is not None:
        spec["freeze"] = freeze
    return {"metadata": {"namespace": "ml", "name": "prod-rules"}, "spec": spec}


def test_freezing_writes_enabled_and_the_reason() -> None:
    decision = decide_freeze(policy(), "CHG-4711")
    assert decision.patch == {"spec": {"freeze": {"enabled": True, "reason": "CHG-4711"}}}
    assert decision.message == "frozen (production): CHG-4711"


def test_freezing_again_for_the_same_reason_writes_nothing() -> None:
    decision = decide_freeze(policy({"enabled": True, "reason": "CHG-4711"}), "CHG-4711")
    assert (decision.patch, decision.exit_code) == (None, ExitCode.SUCCEEDED)


def test_freezing_a_frozen_policy_for_another_reason_replaces_the_reason() -> None:
    decision = decide_freeze(policy({"enabled": True, "reason": "old"}), "new")
    assert decision.patch == {"spec": {"freeze": {"enabled": True, "reason": "new"}}}
    assert decision.message.endswith("(it was frozen for: old)")


def test_a_freeze_without_a_reason_is_left_to_the_api_servers_rule() -> None:
    decision = decide_freeze(policy({"enabled": False, "reason": "stale"}), "")
    assert decision.patch == {"spec": {"freeze": {"enabled": True, "reason": None}}}


def test_unfreezing_lifts_the_freeze_and_its_reason() -> None:
    decision = decide_unfreeze(policy({"enabled": True, "reason": "CHG-4711"}))
    assert decision.patch == {"spec": {"freeze": {"enabled": False, "reason": None}}}
    assert decision.message == "unfrozen (production; it was frozen for: CHG-4711)"


def test_unfreezing_a_policy_that_is_not_frozen_writes_nothing() -> None:
    assert decide_unfreeze(policy()).patch is None
    assert decide_unfreeze(policy({"enabled": False})).patch is None


class FakePolicies:
    """One PromotionPolicy; ``refuse`` is what the API server answers a patch with
    (an exception), ``conflicts`` how many patches lose a race first."""

    default_namespace = "ml"

    def __init__(self, body: dict[str, Any] | None, refuse: Exception | None = None) -> None:
        self.body = body
        self.refuse = refuse
        self.conflicts = 0
        self.patches: list[tuple[str, Mapping[str, Any]]] = []

    def get(self, namespace: str, name: str, *, plural: str = "") -> dict[str, Any]:
        assert plural == POLICY_PLURAL
        if self.body is None:
            raise PluginError(
                f'Error from server (NotFound): promotionpolicies.deploy.mlops.dev "{name}" '
                "not found",
                ExitCode.NOT_FOUND,
            )
        return copy.deepcopy(self.body)

    def patch(
        self,
        namespace: str,
        name: str,
        version: str,
        patch: Mapping[str, Any],
        *,
        plural: str = "",
    ) -> dict[str, Any]:
        assert (namespace, plural) == ("ml", POLICY_PLURAL)
        self.patches.append((version, patch))
        if self.conflicts:
            self.conflicts -= 1
            assert self.body is not None
            self.body["metadata"]["resourceVersion"] = str(int(version) + 1)
            raise ObjectChanged()
        if self.refuse is not None:
            raise self.refuse
        return {}


def run(fake: FakePolicies, *argv: str) -> int:
    args = cli.build_parser().parse_args(list(argv))
    return int(args.run(cli.Session(args, cast(Kube, fake))))


def test_freeze_patches_the_policy_guarded_by_its_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = policy()
    body["metadata"]["resourceVersion"] = "7"
    fake = FakePolicies(body)
    fake.conflicts = 1
    assert run(fake, "freeze", "prod-rules", "--reason", "CHG-4711") == 0
    assert [version for version, _ in fake.patches] == ["7", "8"]
    assert capsys.readouterr().out == (
        "promotionpolicy.deploy.mlops.dev/prod-rules: frozen (production): CHG-4711\n"
    )


def test_freezing_a_policy_that_does_not_exist_says_so_and_exits_5() -> None:
    with pytest.raises(PluginError) as failed:
        run(FakePolicies(None), "freeze", "nope", "--reason", "x")
    assert failed.value.exit_code == ExitCode.NOT_FOUND
    assert '"nope" not found' in failed.value.message


def test_a_refused_freeze_is_the_api_servers_message_and_exits_6() -> None:
    refusal = PluginError(
        'Error from server (Invalid): PromotionPolicy.deploy.mlops.dev "prod-rules" is '
        'invalid: spec.freeze: Invalid value: "object": spec.freeze.reason is required '
        "when spec.freeze.enabled is true"
    )
    body = policy()
    body["metadata"]["resourceVersion"] = "7"
    with pytest.raises(PluginError) as failed:
        run(FakePolicies(body, refuse=refusal), "freeze", "prod-rules")
    assert failed.value.exit_code == ExitCode.ERROR
    assert "spec.freeze.reason is required" in failed.value.message


def test_unfreeze_of_a_policy_that_is_not_frozen_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = policy()
    body["metadata"]["resourceVersion"] = "7"
    fake = FakePolicies(body)
    assert run(fake, "unfreeze", "prod-rules") == 0
    assert fake.patches == []
    assert capsys.readouterr().out.endswith(": not frozen\n")


def test_a_missing_policy_kind_asks_whether_its_crd_is_installed() -> None:
    status = {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"}
    error = ApiException(status=404, reason="NotFound", body=json.dumps(status))
    assert "is the PromotionPolicy CRD installed?" in api_error(error, "x", POLICY_PLURAL).message
