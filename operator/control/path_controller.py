"""The PromotionPaths' loop: when a path gets a pass, and what a pass reads and writes.

The handlers' path watch hands every PromotionPath event to
:meth:`PathController.observe`, and the ModelPromotion watch hands over every
event of a ModelPromotion a path owns (:meth:`PathController.owned_changed`), so
a stage run that ends wakes its path at once. Otherwise a path is looked at
again when the core says (its poll interval, or the end of a soak).

A pass reads the source and each stage's target through the shared reads, lists
the path's runs (one labelled list), asks the core (``core/paths.py``) what to
do, creates the runs it starts (create-if-absent under a name derived from path,
stage and freight, so a pass replayed after a crash creates nothing twice), and
writes the path's status when it changed. With leader election, only the leader
runs passes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promotion_operator.control.bodies import being_deleted, newer, resource_version, slim
from promotion_operator.control.kube_api import (
    GROUP,
    PATH_KIND,
    VERSION,
    KubeApi,
    KubeError,
    ObjectRef,
)
from promotion_operator.control.runner import Runtime
from promotion_operator.control.workqueue import WorkQueue
from promotion_operator.core.paths import (
    PATH_LABEL,
    Decision,
    PathSpec,
    PathSpecError,
    StagePhase,
    StageStatus,
    decide,
    holds_from,
    observe,
    parse_path_spec,
    promotions_from,
    recorded_from,
    run_body,
    stage_run_from,
    status_of,
)
from promotion_operator.errors import PromotionError

log = logging.getLogger(__name__)

#: Wait before a pass again after the Kubernetes API failed, or while standing by.
RETRY_SECONDS = 5.0
#: Passes over paths run at once (few: a pass is a handful of reads).
WORKERS = 2


@dataclass
class PathController:
    """Schedules and runs the passes over PromotionPaths (see the module docstring)."""

    runtime: Runtime
    api: KubeApi
    leading: Callable[[], bool] = lambda: True
    workers: int = WORKERS
    _paths: dict[str, dict[str, Any]] = field(default_factory=dict)
    _queue: WorkQueue[str] | None = None
    _pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- watching (on the event loop) ----------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Take in a watch event of a PromotionPath (``None``: listed)."""
        metadata = body.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        if not uid:
            return
        if event_type == "DELETED":
            self._paths.pop(uid, None)
            self._work().forget(uid)
            self.runtime.reads.unwatch(_reader(uid))
            return
        known = self._paths.get(uid)
        self._paths[uid] = slim(body)
        if known is None or _wants(known) != _wants(body):
            self._work().add(uid)

    def owned_changed(self, body: Mapping[str, Any]) -> None:
        """A ModelPromotion changed: wake the path that owns it, if one does."""
        for owner in (body.get("metadata") or {}).get("ownerReferences") or ():
            if owner.get("kind") == PATH_KIND and owner.get("uid") in self._paths:
                self._work().add(str(owner["uid"]))

    def known(self) -> int:
        """How many paths are known."""
        return len(self._paths)

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until cancelled."""
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="path"
        )
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _worker(self) -> None:
        queue = self._work()
        loop = asyncio.get_running_loop()
        while True:
            uid = await queue.get()
            try:
                body = self._paths.get(uid)
                if body is None:
                    continue
                if not self.leading():
                    queue.add(uid, RETRY_SECONDS)
                    continue
                try:
                    delay, written = await loop.run_in_executor(self._pool, self.process, body)
                except Exception:
                    log.exception("unexpected error in the pass of path %s", _name(body))
                    delay, written = RETRY_SECONDS, None
                known = self._paths.get(uid)
                if known is None:
                    continue  # deleted meanwhile
                if written is not None and newer(
                    resource_version(written), resource_version(known)
                ):
                    self._paths[uid] = slim(written)  # the next pass reads what this one wrote
                queue.add(uid, delay)
            finally:
                queue.done(uid)

    # -- one pass (in a worker thread) ---------------------------------------------------------

    def process(self, body: Mapping[str, Any]) -> tuple[float, dict[str, Any] | None]:
        """One pass over the path: the seconds until it should be looked at again, and
        the path as the status write left it (None: nothing written)."""
        metadata = body["metadata"]
        if being_deleted(metadata):
            # Deleted in the foreground (Argo CD's default prune), a path stays until the
            # garbage collector has deleted its runs: a pass would see a stage without
            # runs and start it again, promoting what the deletion is taking away.
            return RETRY_SECONDS * 12, None
        ref = ObjectRef(str(metadata["namespace"]), str(metadata["name"]), str(metadata["uid"]))
        status = body.get("status") or {}
        try:
            spec = parse_path_spec(body.get("spec") or {})
        except PathSpecError as error:
            return RETRY_SECONDS * 12, self._write(ref, status, {"message": str(error)})
        reader = _reader(ref.uid)
        refs = (spec.source, *(stage.target for stage in spec.stages))
        self.runtime.reads.watch(reader, refs)
        try:
            source = observe(spec.source.kind, self.runtime.reads.find(reader, spec.source))
            targets = [
                observe(stage.target.kind, self.runtime.reads.find(reader, stage.target))
                for stage in spec.stages
            ]
        except PromotionError as error:
            message = {"message": f"cannot read Seldon Deploy: {error}"}
            return spec.poll_interval, self._write(ref, status, message)
        try:
            owned = self.api.list_owned_promotions(ref.namespace, PATH_LABEL, ref.name)
        except KubeError as error:
            log.warning("could not list the runs of path %s: %s", ref.name, error)
            return RETRY_SECONDS, None
        runs = [
            run
            for item in owned
            if _owned_by(item, ref.uid) and (run := stage_run_from(item)) is not None
        ]
        now = datetime.datetime.now(datetime.UTC)
        recorded = recorded_from(status)
        annotations = metadata.get("annotations") or {}
        decision = decide(
            ref.name,
            spec,
            recorded,
            source,
            targets,
            runs,
            promotions_from(annotations),
            now,
            holds_from(annotations),
        )
        _log_holds(ref, recorded.stages, decision)
        try:
            self._start(ref, body, spec, decision, recorded.stages, now)
        except KubeError as error:
            log.warning("could not start a stage of path %s: %s", ref.name, error)
            return RETRY_SECONDS, None
        written = {**status_of(decision, spec, int(metadata.get("generation") or 0)), "message": ""}
        return decision.requeue_after, self._write(ref, status, written)

    def _start(
        self,
        ref: ObjectRef,
        body: Mapping[str, Any],
        spec: PathSpec,
        decision: Decision,
        previous: Mapping[str, Any],
        now: datetime.datetime,
    ) -> None:
        for start in decision.starts:
            run = run_body(body, start, api_version=f"{GROUP}/{VERSION}")
            if not self.api.create_promotion(run):
                continue  # created by an earlier pass (before a crash, say)
            before = previous.get(start.stage.name)
            soaked = None
            if before is not None and before.soak_until is not None:
                began = before.soak_until - datetime.timedelta(seconds=start.stage.soak)
                soaked = (now - began).total_seconds()
            self.runtime.metrics.stage_started(ref.namespace, ref.name, start.stage.name, soaked)
            log.info(
                "[%s/%s] stage %s: created run %s for freight %s",
                ref.namespace,
                ref.name,
                start.stage.name,
                start.name,
                start.freight.id,
            )

    def _write(
        self, ref: ObjectRef, status: Mapping[str, Any], written: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Patch the status with ``written`` unless it already says that; the path as
        written (None: not written)."""
        if all(status.get(key, "") == value for key, value in written.items()):
            return None
        try:
            return self.api.patch_path_status(ref, written)
        except KubeError as error:
            log.warning("could not record the pass of path %s: %s", ref.name, error)
            return None

    def wake(self, key: str) -> None:
        """A shared read saw a deployment of the path read under ``key`` change."""
        uid = key.removeprefix("path:")
        if uid in self._paths:
            self._work().add(uid)

    def _work(self) -> WorkQueue[str]:
        if self._queue is None:
            self._queue = WorkQueue()
        return self._queue


def _log_holds(ref: ObjectRef, before: Mapping[str, StageStatus], decision: Decision) -> None:
    """Say when a stage becomes held or stops being held (paths post no Events)."""
    for stage in decision.stages:
        was = before.get(stage.name)
        held, was_held = (
            stage.phase is StagePhase.HELD,
            was is not None and was.phase is StagePhase.HELD,
        )
        if held and not was_held:
            log.info("[%s/%s] stage %s: %s", ref.namespace, ref.name, stage.name, stage.message)
        elif was_held and not held:
            log.info("[%s/%s] stage %s: no longer held", ref.namespace, ref.name, stage.name)


def _reader(uid: str) -> str:
    """The key under which a path's reads are shared."""
    return f"path:{uid}"


def _owned_by(body: Mapping[str, Any], uid: str) -> bool:
    owners = (body.get("metadata") or {}).get("ownerReferences") or ()
    return any(owner.get("uid") == uid and owner.get("controller") for owner in owners)


def _wants(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, calls for a pass at once: the spec and the annotations."""
    metadata = body.get("metadata") or {}
    return metadata.get("generation"), tuple(sorted((metadata.get("annotations") or {}).items()))


def _name(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name"))
