"""PromotionPolicies in the plugin: what ``freeze`` and ``unfreeze`` write.

Pure: from the policy as read, the JSON merge patch of its ``spec.freeze`` (or
nothing, when it already is as asked), the message and the exit code. Whether a
freeze needs a reason is the CRD's rule, so a freeze without one is sent as it
is and the API server's refusal is what the user reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.kubectl_plugin.resource import ExitCode

POLICY_PLURAL = "promotionpolicies"


@dataclass(frozen=True)
class PolicyDecision:
    """What ``freeze`` or ``unfreeze`` does: the merge patch to write (None: nothing),
    the message and the exit code."""

    patch: Mapping[str, Any] | None
    message: str
    exit_code: ExitCode = ExitCode.SUCCEEDED


def _freeze(policy: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = policy.get("spec")
    freeze = spec.get("freeze") if isinstance(spec, Mapping) else None
    return freeze if isinstance(freeze, Mapping) else {}


def _targets(policy: Mapping[str, Any]) -> str:
    spec = policy.get("spec")
    named = spec.get("targetNamespaces") if isinstance(spec, Mapping) else None
    if isinstance(named, list) and named:
        return ", ".join(str(n) for n in named)
    return "every target namespace"


def decide_freeze(policy: Mapping[str, Any], reason: str) -> PolicyDecision:
    """Freeze the policy's targets for ``reason`` (a freeze already there with the same
    reason is left as it is; with another reason, the reason is replaced)."""
    freeze = _freeze(policy)
    before = str(freeze.get("reason") or "")
    if freeze.get("enabled") is True and before == reason:
        return PolicyDecision(None, f"already frozen ({_targets(policy)}): {before}")
    patch = {"spec": {"freeze": {"enabled": True, "reason": reason or None}}}
    said = f"frozen ({_targets(policy)}): {reason}"
    if freeze.get("enabled") is True:
        said += f" (it was frozen for: {before})"
    return PolicyDecision(patch, said)


def decide_unfreeze(policy: Mapping[str, Any]) -> PolicyDecision:
    """Lift the policy's freeze (its reason goes with it)."""
    freeze = _freeze(policy)
    if freeze.get("enabled") is not True:
        return PolicyDecision(None, "not frozen")
    patch = {"spec": {"freeze": {"enabled": False, "reason": None}}}
    return PolicyDecision(
        patch, f"unfrozen ({_targets(policy)}; it was frozen for: {freeze.get('reason') or '-'})"
    )
