"""What the controllers keep of a watched body."""

from __future__ import annotations

from typing import Any

from promotion_operator.control.bodies import being_deleted, slim

LABELS = {"deploy.mlops.dev/path": "iris", "deploy.mlops.dev/stage": "dev"}
WATCHED: dict[str, Any] = {
    "metadata": {
        "namespace": "models",
        "name": "iris-dev-1",
        "uid": "u-1",
        "generation": 3,
        "resourceVersion": "42",
        "annotations": {"deploy.mlops.dev/approve": "1"},
        "labels": LABELS,
        "deletionTimestamp": "2026-12-08T01:04:57Z",
        "managedFields": [{"manager": "kubectl"}],
        "finalizers": ["e2e.mlops.dev/hold"],
    },
    "spec": {"source": {"name": "iris"}},
    "status": {"phase": "Succeeded"},
}


def test_the_slim_body_keeps_the_labels_a_stage_runs_notices_are_named_after() -> None:
    assert slim(WATCHED)["metadata"]["labels"] == LABELS


def test_the_slim_body_keeps_the_deletion_and_drops_the_bookkeeping() -> None:
    metadata = slim(WATCHED)["metadata"]

    assert being_deleted(metadata)
    assert "managedFields" not in metadata and "finalizers" not in metadata


def test_an_object_without_a_deletion_timestamp_is_not_being_deleted() -> None:
    assert not being_deleted({"name": "iris-dev-1"})
