"""Kopf's own settings: where it keeps its bookkeeping, how it watches and posts."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from promotion_operator.core.planning import ANNOTATION_PREFIX

# Kopf's progress and diff-base live in annotations (the structural schema would
# prune Kopf's default `status.kopf`) under a prefix of their own: Kopf ignores
# every annotation under its storage prefix, and people's requests live under
# ours (deploy.mlops.dev/approve, abort, retry, resume), which must wake a pass.
KOPF_PREFIX = f"kopf.{ANNOTATION_PREFIX}"
DIFFBASE_KEY = "last-handled-configuration"
#: Kopf's keys from before it had a prefix of its own; their marker would make Kopf
#: ignore the request annotations, so a pass removes them.
LEGACY_KOPF_KEYS = (f"{ANNOTATION_PREFIX}/kopf-managed", f"{ANNOTATION_PREFIX}/{DIFFBASE_KEY}")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Settings chosen on purpose rather than inherited."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key=DIFFBASE_KEY
    )
    # The only deletion handler (`forget_promotion`) is optional, so Kopf never adds
    # this finalizer and deletion never waits for the operator; named for clarity anyway.
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # Events are posted explicitly (one per phase change, one per new error).
    settings.posting.enabled = True
    settings.posting.loggers = False
    # Passes are short (no sleeping in handlers), so a modest pool serves many runs.
    settings.execution.max_workers = 32
    # Watches end and restart regularly, so an apiserver restart is recovered quickly.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.queueing.error_delays = [1, 2, 5, 10, 20, 30]


class _QuietRequeue(logging.Filter):
    """Kopf logs every TemporaryError at ERROR; a waiting run is not an error.

    Matches Kopf's record "<handler> failed temporarily: <message>" (kopf
    1.45.2, ``execute_handler_once``) and lowers it to DEBUG. The final variants
    ("failed temporarily but will time out/exceed ...") stay errors. Pinned
    against the installed Kopf by tests/unit/test_requeue_logging.py.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if " failed temporarily: " in record.getMessage() and record.levelno >= logging.ERROR:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def quiet_requeues() -> None:
    """Install the filter on Kopf's per-object logger."""
    logging.getLogger("kopf.objects").addFilter(_QuietRequeue())
