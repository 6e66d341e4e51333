"""Bearer tokens for Seldon Deploy: OIDC discovery, the grants, a shared cache, rotation.

One :class:`TokenProvider` per instance (credentials profile), shared by every
resource through :class:`TokenProviders`. A provider:

- reuses its token until ``refresh_margin`` seconds before the token's ``exp``
  (read with pyjwt without checking the signature; ``expires_in`` of the token
  response when the token has no ``exp``); the margin never exceeds half the
  token's lifetime, so short-lived tokens are still reused;
- lets one thread refresh while concurrent callers wait for that refresh and then
  share its result (its token, or its error);
- re-reads the credentials directory on every refresh, so a rotated Secret is
  picked up without a restart, and so is a rotated client assertion (the projected
  ServiceAccount token the kubelet replaces: client_credentials with
  ``client_assertion_type`` jwt-bearer, RFC 7523);
- finds the token endpoint through ``{oidc-server}/.well-known/openid-configuration``
  (remembered per issuer, forgotten when a token request fails) or uses ``token-url``;
- sends the ``id_token`` of the response, or the ``access_token`` when there is no
  ``id_token`` (what the seldon-deploy-sdk does), or the ``access_token`` when the
  instance says ``token_kind="access_token"``.

Answers are read through :func:`promotion_operator.clients.transport.exchange`, up
to :data:`MAX_RESPONSE_BYTES` (1 MiB, far more than any discovery document or token
response): a longer answer is not read further, so a broken or hostile identity
provider cannot make the operator read without end; it is reported as an answer that
is not a token response (or, for an error status, as one without an OAuth error).

TLS towards the identity provider: verified against ``ca.crt`` of the credentials
Secret when present, else the system CAs. ``SELDON_DEPLOY_CA_FILE`` (the instance's
``ca_file``) is for Seldon Deploy only; the instance's ``verify_tls=False`` turns
verification off for the identity provider too (settings log a warning for it).

Failures raise :class:`AuthenticationFailed` (the identity provider refused the
credentials, or the credentials files are invalid) or
:class:`IdentityProviderUnavailable` (unreachable, timed out, 429, 5xx, or an answer
that is not a token response), sorted by
:data:`promotion_operator.clients.http_failures.IDENTITY_PROVIDER`. No message or log line
built here contains a password, client secret, token or a response body: only
names, URLs, status codes and the OAuth ``error``/``error_description`` fields
(through :func:`~promotion_operator.clients.http_failures.redact`). When the identity
provider refuses a client assertion, the message adds what the assertion's own
claims (read without checking the signature) say is wrong: expired, another
audience than the realm's issuer, or the ServiceAccount it names; a subject,
audience and expiry time are names and times, never the token.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import jwt
import requests

from promotion_operator.clients.http_failures import (
    IDENTITY_PROVIDER,
    error_class,
    error_for_status,
    is_unavailable,
    redact,
    retry_after,
    transport_problem,
)
from promotion_operator.clients.transport import Reply, UnreadableBody, exchange, new_session
from promotion_operator.config.credentials import (
    JWT_BEARER_ASSERTION,
    Credentials,
    read_credentials,
    url_problem,
)
from promotion_operator.config.settings import InstanceSettings, Settings
from promotion_operator.errors import (
    AuthenticationFailed,
    IdentityProviderUnavailable,
    PromotionError,
    SettingsError,
)

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
#: Longest answer read from the identity provider, in bytes (any status).
MAX_RESPONSE_BYTES = 1024 * 1024
# When a token response says nothing about the token's lifetime.
FALLBACK_LIFETIME = 60.0
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class _CachedToken:
    value: str = ""
    expires_at: float = 0.0
    refresh_at: float = 0.0

    def __repr__(self) -> str:  # never show the token
        return f"_CachedToken(expires_at={self.expires_at}, refresh_at={self.refresh_at})"


#: Called after every token request with (instance name, the error or None on success).
TokenObserver = Callable[[str, PromotionError | None], None]


class TokenProvider:
    """The bearer token for one Seldon Deploy instance; safe to share between threads."""

    def __init__(
        self,
        instance: InstanceSettings,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 30.0,
        observer: TokenObserver | None = None,
    ) -> None:
        self.instance = instance
        self._observer = observer
        self._session = session if session is not None else new_session()
        self._owns_session = session is None
        self._clock = clock
        self._margin = max(0.0, refresh_margin)
        self._lock = threading.Lock()
        self._cached: _CachedToken | None = None
        # Refresh attempts completed (success or failure) and how the last one ended:
        # a caller that waited for the lock while another refreshed shares that outcome.
        self._attempts = 0
        self._last_error: PromotionError | None = None
        self._endpoints: dict[str, str] = {}  # oidc-server -> discovered token endpoint

    def token(self, *, force_refresh: bool = False, stale: str | None = None) -> str:
        """The bearer token to send to Seldon Deploy.

        Without arguments: the cached token, or a new one when the cache is empty or
        within the refresh margin of expiry.

        After Seldon Deploy answered 401, pass the refused token as ``stale`` (or
        ``force_refresh=True``, which means "the token cached right now is bad"):
        a new token is fetched unless another thread already replaced the refused
        one, in which case that newer token is returned. So many callers hitting
        401 with the same token cause one refresh, not one each.

        Raises AuthenticationFailed or IdentityProviderUnavailable.
        """
        attempts_seen = self._attempts  # read before the cache: see the lock block
        forced = force_refresh or stale is not None
        cached = self._cached
        if not forced and cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        if forced and stale is None and cached is not None:
            stale = cached.value

        with self._lock:
            cached = self._cached
            now = self._clock()
            usable = cached is not None and now < cached.expires_at
            if self._attempts != attempts_seen:
                # Someone refreshed while we waited: share the outcome, don't fetch again.
                if self._last_error is None and cached is not None and usable:
                    return cached.value
                if self._last_error is not None:
                    if not forced and cached is not None and usable:
                        return cached.value
                    raise _again(self._last_error)
            if cached is not None:
                if not forced and now < cached.refresh_at:
                    return cached.value
                if forced and usable and cached.value != stale:
                    return cached.value
            return self._refresh(cached, forced)

    def close(self) -> None:
        """Release the HTTP session (only when the provider created it)."""
        if self._owns_session:
            self._session.close()

    # -- refresh (called with the lock held) -----------------------------------

    def _refresh(self, previous: _CachedToken | None, forced: bool) -> str:
        try:
            fresh = self._fetch()
        except PromotionError as err:
            if self._observer is not None:
                self._observer(self.instance.name, err)
            self._attempts += 1
            self._last_error = err
            now = self._clock()
            if not forced and previous is not None and now < previous.expires_at:
                logger.warning(
                    "instance %s: token refresh failed (%s); reusing the cached token, "
                    "valid for %.0f s more",
                    self.instance.name,
                    err.message,
                    previous.expires_at - now,
                )
                return previous.value
            raise
        if self._observer is not None:
            self._observer(self.instance.name, None)
        self._cached = fresh
        self._attempts += 1
        self._last_error = None
        return fresh.value

    def _fetch(self) -> _CachedToken:
        name = self.instance.name
        try:
            credentials = read_credentials(self.instance.credentials_dir)
        except SettingsError as exc:
            raise AuthenticationFailed(
                f"instance {name}: the credentials in {self.instance.credentials_dir} are "
                f"invalid: {'; '.join(exc.problems)}"
            ) from None
        verify = self._verify(credentials)
        endpoint = self._token_endpoint(credentials, verify)
        try:
            body = self._request_token(endpoint, credentials, verify)
        except PromotionError:
            if credentials.oidc_server is not None:
                # The discovered endpoint may have moved: discover again next time.
                self._endpoints.pop(credentials.oidc_server, None)
            raise

        value, kind = self._pick_token(body, endpoint)
        now = self._clock()
        expires_at = self._expiry(value, body, now, endpoint)
        lifetime = expires_at - now
        margin = min(self._margin, max(lifetime, 0.0) / 2)
        logger.info(
            "instance %s: fetched %s with %s from %s; expires in %.0f s",
            name,
            kind,
            _who(credentials),
            endpoint,
            lifetime,
        )
        if lifetime <= 0:
            logger.warning(
                "instance %s: the identity provider issued a token that is already expired "
                "by this host's clock (%.0f s); check clock skew",
                name,
                lifetime,
            )
        return _CachedToken(value=value, expires_at=expires_at, refresh_at=expires_at - margin)

    def _verify(self, credentials: Credentials) -> bool | str:
        if not self.instance.verify_tls:
            return False
        if credentials.ca_file is not None:
            return str(credentials.ca_file)
        return True

    def _token_endpoint(self, credentials: Credentials, verify: bool | str) -> str:
        if credentials.token_url is not None:
            return credentials.token_url
        issuer = credentials.oidc_server
        assert issuer is not None  # read_credentials guarantees one of the two
        known = self._endpoints.get(issuer)
        if known is not None:
            return known
        url = issuer + DISCOVERY_PATH
        name = self.instance.name
        reply = self._send("GET", url, verify, what="OIDC discovery")
        if reply.status != 200:
            raise IdentityProviderUnavailable(
                f"instance {name}: OIDC discovery at {url} answered HTTP "
                f"{reply.status}; check oidc-server in {self.instance.credentials_dir}",
                http_status=reply.status,
                retry_after=retry_after(reply.headers),
            )
        document = _json_object(reply)
        endpoint = document.get("token_endpoint") if document is not None else None
        if not isinstance(endpoint, str) or url_problem(endpoint) is not None:
            raise IdentityProviderUnavailable(
                f"instance {name}: OIDC discovery at {url} gave no usable token_endpoint "
                f"({_describe_body(reply)}); check oidc-server in "
                f"{self.instance.credentials_dir}",
                http_status=reply.status,
            )
        self._endpoints[issuer] = endpoint
        return endpoint

    def _request_token(
        self, endpoint: str, credentials: Credentials, verify: bool | str
    ) -> Mapping[str, Any]:
        form: dict[str, str] = {"grant_type": credentials.grant_type}
        if credentials.grant_type == "password":
            form["username"] = credentials.username or ""
            form["password"] = credentials.password or ""
        form["client_id"] = credentials.client_id
        if credentials.client_secret is not None:
            form["client_secret"] = credentials.client_secret
        if credentials.client_assertion is not None:
            form["client_assertion_type"] = JWT_BEARER_ASSERTION
            form["client_assertion"] = credentials.client_assertion
        form["scope"] = credentials.scope

        reply = self._send("POST", endpoint, verify, what="token request", data=form)
        status = reply.status
        name = self.instance.name
        secrets = credentials.secrets
        who = _who(credentials)

        if not 200 <= status < 300:
            if error_class(IDENTITY_PROVIDER, status) is AuthenticationFailed:
                if credentials.client_assertion is not None:
                    fix = _assertion_problem(credentials, self._clock())
                else:
                    fix = f"fix the credentials in {self.instance.credentials_dir}"
                text = (
                    f"instance {name}: the identity provider at {endpoint} refused {who} "
                    f"(HTTP {status}{_oauth_error(reply, secrets)}); {fix}"
                )
            elif is_unavailable(status):
                text = (
                    f"instance {name}: the identity provider at {endpoint} answered HTTP "
                    f"{status}{_oauth_error(reply, secrets)} to {who}"
                )
            else:
                text = (
                    f"instance {name}: unexpected HTTP {status} from {endpoint} to {who}; check "
                    f"token-url / oidc-server in {self.instance.credentials_dir}"
                )
            raise error_for_status(IDENTITY_PROVIDER, status, text, reply.headers)
        body = _json_object(reply)
        if body is None:
            raise IdentityProviderUnavailable(
                f"instance {name}: the identity provider at {endpoint} answered HTTP {status} "
                f"with {_describe_body(reply)}, not a JSON token response; check token-url "
                f"/ oidc-server in {self.instance.credentials_dir}",
                http_status=status,
            )
        return body

    def _send(
        self,
        method: str,
        url: str,
        verify: bool | str,
        *,
        what: str,
        data: Mapping[str, str] | None = None,
    ) -> Reply:
        timeout = self.instance.request_timeout
        try:
            return exchange(
                self._session,
                method,
                url,
                data=data,
                headers={"Accept": "application/json"},
                timeout=timeout,
                verify=verify,
                success_cap=MAX_RESPONSE_BYTES,
                error_cap=MAX_RESPONSE_BYTES,
                label=f"instance {self.instance.name}: {what}",
                # No line per request: the outcome of a refresh is logged once, in _fetch.
                log=None,
            )
        except requests.exceptions.RequestException as exc:
            raise self._unavailable(what, url, exc) from None
        except UnreadableBody as exc:
            # Said as before the body was streamed, when requests read it inside the request.
            raise self._unavailable(what, url, exc.error) from None

    def _unavailable(
        self, what: str, url: str, exc: requests.RequestException
    ) -> IdentityProviderUnavailable:
        name = self.instance.name
        timeout = self.instance.request_timeout
        if isinstance(exc, requests.exceptions.SSLError):
            hint = (
                "put the identity provider's CA bundle in ca.crt of "
                f"{self.instance.credentials_dir}"
            )
            return IdentityProviderUnavailable(
                f"instance {name}: {what} to {url} failed TLS verification ({hint}): "
                f"{transport_problem(exc, timeout)}"
            )
        return IdentityProviderUnavailable(
            f"instance {name}: {what} to {url} failed: {transport_problem(exc, timeout)}"
        )

    def _pick_token(self, body: Mapping[str, Any], endpoint: str) -> tuple[str, str]:
        id_token = body.get("id_token")
        access_token = body.get("access_token")
        if self.instance.token_kind == "id_token" and _nonempty(id_token):
            return id_token, "id_token"
        if _nonempty(access_token):
            kind = "access_token"
            if self.instance.token_kind == "id_token":
                kind += " (the response has no id_token)"
            return access_token, kind
        wanted = (
            "id_token or access_token"
            if self.instance.token_kind == "id_token"
            else ("access_token")
        )
        fields = ", ".join(sorted(str(k)[:40] for k in body)[:20]) or "none"
        raise IdentityProviderUnavailable(
            f"instance {self.instance.name}: the token response from {endpoint} has no "
            f"{wanted} (fields: {fields})"
        )

    def _expiry(self, token: str, body: Mapping[str, Any], now: float, endpoint: str) -> float:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            claims = {}
        exp = claims.get("exp")
        if _number(exp):
            return float(exp)
        expires_in = body.get("expires_in")
        if isinstance(expires_in, str):
            try:
                expires_in = float(expires_in)
            except ValueError:
                expires_in = None
        if _number(expires_in) and expires_in > 0:
            return now + float(expires_in)
        logger.warning(
            "instance %s: the token from %s has neither exp nor expires_in; "
            "assuming it lives %.0f s",
            self.instance.name,
            endpoint,
            FALLBACK_LIFETIME,
        )
        return now + FALLBACK_LIFETIME


class TokenProviders:
    """One :class:`TokenProvider` (and so one token cache) per configured instance."""

    def __init__(
        self,
        settings: Settings,
        *,
        refresh_margin: float = 30.0,
        observer: TokenObserver | None = None,
    ) -> None:
        self._settings = settings
        self._providers = {
            name: TokenProvider(instance, refresh_margin=refresh_margin, observer=observer)
            for name, instance in settings.instances.items()
        }

    def for_instance(self, name: str | None) -> TokenProvider:
        """The provider of instance ``name`` (``None``: default); SettingsError if unknown."""
        instance = self._settings.instance(name)
        return self._providers[instance.name]

    def close(self) -> None:
        """Release every provider's HTTP session."""
        for provider in self._providers.values():
            provider.close()


