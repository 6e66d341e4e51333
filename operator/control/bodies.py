"""What the controllers keep of a watched object's body, and how two of its versions
compare."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_KEPT_METADATA = (
    "namespace", "name", "uid", "generation", "resourceVersion", "annotations", "labels",
    "deletionTimestamp",
)  # fmt: skip


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """Only what a pass reads: the watch's managedFields and the rest are left behind."""
    metadata = body["metadata"]
    return {
        "metadata": {key: metadata[key] for key in _KEPT_METADATA if key in metadata},
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def being_deleted(metadata: Mapping[str, Any]) -> bool:
    """Whether the object is being deleted: a deletion held by a finalizer (another
    controller's, or the garbage collector's foreground deletion) leaves it in place
    with a deletionTimestamp, and the API server raises its generation then."""
    return bool(metadata.get("deletionTimestamp"))


def newer(version: str, than: str) -> bool:
    """Whether ``version`` is a later resourceVersion than ``than``.

    An etcd-backed API server issues resourceVersions as increasing integers
    (its revisions), and they are compared as such; one that is not an integer
    is taken as newer, so an event is never lost.
    """
    try:
        return int(version) > int(than)
    except ValueError:
        return version != than


def resource_version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")
