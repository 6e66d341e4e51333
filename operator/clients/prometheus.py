"""HTTP client for the Prometheus query API, for the Canary strategy's analysis steps.

:meth:`PrometheusClient.query` runs one instant query (``POST /api/v1/query``,
form-encoded, so a long PromQL never meets a URL length limit) and returns the one
number it evaluates to. :meth:`PrometheusClient.query_by` runs one the same way and
returns the numbers of an instant vector whose series are told apart by one label,
``{label value: number}`` (e.g. ``sum by (class) (increase(predictions_total[1m]))``
by ``class``, to compare how a champion's and a challenger's predictions are
distributed). :meth:`PrometheusClient.firing_alerts` runs the instant query
``ALERTS{alertstate="firing", <labels>}`` (:func:`firing_alerts_query`, the values
escaped as PromQL string literals) and returns each firing alert's label set; no
series is no alert firing. Every other outcome is a typed error of
:mod:`promotion_operator.errors` (the status table is
:data:`promotion_operator.clients.http_failures.PROMETHEUS`):

==============================================  ==================================
what happened                                   raised
==============================================  ==================================
connection error, timeout, TLS failure, 5xx,    :class:`MetricsUnavailable`
408, 429 (with Retry-After), an ``error``
answer of type timeout, canceled, unavailable
or internal
400 / ``bad_data``: the PromQL is wrong         :class:`InvalidQuery`
                                                (reason ``Invalid``)
an empty query (or, for ``query_by``, an        :class:`InvalidQuery`, without a
empty label name; for ``firing_alerts``, a      request
label name that is not one, or ``alertstate``
or a ``__`` name, which are Prometheus')
a success that is not one number: no data,      :class:`AnalysisInconclusive`
several series, NaN or ±Inf, a matrix, a
string, a native histogram; 422 / ``execution``
(the query could not be evaluated on the data
there is now)
``query_by``: a success that is not one         :class:`AnalysisInconclusive`
number per label value: a scalar, a matrix, a
string; an empty vector (no series); a series
without the label or two series with the same
value of it (the message says to aggregate
``by (label)``); NaN or ±Inf in any series; a
native histogram; more than
:data:`MAX_SERIES` series
``firing_alerts``: a scalar, a matrix, a        :class:`AnalysisInconclusive`
string instead of a vector
401, 403, an unreadable or malformed token      :class:`AuthenticationFailed`
file
other statuses (404: not a Prometheus URL,      :class:`UnexpectedResponse`
3xx: redirects are not followed), a 2xx that
is not the documented JSON shape (for
``query_by`` and ``firing_alerts`` also a
sample without a ``metric`` object or with a
label value that is not a string)
==============================================  ==================================

A scalar and a vector of exactly one sample are the two answers that are one
number; a vector whose every series has its own value of the label is the one
answer that is numbers by that label.

Why ``query_by``'s odd shapes are :class:`AnalysisInconclusive` and not
:class:`InvalidQuery`: the module keeps :class:`InvalidQuery` (not retried, the run
fails) for a query Prometheus itself refuses, and sorts every well-formed success of
the wrong shape as inconclusive, as ``query`` does for several series or a matrix.
Whether the series of a query carry the label, or carry it once each, often depends
on the data there is now (a raw counter gives one series per pod, so duplicates
appear only once a second replica serves; a source series without the label gives a
series without it only while it has samples), so the answer is retried with backoff
and, at the run's deadline, the canary is rolled back, never promoted on evidence
that could not be read; the message says what to fix: aggregate ``by (label)``. An
empty label value counts as no label (Prometheus never tells the two apart). NaN and
±Inf are inconclusive exactly as in ``query``: a distribution with one of them
proves nothing. The series cap keeps a comparison to a number of classes a caller
can sensibly compare (and its messages short); the response-size cap comes first.

All three methods share one path (the bearer token, the request, the response-size
cap, the mapping of statuses and ``error`` answers, the observer) and differ only in
how they read the ``data`` object of a success. An empty vector is no data for
``query`` and ``query_by``, but for ``firing_alerts`` it is the answer: no alert is
firing. Prometheus writes ``ALERTS`` only for alerts pending or firing, so an alert
that fired and ended between two queries is not seen.

Like :class:`~promotion_operator.clients.seldon.SeldonDeployClient`, the client never sleeps
and never retries (callers own backoff, so the controller's pass threads are never
held here), and one client (one pooled :class:`requests.Session`) is meant to be
shared by every pass thread. The bearer token, if any, is read from its file on every
query, so a rotated mounted Secret is used at once.

Error messages and log lines name the Prometheus URL (which carries no
credentials), the HTTP status, a short redacted form of the query and, for a
refused query, Prometheus' own ``error`` text (redacted and truncated). Label names
and values from the answer are shown redacted and truncated too (they are not
secrets, but a server could echo anything). They never contain the token, a request
header or a raw response body.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests

from promotion_operator.clients.http_failures import (
    PROMETHEUS,
    ExchangeFailure,
    error_for_status,
    exchange_failure,
    redact,
)
from promotion_operator.clients.transport import (
    Reply,
    UnreadableBody,
    exchange,
    pooled_session,
    reason_phrase,
)
from promotion_operator.config.settings import (
    ENV_PROMETHEUS_TOKEN_FILE,
    ENV_PROMETHEUS_URL,
    PrometheusSettings,
    read_token_file,
)
from promotion_operator.errors import (
    AnalysisInconclusive,
    AuthenticationFailed,
    InvalidQuery,
    MetricsUnavailable,
    PromotionError,
    SettingsError,
    UnexpectedResponse,
)

__all__ = [
    "ALERTS_METRIC",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "MAX_QUERY_CHARS",
    "MAX_SERIES",
    "POOL_MAXSIZE",
    "QUERY_PATH",
    "PrometheusClient",
    "QueryObserver",
    "firing_alerts_query",
]

log = logging.getLogger(__name__)

#: The instant-query endpoint, relative to the server's base URL.
QUERY_PATH = "/api/v1/query"
#: Largest successful answer read. One number is a few hundred bytes; anything this
#: big is thousands of series, which is not one number either.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
#: Largest error answer read to find Prometheus' ``error`` text.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Connections kept: the controller's pass threads all share one client.
POOL_MAXSIZE = 32
#: Longest form of the query quoted in a message or a log line.
MAX_QUERY_CHARS = 120
#: Series whose label sets an "several series" message shows.
SHOWN_SERIES = 3
#: Most series :meth:`PrometheusClient.query_by` reads: a comparison of more label
#: values than this is not one a canary analysis can make sense of.
MAX_SERIES = 1000

#: The series Prometheus writes for the alerts of its alerting rules.
ALERTS_METRIC = "ALERTS"
#: The label of ``ALERTS`` that says whether an alert is pending or firing.
ALERT_STATE_LABEL = "alertstate"

_LABELS_CHARS = 100
# Prometheus' errorType values, sorted like the statuses they come with.
_UNAVAILABLE_TYPES = frozenset({"timeout", "canceled", "unavailable", "internal"})

#: Called once per :meth:`PrometheusClient.query` or :meth:`PrometheusClient.query_by`
#: with the result ("ok" or the error's ``reason``) and the seconds it took.
QueryObserver = Callable[[str, float], None]

_T = TypeVar("_T")


class PrometheusClient:
    """Instant queries on one Prometheus server; thread-safe, pooled, never sleeps."""

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        observer: QueryObserver | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._settings = settings
        self._observer = observer
        self._max_response_bytes = max_response_bytes
        self._base_url = settings.url.rstrip("/")
        self._url = _without_credentials(self._base_url)
        self._timeout = settings.timeout
        self._verify: bool | str = (
            str(settings.ca_file) if settings.ca_file is not None else settings.verify_tls
        )
        # Disabled verification is warned about once, when the settings are loaded.
        self._session = pooled_session(pool_connections=1, pool_maxsize=POOL_MAXSIZE)

    def __repr__(self) -> str:
        return f"PrometheusClient({self._url!r})"

    # -- the API ---------------------------------------------------------------------------

    def query(self, promql: str) -> float:
        """Evaluate ``promql`` now and return the one number it gives.

        Raises :class:`MetricsUnavailable`, :class:`InvalidQuery`,
        :class:`AnalysisInconclusive`, :class:`AuthenticationFailed` or
        :class:`UnexpectedResponse` (see the module's table).
        """
        return self._observed(lambda: self._query(promql))

    def query_by(self, promql: str, label: str) -> dict[str, float]:
        """Evaluate ``promql`` now and return its series' numbers by their ``label``.

        The answer must be an instant vector of at most :data:`MAX_SERIES` series,
        each with its own non-empty value of ``label`` and a finite number, e.g.
        ``sum by (class) (increase(predictions_total[1m]))`` by ``class``. Raises
        :class:`MetricsUnavailable`, :class:`InvalidQuery`,
        :class:`AnalysisInconclusive`, :class:`AuthenticationFailed` or
        :class:`UnexpectedResponse` (see the module's table).
        """
        return self._observed(lambda: self._query_by(promql, label))

    def firing_alerts(self, match_labels: Mapping[str, str]) -> list[dict[str, str]]:
        """The alerts firing now whose labels equal ``match_labels``, each as its label
        set (``alertname`` among them; without ``__name__``), sorted.

        One instant query of :func:`firing_alerts_query`; an empty vector is no alert
        firing. Raises :class:`InvalidQuery` (without a request) for a label name that
        cannot be matched, and otherwise as :meth:`query` does (see the module's table).
        """
        return self._observed(lambda: self._firing_alerts(match_labels))

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one query -------------------------------------------------------------------------

    def _observed(self, run: Callable[[], _T]) -> _T:
        """``run()``, its result and duration told to the observer (never failing it)."""
        result = "InternalError"
        started = time.monotonic()
        try:
            value = run()
            result = "ok"
            return value
        except PromotionError as exc:
            result = exc.reason
            raise
        finally:
            elapsed = time.monotonic() - started
            if self._observer is not None:
                try:
                    self._observer(result, elapsed)
                except Exception:
                    log.exception("query observer failed for Prometheus %s", self._url)

    def _query(self, promql: str) -> float:
        _require_query(self._url, promql)
        answer = self._answer(
            promql, "far more than one number: aggregate the query to one series (e.g. with sum())"
        )
        return _one_number(answer)

    def _query_by(self, promql: str, label: str) -> dict[str, float]:
        _require_query(self._url, promql)
        if not isinstance(label, str) or not label.strip():
            raise InvalidQuery(
                f"{_Query(self._url, promql).display}: the label to tell series apart by is empty"
            )
        answer = self._answer(
            promql,
            f"too many series to compare: aggregate the query {_by(label, [])} into fewer series",
        )
        return _numbers_by(answer, label)

    def _firing_alerts(self, match_labels: Mapping[str, str]) -> list[dict[str, str]]:
        try:
            promql = firing_alerts_query(match_labels)
        except ValueError as exc:
            raise InvalidQuery(f"alerts query on Prometheus {self._url}: {exc}") from None
        answer = self._answer(
            promql, "too many firing alerts to read: select them with more labels"
        )
        return _label_sets(answer)

    def _answer(self, promql: str, too_large: str) -> _Answer:
        """Send ``promql`` and return the ``data`` object of its success.

        ``too_large`` says what an answer over the response-size cap means (it ends
        the message of the :class:`AnalysisInconclusive` raised for one).
        """
        token = self._bearer(promql)
        secrets = [token] if token else []
        call = _Query(self._url, promql, secrets)
        exchange = self._send(call, token, promql)
        if not 200 <= exchange.status < 300:
            raise self._error(call, exchange, secrets)
        if exchange.body is None:
            raise AnalysisInconclusive(
                call.describe(
                    exchange.status,
                    f"an answer larger than {self._max_response_bytes} bytes, {too_large}",
                ),
                http_status=exchange.status,
            )
        document = self._json(call, exchange)
        if document.get("status") == "error":
            raise _error_answer(call, exchange.status, document, secrets)
        if document.get("status") != "success":
            _unexpected(call, exchange.status, "an answer whose status is not success or error")
        _log_warnings(call, document, secrets)
        data = document.get("data")
        if not isinstance(data, dict):
            _unexpected(call, exchange.status, "a success without a data object")
        return _Answer(call, exchange.status, data, secrets)

    def _bearer(self, promql: str) -> str | None:
        """The token, read from its file now (so a rotated Secret counts at once)."""
        path = self._settings.bearer_token_file
        if path is None:
            return None
        try:
            return read_token_file(path)
        except SettingsError as exc:
            # The problem names the file, never its content.
            raise AuthenticationFailed(
                f"{_Query(self._url, promql).display}: no bearer token to send: {exc.problems[0]}"
            ) from None

    def _send(self, call: _Query, token: str | None, promql: str) -> Reply:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # Prometheus stops evaluating at its own deadline and says so (503, "timeout"),
        # which is clearer than a request abandoned by the client.
        form = {"query": promql, "timeout": f"{self._timeout:g}"}
        try:
            return exchange(
                self._session,
                "POST",
                self._base_url + QUERY_PATH,
                data=form,
                headers=headers,
                timeout=self._timeout,
                verify=self._verify,
                success_cap=self._max_response_bytes,
                error_cap=MAX_ERROR_BODY_BYTES,
                label=call.display,
                log=log,
            )
        except requests.exceptions.InvalidHeader:
            raise AuthenticationFailed(
                f"{call.display}: the bearer token is not a valid HTTP header value"
            ) from None
        except (requests.RequestException, UnreadableBody) as exc:
            how = ExchangeFailure(
                call.display,
                f"{ENV_PROMETHEUS_URL}: invalid URL {self._url!r}",
                MetricsUnavailable,
                "the answer",
                self._timeout,
            )
            raise exchange_failure(exc, how) from getattr(exc, "error", exc)

    # -- sorting ---------------------------------------------------------------------------

    def _error(self, call: _Query, exchange: Reply, secrets: list[str]) -> PromotionError:
        status = exchange.status
        document = _parse(exchange.body)
        detail = None
        if isinstance(document, dict):
            detail = _server_error(document, secrets)
        text = call.describe(status, detail)
        if status in (401, 403):
            text += f" (check the token in the file named by {ENV_PROMETHEUS_TOKEN_FILE})"
        elif status == 404:
            text += f" (is {ENV_PROMETHEUS_URL} the base URL of a Prometheus server?)"
        elif 300 <= status < 400:
            text += f" (redirects are not followed: check {ENV_PROMETHEUS_URL})"
        return error_for_status(PROMETHEUS, status, text, exchange.headers)

    def _json(self, call: _Query, exchange: Reply) -> dict[str, Any]:
        content_type = exchange.headers.get("Content-Type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            _unexpected(
                call, exchange.status, f"content type {media_type or '(none)'!r} instead of JSON"
            )
        document = _parse(exchange.body)
        if document is None:
            _unexpected(call, exchange.status, "a body that is not valid JSON")
        if not isinstance(document, dict):
            _unexpected(
                call, exchange.status, f"a JSON {type(document).__name__} instead of an object"
            )
        return document


class _Query:
    """One query, as messages and log lines show it."""

    __slots__ = ("display", "short")

    def __init__(self, url: str, promql: str, secrets: list[str] | None = None) -> None:
        # Redacted (a query could quote something token-shaped), one line, truncated.
        self.short = redact(promql, secrets or (), limit=MAX_QUERY_CHARS)
        self.display = f"query {self.short!r} on Prometheus {url}"

    def describe(self, status: int, detail: str | None) -> str:
        text = f"{self.display}: HTTP {status}"
        if phrase := reason_phrase(status):
            text += f" {phrase}"
        if detail:
            text += f": {detail}"
        return text


@dataclass(frozen=True, slots=True)
class _Answer:
    """A success's ``data`` object, with what messages about it need."""

    call: _Query
    status: int
    data: Mapping[str, Any]
    secrets: list[str]


def firing_alerts_query(match_labels: Mapping[str, str]) -> str:
    """``ALERTS{alertstate="firing", <name>="<value>", ...}``: the PromQL selecting the
    firing alerts whose labels equal ``match_labels``, in the order given.

    Raises ValueError for a name that is not a Prometheus label name
    (``[a-zA-Z_][a-zA-Z0-9_]*``), for ``alertstate`` (the selector's own) or a name
    starting with ``__`` (Prometheus' own, such as ``__name__``), and for a value that
    is not a string. Values become PromQL string literals, escaped: any value selects
    exactly the alerts whose label has that value, and nothing else.
    """
    matchers = [f"{ALERT_STATE_LABEL}={_string_literal('firing')}"]
    for name, value in match_labels.items():
        if not isinstance(name, str) or not _LABEL_NAME_RE.fullmatch(name):
            raise ValueError(
                f"{redact(repr(name), (), limit=_LABELS_CHARS)} is not a label name "
                "([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        if name == ALERT_STATE_LABEL or name.startswith("__"):
            raise ValueError(
                f"the label {name} is Prometheus' own (the query selects the firing alerts); "
                "select alerts by their other labels"
            )
        if not isinstance(value, str):
            raise ValueError(f"the value of the label {name} is not a string")
        matchers.append(f"{name}={_string_literal(value)}")
    return f"{ALERTS_METRIC}{{{', '.join(matchers)}}}"


# What a PromQL string literal cannot hold as itself (Go's escapes, which PromQL reads).
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string_literal(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal: backslashes, quotes and line
    breaks escaped, other control characters as ``\\uXXXX``."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _require_query(url: str, promql: str) -> None:
    if not isinstance(promql, str) or not promql.strip():
        raise InvalidQuery(f"query on Prometheus {url}: the query is empty")


# -- reading an answer -------------------------------------------------------------------------


def _one_number(answer: _Answer) -> float:
    """The number in a success's ``data``; AnalysisInconclusive if it is not one number."""
    call, status, secrets = answer.call, answer.status, answer.secrets
    kind = answer.data.get("resultType")
    result = answer.data.get("result")
    if kind == "scalar":
        return _finite(call, status, _sample_value(call, status, result))
    if kind == "vector":
        if not isinstance(result, list):
            _unexpected(call, status, "a vector whose result is not a list")
        if not result:
            raise AnalysisInconclusive(
                call.describe(status, "no data (the query returned an empty vector)"),
                http_status=status,
            )
        if len(result) > 1:
            raise AnalysisInconclusive(
                call.describe(
                    status,
                    f"{len(result)} series instead of one: {_shown(result, secrets)}; "
                    "aggregate the query to one series (e.g. with sum())",
                ),
                http_status=status,
            )
        sample = result[0]
        if not isinstance(sample, dict):
            _unexpected(call, status, "a vector sample that is not an object")
        if "value" not in sample and "histogram" in sample:
            raise AnalysisInconclusive(
                call.describe(
                    status,
                    "a native histogram instead of a number (e.g. use histogram_quantile())",
                ),
                http_status=status,
            )
        return _finite(call, status, _sample_value(call, status, sample.get("value")))
    if kind == "matrix":
        raise AnalysisInconclusive(
            call.describe(
                status,
                "a range vector (matrix) instead of one number: the query must evaluate to "
                "an instant value (e.g. wrap a [range] selector in rate() and sum())",
            ),
            http_status=status,
        )
    if kind == "string":
        raise AnalysisInconclusive(
            call.describe(status, "a string instead of a number"), http_status=status
        )
    _unexpected(call, status, f"an unknown resultType {redact(str(kind), secrets, limit=40)!r}")


def _numbers_by(answer: _Answer, label: str) -> dict[str, float]:
    """The numbers of a success's vector by ``label``; AnalysisInconclusive if it is not
    one finite number for each of at most :data:`MAX_SERIES` values of ``label``."""
    call, status, secrets = answer.call, answer.status, answer.secrets
    kind = answer.data.get("resultType")
    result = answer.data.get("result")
    by = _by(label, secrets)
    aggregate = f"aggregate the query {by} (e.g. sum {by} (…))"
    if kind != "vector":
        _not_a_vector(call, status, kind, by, secrets)
    if not isinstance(result, list):
        _unexpected(call, status, "a vector whose result is not a list")
    if not result:
        raise AnalysisInconclusive(
            call.describe(status, "no data (the query returned an empty vector: no series)"),
            http_status=status,
        )
    if len(result) > MAX_SERIES:
        raise AnalysisInconclusive(
            call.describe(
                status,
                f"{len(result)} series, more than the {MAX_SERIES} a comparison by "
                f"{_name(label, secrets)} reads: aggregate the query {by} into fewer series",
            ),
            http_status=status,
        )
    missing: list[Mapping[str, Any]] = []
    series: dict[str, list[Mapping[str, Any]]] = {}
    for sample in result:
        if not isinstance(sample, dict):
            _unexpected(call, status, "a vector sample that is not an object")
        metric = sample.get("metric")
        if not isinstance(metric, dict):
            _unexpected(call, status, "a vector sample without a metric object")
        value = metric.get(label)
        if value is None or value == "":
            # Prometheus does not tell an empty label value from no label.
            missing.append(sample)
        elif not isinstance(value, str):
            _unexpected(call, status, "a label value that is not a string")
        else:
            series.setdefault(value, []).append(sample)
    if missing:
        raise AnalysisInconclusive(
            call.describe(
                status,
                f"{_several(len(missing))} without the label {_name(label, secrets)}: "
                f"{_shown(missing, secrets)}; {aggregate}",
            ),
            http_status=status,
        )
    duplicated = [(value, samples) for value, samples in series.items() if len(samples) > 1]
    if duplicated:
        value, samples = duplicated[0]
        others = len(duplicated) - 1
        more = f" (and {others} more value{'s' if others > 1 else ''} of it)" if others else ""
        raise AnalysisInconclusive(
            call.describe(
                status,
                f"{len(samples)} series with {_pair(label, value, secrets)}{more}: "
                f"{_shown(samples, secrets)}; {aggregate}",
            ),
            http_status=status,
        )
    numbers: dict[str, float] = {}
    for value, (sample,) in series.items():
        where = f"the series with {_pair(label, value, secrets)}"
        if "value" not in sample and "histogram" in sample:
            raise AnalysisInconclusive(
                call.describe(
                    status,
                    f"{where}: a native histogram instead of a number "
                    "(e.g. use histogram_quantile())",
                ),
                http_status=status,
            )
        number = _sample_value(call, status, sample.get("value"))
        numbers[value] = _finite(call, status, number, where=where)
    return numbers


def _label_sets(answer: _Answer) -> list[dict[str, str]]:
    """The label sets (without ``__name__``) of a success's vector, sorted; an empty
    vector is none. AnalysisInconclusive if the answer is not a vector."""
    call, status, secrets = answer.call, answer.status, answer.secrets
    kind = answer.data.get("resultType")
    result = answer.data.get("result")
    if kind in ("scalar", "matrix", "string"):
        raise AnalysisInconclusive(
            call.describe(status, f"a {kind} instead of an instant vector of alerts"),
            http_status=status,
        )
    if kind != "vector":
        _unexpected(call, status, f"an unknown resultType {redact(str(kind), secrets, limit=40)!r}")
    if not isinstance(result, list):
        _unexpected(call, status, "a vector whose result is not a list")
    label_sets: list[dict[str, str]] = []
    for sample in result:
        if not isinstance(sample, dict):
            _unexpected(call, status, "a vector sample that is not an object")
        metric = sample.get("metric")
        if not isinstance(metric, dict):
            _unexpected(call, status, "a vector sample without a metric object")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
            _unexpected(call, status, "a label value that is not a string")
        label_sets.append({k: v for k, v in metric.items() if k != "__name__"})
    return sorted(label_sets, key=lambda labels: sorted(labels.items()))


def _not_a_vector(call: _Query, status: int, kind: Any, by: str, secrets: list[str]) -> NoReturn:
    """A success whose resultType is not ``vector``, for ``query_by``."""
    if kind == "scalar":
        raise AnalysisInconclusive(
            call.describe(
                status,
                f"a scalar instead of an instant vector of series told apart by a label: "
                f"aggregate the query {by} (e.g. sum {by} (…))",
            ),
            http_status=status,
        )
    if kind == "matrix":
        raise AnalysisInconclusive(
            call.describe(
                status,
                "a range vector (matrix) instead of an instant vector: the query must "
                f"evaluate to instant values (e.g. wrap a [range] selector in increase() "
                f"and sum {by} (…))",
            ),
            http_status=status,
        )
    if kind == "string":
        raise AnalysisInconclusive(
            call.describe(status, "a string instead of an instant vector"), http_status=status
        )
    _unexpected(call, status, f"an unknown resultType {redact(str(kind), secrets, limit=40)!r}")


_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _name(label: str, secrets: list[str]) -> str:
    """A label name as PromQL writes it: bare, or quoted if it is not a classic name."""
    if _LABEL_NAME_RE.fullmatch(label):
        return redact(label, secrets, limit=_LABELS_CHARS)
    return redact(json.dumps(label), secrets, limit=_LABELS_CHARS)


def _by(label: str, secrets: list[str]) -> str:
    return f"by ({_name(label, secrets)})"


def _pair(label: str, value: str, secrets: list[str]) -> str:
    """One label and its value: ``class="cat"``."""
    return f"{_name(label, secrets)}={redact(json.dumps(value), secrets, limit=_LABELS_CHARS)}"


def _several(count: int) -> str:
    return "a series" if count == 1 else f"{count} series"


def _shown(samples: list[Mapping[str, Any]], secrets: list[str]) -> str:
    """The label sets of the first few ``samples``, and how many more there are."""
    shown = ", ".join(_labels(sample, secrets) for sample in samples[:SHOWN_SERIES])
    if len(samples) > SHOWN_SERIES:
        shown += f", … ({len(samples) - SHOWN_SERIES} more)"
    return shown


def _sample_value(call: _Query, status: int, pair: Any) -> float:
    """The float in a ``[timestamp, "value"]`` pair (values are strings on the wire)."""
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        _unexpected(call, status, 'a sample that is not [timestamp, "value"]')
    try:
        return float(pair[1])
    except ValueError:
        _unexpected(call, status, "a sample value that is not a number")


def _finite(call: _Query, status: int, value: float, *, where: str | None = None) -> float:
    """``value``, or AnalysisInconclusive if it is NaN or ±Inf (``where``: which series)."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        detail = "NaN (e.g. a ratio of zero requests to zero requests)"
    else:
        detail = f"{'+' if value > 0 else '-'}Inf (e.g. a division by zero)"
    if where is not None:
        detail = f"{where}: {detail}"
    raise AnalysisInconclusive(call.describe(status, detail), http_status=status)


def _labels(sample: Any, secrets: list[str]) -> str:
    """A series' label set, short: ``{a="b", c="d"}``."""
    metric = sample.get("metric") if isinstance(sample, dict) else None
    if not isinstance(metric, dict):
        return "{?}"
    pairs = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(metric.items(), key=str))
    return "{" + redact(pairs, secrets, limit=_LABELS_CHARS) + "}"


def _error_answer(
    call: _Query, status: int, document: Mapping[str, Any], secrets: list[str]
) -> PromotionError:
    """A ``status: error`` answer that came with a 2xx (a proxy's, not Prometheus' way)."""
    error_type = document.get("errorType")
    text = call.describe(status, _server_error(document, secrets))
    if error_type == "bad_data":
        return InvalidQuery(text, http_status=status)
    if error_type == "execution":
        return AnalysisInconclusive(text, http_status=status)
    if error_type in _UNAVAILABLE_TYPES:
        return MetricsUnavailable(text, http_status=status)
    return UnexpectedResponse(text, http_status=status)


def _server_error(document: Mapping[str, Any], secrets: list[str]) -> str | None:
    """Prometheus' own explanation (``errorType: error``), made safe to show."""
    error = document.get("error")
    if not isinstance(error, str) or not error.strip():
        return None
    error_type = document.get("errorType")
    text = redact(error, secrets)
    if isinstance(error_type, str) and error_type:
        text = f"{redact(error_type, secrets, limit=40)}: {text}"
    return text


def _log_warnings(call: _Query, document: Mapping[str, Any], secrets: list[str]) -> None:
    # Warnings (e.g. partial data from a remote store) and infos do not stop a
    # number from being one; they are worth a line for whoever reads the logs.
    for key in ("warnings", "infos"):
        notes = document.get(key)
        if isinstance(notes, list):
            for note in notes[:SHOWN_SERIES]:
                if isinstance(note, str):
                    log.info("%s: Prometheus %s: %s", call.display, key[:-1], redact(note, secrets))


def _unexpected(call: _Query, status: int, what: str) -> NoReturn:
    raise UnexpectedResponse(
        f"{call.display}: HTTP {status} with {what} (not the Prometheus query API's answer)",
        http_status=status,
    )


def _parse(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _without_credentials(url: str) -> str:
    """``url`` without any ``user:password@`` (settings refuse them; this never shows one)."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "(an invalid URL)"