def _who(credentials: Credentials) -> str:
    """Which grant, client (and user, or assertion file) a token request is for."""
    who = f"the {credentials.grant_type} grant for client {credentials.client_id}"
    if credentials.grant_type == "password" and credentials.username:
        who += f" and user {credentials.username}"
    if credentials.client_assertion_file is not None:
        who += f" with the client assertion in {credentials.client_assertion_file}"
    return who


def _assertion_problem(credentials: Credentials, now: float) -> str:
    """What the refused assertion's own claims say is wrong, and what to fix.

    Read without checking the signature: the identity provider did that. Only the
    subject, issuer, audience and times are quoted, never the token.
    """
    where = credentials.client_assertion_file
    try:
        claims = jwt.decode(credentials.client_assertion or "", options={"verify_signature": False})
    except jwt.PyJWTError:
        return f"the client assertion in {where} is not a readable JWT"
    subject = _claim_text(claims.get("sub"))
    issuer = _claim_text(claims.get("iss"))
    exp = claims.get("exp")
    if _number(exp) and exp <= now:
        return (
            f"the client assertion in {where} (ServiceAccount {subject}) expired "
            f"{now - exp:.0f} s ago: the token file is not being refreshed (check the "
            "projected serviceAccountToken volume and that the kubelet can rotate it)"
        )
    raw_audience = claims.get("aud")
    audiences = [raw_audience] if isinstance(raw_audience, str) else raw_audience
    if not isinstance(audiences, list):
        audiences = []
    expected = credentials.oidc_server
    if expected is not None and audiences != [expected]:
        shown = ", ".join(_claim_text(a) for a in audiences[:5]) or "none"
        return (
            f"the client assertion in {where} (ServiceAccount {subject}) has the wrong "
            f"audience ({shown}): set the projected token's audience to exactly the "
            f"realm's issuer {expected}"
        )
    return (
        f"the client assertion in {where} is for {subject} (issuer {issuer}), which the "
        f"identity provider does not accept for client {credentials.client_id}: check "
        "that this ServiceAccount is the client's federated subject and that the realm "
        "trusts this issuer (its Kubernetes identity provider)"
    )


