"""Scanning captured output for the test secrets and for tokens."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tests.harness.keycloak import (
    DASHBOARD_CLIENT_SECRET,
    DATA_SCIENTIST,
    DATA_VIEWER,
    OPERATOR_CLIENT_SECRET,
    PRODUCTION_CLIENT_SECRET,
)

# A JWT: three base64url parts, the first two JSON objects ("eyJ" is '{"').
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
SECRETS = {
    "the data scientist's password": DATA_SCIENTIST.password,
    "the viewer's password": DATA_VIEWER.password,
    "the client secret": OPERATOR_CLIENT_SECRET,
    "the production realm's client secret": PRODUCTION_CLIENT_SECRET,
    "the dashboard's client secret": DASHBOARD_CLIENT_SECRET,
}


def assertion_secrets(name: str, assertion: str) -> dict[str, str]:
    """A client assertion (a ServiceAccount token) as secrets to scan for: the whole
    token, and its signature on its own, which is what makes it a credential and
    would still be one if a line quoted it cut or re-encoded around it.

    Register them in :data:`SECRETS` (``monkeypatch.setitem``) so that the operator
    fixture's scan of logs, Events and status looks for them too.
    """
    signature = assertion.rsplit(".", 1)[-1]
    return {name: assertion, f"{name} (its signature)": signature}


def secrets_in(captured: Mapping[str, str], extra: Mapping[str, str] | None = None) -> list[str]:
    """Which secret (or a token) appears where; empty when nothing leaked."""
    known = {**SECRETS, **(extra or {})}
    found = []
    for where, text in captured.items():
        found += [f"{name} in {where}" for name, value in known.items() if value in text]
        if JWT.search(text):
            found.append(f"a token in {where}")
    return found


def assert_no_secrets(captured: Mapping[str, str], extra: Mapping[str, str] | None = None) -> None:
    """Fail naming every leak found."""
    leaks = secrets_in(captured, extra)
    assert not leaks, f"secrets leaked: {leaks}"
