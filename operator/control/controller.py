"""The reconcile loop: which ModelPromotion gets a pass when, and how a pass is recorded.

The handlers' watch (``handlers/watching.py``) hands every event to
:meth:`Controller.observe`.
The controller keeps what the next pass needs of each resource whose run is
not at rest, and a work queue of when each one is due (the core's requeue
delay, or now when the spec or a request annotation changed). Workers take
due resources, run a pass (``run_pass``) in a thread, and record it with one
status patch when the pass changed something and none when it did not, plus
the pass's Events (and, after a pass that used a request, the removal of its
annotation and of its record in the status: ``_record``). A pass asking to go
on at once (validated, now write) is run straight after, reusing what it read.
Resources whose run has ended cost nothing but a small entry.

With leader election on, only the replica holding the Lease runs passes;
the others keep watching, so a standby that takes over knows every run. A pass
whose replica lost the Lease meanwhile (a pause past its renew deadline) writes
nothing: its Seldon Deploy writes are fenced in the client, and a pass that
ends without the Lease is not recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promotion_operator.control.bodies import being_deleted, newer, slim
from promotion_operator.control.kube_api import KubeApi, KubeError, ObjectChanged, ObjectRef
from promotion_operator.control.leadership import LeaderElection
from promotion_operator.control.runner import ChainReads, Runtime, run_pass
from promotion_operator.control.workqueue import WorkQueue
from promotion_operator.core.machine import at_rest, may_reach_first_write
from promotion_operator.core.pass_io import PassResult
from promotion_operator.core.promotion import ANNOTATION_PREFIX, PromotionRef
from promotion_operator.core.requests import CONSUMED, Requests, requests_from
from promotion_operator.core.spec import follows_alias
from promotion_operator.core.windows import Policies
from promotion_operator.errors import NotLeading

log = logging.getLogger(__name__)

#: Annotations left by the Kopf bookkeeping of earlier versions; a pass removes them.
LEGACY_PREFIXES = (f"kopf.{ANNOTATION_PREFIX}/", f"{ANNOTATION_PREFIX}/kopf-managed")
LEGACY_KEYS = (f"{ANNOTATION_PREFIX}/last-handled-configuration",)
#: Passes run back to back at most, before the run goes through the queue again.
MAX_CHAIN = 4
#: Wait after a status write failed for another reason than a conflict.
WRITE_RETRY_SECONDS = 2.0
#: How long a stopping operator waits for its queued Events to be posted.
EVENTS_DRAIN_SECONDS = 5.0


@dataclass
class _Tracked:
    """What the controller keeps of one ModelPromotion."""

    ref: ObjectRef
    resource_version: str
    generation: int
    requests: Requests
    body: dict[str, Any] | None  # None: the run is at rest, nothing to keep


@dataclass
class _Outcome:
    """What a worker's passes left: the newest body, and when to come back."""

    body: dict[str, Any] | None
    requeue_after: float | None
    # The resource no longer exists, though the watch never said so: its DELETED
    # event fell into a gap the watch's relist (after a 410 Gone) does not report.
    gone: bool = False


@dataclass
class _Recorded:
    """What recording a pass left: the newest body, and when to pass again because
    its used requests are not removed yet (None: all written)."""

    body: dict[str, Any]
    again: float | None = None


