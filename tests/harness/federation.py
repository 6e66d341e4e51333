"""ServiceAccount tokens as client assertions: what a projected token volume would hold.

The harness apiserver is the ServiceAccount issuer (its loopback URL) and serves its
discovery documents anonymously; the realm's Kubernetes identity provider trusts that
issuer, and its client ``promotion-operator-k8s`` authenticates with a token of the
ServiceAccount ``promotion-operator/promotion-operator`` whose audience is the
realm's issuer (see ``tests/harness/realm/`` and ``tests/harness/keycloak.py``).
"""

from __future__ import annotations

import time
import uuid

import jwt
import requests

from tests.harness.controlplane import ControlPlane
from tests.harness.keycloak import FEDERATED_CLIENT_ID, Keycloak
from tests.harness.rbac import OPERATOR_NAMESPACE, SERVICE_ACCOUNT

# The shortest lifetime the TokenRequest API grants (and what the overlay mounts).
TOKEN_DURATION = "10m"


def service_account_token(
    control_plane: ControlPlane,
    audience: str,
    *,
    namespace: str = OPERATOR_NAMESPACE,
    name: str = SERVICE_ACCOUNT,
    duration: str = TOKEN_DURATION,
) -> str:
    """A token minted by the apiserver (TokenRequest), as the kubelet projects one."""
    return control_plane.kubectl(
        "create", "token", name, "-n", namespace, f"--audience={audience}", f"--duration={duration}"
    ).stdout.strip()


def expired_service_account_token(
    control_plane: ControlPlane,
    audience: str,
    *,
    namespace: str = OPERATOR_NAMESPACE,
    name: str = SERVICE_ACCOUNT,
) -> str:
    """A token of the cluster's issuer, signed with its key, that expired 5 minutes ago.

    The TokenRequest API never issues a token shorter than 10 minutes, so a test
    cannot wait for one to expire. This one is what such a token looks like
    afterwards: the apiserver's issuer and signing key (the ``kid`` its JWKS
    publishes), the ServiceAccount's subject and uid, the audience asked for.
    """
    certs = control_plane.workdir / "certs"
    jwks = requests.get(
        f"{control_plane.url}/openid/v1/jwks", verify=str(control_plane.ca_cert), timeout=10
    ).json()
    kid = jwks["keys"][0]["kid"]
    uid = control_plane.kubectl(
        "get", "serviceaccount", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout.strip()
    now = int(time.time())
    claims = {
        "iss": control_plane.url,
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "aud": [audience],
        "iat": now - 900,
        "nbf": now - 900,
        "exp": now - 300,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    }
    key = (certs / "service-account.key").read_text()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def assertion_credentials(keycloak: Keycloak, assertion: str) -> dict[str, str]:
    """The operator's credentials directory in this mode: the projected volume's
    ConfigMap keys and the token at ``client-assertion``; no secret."""
    return {
        "oidc-server": keycloak.issuer,
        "client-id": FEDERATED_CLIENT_ID,
        "grant-type": "client_credentials",
        "client-assertion": assertion,
    }
