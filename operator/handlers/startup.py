"""Kopf's own settings, chosen on purpose rather than inherited."""

from __future__ import annotations

from typing import Any

import kopf

#: Waits between the retries of a failed watch or listing, seconds.
WATCH_BACKOFFS = (0.5, 1.0, 2.0, 4.0, *([5.0] * 8))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Kopf runs the operator; the controller writes status and posts Events itself,
    and the ModelPromotions are watched by ``watching.py``."""
    settings.posting.enabled = False
    # Kopf's own watches (namespaces, when it looks for them) end and restart regularly,
    # so an apiserver restart is recovered quickly.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # Kopf's watches (of namespaces and CRDs) and their listings retry a refused connection,
    # a timeout, a 5xx or a 429 with a backoff capped at 5 s, so they are back within
    # 5 s of an apiserver or etcd coming back (Kopf's own cap is 21 s). The 12 tries
    # last 47.5 s in all, no longer than Kopf's own (54 s): a refusal Kopf falls back
    # from (a namespaced install may not list namespaces: 403) costs no more time. A
    # watch answered 5xx on every try is given up (see docs/operations.md).
    settings.networking.error_backoffs = WATCH_BACKOFFS
    settings.queueing.error_delays = [1, 2, 5, 10, 20, 30]
