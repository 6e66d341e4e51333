"""Cross-site request forgery and DNS rebinding, refused before anything is done.

The server makes one random token when it starts (signed in: one per session);
every page's forms carry it,
and a POST without it is refused. A page on another site cannot read the
token (same-origin policy), and a page that rebinds its own host name to
127.0.0.1 is refused by the ``Host`` check, which applies to every request.
Pure: the decisions from the request's parts.
"""

from __future__ import annotations

import hmac
import secrets

FIELD = "csrf"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def allowed_hosts(port: int) -> frozenset[str]:
    """The ``Host`` headers of a browser that opened the printed URL (or localhost)."""
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})


def origins(hosts: frozenset[str], scheme: str = "http") -> frozenset[str]:
    """The ``Origin`` headers of this dashboard's own pages."""
    return frozenset(f"{scheme}://{host}" for host in hosts)


def host_refusal(host: str | None, hosts: frozenset[str]) -> str | None:
    """Why a request with this ``Host`` is refused (None: it is not)."""
    if host is None or host.lower() not in hosts:
        return "this dashboard answers only at its own address (" + ", ".join(sorted(hosts)) + ")"
    return None


def post_refusal(
    expected: str, given: str | None, origin: str | None, allowed: frozenset[str]
) -> str | None:
    """Why a state-changing request is refused (None: it is not): the form's token
    must be the server's, and an ``Origin``, when the browser sends one, ours
    (one of ``allowed``)."""
    if origin is not None and origin not in allowed:
        return "the request came from another site (its Origin is not this dashboard)"
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        return "the request carries no valid CSRF token: reload the page and try again"
    return None
