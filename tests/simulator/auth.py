"""Bearer token verification against the identity provider's published keys."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import jwt.types

from tests.simulator.config import SimulatorConfig

_ALGORITHMS = ["RS256"]
_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or from another issuer."""


@dataclass(frozen=True)
class Identity:
    """Who called: the user name policies match on, and the groups they are in."""

    user: str
    groups: tuple[str, ...]


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an `Authorization` header value, or raise TokenError."""
    if not authorization:
        raise TokenError("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("Authorization header is not a bearer token")
    return token.strip()


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    """Read the caller's identity the way Seldon Deploy's policies see it.

    The user is the `email` claim, falling back to `preferred_username` (service
    accounts of the client-credentials grant may have no email).
    """
    user = claims.get("email") or claims.get("preferred_username")
    if not isinstance(user, str) or not user:
        raise TokenError("token carries neither email nor preferred_username")
    raw_groups = claims.get("groups")
    groups: tuple[str, ...] = ()
    if isinstance(raw_groups, list):
        groups = tuple(g for g in raw_groups if isinstance(g, str))
    return Identity(user=user, groups=groups)


class TokenVerifier:
    """Verifies RS256 tokens against a JWKS, fetched lazily and re-fetched on unknown kid.

    The fetch is asynchronous so that a slow identity provider never blocks the
    event loop (PyJWKClient would, with urllib).
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Release the HTTP session used to fetch keys."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, token: str) -> Identity:
        """Return the caller's identity, or raise TokenError saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from exc
        if header.get("alg") not in _ALGORITHMS:
            raise TokenError(f"unsupported token algorithm {header.get('alg')!r}")
        kid = header.get("kid")
        key = await self._key_for(kid if isinstance(kid, str) else None)
        options: jwt.types.Options = {
            "require": ["exp", "iss"],
            "verify_aud": self._config.audience is not None,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=_ALGORITHMS,
                issuer=self._config.issuer,
                audience=self._config.audience,
                leeway=self._config.leeway_seconds,
                options=options,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("token issuer is not trusted") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        return identity_from_claims(claims)

    async def _key_for(self, kid: str | None) -> jwt.PyJWK:
        key = self._lookup(kid)
        if key is not None:
            return key
        async with self._lock:
            # Another request may have refreshed the keys while this one waited.
            key = self._lookup(kid)
            if key is None:
                self._keys = await self._fetch_keys()
                key = self._lookup(kid)
        if key is None:
            raise TokenError("token signed with an unknown key")
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            # Without a kid only an unambiguous key set can verify the token.
            signing = list(self._keys.values())
            return signing[0] if len(signing) == 1 else None
        return self._keys.get(kid)

    async def _fetch_keys(self) -> dict[str | None, jwt.PyJWK]:
        if self._session is None:
            ssl_context: ssl.SSLContext | bool = True
            if self._config.jwks_ca_file:
                ssl_context = ssl.create_default_context(cafile=self._config.jwks_ca_file)
            connector = aiohttp.TCPConnector(ssl=ssl_context)
            self._session = aiohttp.ClientSession(timeout=_FETCH_TIMEOUT, connector=connector)
        try:
            async with self._session.get(self._config.effective_jwks_url) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenError(f"cannot fetch signing keys: {exc}") from exc
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            # Keycloak also publishes an encryption key (RSA-OAEP); it never signs.
            if not isinstance(entry, dict) or entry.get("use") == "enc":
                continue
            try:
                jwk = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue
            keys[jwk.key_id] = jwk
        return keys
