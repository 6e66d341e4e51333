"""The dashboard as an OpenID Connect relying party: the authorization-code flow
with PKCE, ``state`` and ``nonce``, and the ID token checked against the issuer's
keys (its JWKS), with ``requests`` and PyJWT.

Blocking (the server calls it from a worker thread). The tokens are read once, to
learn who signed in, and then dropped: none is kept, returned or written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import requests

_TIMEOUT = 10.0
# Clocks of the dashboard and the identity provider may differ this much.
_LEEWAY_SECONDS = 30
# Asymmetric algorithms only: a shared-secret (HS*) ID token proves nothing here.
_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})
# The dashboard never impersonates the API server's own identities.
_RESERVED_PREFIX = "system:"


class SignInError(Exception):
    """Why a sign-in failed, in words for the person (no token, no secret)."""


@dataclass(frozen=True)
class Claims:
    """Which ID token claims name the user and the groups, and the prefixes put in
    front of them before the dashboard impersonates them (as kube-apiserver's
    ``--oidc-username-claim``, ``--oidc-groups-claim`` and their prefixes)."""

    username: str = "email"
    groups: str = "groups"
    username_prefix: str = "oidc:"
    groups_prefix: str = "oidc:"


@dataclass(frozen=True)
class Identity:
    """Who signed in, as the API server will see them (prefixes applied)."""

    user: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    """One sign-in under way: what the callback must match, kept server-side."""

    state: str
    nonce: str
    verifier: str  # the PKCE code verifier
    next_path: str


def new_attempt(next_path: str) -> Attempt:
    return Attempt(
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(64),
        next_path,
    )


def challenge(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier`` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def issuer_refusal(issuer: str) -> str | None:
    """Why ``--oidc-issuer`` cannot be used (None: it can): https, or http on loopback."""
    parts = urlsplit(issuer)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"--oidc-issuer must be an https:// URL, not {issuer!r}"
    if parts.scheme == "http" and parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
        return "--oidc-issuer must be https:// (http:// only on loopback, for tests)"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "--oidc-issuer must carry no query, fragment or credentials"
    return None


@dataclass(frozen=True)
class Provider:
    """The issuer's endpoints, from its discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]

    @classmethod
    def discover(cls, issuer: str) -> Provider:
        """Read ``{issuer}/.well-known/openid-configuration``; :class:`SignInError`
        if it cannot be read or does not name this issuer."""
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=_TIMEOUT)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            raise SignInError(
                f"cannot read the OIDC discovery document of {issuer}: {type(error).__name__}"
            ) from None
        if not isinstance(document, Mapping) or document.get("issuer") != issuer:
            raise SignInError(
                f"the discovery document at {url} is not of the issuer {issuer} "
                "(give --oidc-issuer exactly as the provider names itself)"
            )
        endpoints = {}
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(key)
            if not isinstance(value, str) or not value:
                raise SignInError(f"the discovery document of {issuer} has no {key}")
            endpoints[key] = value
        offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in offered if a in _ALGORITHMS)
        if not algorithms:
            raise SignInError(f"{issuer} signs ID tokens with no asymmetric algorithm")
        return cls(issuer, algorithms=algorithms, **endpoints)


@dataclass
class Client:
    """The dashboard's client at the provider, and where the provider sends users back."""

    provider: Provider
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: Sequence[str] = ("openid", "profile", "email")
    claims: Claims = Claims()
    # It keeps the provider's keys between sign-ins (and reads them again for a new kid).
    keys: jwt.PyJWKClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = jwt.PyJWKClient(self.provider.jwks_uri, timeout=int(_TIMEOUT))

    def authorization_url(self, attempt: Attempt) -> str:
        """Where the browser goes to sign in. ``prompt=login`` asks for the password
        every time: a session that ended is not silently begun again by the
        provider's own cookie."""
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": attempt.state,
            "nonce": attempt.nonce,
            "code_challenge": challenge(attempt.verifier),
            "code_challenge_method": "S256",
            "prompt": "login",
        }
        endpoint = self.provider.authorization_endpoint
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query)

    def sign_in(self, code: str, attempt: Attempt) -> Identity:
        """Exchange ``code`` for tokens and learn who signed in from the ID token."""
        try:
            response = requests.post(
                self.provider.token_endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "code_verifier": attempt.verifier,
                },
                auth=(self.client_id, self.client_secret),
                timeout=_TIMEOUT,
            )
        except requests.RequestException as error:
            raise SignInError(
                f"cannot reach the identity provider's token endpoint: {type(error).__name__}"
            ) from None
        if response.status_code != 200:
            raise SignInError(
                f"the identity provider refused the sign-in: {_oauth_error(response)}"
            )
        try:
            body = response.json()
        except ValueError:
            raise SignInError("the identity provider's token answer is not JSON") from None
        id_token = body.get("id_token") if isinstance(body, Mapping) else None
        if not isinstance(id_token, str):
            raise SignInError("the identity provider returned no ID token (is 'openid' a scope?)")
        return identity_of(self.verified(id_token, attempt.nonce), self.claims)

    def verified(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once its signature (the issuer's JWKS), issuer,
        audience, expiry and ``nonce`` are checked."""
        try:
            key = self.keys.get_signing_key_from_jwt(id_token)
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=list(self.provider.algorithms),
                audience=self.client_id,
                issuer=self.provider.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            # The library's words name the failed check, never the token.
            raise SignInError(f"the ID token is not valid: {type(error).__name__}") from None
        if not isinstance(claims.get("nonce"), str) or not same(claims["nonce"], nonce):
            raise SignInError("the ID token is not of this sign-in (its nonce differs)")
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise SignInError("the ID token was issued to another client (azp)")
        return claims


def identity_of(claims: Mapping[str, Any], names: Claims) -> Identity:
    """The user and groups the dashboard will impersonate, from verified claims."""
    user = claims.get(names.username)
    if not isinstance(user, str) or not user:
        raise SignInError(f"the ID token has no {names.username!r} claim to name the user")
    if names.username == "email" and claims.get("email_verified") is not True:
        # As kube-apiserver: an unverified address names nobody.
        raise SignInError("the ID token's email is not verified")
    raw_groups = claims.get(names.groups) or []
    if isinstance(raw_groups, str):
        raw_groups = [raw_groups]
    if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
        raise SignInError(f"the ID token's {names.groups!r} claim is not a list of names")
    identity = Identity(
        names.username_prefix + user,
        tuple(names.groups_prefix + group for group in raw_groups),
    )
    for name in (identity.user, *identity.groups):
        if name.startswith(_RESERVED_PREFIX):
            raise SignInError(f"the dashboard does not act as {name!r} (a system: name)")
    return identity


def _oauth_error(response: requests.Response) -> str:
    """The OAuth error code of a refusal (its description may quote the request)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, Mapping) else None
    return str(error) if isinstance(error, str) else f"HTTP {response.status_code}"
