"""Settings of one simulator instance, fixed at start."""

from __future__ import annotations

from dataclasses import dataclass

API_BASE = "/seldon-deploy/api/v1alpha1"
CONTROL_BASE = "/_control"
MAX_LEEWAY_SECONDS = 5.0


@dataclass(frozen=True)
class SimulatorConfig:
    """What `create_app` needs to know; the CLI builds one from its flags.

    `jwks_url` defaults to Keycloak's certs endpoint under the issuer.
    `audience` is only checked when set: Keycloak access tokens carry `aud`
    "account" or none at all, id_tokens carry the client id, and the real service
    accepts both.
    """

    issuer: str
    jwks_url: str | None = None
    audience: str | None = None
    leeway_seconds: float = 2.0
    rollout_seconds: float = 1.0
    gitops_sync_seconds: float = 2.0
    jwks_ca_file: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway_seconds must be within 0..{MAX_LEEWAY_SECONDS}")
        if self.rollout_seconds < 0 or self.gitops_sync_seconds < 0:
            raise ValueError("delays must not be negative")

    @property
    def effective_jwks_url(self) -> str:
        """The JWKS address to fetch keys from."""
        if self.jwks_url:
            return self.jwks_url
        return self.issuer.rstrip("/") + "/protocol/openid-connect/certs"
