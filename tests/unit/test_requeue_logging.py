"""The requeue log filter, against the installed Kopf's own handler execution.

A waiting run raises ``RunInProgress`` (a ``kopf.TemporaryError``), which Kopf
logs at ERROR with the words "failed temporarily". The filter in
``handlers/startup.py`` lowers exactly that record to DEBUG. These tests let the
installed Kopf execute the registered ``run_promotion`` handler (its id, field,
timeout and retries) with a stand-in body, so a Kopf upgrade that changes the
wording or the level fails here rather than flooding the operator's log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

import kopf
import pytest
from kopf._cogs.structs import bodies
from kopf._core.actions import execution, loggers, progression
from kopf._core.intents import registries

from promotion_operator.handlers import promotion, startup
from promotion_operator.handlers.promotion import RunInProgress

WAITING = "waiting for Seldon Deploy to report iris Available"
BODY: bodies.RawBody = {
    "apiVersion": f"{promotion.GROUP}/{promotion.VERSION}",
    "kind": "ModelPromotion",
    "metadata": {"namespace": "staging", "name": "iris-to-prod", "uid": "u-1"},
}


@pytest.fixture(autouse=True)
def quiet_requeues() -> Iterator[None]:
    """The filter as ``__main__`` installs it, removed again afterwards."""
    kopf_objects = logging.getLogger("kopf.objects")
    before = list(kopf_objects.filters)
    startup.quiet_requeues()
    yield
    kopf_objects.filters[:] = before


def registered_run_promotion() -> execution.Handler:
    """The handler the decorators registered, as Kopf will execute it."""
    [handler, *_] = [
        h
        for h in registries.get_default_registry()._changing.get_all_handlers()
        if h.fn is promotion.run_promotion
    ]
    return handler


def raising(error: Exception) -> Callable[..., None]:
    def fn(**_: Any) -> None:
        raise error

    return fn


def execute(handler: execution.Handler) -> execution.Outcome:
    """One execution by Kopf, with the operator's own settings and Kopf's object logger."""
    settings = kopf.OperatorSettings()
    # Called directly: the decorator's type demands every kwarg Kopf would pass.
    cast(Callable[..., None], startup.configure)(settings=settings)

    async def once() -> execution.Outcome:
        cause = execution.Cause(
            logger=loggers.ObjectLogger(body=bodies.Body(BODY), settings=settings)
        )
        state = progression.HandlerState.from_scratch(basetime=datetime.datetime.now(datetime.UTC))
        return await execution.execute_handler_once(
            settings=settings, handler=handler, cause=cause, state=state
        )

    return asyncio.run(once())


def kopf_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kopf.objects"]


def test_a_waiting_run_is_logged_at_debug_not_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kopf.objects")
    handler = dataclasses.replace(
        registered_run_promotion(), fn=raising(RunInProgress(WAITING, delay=5))
    )

    outcome = execute(handler)

    assert (outcome.final, outcome.delay) == (False, 5)
    [record] = [r for r in kopf_records(caplog) if WAITING in r.getMessage()]
    assert "failed temporarily" in record.getMessage()
    assert (record.levelno, record.levelname) == (logging.DEBUG, "DEBUG")
    assert not [r for r in kopf_records(caplog) if r.levelno >= logging.WARNING]


def test_a_waiting_run_is_not_logged_without_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kopf.objects")
    handler = dataclasses.replace(
        registered_run_promotion(), fn=raising(RunInProgress(WAITING, delay=5))
    )

    execute(handler)

    assert not [r for r in kopf_records(caplog) if WAITING in r.getMessage()]


def test_a_handler_crash_is_still_logged_as_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kopf.objects")
    handler = dataclasses.replace(
        registered_run_promotion(), fn=raising(RuntimeError("bug in the pass"))
    )

    execute(handler)

    [record] = [r for r in kopf_records(caplog) if "bug in the pass" in r.getMessage()]
    assert record.levelno == logging.ERROR


def test_a_wait_that_would_time_out_the_handler_is_still_logged_as_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Kopf ends the handler for good here ("failed temporarily but will time out"):
    # a final failure, not a waiting run.
    caplog.set_level(logging.INFO, logger="kopf.objects")
    handler = dataclasses.replace(
        registered_run_promotion(), fn=raising(RunInProgress(WAITING, delay=5)), timeout=1.0
    )

    outcome = execute(handler)

    assert outcome.final
    [record] = [r for r in kopf_records(caplog) if WAITING in r.getMessage()]
    assert record.levelno == logging.ERROR
