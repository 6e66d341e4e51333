"""One reconcile pass of a promotion run: observe, ask the core, act once.

This is the imperative shell around the pure core: it owns the Seldon Deploy
clients (one pooled client per instance, sharing one token cache per
instance) and turns their exceptions into the core's ``Failure`` values. It
knows nothing of Kopf; the handlers translate its result into a status patch,
Events and a requeue.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.auth import TokenProviders
from promotion_operator.core.machine import (
    Action,
    Context,
    Event,
    Observed,
    RetryPolicy,
    after_action,
    decide,
    is_settled,
    reads_for,
    start_run,
    with_events,
)
from promotion_operator.core.planning import PromotionRef
from promotion_operator.core.run import FINISHED, Failure, Run, from_status, to_status
from promotion_operator.core.spec import DeploymentRef, parse_spec
from promotion_operator.errors import PromotionError
from promotion_operator.metrics import Metrics
from promotion_operator.seldon import SeldonDeployClient
from promotion_operator.settings import Settings

logger = logging.getLogger(__name__)

PROMOTE_ACTION = "Promote"
ROLLBACK_ACTION = "Rollback"


@dataclass(frozen=True)
class PassResult:
    """What one pass wants recorded and done next."""

    status: dict[str, Any] | None  # None: nothing to record
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    message: str = ""


class Runtime:
    """The long-lived parts every pass shares: settings, token caches, HTTP clients."""

    def __init__(
        self,
        settings: Settings,
        *,
        policy: RetryPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or RetryPolicy()
        self.metrics = metrics or Metrics()
        self.tokens = TokenProviders(settings, observer=self.metrics.token_requested)
        self._clients: dict[str, SeldonDeployClient] = {}
        self._lock = threading.Lock()

    def client(self, instance: str | None) -> SeldonDeployClient:
        """The client of ``instance`` (None: the default); SettingsError if unknown."""
        settings = self.settings.instance(instance)
        with self._lock:
            client = self._clients.get(settings.name)
            if client is None:
                client = SeldonDeployClient(
                    settings,
                    self.tokens.for_instance(settings.name),
                    observer=self.metrics.seldon_observer(settings.name),
                )
                self._clients[settings.name] = client
            return client

    def close(self) -> None:
        """Close every HTTP session."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        self.tokens.close()


def run_pass(
    runtime: Runtime,
    promotion: PromotionRef,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    *,
    now: datetime.datetime,
    jitter: float,
) -> PassResult:
    """One pass of the run for ``promotion``'s current generation."""
    ctx = Context(parse_spec(spec), promotion, now, jitter, runtime.policy)
    recorded = from_status(status)
    run = start_run(ctx, recorded, promotion.generation)
    if run is not recorded:
        runtime.metrics.run_started(promotion.uid)
    if is_settled(run):
        # A finished run stays finished: re-applying the same spec does nothing.
        runtime.metrics.run_seen(promotion.uid, in_flight=False)
        return PassResult(None if run is recorded else to_status(run))
    before = run

    read_source, read_target = reads_for(run.phase)
    observed = Observed(
        **(_observe("source", runtime, ctx.spec.source) if read_source else {}),
        **(_observe("target", runtime, ctx.spec.target) if read_target else {}),
    )
    step = decide(ctx, run, observed)
    if step.action is not None:
        result, failure = _execute(runtime, ctx.spec.target, step.action)
        step = after_action(ctx, step.run, step.action, result, failure)
    step = with_events(before, step)
    ready = next((c for c in step.run.conditions if c.get("type") == "Ready"), {})
    _count(runtime, promotion, step.run, str(ready.get("reason", "")))
    return PassResult(
        to_status(step.run), step.events, step.requeue_after, str(ready.get("message", ""))
    )


def _count(runtime: Runtime, promotion: PromotionRef, run: Run, reason: str) -> None:
    if run.phase in FINISHED:
        seconds = ((run.finished_at or run.started_at) - run.started_at).total_seconds()
        runtime.metrics.run_finished(promotion.uid, str(run.phase), reason, seconds)
    else:
        runtime.metrics.run_seen(promotion.uid, in_flight=not is_settled(run))


def _observe(role: str, runtime: Runtime, ref: DeploymentRef) -> dict[str, Any]:
    try:
        return {role: runtime.client(ref.instance).find(ref.namespace, ref.name)}
    except PromotionError as error:
        return {f"{role}_error": as_failure(error)}
    except Exception as error:
        return {f"{role}_error": _internal(error)}


def _execute(
    runtime: Runtime, target: DeploymentRef, action: Action
) -> tuple[Mapping[str, Any] | None, Failure | None]:
    verb = ROLLBACK_ACTION if action.rollback else PROMOTE_ACTION
    try:
        client = runtime.client(target.instance)
        if action.kind == "Validate":
            assert action.deployment is not None
            return client.validate(target.namespace, action.deployment), None
        if action.kind == "Create":
            assert action.deployment is not None
            created = client.create(
                target.namespace, action.deployment, action=verb, message=action.message
            )
            return created, None
        if action.kind == "Update":
            assert action.deployment is not None
            updated = client.update(
                target.namespace,
                target.name,
                action.deployment,
                action=verb,
                message=action.message,
            )
            return updated, None
        client.delete(target.namespace, target.name, action=verb, message=action.message)
        return None, None
    except PromotionError as error:
        return None, as_failure(error)
    except Exception as error:
        return None, _internal(error)


def as_failure(error: PromotionError) -> Failure:
    """The core's view of a typed error."""
    return Failure(
        error.reason, error.message, error.http_status, error.retryable, error.retry_after
    )


def _internal(error: Exception) -> Failure:
    # The traceback goes to the operator's log; status and Events get a short line.
    logger.exception("unexpected error in a promotion pass")
    return Failure(
        "InternalError",
        f"unexpected {type(error).__name__} in the operator; see its log",
        retryable=True,
    )
