"""Namespaces Seldon Deploy manages, and who may do what in them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from tests.simulator.auth import Identity

Permission = Literal["read", "write"]
PERMISSIONS: frozenset[str] = frozenset({"read", "write"})

RESTRICTED_LABEL = "seldon.restricted"
GITOPS_LABEL = "seldon.gitops"


@dataclass
class Namespace:
    """A namespace as created through the control API, with its policies."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    users: dict[str, frozenset[str]] = field(default_factory=dict)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        """Seldon Deploy only acts on namespaces labelled `seldon.restricted: "false"`."""
        return self.labels.get(RESTRICTED_LABEL) == "false"

    @property
    def gitops(self) -> bool:
        """Writes in a GitOps namespace go to its repository, not to the cluster."""
        return self.labels.get(GITOPS_LABEL) == "enabled"


def normalise_group(name: str) -> str:
    """Keycloak's group mapper emits "/g" or "g" depending on `full.path`; compare as "g"."""
    return name.lstrip("/")


def parse_policies(raw: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """Validate a `{subject: [actions]}` mapping from the control API."""
    policies: dict[str, frozenset[str]] = {}
    for subject, actions in raw.items():
        chosen = frozenset(actions)
        unknown = chosen - PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permissions {sorted(unknown)} for {subject!r}")
        policies[subject] = chosen
    return policies


def allowed(namespace: Namespace, identity: Identity, action: Permission) -> bool:
    """Whether the caller holds `action` on the namespace, as a user or through a group."""
    if action in namespace.users.get(identity.user, frozenset()):
        return True
    caller_groups = {normalise_group(g) for g in identity.groups}
    return any(
        action in actions and normalise_group(group) in caller_groups
        for group, actions in namespace.groups.items()
    )
