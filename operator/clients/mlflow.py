"""HTTP client for an MLflow Model Registry, over MLflow's REST API (``/api/2.0/mlflow``).

Reads a registered model's version by alias (``GET registered-models/alias``) or by
number (``GET model-versions/get``), one call either way, and writes the outcome of a
promotion back to it (``POST model-versions/set-tag``; ``POST registered-models/alias``).
No MLflow package is needed: the calls go through the operator's own HTTP stack
(:mod:`~promotion_operator.clients.transport`), like every other client here.

==============================================  ==================================
what happened                                   raised
==============================================  ==================================
connection error, timeout, TLS failure, 5xx,    :class:`RegistryUnavailable`
408, 429                                        (retried within the run's deadline)
404, ``RESOURCE_DOES_NOT_EXIST``: no such       :class:`ModelVersionNotFound`
model or version; 400 ``INVALID_PARAMETER_VALUE``
"alias ... not found": no such alias
a version without a storage location, or one    :class:`ModelVersionUnusable`
whose status is not ``READY``
401, 403, an unreadable credential file         :class:`AuthenticationFailed`
other statuses, an answer not of the            :class:`UnexpectedResponse`
documented shape
==============================================  ==================================

Credentials (a bearer token, or a user name and a password for basic auth) are read
from their files on every call. Messages name the server's URL, the call and the
status; MLflow's own message is quoted redacted. They never hold a credential.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any

from promotion_operator.clients.http_failures import (
    ExchangeFailure,
    Service,
    error_for_status,
    exchange_failure,
    redact,
)
from promotion_operator.clients.transport import exchange, pooled_session
from promotion_operator.config.settings import ENV_MLFLOW_URL, MlflowSettings, read_token_file
from promotion_operator.core.run import ModelVersion
from promotion_operator.errors import (
    AuthenticationFailed,
    ModelVersionNotFound,
    ModelVersionUnusable,
    PromotionError,
    RegistryUnavailable,
    UnexpectedResponse,
)

__all__ = ["API_PATH", "MlflowRegistryClient"]

log = logging.getLogger(__name__)

#: MLflow's REST API, relative to the tracking server's base URL.
API_PATH = "/api/2.0/mlflow"
_MAX_BODY_BYTES = 256 * 1024
_POOL_MAXSIZE = 8
# URIs that name another MLflow object, not where the files are.
_INDIRECT_SCHEMES = ("models:/", "runs:/")

REGISTRY = Service(
    refusals={401: AuthenticationFailed, 403: AuthenticationFailed, 404: ModelVersionNotFound},
    unavailable=RegistryUnavailable,
    unexpected=UnexpectedResponse,
)


class MlflowRegistryClient:
    """Model versions of one MLflow server; thread-safe, pooled, never sleeps or retries."""

    def __init__(self, settings: MlflowSettings) -> None:
        self._settings = settings
        self._url = settings.url.rstrip("/")
        self._verify: bool | str = (
            str(settings.ca_file) if settings.ca_file is not None else settings.verify_tls
        )
        self._session = pooled_session(pool_connections=1, pool_maxsize=_POOL_MAXSIZE)
        #: Calls made, for the bench's count of registry calls per run.
        self.calls = 0

    def __repr__(self) -> str:
        return f"MlflowRegistryClient({self._url!r})"

    def version_by_alias(self, model: str, alias: str) -> ModelVersion:
        """The version ``alias`` of registered model ``model`` points at."""
        what = f"alias {alias!r} of registered model {model!r}"
        found = self._call(
            "GET", "registered-models/alias", what, params={"name": model, "alias": alias}
        )
        return _version(found, what, self._url, alias)

    def version(self, model: str, version: str) -> ModelVersion:
        """Version ``version`` of registered model ``model``."""
        what = f"version {version} of registered model {model!r}"
        found = self._call(
            "GET", "model-versions/get", what, params={"name": model, "version": version}
        )
        return _version(found, what, self._url, None)

    def set_tags(self, model: str, version: str, tags: Mapping[str, str]) -> None:
        """Set ``tags`` on the version, one call each (MLflow has no batch for them)."""
        for key, value in tags.items():
            body = {"name": model, "version": version, "key": key, "value": value}
            self._call("POST", "model-versions/set-tag", f"tag {key!r} of {model}/{version}", body)

    def set_alias(self, model: str, alias: str, version: str) -> None:
        """Point ``alias`` of ``model`` at ``version``."""
        body = {"name": model, "alias": alias, "version": version}
        self._call("POST", "registered-models/alias", f"alias {alias!r} of {model!r}", body)

    def close(self) -> None:
        self._session.close()

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        body: Mapping[str, str] | None = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        where = f"MLflow {self._url}: {method} {path} ({what})"
        headers = {"Accept": "application/json"}
        secrets = self._authorize(headers, where)
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.calls += 1
        try:
            reply = exchange(
                self._session,
                method,
                f"{self._url}{API_PATH}/{path}",
                headers=headers,
                timeout=self._settings.timeout,
                verify=self._verify,
                success_cap=_MAX_BODY_BYTES,
                error_cap=_MAX_BODY_BYTES,
                label=f"MLflow {method} {path}",
                log=log,
                params=params,
                data=json.dumps(body).encode() if body is not None else None,
            )
        except PromotionError:
            raise
        except Exception as error:
            how = ExchangeFailure(
                where, ENV_MLFLOW_URL, RegistryUnavailable, "answer", self._settings.timeout
            )
            raise exchange_failure(error, how) from None
        document = _json(reply.body)
        if not 200 <= reply.status < 300:
            code = str(document.get("error_code") or "")
            said = redact(str(document.get("message") or ""), secrets)
            message = f"{where}: HTTP {reply.status}" + (f" {code}: {said}" if code else "")
            # An unknown alias of a known model is a 400 INVALID_PARAMETER_VALUE ("alias
            # ... not found"), not a 404.
            missing_alias = code == "INVALID_PARAMETER_VALUE" and "not found" in said
            if code == "RESOURCE_DOES_NOT_EXIST" or missing_alias:
                raise ModelVersionNotFound(message, http_status=reply.status)
            raise error_for_status(REGISTRY, reply.status, message, reply.headers)
        if reply.body is None:
            raise UnexpectedResponse(f"{where}: an answer larger than {_MAX_BODY_BYTES} bytes")
        return document

    def _authorize(self, headers: dict[str, str], where: str) -> list[str]:
        """Add the credential to ``headers``; the strings that must never be shown."""
        settings = self._settings
        try:
            if settings.token_file is not None:
                token = read_token_file(settings.token_file)
                headers["Authorization"] = f"Bearer {token}"
                return [token]
            if settings.username_file is not None and settings.password_file is not None:
                user = read_token_file(settings.username_file)
                password = read_token_file(settings.password_file)
                pair = base64.b64encode(f"{user}:{password}".encode()).decode()
                headers["Authorization"] = f"Basic {pair}"
                return [password, pair]
        except PromotionError as error:
            raise AuthenticationFailed(f"{where}: {error.message}") from None
        return []


def _json(body: bytes | None) -> dict[str, Any]:
    if not body:
        return {}
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _version(document: Mapping[str, Any], what: str, url: str, alias: str | None) -> ModelVersion:
    found = document.get("model_version")
    if not isinstance(found, dict) or not found.get("name") or not found.get("version"):
        raise UnexpectedResponse(f"MLflow {url}: the answer for {what} holds no model version")
    name, number = str(found["name"]), str(found["version"])
    status = found.get("status")
    if status not in (None, "READY"):
        raise ModelVersionUnusable(f"{name} version {number} is {status}, not READY")
    uri = _storage(found)
    if not uri:
        raise ModelVersionUnusable(
            f"{name} version {number} has no storage location (its source is "
            f"{redact(str(found.get('source') or 'empty'), limit=120)}); register it with "
            "the URI of its files"
        )
    return ModelVersion(name, number, uri, str(found.get("run_id") or ""), alias)


def _storage(found: Mapping[str, Any]) -> str:
    """Where the version's files are: its storage location, else its source when that
    is not a reference to another MLflow object."""
    for key in ("storage_location", "source"):
        value = str(found.get(key) or "")
        if value and not value.startswith(_INDIRECT_SCHEMES):
            return value
    return ""
