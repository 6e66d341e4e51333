"""The four requests a person makes of a run (approve, abort, retry, resume), as
API calls: read the object, decide from what it says, write one annotation.

The commands of ``kubectl promotion`` and the dashboard's buttons both call these,
so a button does exactly what the command does, with the same refusals.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable

from promotion_operator.kubectl_plugin.kube import Kube, ObjectChanged, PluginError
from promotion_operator.kubectl_plugin.resource import (
    ABORT_ANNOTATION,
    APPROVE_ANNOTATION,
    RESUME_ANNOTATION,
    RETRY_ANNOTATION,
    Decision,
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