@dataclass
class Controller:
    """Schedules passes over ModelPromotions and records them (see the module docstring)."""

    runtime: Runtime
    api: KubeApi
    workers: int = 32
    election: LeaderElection | None = None
    #: Told of every ModelPromotion event (the path controller wakes the owning path).
    on_event: Callable[[Mapping[str, Any]], None] | None = None
    #: Woken for a shared read's key that is not a ModelPromotion's (a path's).
    wake_other: Callable[[str], None] | None = None
    _objects: dict[str, _Tracked] = field(default_factory=dict)
    _queue: WorkQueue[str] | None = None  # made on the event loop
    _leading: asyncio.Event | None = None
    _pool: concurrent.futures.ThreadPoolExecutor | None = None
    _poster: concurrent.futures.ThreadPoolExecutor | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    # -- watching (on the event loop) ----------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Take in a watch event of a ModelPromotion (``None``: listed at start-up)."""
        if self.on_event is not None:
            self.on_event(body)
        metadata = body.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        if not uid:
            return
        if event_type == "DELETED":
            self._forget(uid)
            return
        version = str(metadata.get("resourceVersion") or "")
        known = self._objects.get(uid)
        if known is not None and not newer(version, known.resource_version):
            return  # from before a write of ours that was already taken in
        tracked = _tracked(body)
        self._objects[uid] = tracked
        if tracked.body is None:
            self._work().forget(uid)
            return
        changed = known is None or (known.generation, known.requests) != (
            tracked.generation,
            tracked.requests,
        )
        if changed:
            self._work().add(uid)

    def _forget(self, uid: str) -> None:
        self._objects.pop(uid, None)
        self._work().forget(uid)
        self.runtime.forget(uid)

    def queued(self) -> list[str]:
        """The resources waiting for a pass (by uid)."""
        return self._work().pending()

    def forget_queued(self, uid: str) -> None:
        """Drop the pass ``uid`` waits for (it comes back with its next change)."""
        self._work().forget(uid)

    def kept(self) -> int:
        """How many resources' bodies are kept (their runs are not at rest)."""
        return sum(tracked.body is not None for tracked in self._objects.values())

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until cancelled: the workers, and the election if there is one."""
        self._loop = asyncio.get_running_loop()
        self._leading = asyncio.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers + 1, thread_name_prefix="pass"
        )
        self.runtime.reads.on_change = self._woken
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            if self.election is None:
                self.runtime.metrics.leading("", True)
                self._lead()
                await asyncio.gather(*tasks)
            else:
                await self._elect()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.election is not None:
                await self._in_thread(self.election.release)
            # Drain before the pool goes: a shut-down pool takes no more work, and a
            # cleanup that fails here would keep the process from exiting at all.
            await self._in_thread(self.drain_events, EVENTS_DRAIN_SECONDS)
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _elect(self) -> None:
        assert self.election is not None and self._leading is not None
        election = self.election
        while True:
            leading = await self._in_thread(election.attempt)
            self.runtime.metrics.leading(election.describe(), leading)
            if leading and not self._leading.is_set():
                log.info("leading as %s (Lease %s)", election.identity, election.describe())
                self._lead()
            elif not leading and self._leading.is_set():
                log.warning("lost the Lease %s; standing by", election.describe())
                self._leading.clear()
            await asyncio.sleep(election.retry_seconds)

    def _lead(self) -> None:
        assert self._leading is not None
        self._leading.set()
        # Whatever happened while another replica led, every working run gets a pass.
        for uid, tracked in self._objects.items():
            if tracked.body is not None:
                self._work().add(uid)

    def _woken(self, uid: str) -> None:
        # Called from a worker thread when a shared read saw the run's deployment change.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake, uid)

    def _wake(self, uid: str) -> None:
        if uid in self._objects:
            self._work().add(uid)
        elif self.wake_other is not None:
            self.wake_other(uid)

    def leading(self) -> bool:
        """Whether this replica runs passes now (it holds the Lease, or there is none)."""
        return self._leading is not None and self._leading.is_set()

    async def _worker(self) -> None:
        assert self._leading is not None
        queue = self._work()
        while True:
            await self._leading.wait()
            uid = await queue.get()
            try:
                tracked = self._objects.get(uid)
                if tracked is None or tracked.body is None or not self._leading.is_set():
                    continue
                try:
                    outcome = await self._in_thread(self.process, tracked.ref, tracked.body)
                except Exception:
                    log.exception("unexpected error in the pass of %s", tracked.ref.name)
                    outcome = _Outcome(None, self.runtime.policy.max_delay)
                self._settle(uid, outcome)
            finally:
                queue.done(uid)

    def _settle(self, uid: str, outcome: _Outcome) -> None:
        tracked = self._objects.get(uid)
        if tracked is None:
            return  # deleted meanwhile
        if outcome.gone:
            log.info("%s is gone; forgetting it", tracked.ref.name)
            self._forget(uid)
            return
        if outcome.body is not None:
            newest = _tracked(outcome.body)
            if newer(newest.resource_version, tracked.resource_version):
                self._objects[uid] = tracked = newest
        if tracked.body is not None and outcome.requeue_after is not None:
            self._work().add(uid, outcome.requeue_after)

    # -- one resource's passes (in a worker thread) --------------------------------------------

    def process(self, ref: ObjectRef, body: dict[str, Any]) -> _Outcome:
        """One due pass of the resource (and those it asks to follow at once), recorded."""
        chain = ChainReads()
        for _ in range(MAX_CHAIN):
            metadata = body["metadata"]
            if being_deleted(metadata):
                return _Outcome(body, None)
            annotations = metadata.get("annotations") or {}
            try:
                result = run_pass(
                    self.runtime,
                    PromotionRef(ref.namespace, ref.name, ref.uid, int(metadata["generation"])),
                    body.get("spec") or {},
                    body.get("status") or {},
                    now=datetime.datetime.now(datetime.UTC),
                    jitter=random.random(),
                    requests=requests_from(annotations),
                    chain=chain,
                    policies=self._policies(
                        ref.namespace, int(metadata["generation"]), body.get("status") or {}
                    ),
                    labels=metadata.get("labels") or {},
                )
            except NotLeading as stopped:  # run_pass asks the fence last, when it ends
                return self._unrecorded(ref, str(stopped))
            try:
                recorded = self._record(ref, body, result)
            except ObjectChanged:
                # Changed since it was read: read it again and pass again at once.
                return self._read_again(ref)
            except KubeError as error:
                if error.status == 404:
                    return _Outcome(None, None, gone=True)
                log.warning("could not record the pass of %s: %s", ref.name, error)
                return _Outcome(None, WRITE_RETRY_SECONDS)
            for event in result.events:
                log.info("[%s/%s] %s: %s", ref.namespace, ref.name, event.reason, event.message)
                # Posted in order by one thread of their own: a pass does not wait for them.
                self._events().submit(self.api.post_event, ref, event)
            if recorded.again is not None:
                # The pass is recorded, its used requests not yet removed: the next pass
                # removes them (it sees that the status records them as used).
                return _Outcome(recorded.body, _sooner(result.requeue_after, recorded.again))
            body = recorded.body
            if result.requeue_after != 0.0 or result.status is None:
                return _Outcome(body, result.requeue_after)
        return _Outcome(body, 0.0)

    def _policies(self, namespace: str, generation: int, status: Mapping[str, Any]) -> Policies:
        """The namespace's PromotionPolicies, read for a pass that may reach the run's
        first write (its promotion windows and freezes), and only then."""
        if not may_reach_first_write(generation, status):
            return Policies()
        try:
            return Policies(tuple(self.api.list_policies(namespace)))
        except KubeError as error:
            return Policies(error=str(error))

    def _unrecorded(self, ref: ObjectRef, why: str) -> _Outcome:
        # A deposed leader records nothing; the leader goes on with the run. Should
        # this replica still lead (a slow renewal), the pass comes again.
        log.warning("[%s/%s] pass left unrecorded: %s", ref.namespace, ref.name, why)
        return _Outcome(None, WRITE_RETRY_SECONDS)

    def _read_again(self, ref: ObjectRef) -> _Outcome:
        """After a lost race: the resource as it is now, for a pass at once. None (gone,
        or replaced by another object of the same name) means its run is over here."""
        try:
            current = self.api.get_promotion(ref)
        except KubeError as error:  # the API went away between the two calls
            log.warning("could not read %s again: %s", ref.name, error)
            return _Outcome(None, WRITE_RETRY_SECONDS)
        if current is None:
            return _Outcome(None, None, gone=True)
        return _Outcome(current, 0.0)

    def _record(self, ref: ObjectRef, body: dict[str, Any], result: PassResult) -> _Recorded:
        """Write the pass's result, each write only if there is something to write: the
        status patch (what the pass did, with the requests it used), then the metadata
        patch (their annotations, old bookkeeping), then the status patch that clears
        the record of the used requests. Raises if the first write fails: then nothing
        of the pass is recorded."""
        version = str(body["metadata"]["resourceVersion"])
        patches = patches_for(result, body["metadata"].get("annotations"))
        if patches.status is not None:
            body = self.api.patch_promotion(
                ref, patches.status, resource_version=version, subresource="status"
            )
            version = str(body["metadata"]["resourceVersion"])
        if patches.metadata is None:
            return _Recorded(body)
        try:
            body = self.api.patch_promotion(ref, patches.metadata, resource_version=version)
            if patches.cleared is not None:
                # Without a resourceVersion: once the annotations are gone the record is
                # wrong whatever changed meanwhile (a request set again since, with the
                # same value, is a new one), and only this pass writes this status now.
                body = self.api.patch_promotion(
                    ref, patches.cleared, resource_version=None, subresource="status"
                )
        except ObjectChanged:
            # Changed since the status write: read it again and pass again at once.
            return _Recorded(self.api.get_promotion(ref) or body, 0.0)
        except KubeError as error:
            log.warning("could not remove the used requests of %s: %s", ref.name, error)
            return _Recorded(body, WRITE_RETRY_SECONDS)
        return _Recorded(body)

    def drain_events(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout`` seconds) until the Events queued so far are posted."""
        with contextlib.suppress(concurrent.futures.TimeoutError):
            self._events().submit(lambda: None).result(timeout)

    # -- plumbing ------------------------------------------------------------------------------

    def _events(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._poster is None:
            self._poster = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="events"
            )
        return self._poster

    def _work(self) -> WorkQueue[str]:
        if self._queue is None:
            self._queue = WorkQueue(observer=self.runtime.metrics.workqueue)
        return self._queue

    async def _in_thread(self, function: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, function, *args)


