"""The ModelPromotion handlers: Kopf's watch feeds the controller, which runs the passes.

Kopf's change handlers would add bookkeeping writes of their own to every pass
(progress and diff-base annotations, and a "touch" patch to wake a delayed
handler). The controller instead schedules passes itself, like a
controller-runtime reconciler, and writes one status patch per pass that
changed something (see :mod:`promotion_operator.control.controller`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import kopf

from promotion_operator.control.controller import Controller
from promotion_operator.control.kube_api import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)


@kopf.on.startup()
async def start_controller(memo: kopf.Memo, **_: Any) -> None:
    """Start the controller's workers (and its election) before the first event comes."""
    controller: Controller = memo["controller"]
    task = asyncio.create_task(controller.run(), name="controller")
    task.add_done_callback(_stop_if_crashed)
    memo["controller_task"] = task


def _stop_if_crashed(task: asyncio.Task[None]) -> None:
    # Without its controller the operator would watch and do nothing while its
    # liveness probe stays green: stop it, so it is restarted (or a standby leads).
    if not task.cancelled() and task.exception() is not None:
        logger.critical("the controller stopped: %r; stopping the operator", task.exception())
        os.kill(os.getpid(), signal.SIGTERM)


@kopf.on.cleanup()
async def stop_controller(memo: kopf.Memo, **_: Any) -> None:
    """Stop the workers; a leader gives its Lease up on the way out."""
    task: asyncio.Task[None] | None = memo.get("controller_task")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@kopf.on.event(GROUP, VERSION, PLURAL)
async def observe_promotion(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Every event (and the listing at start-up) goes to the controller, on the event
    loop (async: no thread hop); it decides whether a pass is due. Deleting a
    ModelPromotion leaves its target alone."""
    controller: Controller = memo["controller"]
    controller.observe(event.get("type"), event["object"])