def _claim_text(value: object) -> str:
    """A claim made safe to quote: short, printable, never token-shaped."""
    return redact(value, limit=120) if isinstance(value, str) and value else "unknown"


def _again(error: PromotionError) -> PromotionError:
    """A fresh exception like ``error``, for another thread to raise."""
    return type(error)(error.message, http_status=error.http_status, retry_after=error.retry_after)


def _nonempty(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json(reply: Reply) -> tuple[bool, Any]:
    """Whether the body is JSON (UTF-8, -16 or -32, as RFC 8259 allows), and the document."""
    if reply.body is None:
        return False, None
    try:
        return True, json.loads(reply.body)
    except ValueError:  # UnicodeDecodeError included
        return False, None


def _json_object(reply: Reply) -> dict[str, Any] | None:
    parsed, document = _json(reply)
    return document if parsed and isinstance(document, dict) else None


def _describe_body(reply: Reply) -> str:
    """Say what kind of body came back without quoting it."""
    content_type = redact(reply.headers.get("Content-Type", "no Content-Type"), limit=80)
    if reply.body is None:
        return f"a body larger than {MAX_RESPONSE_BYTES} bytes ({content_type})"
    size = len(reply.body)
    if size == 0:
        return "an empty body"
    kind = "a JSON body that is not an object" if _json(reply)[0] else "a non-JSON body"
    return f"{kind} ({content_type}, {size} bytes)"


def _oauth_error(reply: Reply, secrets: list[str]) -> str:
    """``": error: description"`` from an OAuth error body, cleaned; empty if there is none."""
    body = _json_object(reply)
    if body is None:
        return ""
    error = body.get("error")
    description = body.get("error_description")
    parts: list[str] = []
    if isinstance(error, str) and _ERROR_CODE.match(error):
        parts.append(error)
    if isinstance(description, str) and description.strip():
        parts.append(redact(description, secrets))
    return ": " + ": ".join(parts) if parts else ""
