"""The ModelPromotion handlers: one pass of the run per call, requeued while it works.

The same function serves create, changes (of the spec, or of the annotations
people use to ask for an approval, an abort, a retry or a resume) and operator
restarts (resume). A pass that leaves the run unfinished raises ``kopf.TemporaryError`` with the
delay the core chose: Kopf sleeps on its event loop, not in a worker thread,
so hundreds of runs can wait at once.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from typing import Any

import kopf

from promotion_operator.core.conditions import Event
from promotion_operator.core.planning import PromotionRef
from promotion_operator.core.requests import CONSUMED, requests_from
from promotion_operator.core.step import PassResult
from promotion_operator.handlers.startup import LEGACY_KOPF_KEYS
from promotion_operator.runner import Runtime, run_pass

GROUP = "deploy.mlops.dev"
VERSION = "v1alpha1"
PLURAL = "modelpromotions"


class RunInProgress(kopf.TemporaryError):
    """Not a failure: the run waits (for Seldon Deploy, a sync, a retry) and comes back."""


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)  # spec, labels or annotations; never status
def run_promotion(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Advance the run of this generation by one pass."""
    runtime: Runtime = memo["runtime"]
    promotion = PromotionRef(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        uid=str(meta["uid"]),
        generation=int(meta["generation"]),
    )
    result = run_pass(
        runtime,
        promotion,
        dict(spec),
        dict(status),
        now=datetime.datetime.now(datetime.UTC),
        jitter=random.random(),
        requests=requests_from(meta.get("annotations")),
    )

    def post(event: Event) -> None:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        logger.info("%s: %s", event.reason, event.message)

    for key in LEGACY_KOPF_KEYS:
        if key in (meta.get("annotations") or {}):
            patch.metadata.annotations[key] = None
    record(result, patch, post)


def record(result: PassResult, patch: kopf.Patch, post: Callable[[Event], None]) -> None:
    """Hand a pass's result to Kopf: the status into the patch, the Events posted in
    order, and an unfinished run requeued after the core's delay (``RunInProgress``)."""
    if result.status is not None:
        patch.status.update(result.status)
    for name in result.used:
        # Acted on (or left from before this run): the next one needs a new request.
        patch.metadata.annotations[CONSUMED[name]] = None
    for event in result.events:
        post(event)
    if result.requeue_after is not None:
        raise RunInProgress(result.message, delay=result.requeue_after)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget_promotion(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Deleting a ModelPromotion leaves its target alone; only what the operator keeps
    about it (metrics, notices sent) is dropped.

    ``optional=True``: no finalizer, so deletion never waits for the operator.
    """
    runtime: Runtime = memo["runtime"]
    runtime.forget(str(meta["uid"]))
