"""HTTP client for the Seldon Deploy REST API (v1alpha1), with a typed error taxonomy.

Paths, query parameters and shapes follow the official ``seldon-deploy-sdk``
(``SeldonDeploymentsApi``; ``ModelsApi``, ``PipelinesApi`` and ``ExperimentsApi``
for Seldon Core v2).
The client speaks plain JSON (dicts in, dicts out) and sorts every failure into
the errors of :mod:`promotion_operator.errors` (the table is
:data:`promotion_operator.clients.http_failures.SELDON_DEPLOY`; the failure taxonomy is
in ``docs/contract.md``):

========================================  ===============================
what happened                             raised
========================================  ===============================
connection error, timeout, 5xx, 408, 429  :class:`SeldonDeployUnavailable`
401 (after one forced token refresh)      :class:`AuthenticationFailed`
403                                       :class:`Forbidden`
404                                       :class:`NotFound`
409                                       :class:`Conflict`
400, 422                                  :class:`Invalid`
other 4xx, 3xx, a 2xx that is not the     :class:`UnexpectedResponse`
documented JSON shape, an oversized body
========================================  ===============================

The client never sleeps and never retries, except for the single retry after a
forced token refresh on 401: callers own backoff, so the controller's pass
threads are never held in sleeps here. One client (one pooled
:class:`requests.Session`) is meant to be shared by all pass threads that talk to
one instance.

Error messages and log lines name the method, the path (with the actual
namespace and name), the status code and the server's ``message`` field
(truncated, with anything that looks like a token redacted). They never contain
the token, a request header or a raw response body.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, NoReturn, Protocol
from urllib.parse import quote

import requests
from requests.structures import CaseInsensitiveDict

from promotion_operator.clients.http_failures import (
    SELDON_DEPLOY,
    ExchangeFailure,
    error_for_status,
    exchange_failure,
    redact,
)
from promotion_operator.clients.transport import (
    UnreadableBody,
    exchange,
    pooled_session,
    reason_phrase,
)
from promotion_operator.config.settings import InstanceSettings
from promotion_operator.core.kinds import KINDS
from promotion_operator.core.spec import Kind
from promotion_operator.errors import (
    AuthenticationFailed,
    Invalid,
    NotFound,
    NotLeading,
    PromotionError,
    SeldonDeployUnavailable,
    UnexpectedResponse,
)

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "POOL_MAXSIZE",
    "RequestObserver",
    "Resources",
    "SeldonDeployClient",
    "TokenSource",
    "WriteFence",
]

log = logging.getLogger(__name__)

#: Largest successful response body the client reads; anything bigger is refused.
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
#: Largest error response body read to find the server's ``message`` field.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Connections kept per host: the controller's pass threads all share one client.
POOL_MAXSIZE = 32
# Path templates of the calls that are not one kind's collection or item (those are
# in core.kinds.KINDS), exactly as seldon_deploy_sdk names them.
SDEP_VALIDATE = "/namespaces/{namespace}/seldondeployments/validate"
PIPELINE_MODELS = "/namespaces/{namespace}/pipelines/{name}/models"
EXPERIMENT = "/namespaces/{namespace}/pipelines/{name}/experiment"
CANARY_EXPERIMENT = "/namespaces/{namespace}/pipelines/{name}/experiment/canary"
SHADOW_EXPERIMENT = "/namespaces/{namespace}/pipelines/{name}/experiment/shadow"

# A bearer token is a visible-ASCII string (JWTs and opaque tokens both are).
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


class TokenSource(Protocol):
    """Gives the bearer token for one instance (``auth.TokenProvider`` satisfies this)."""

    def token(self, *, force_refresh: bool = False, stale: str | None = None) -> str:
        """The token to send; ``force_refresh`` replaces ``stale`` (the refused one)."""
        ...


#: Resources as Seldon Deploy returns them (a list call's items).
Resources = list[dict[str, Any]]

#: Called after every HTTP exchange with (method, path template, status or None, seconds).
RequestObserver = Callable[[str, str, int | None, float], None]

#: The seconds this replica may still spend on a write (its Lease's renew deadline
#: minus now); 0 when it does not lead. Asked right before each call that writes.
WriteFence = Callable[[], float]

#: A write needs at least this long: with less left, it is not sent at all.
MIN_WRITE_SECONDS = 1.0


class _Exchange(NamedTuple):
    status: int
    headers: CaseInsensitiveDict[str]
    # None when the body was larger than the cap it was read with.
    body: bytes | None
    # The bearer token this exchange used: redacted from anything quoted from the body.
    token: str


class _Call:
    """One logical API call: what it is, for messages, logs and the observer."""

    __slots__ = ("display", "method", "path", "template")

    def __init__(self, method: str, template: str, path_params: Mapping[str, str]) -> None:
        quoted = {}
        for key, value in path_params.items():
            if not isinstance(value, str) or value in ("", ".", ".."):
                raise ValueError(f"{method} {template}: invalid {key} {value!r}")
            quoted[key] = quote(value, safe="")
        self.method = method
        self.template = template
        self.path = template.format(**quoted)
        self.display = f"{method} {self.path}"


class SeldonDeployClient:
    """Seldon Deploy v1alpha1 client for one instance; thread-safe, pooled, never sleeps."""

    def __init__(
        self,
        instance: InstanceSettings,
        tokens: TokenSource,
        *,
        observer: RequestObserver | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        fence: WriteFence | None = None,
    ) -> None:
        self._instance = instance
        self._tokens = tokens
        self._observer = observer
        self._fence = fence
        self._max_response_bytes = max_response_bytes
        self._base_url = instance.url.rstrip("/")
        self._timeout = instance.request_timeout
        self._verify: bool | str = (
            str(instance.ca_file) if instance.ca_file is not None else instance.verify_tls
        )
        # Disabled verification is warned about once, when the settings are loaded.
        self._session = pooled_session(pool_connections=4, pool_maxsize=POOL_MAXSIZE)

    # -- the API ---------------------------------------------------------------------------

    def read(
        self, namespace: str, name: str, *, kind: Kind = Kind.SELDON_DEPLOYMENT
    ) -> dict[str, Any]:
        """The resource (a SeldonDeployment unless ``kind`` says otherwise);
        :class:`NotFound` if it does not exist."""
        call = _Call("GET", KINDS[kind].item_path, {"namespace": namespace, "name": name})
        return self._resource(call, self._call(call), kind)

    def find(
        self, namespace: str, name: str, *, kind: Kind = Kind.SELDON_DEPLOYMENT
    ) -> dict[str, Any] | None:
        """The resource, or None if it does not exist."""
        try:
            return self.read(namespace, name, kind=kind)
        except NotFound:
            return None

    def list(self, namespace: str, *, kind: Kind = Kind.SELDON_DEPLOYMENT) -> Resources:
        """Every resource of ``kind`` in ``namespace`` (an entry without a name is skipped).

        Models cannot be listed: the API has no such call (ValueError)."""
        if not KINDS[kind].listable:
            raise ValueError(f"Seldon Deploy's API cannot list {kind}s")
        call = _Call("GET", KINDS[kind].collection_path, {"namespace": namespace})
        return self._items(call, self._call(call))

    def pipeline_models(self, namespace: str, name: str) -> Resources:
        """The Models the steps of Pipeline ``name`` name (those that exist);
        :class:`NotFound` if the Pipeline does not exist."""
        call = _Call("GET", PIPELINE_MODELS, {"namespace": namespace, "name": name})
        return self._items(call, self._call(call))

    def find_experiment(self, namespace: str, pipeline: str) -> dict[str, Any] | None:
        """The experiment on Pipeline ``pipeline``, or None if it has none."""
        call = _Call("GET", EXPERIMENT, {"namespace": namespace, "name": pipeline})
        try:
            return self._object(call, self._call(call))
        except NotFound:
            return None

    def set_canary_weight(
        self, namespace: str, pipeline: str, weight: int, *, action: str, message: str
    ) -> None:
        """Create the canary experiment of ``pipeline``, or change its weight: ``weight``
        percent of its traffic goes to the Pipeline ``<pipeline>-canary``."""
        call = _Call("POST", CANARY_EXPERIMENT, {"namespace": namespace, "name": pipeline})
        query = {"weight": str(weight), "action": action, "message": message}
        self._call(call, query=query)

    def promote_canary(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        """Promote the canary: ``pipeline`` takes its spec; the experiment and the canary go."""
        call = _Call("PUT", CANARY_EXPERIMENT, {"namespace": namespace, "name": pipeline})
        self._call(call, query={"action": action, "message": message})

    def remove_canary(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        """Remove the canary experiment and the canary Pipeline; ``pipeline`` stays."""
        call = _Call("DELETE", CANARY_EXPERIMENT, {"namespace": namespace, "name": pipeline})
        self._call(call, query={"action": action, "message": message})

    def create_shadow(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        """Create the shadow experiment of ``pipeline``: a copy of all its traffic goes to
        the Pipeline ``<pipeline>-shadow``, whose answers no caller sees."""
        call = _Call("POST", SHADOW_EXPERIMENT, {"namespace": namespace, "name": pipeline})
        self._call(call, query={"action": action, "message": message})

    def promote_shadow(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        """Promote the shadow: ``pipeline`` takes its spec; the experiment and the shadow go."""
        call = _Call("PUT", SHADOW_EXPERIMENT, {"namespace": namespace, "name": pipeline})
        self._call(call, query={"action": action, "message": message})

    def remove_shadow(self, namespace: str, pipeline: str, *, action: str, message: str) -> None:
        """Remove the shadow experiment and the shadow Pipeline; ``pipeline`` stays."""
        call = _Call("DELETE", SHADOW_EXPERIMENT, {"namespace": namespace, "name": pipeline})
        self._call(call, query={"action": action, "message": message})

    def create(
        self,
        namespace: str,
        deployment: Mapping[str, Any],
        *,
        action: str,
        message: str,
        kind: Kind = Kind.SELDON_DEPLOYMENT,
    ) -> dict[str, Any]:
        """Create a resource; ``action``/``message`` become the GitOps commit."""
        call = _Call("POST", KINDS[kind].collection_path, {"namespace": namespace})
        exchange = self._call(
            call, query={"action": action, "message": message}, payload=deployment
        )
        return self._resource(call, exchange, kind)

    def update(
        self,
        namespace: str,
        name: str,
        deployment: Mapping[str, Any],
        *,
        action: str,
        message: str,
        kind: Kind = Kind.SELDON_DEPLOYMENT,
    ) -> dict[str, Any]:
        """Replace a resource; ``action``/``message`` become the GitOps commit."""
        call = _Call("PUT", KINDS[kind].item_path, {"namespace": namespace, "name": name})
        exchange = self._call(
            call, query={"action": action, "message": message}, payload=deployment
        )
        return self._resource(call, exchange, kind)

    def delete(
        self,
        namespace: str,
        name: str,
        *,
        action: str,
        message: str,
        kind: Kind = Kind.SELDON_DEPLOYMENT,
    ) -> None:
        """Delete a resource; :class:`NotFound` if it does not exist."""
        call = _Call("DELETE", KINDS[kind].item_path, {"namespace": namespace, "name": name})
        # The SDK types the answer as a free-form object: its content is not used.
        self._call(call, query={"action": action, "message": message})

    def validate(self, namespace: str, deployment: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a deployment server-side; returns the ``Message`` (``code``, ``message``).

        The API declares this as a GET with the deployment as JSON body, and that is
        what is sent. A refusal is :class:`Invalid`, whether it comes as HTTP 400/422
        or as a 2xx whose ``Message.code`` is 400 or more.
        """
        call = _Call("GET", SDEP_VALIDATE, {"namespace": namespace})
        exchange = self._call(call, payload=deployment)
        result = self._object(call, exchange)
        code = result.get("code")
        if isinstance(code, int) and not isinstance(code, bool) and code >= 400:
            raise Invalid(
                self._describe(call, code, _server_message(result, exchange.token)),
                http_status=code,
            )
        return result

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> SeldonDeployClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one call: token, 401 refresh, error sorting -----------------------------------------

    def _call(
        self,
        call: _Call,
        *,
        query: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> _Exchange:
        data = None
        if payload is not None:
            data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        token = self._bearer()
        exchange = self._send(call, token, query, data)
        if exchange.status == 401:
            log.debug("%s: 401, refreshing the token and retrying once", call.display)
            exchange = self._send(call, self._bearer(refused=token), query, data)
        if 200 <= exchange.status < 300:
            if exchange.body is None:
                self._unexpected(
                    call,
                    f"a response body larger than {self._max_response_bytes} bytes",
                    exchange.status,
                )
            return exchange
        raise self._error(call, exchange)

    def _bearer(self, *, refused: str | None = None) -> str:
        # After a 401, only the refused token is replaced: if another thread already
        # refreshed it, its newer token is reused rather than fetching a third.
        if refused is None:
            token = self._tokens.token()
        else:
            token = self._tokens.token(force_refresh=True, stale=refused)
        if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            # Never echo the value: it is (or is close to) a secret.
            raise AuthenticationFailed(
                f"the token source of Seldon Deploy instance {self._instance.name!r} "
                "returned an empty or malformed token"
            )
        return token

    def _send(
        self, call: _Call, token: str, query: Mapping[str, str] | None, data: bytes | None
    ) -> _Exchange:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        where = f"{call.display} on Seldon Deploy {self._instance.name!r}"
        timeout = self._fenced_timeout(call)

        def observe(status: int | None, seconds: float) -> None:
            if self._observer is not None:
                self._observer(call.method, call.template, status, seconds)

        try:
            reply = exchange(
                self._session,
                call.method,
                self._base_url + call.path,
                params=query,
                data=data,
                headers=headers,
                timeout=timeout,
                verify=self._verify,
                success_cap=self._max_response_bytes,
                error_cap=MAX_ERROR_BODY_BYTES,
                label=call.display,
                log=log,
                observer=observe,
            )
        except requests.exceptions.InvalidHeader:
            raise AuthenticationFailed(
                f"{call.display}: the token is not a valid HTTP header value"
            ) from None
        except (requests.RequestException, UnreadableBody) as exc:
            how = ExchangeFailure(
                where,
                f"Seldon Deploy instance {self._instance.name!r}: invalid URL {self._base_url!r}",
                SeldonDeployUnavailable,
                "the response",
                timeout,
            )
            raise exchange_failure(exc, how) from getattr(exc, "error", exc)
        return _Exchange(reply.status, reply.headers, reply.body, token)

    def _fenced_timeout(self, call: _Call) -> float:
        """The call's timeout. A write (any method but GET) is sent only while this
        replica leads with at least :data:`MIN_WRITE_SECONDS` left, and its timeout
        ends inside that time, so that it cannot overlap the next leader's writes."""
        if call.method == "GET" or self._fence is None:
            return self._timeout
        left = self._fence()
        if left < MIN_WRITE_SECONDS:
            raise NotLeading(
                f"{call.display} on Seldon Deploy {self._instance.name!r} not sent: this "
                f"replica does not hold the Lease for {MIN_WRITE_SECONDS:g} s more"
            )
        return min(self._timeout, left)

    # -- sorting and describing ----------------------------------------------------------------

    def _error(self, call: _Call, exchange: _Exchange) -> PromotionError:
        status = exchange.status
        text = self._describe(call, status, self._error_message(exchange))
        if status == 401:
            text += " (token refused even after a refresh)"
        elif 300 <= status < 400:
            text += " (redirects are not followed: check the instance URL)"
        return error_for_status(SELDON_DEPLOY, status, text, exchange.headers)

    def _error_message(self, exchange: _Exchange) -> str | None:
        if not exchange.body:
            return None
        try:
            document = json.loads(exchange.body)
        except (ValueError, RecursionError):
            return None
        return _server_message(document, exchange.token)

    def _describe(self, call: _Call, status: int, server_message: str | None) -> str:
        reason = reason_phrase(status)
        text = f"{call.display} on Seldon Deploy {self._instance.name!r}: HTTP {status}"
        if reason:
            text += f" {reason}"
        if server_message:
            text += f": {server_message}"
        return text

    def _json(self, call: _Call, exchange: _Exchange) -> Any:
        content_type = exchange.headers.get("Content-Type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            self._unexpected(
                call, f"content type {media_type or '(none)'!r} instead of JSON", exchange.status
            )
        try:
            return json.loads(exchange.body or b"")
        except (ValueError, RecursionError):
            self._unexpected(call, "a body that is not valid JSON", exchange.status)

    def _object(self, call: _Call, exchange: _Exchange) -> dict[str, Any]:
        document = self._json(call, exchange)
        if not isinstance(document, dict):
            self._unexpected(
                call, f"a JSON {type(document).__name__} instead of an object", exchange.status
            )
        return document

    def _resource(self, call: _Call, exchange: _Exchange, kind: Kind) -> dict[str, Any]:
        # Planning and verification read metadata and spec: an answer without them
        # must not pass for a resource (it would be promoted as an empty one).
        document = self._object(call, exchange)
        if not _named_with_spec(document):
            self._unexpected(call, f"a {kind} without metadata.name or spec", exchange.status)
        return document

    def _items(self, call: _Call, exchange: _Exchange) -> Resources:
        items = self._object(call, exchange).get("items")
        if not isinstance(items, list):
            self._unexpected(call, "a list without items", exchange.status)
        return [item for item in items if _named_with_spec(item)]

    def _unexpected(self, call: _Call, what: str, status: int) -> NoReturn:
        raise UnexpectedResponse(
            f"{call.display} on Seldon Deploy {self._instance.name!r}: HTTP {status} with {what}",
            http_status=status,
        )


# -- helpers ---------------------------------------------------------------------------------


def _named_with_spec(document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    metadata = document.get("metadata")
    return (
        isinstance(metadata, dict)
        and bool(metadata.get("name"))
        and isinstance(document.get("spec"), dict)
    )


def _server_message(document: Any, token: str) -> str | None:
    """The ``message`` of an API error body (``{"code": ..., "message": ...}``), made safe."""
    if not isinstance(document, dict):
        return None
    message = document.get("message")
    if not isinstance(message, str):
        message = document.get("error")
    if not isinstance(message, str) or not message.strip():
        return None
    return redact(message, [token])
