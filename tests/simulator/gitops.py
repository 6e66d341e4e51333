"""The repository behind GitOps namespaces: one commit per write, with snapshots.

Each commit keeps the object as it is *after* the commit (None after a
delete), so "the state before commit C" is the snapshot of the previous commit
touching the same object. That is all revert and restore need. A commit names
the kind of its object (SeldonDeployment, Model or Pipeline), so a Model and a
SeldonDeployment of the same name have separate histories.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from tests.simulator.records import CommitRecord
from tests.simulator.store import DEPLOYMENT, Kind, rfc3339
from tests.simulator.validation import DeploymentBody

# Seldon Deploy commits with its own service identity and records the user as author.
COMMITTER = "seldon-deploy"
_SHORT_HASH = 7


@dataclass(frozen=True)
class Commit:
    """One commit in the repository, touching one deployment."""

    id: str
    namespace: str
    name: str
    action: str
    message: str
    author: str
    timestamp: float
    snapshot: DeploymentBody | None
    kind: Kind = DEPLOYMENT


@dataclass
class GitLog:
    """All commits of all GitOps namespaces, oldest first."""

    commits: list[Commit] = field(default_factory=list)

    def record(
        self,
        *,
        namespace: str,
        name: str,
        action: str,
        message: str,
        author: str,
        now: float,
        snapshot: DeploymentBody | None,
        kind: Kind = DEPLOYMENT,
    ) -> Commit:
        """Append a commit; the snapshot is copied so later writes cannot alter history."""
        seed = f"{len(self.commits)}:{namespace}/{name}:{action}:{message}:{author}:{now!r}"
        commit = Commit(
            id=hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest(),
            namespace=namespace,
            name=name,
            action=action,
            message=message,
            author=author,
            timestamp=now,
            snapshot=copy.deepcopy(snapshot),
            kind=kind,
        )
        self.commits.append(commit)
        return commit

    def history(self, namespace: str, name: str, kind: Kind = DEPLOYMENT) -> list[Commit]:
        """Commits touching one object, newest first (as `git log` lists them)."""
        own = [c for c in self.commits if (c.namespace, c.name, c.kind) == (namespace, name, kind)]
        return own[::-1]

    def find(
        self, namespace: str, name: str, commit_hash: str, kind: Kind = DEPLOYMENT
    ) -> Commit | None:
        """A commit of this object by full hash or a prefix of at least 7 digits."""
        wanted = commit_hash.strip().lower()
        if len(wanted) < _SHORT_HASH:
            return None
        matches = [c for c in self.history(namespace, name, kind) if c.id.startswith(wanted)]
        return matches[0] if len(matches) == 1 else None

    def state_before(self, commit: Commit) -> DeploymentBody | None:
        """The deployment as it was before `commit`; None if it did not exist."""
        older = self.history(commit.namespace, commit.name, commit.kind)
        index = older.index(commit)
        if index + 1 < len(older):
            return copy.deepcopy(older[index + 1].snapshot)
        return None

    def last_existing(
        self, namespace: str, name: str, kind: Kind = DEPLOYMENT
    ) -> DeploymentBody | None:
        """The newest snapshot in which the object existed (what a restore brings back)."""
        for commit in self.history(namespace, name, kind):
            if commit.snapshot is not None:
                return copy.deepcopy(commit.snapshot)
        return None


def commit_record(commit: Commit) -> CommitRecord:
    """The control API's view of a commit."""
    return {
        "id": commit.id,
        "action": commit.action,
        "message": commit.message,
        "author": commit.author,
        "timestamp": rfc3339(commit.timestamp, fraction=True),
        "namespace": commit.namespace,
        "name": commit.name,
        "kind": commit.kind,
        "spec": copy.deepcopy(commit.snapshot.spec) if commit.snapshot else None,
    }


def audit_log(commit: Commit) -> dict[str, Any]:
    """The SDK's `AuditLog` shape; `Action` and `Message` are simulator extensions."""
    when = rfc3339(commit.timestamp, fraction=True)
    return {
        "Hash": commit.id,
        "AuthorName": commit.author,
        "AuthorWhen": when,
        "CommitterName": COMMITTER,
        "CommitterWhen": when,
        "Action": commit.action,
        "Message": commit.message,
    }
