"""One HTTP exchange, the same way for every client here (Seldon Deploy, the identity
provider, Prometheus, the notification sinks): send, read the body up to a cap, time
it, log it and tell an observer.

A body longer than its cap is refused (read as None), so a broken or hostile server
cannot make the operator read without end; a caller that only quotes an answer (the
notifier) asks for its start instead (``truncate=True``).

The clients word every failure themselves (which call, which server, what to fix)
and sort statuses with :mod:`promotion_operator.clients.http_failures`; this module
only moves bytes. Nothing here logs a URL: the caller's ``label`` names the request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import NamedTuple

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from promotion_operator.config.replica import THIS_REPLICA

__all__ = [
    "ExchangeObserver",
    "Reply",
    "UnreadableBody",
    "exchange",
    "pooled_session",
    "read_capped",
    "reason_phrase",
]

_CHUNK_BYTES = 64 * 1024
_log = logging.getLogger(__name__)

#: Called after every exchange with the status (None: no answer) and the seconds it took.
ExchangeObserver = Callable[[int | None, float], None]


class Reply(NamedTuple):
    """An answer as read: its status, headers and body."""

    status: int
    headers: CaseInsensitiveDict[str]
    #: None when the body was larger than the cap it was read with.
    body: bytes | None


class UnreadableBody(Exception):
    """The server answered ``status`` with ``headers``, but reading the body failed
    (``error`` says how)."""

    def __init__(
        self, status: int, headers: CaseInsensitiveDict[str], error: requests.RequestException
    ) -> None:
        super().__init__(f"HTTP {status}, reading the body failed ({type(error).__name__})")
        self.status = status
        self.headers = headers
        self.error = error

    @property
    def undecodable(self) -> bool:
        """Whether the body came but could not be decoded (a bad gzip, say)."""
        return isinstance(self.error, requests.exceptions.ContentDecodingError)


def new_session() -> requests.Session:
    """A session whose requests name this replica in their User-Agent."""
    made = requests.Session()
    made.headers["User-Agent"] = THIS_REPLICA.user_agent
    return made


def pooled_session(*, pool_connections: int, pool_maxsize: int) -> requests.Session:
    """A session whose pool many threads share; urllib3 never retries (callers own backoff)."""
    made = new_session()
    adapter = HTTPAdapter(
        pool_connections=pool_connections,
        pool_maxsize=pool_maxsize,
        max_retries=0,
        pool_block=False,
    )
    made.mount("https://", adapter)
    made.mount("http://", adapter)
    return made


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    verify: bool | str,
    success_cap: int,
    error_cap: int,
    label: str,
    log: logging.Logger | None,
    params: Mapping[str, str] | None = None,
    data: bytes | Mapping[str, str] | None = None,
    observer: ExchangeObserver | None = None,
    truncate: bool = False,
) -> Reply:
    """Send one request (no redirects followed) and read its body, up to ``success_cap``
    bytes for a 2xx and ``error_cap`` for anything else (see :func:`read_capped` for
    ``truncate``).

    A request that gets no answer raises what :mod:`requests` raised; an answer whose
    body cannot be read raises :class:`UnreadableBody`. Either way, and on success,
    ``log`` (unless None) gets one debug line (``label -> status in ms``) and
    ``observer`` is told.
    """
    status: int | None = None
    started = time.monotonic()
    try:
        response = session.request(
            method,
            url,
            params=dict(params) if params else None,
            data=data,
            headers=dict(headers),
            timeout=timeout,
            verify=verify,
            stream=True,
            allow_redirects=False,
        )
        with response:
            status = response.status_code
            cap = success_cap if 200 <= status < 300 else error_cap
            try:
                body = read_capped(response, cap, truncate=truncate)
            except requests.RequestException as error:
                raise UnreadableBody(status, response.headers, error) from error
            return Reply(status, response.headers, body)
    finally:
        elapsed = time.monotonic() - started
        if log is not None:
            log.debug("%s -> %s in %.1f ms", label, status, elapsed * 1000)
        if observer is not None:
            try:
                observer(status, elapsed)
            except Exception:
                (log or _log).exception("request observer failed for %s", label)


def read_capped(response: requests.Response, cap: int, *, truncate: bool = False) -> bytes | None:
    """The body, or None as soon as it is known to be longer than ``cap`` bytes.

    With ``truncate``, the body's first ``cap`` bytes instead (never None): what is
    past them is not read.
    """
    if truncate:
        return _read_start(response, cap)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    buffer = bytearray()
    for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
        buffer += chunk
        if len(buffer) > cap:
            return None
    return bytes(buffer)


def _read_start(response: requests.Response, cap: int) -> bytes:
    if cap <= 0:
        return b""
    buffer = bytearray()
    # Chunks no larger than the cap: a read of more would wait for bytes never used.
    for chunk in response.iter_content(chunk_size=min(cap, _CHUNK_BYTES)):
        buffer += chunk
        if len(buffer) >= cap:
            break
    return bytes(buffer[:cap])


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (``Not Found``); empty for an unknown one."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
