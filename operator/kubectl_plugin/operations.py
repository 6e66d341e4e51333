"""The requests a person makes of a run (approve, abort, retry, resume) and of a
path's stage (promote, hold, release), as API calls: read the object, decide from
what it says, write one annotation (or merge patch).

The commands of ``kubectl promotion`` and the dashboard's buttons both call these,
so a button does exactly what the command does, with the same refusals.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from promotion_operator.kubectl_plugin.kube import Kube, ObjectChanged, PluginError
from promotion_operator.kubectl_plugin.paths import (
    PATH_PLURAL,
    PathDecision,
    decide_hold,
    decide_promote,
    decide_release,
    hold_value,
)
from promotion_operator.kubectl_plugin.resource import (
    ABORT_ANNOTATION,
    APPROVE_ANNOTATION,
    RESUME_ANNOTATION,
    RETRY_ANNOTATION,
    Decision,
    ExitCode,
    Promotion,
    decide_abort,
    decide_approve,
    decide_resume,
    decide_retry,
    format_time,
    still_removing,
)

#: How many times a write is tried when the object changed since it was read.
CONFLICT_ATTEMPTS = 5

Note = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def request(
    kube: Kube,
    namespace: str,
    name: str,
    annotation: str,
    decide: Callable[[Promotion], Decision],
    note: Note = _quiet,
) -> Decision:
    """Write one request annotation the way every request is written: read the object,
    decide from what it says, merge-patch with the ``resourceVersion`` just read, and
    on a conflict (someone changed it in between) read and decide again."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        promotion = Promotion(kube.get(namespace, name))
        decision = still_removing(promotion, annotation) or decide(promotion)
        if decision.value is None:
            return decision
        try:
            kube.annotate(namespace, name, promotion.resource_version, {annotation: decision.value})
        except ObjectChanged:
            note(
                f"conflict: {namespace}/{name} changed since it was read "
                f"(resourceVersion {promotion.resource_version}); reading it again "
                f"({attempt}/{CONFLICT_ATTEMPTS})"
            )
            continue
        return decision
    raise PluginError(
        f"error: {namespace}/{name} kept changing: {annotation} was not written after "
        f"{CONFLICT_ATTEMPTS} conflicts; try again"
    )


def approve(kube: Kube, namespace: str, name: str, note: Note = _quiet) -> Decision:
    """Approve the waiting run as the caller (the API server says who that is)."""
    user = kube.username()
    return request(
        kube, namespace, name, APPROVE_ANNOTATION, lambda p: decide_approve(p, user), note
    )


def abort(kube: Kube, namespace: str, name: str, note: Note = _quiet) -> Decision:
    moment = now()
    return request(kube, namespace, name, ABORT_ANNOTATION, lambda p: decide_abort(p, moment), note)


def new_retry_token(moment: datetime.datetime) -> str:
    """A retry request's token: when it was asked, and a random part so that two
    requests in the same second differ."""
    return f"{format_time(moment)}-{secrets.token_hex(3)}"


def retry(kube: Kube, namespace: str, name: str, note: Note = _quiet) -> Decision:
    token = new_retry_token(now())
    return request(kube, namespace, name, RETRY_ANNOTATION, lambda p: decide_retry(p, token), note)


def resume(kube: Kube, namespace: str, name: str, note: Note = _quiet) -> Decision:
    return request(kube, namespace, name, RESUME_ANNOTATION, decide_resume, note)


#: The requests by the name the dashboard's buttons post.
BY_NAME: dict[str, Callable[[Kube, str, str, Note], Decision]] = {
    "approve": approve,
    "abort": abort,
    "retry": retry,
    "resume": resume,
}


class Written(Protocol):
    """A decision to write a merge patch (None: nothing), with its message and exit code."""

    @property
    def patch(self) -> Mapping[str, Any] | None: ...

    @property
    def message(self) -> str: ...

    @property
    def exit_code(self) -> ExitCode: ...


W = TypeVar("W", bound=Written)


class KeptChanging(PluginError):
    """The object changed between every read and write of :func:`guarded_patch`."""


def guarded_patch(
    kube: Kube,
    plural: str,
    namespace: str,
    name: str,
    decide: Callable[[dict[str, Any]], W],
    note: Note = _quiet,
) -> W:
    """A change of a path or a policy, written as every request is: read the object,
    decide, merge-patch with the ``resourceVersion`` read, and on a conflict read and
    decide again (:class:`KeptChanging` after the last attempt)."""
    for _ in range(CONFLICT_ATTEMPTS):
        body = kube.get(namespace, name, plural=plural)
        decision = decide(body)
        if decision.patch is None:
            return decision
        try:
            kube.patch(
                namespace, name, str(body["metadata"]["resourceVersion"]), decision.patch,
                plural=plural,
            )  # fmt: skip
        except ObjectChanged:
            note(f"{namespace}/{name} changed since it was read; reading it again")
            continue
        return decision
    raise KeptChanging(f"error: {namespace}/{name} kept changing; try again")


def promote_stage(
    kube: Kube, namespace: str, name: str, stage: str, note: Note = _quiet
) -> PathDecision:
    """Promote the freight that waits at a manual ``stage`` of the path."""
    return guarded_patch(
        kube, PATH_PLURAL, namespace, name, lambda body: decide_promote(body, stage), note
    )


def hold_stage(
    kube: Kube, namespace: str, name: str, stage: str, reason: str, note: Note = _quiet
) -> PathDecision:
    """Hold ``stage`` as the caller (the API server says who that is), with ``reason``."""
    value = hold_value(kube.username(), reason, now())
    return guarded_patch(
        kube, PATH_PLURAL, namespace, name, lambda body: decide_hold(body, stage, value), note
    )


def release_stage(
    kube: Kube, namespace: str, name: str, stage: str, note: Note = _quiet
) -> PathDecision:
    """Release ``stage``'s hold."""
    return guarded_patch(
        kube, PATH_PLURAL, namespace, name, lambda body: decide_release(body, stage), note
    )
