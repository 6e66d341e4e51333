"""The ModelPromotion handlers: the watch feeds the controller, which runs the passes.

Kopf runs the operator (start-up, clean-up, the liveness probe); the
ModelPromotions are watched by :mod:`promotion_operator.handlers.watching`, one
thread per namespace, which hands every event to the controller on the event
loop. Kopf's watch kept per-object state for objects the controller has no use
for, and Kopf's change handlers would add bookkeeping writes of their own to
every pass (progress and diff-base annotations, and a "touch" patch to wake a
delayed handler). The controller instead schedules passes itself, like a
controller-runtime reconciler, and writes one status patch per pass that
changed something (see :mod:`promotion_operator.control.controller`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kopf

from promotion_operator.control.controller import Controller
from promotion_operator.control.path_controller import PathController
from promotion_operator.handlers.watching import PathSource, PromotionWatch, WatchEvent

logger = logging.getLogger(__name__)


@kopf.on.startup()
async def start_controller(memo: kopf.Memo, **_: Any) -> None:
    """Start the controllers' workers (and the election), then the watches of each
    namespace (``memo["namespaces"]``; None: every namespace): the ModelPromotions'
    and the PromotionPaths'."""
    controller: Controller = memo["controller"]
    paths: PathController = memo["path_controller"]
    controller.on_event = paths.owned_changed
    controller.wake_other = paths.wake
    tasks = [
        asyncio.create_task(controller.run(), name="controller"),
        asyncio.create_task(paths.run(), name="path-controller"),
    ]
    for task in tasks:
        task.add_done_callback(_stop_if_crashed)
    memo["controller_tasks"] = tasks
    loop = asyncio.get_running_loop()
    stopped = threading.Event()
    memo["watch_stopped"] = stopped

    def deliver(events: Sequence[WatchEvent]) -> None:
        hand_over(loop, controller.observe, events)

    def deliver_paths(events: Sequence[WatchEvent]) -> None:
        hand_over(loop, paths.observe, events)

    for namespace in memo.get("namespaces") or (None,):
        where = namespace or "all"
        watches = {
            f"watch-{where}": PromotionWatch(controller.api, namespace, deliver),
            f"paths-{where}": PromotionWatch(
                PathSource(paths.api), namespace, deliver_paths, noun="PromotionPaths"
            ),
        }
        for name, watch in watches.items():
            threading.Thread(target=watch.run, args=(stopped,), name=name, daemon=True).start()


def hand_over(
    loop: asyncio.AbstractEventLoop,
    observe: Callable[[str | None, Mapping[str, Any]], None],
    events: Sequence[WatchEvent],
) -> None:
    """Run ``observe`` (a controller's) for each event on the event loop (from a watch
    thread), and wait until it has: a page of a list is taken in before the next is
    read, so the bodies of one page at most are alive."""
    done: concurrent.futures.Future[None] = concurrent.futures.Future()

    def observe_all() -> None:
        try:
            for event_type, body in events:
                observe(event_type, body)
            done.set_result(None)
        except BaseException as error:
            done.set_exception(error)

    loop.call_soon_threadsafe(observe_all)
    done.result()


def _stop_if_crashed(task: asyncio.Task[None]) -> None:
    # Without its controller the operator would watch and do nothing while its
    # liveness probe stays green: stop it, so it is restarted (or a standby leads).
    if not task.cancelled() and task.exception() is not None:
        logger.critical("the controller stopped: %r; stopping the operator", task.exception())
        os.kill(os.getpid(), signal.SIGTERM)


@kopf.on.cleanup()
async def stop_controller(memo: kopf.Memo, **_: Any) -> None:
    """Stop the watches and the workers; a leader gives its Lease up on the way out."""
    stopped: threading.Event | None = memo.get("watch_stopped")
    if stopped is not None:
        stopped.set()  # a watch thread ends with its current call (daemon threads)
    for task in memo.get("controller_tasks") or ():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
