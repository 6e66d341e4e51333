"""Kopf's own settings, chosen on purpose rather than inherited."""

from __future__ import annotations

from typing import Any

import kopf


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
    settings.queueing.error_delays = [1, 2, 5, 10, 20, 30]