@dataclass(frozen=True)
class Patches:
    """The merge patches that record a pass, in the order they are written; None:
    nothing to write."""

    status: dict[str, Any] | None = None  # what the pass did, with the requests it used
    metadata: dict[str, Any] | None = None  # removes their annotations (and old bookkeeping)
    cleared: dict[str, Any] | None = None  # then clears the record of the used requests


def patches_for(result: PassResult, annotations: Mapping[str, str] | None) -> Patches:
    """The merge patches that record ``result``.

    The status subresource ignores metadata, so removing a used request's
    annotation is a write of its own (rare: approvals, aborts, resumes), and so is
    clearing its record in the status once the annotation is gone.
    """
    annotations = annotations or {}
    removed = {CONSUMED[name]: None for name in result.used if CONSUMED[name] in annotations}
    cleared = {"status": result.after_removal} if removed and result.after_removal else None
    removed.update({key: None for key in annotations if _legacy(key)})
    return Patches(
        status={"status": result.status} if result.status is not None else None,
        metadata={"metadata": {"annotations": removed}} if removed else None,
        cleared=cleared,
    )


def _sooner(delay: float | None, than: float) -> float:
    return than if delay is None else min(delay, than)


def _legacy(key: str) -> bool:
    return key in LEGACY_KEYS or key.startswith(LEGACY_PREFIXES)


def _tracked(body: Mapping[str, Any]) -> _Tracked:
    metadata = body["metadata"]
    annotations = metadata.get("annotations") or {}
    generation = int(metadata.get("generation") or 0)
    requests = requests_from(annotations)
    status = body.get("status") or {}
    following = follows_alias(body.get("spec") or {})
    resting = being_deleted(metadata) or (
        at_rest(generation, status, requests, following=following)
        and not any(map(_legacy, annotations))
    )
    return _Tracked(
        ObjectRef(str(metadata["namespace"]), str(metadata["name"]), str(metadata["uid"])),
        str(metadata.get("resourceVersion") or ""),
        generation,
        requests,
        None if resting else slim(body),
    )
