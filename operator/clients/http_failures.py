"""How an HTTP answer or a transport failure becomes a typed, secret-free error.

One place for what the Seldon Deploy client and the token provider both need:

- :func:`error_for_status`: which :mod:`~promotion_operator.errors` class an HTTP
  status is, per service (:data:`SELDON_DEPLOY`, :data:`IDENTITY_PROVIDER`,
  :data:`PROMETHEUS`);
- :func:`retry_after`: the server's Retry-After, in seconds, bounded;
- :func:`redact`: text quoted from a server or an exception, made safe to show;
- :func:`transport_problem`: a short description of a failed connection;
- :func:`exchange_failure`: what a failed :func:`~transport.exchange` is, for the
  clients of a service with a URL from the settings (Seldon Deploy, Prometheus).

The callers write the sentence around these (which call, which instance, what to
fix); nothing here ever sees a token it would have to hide, except through
:func:`redact`'s ``secrets``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import requests
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from promotion_operator.clients.transport import UnreadableBody
from promotion_operator.errors import (
    AnalysisInconclusive,
    AuthenticationFailed,
    Conflict,
    Forbidden,
    IdentityProviderUnavailable,
    Invalid,
    InvalidQuery,
    MetricsUnavailable,
    NotFound,
    PromotionError,
    SeldonDeployUnavailable,
    SettingsError,
    UnexpectedResponse,
)

#: Upper bound on a server's Retry-After. The run's own policy bounds it further
#: (never above the maximum retry delay, never past the run's deadline).
MAX_RETRY_AFTER_SECONDS = 300
#: Longest text quoted from a server or an exception.
MAX_QUOTED_CHARS = 300
REDACTED = "[REDACTED]"

# Anything shaped like a JWT (header.payload[.signature]) or a bearer credential.
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[\x21-\x7e]+")
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] [^)'\"\]]+")
_TLS_RE = re.compile(
    r"(?i)certificate verify failed[^)'\"\]]*|wrong version number|hostname mismatch"
)
# Parses Retry-After exactly as urllib3 (installed with requests) does for its own retries.
_RETRY_AFTER_PARSER = Retry(total=0, retry_after_max=MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class Service:
    """How one kind of server's HTTP statuses sort into errors."""

    #: Statuses with a meaning of their own (refused credentials, missing object, ...).
    refusals: Mapping[int, type[PromotionError]]
    #: Unreachable, timed out, throttled (408, 429) or failing (5xx): retried.
    unavailable: type[PromotionError]
    #: Any other status that is not a success: the client and server disagree.
    unexpected: type[PromotionError]


SELDON_DEPLOY = Service(
    refusals={
        400: Invalid,
        401: AuthenticationFailed,
        403: Forbidden,
        404: NotFound,
        409: Conflict,
        422: Invalid,
    },
    unavailable=SeldonDeployUnavailable,
    unexpected=UnexpectedResponse,
)

# OAuth 2.0 answers a refused grant with 400 (invalid_grant) or 401 (invalid_client).
IDENTITY_PROVIDER = Service(
    refusals={400: AuthenticationFailed, 401: AuthenticationFailed, 403: AuthenticationFailed},
    unavailable=IdentityProviderUnavailable,
    unexpected=IdentityProviderUnavailable,
)

# The Prometheus HTTP API (/api/v1/query): 400 is bad_data (the PromQL does not parse
# or a parameter is wrong), 422 is execution (the query parsed but could not be
# evaluated on the data there is now, e.g. duplicate series in a match group), 503
# is timeout/canceled/unavailable. A refused bearer token is 401 or 403 (a proxy in
# front of Prometheus does the checking). 404 means the URL is not a Prometheus.
PROMETHEUS = Service(
    refusals={
        400: InvalidQuery,
        401: AuthenticationFailed,
        403: AuthenticationFailed,
        422: AnalysisInconclusive,
    },
    unavailable=MetricsUnavailable,
    unexpected=UnexpectedResponse,
)


def error_class(service: Service, status: int) -> type[PromotionError]:
    """The error an unsuccessful ``status`` from ``service`` is."""
    refused = service.refusals.get(status)
    if refused is not None:
        return refused
    if is_unavailable(status):
        return service.unavailable
    return service.unexpected


def is_unavailable(status: int) -> bool:
    """Whether ``status`` says "not now" (timeout, throttled, server error): worth a retry."""
    return status in (408, 429) or status >= 500


def error_for_status(
    service: Service, status: int, message: str, headers: Mapping[str, str]
) -> PromotionError:
    """The error for an unsuccessful answer; carries Retry-After when it is retryable."""
    kind = error_class(service, status)
    wait = retry_after(headers) if kind is service.unavailable else None
    return kind(message, http_status=status, retry_after=wait)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait (delay-seconds or HTTP-date), at most the cap.

    None when there is no header or it cannot be read; a date in the past is 0.
    """
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(_RETRY_AFTER_PARSER.parse_retry_after(value))
    except (InvalidHeader, OverflowError, ValueError):
        return None


def redact(text: str, secrets: Iterable[str] = (), *, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` safe to show: secrets, JWTs and bearer credentials replaced, printable,
    one line, at most ``limit`` characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _JWT_RE.sub(REDACTED, text)
    text = _BEARER_RE.sub(r"\1" + REDACTED, text)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def transport_problem(error: requests.RequestException, timeout: float) -> str:
    """A short, secret-free description of a request that got no HTTP answer."""
    if isinstance(error, requests.Timeout) or (
        isinstance(error, requests.ConnectionError) and "timed out" in str(error).lower()
    ):
        return f"timed out after {timeout:g} s"
    text = str(error)
    if isinstance(error, requests.exceptions.SSLError):
        found = _TLS_RE.search(text)
        return "TLS error" + (f": {found.group(0).strip()}" if found else "")
    found = _ERRNO_RE.search(text)
    if found:
        return f"connection failed: {found.group(0).strip()}"
    return f"connection failed ({type(error).__name__})"


@dataclass(frozen=True)
class ExchangeFailure:
    """How one client words a failed exchange: where (the call, for messages), the
    setting its URL comes from, the service's unavailable error, and its noun for
    an answer (``answer``, ``response body``)."""

    where: str
    setting: str
    unavailable: Callable[..., PromotionError]
    answer: str
    timeout: float


def exchange_failure(error: Exception, how: ExchangeFailure) -> PromotionError:
    """The typed error for ``error``, raised by :func:`~transport.exchange`: a bad URL is
    the settings' fault, a connection that failed or an answer that could not be
    read is the service's, and one that cannot be decoded is unexpected."""
    if isinstance(
        error,
        requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidURL,
    ):
        return SettingsError([f"{how.setting} ({type(error).__name__})"])
    if isinstance(error, requests.RequestException):
        return how.unavailable(f"{how.where}: {transport_problem(error, how.timeout)}")
    if isinstance(error, UnreadableBody):
        if error.undecodable:
            return UnexpectedResponse(
                f"{how.where}: HTTP {error.status}, {how.answer} could not be decoded",
                http_status=error.status,
            )
        return how.unavailable(
            f"{how.where}: HTTP {error.status}, reading {how.answer} failed: "
            f"{transport_problem(error.error, how.timeout)}",
            http_status=error.status,
        )
    raise TypeError(f"not a failed exchange: {type(error).__name__}")
