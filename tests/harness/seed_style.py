"""Promote SeldonDeployments the way a person would script it by hand.

What one writes from the Seldon Deploy API reference with ``requests``, and
what ``make bench`` compares the operator with: for each promotion, one after
another, get a token (password grant), read the source, read the target,
create or replace the target, then read it every second until it is
``Available``. No status is kept anywhere but this script's output.

    SD_PASSWORD=... python -m tests.harness.seed_style \\
        --seldon-url https://deploy.example.com/seldon-deploy/api/v1alpha1 \\
        --oidc-server https://auth.example.com/realms/deploy-realm \\
        --client-id sd-api --username someone@example.com \\
        --promotions promotions.json

``promotions.json`` is a list of ``{"source": {"namespace", "name"},
"target": {"namespace"}}``. One line per promotion: ``NAME: Available after
S s (created|replaced)``; exit 1 on the first promotion that fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

# Fields the cluster sets; sending them back is refused or meaningless.
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")
POLL_SECONDS = 1.0
GIVE_UP_SECONDS = 600.0


def get_token(oidc_server: str, client_id: str, username: str, password: str) -> str:
    """An access token with the password grant."""
    response = requests.post(
        f"{oidc_server}/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "client_id": client_id,
            "username": username,
            "password": password,
            "scope": "openid",
        },
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def deployment_url(seldon_url: str, namespace: str, name: str = "") -> str:
    """The API path of a namespace's SeldonDeployments, or of one of them."""
    base = f"{seldon_url}/namespaces/{namespace}/seldondeployments"
    return f"{base}/{name}" if name else base


def promote(args: argparse.Namespace, password: str, promotion: dict[str, Any]) -> str:
    """Promote one deployment and wait until it is Available; what was done."""
    source, target_namespace = promotion["source"], promotion["target"]["namespace"]
    name = source["name"]
    token = get_token(args.oidc_server, args.client_id, args.username, password)
    headers = {"Authorization": f"Bearer {token}"}

    response = requests.get(
        deployment_url(args.seldon_url, source["namespace"], name), headers=headers, timeout=30
    )
    response.raise_for_status()
    deployment = response.json()

    target_url = deployment_url(args.seldon_url, target_namespace, name)
    existing = requests.get(target_url, headers=headers, timeout=30)
    if existing.status_code not in (200, 404):
        existing.raise_for_status()

    metadata = deployment["metadata"]
    for field in SERVER_FIELDS:
        metadata.pop(field, None)
    metadata["namespace"] = target_namespace
    deployment.pop("status", None)
    if existing.status_code == 404:
        written = requests.post(
            deployment_url(args.seldon_url, target_namespace),
            json=deployment,
            headers=headers,
            timeout=30,
        )
        done = "created"
    else:
        written = requests.put(target_url, json=deployment, headers=headers, timeout=30)
        done = "replaced"
    written.raise_for_status()

    deadline = time.monotonic() + GIVE_UP_SECONDS
    while True:
        time.sleep(POLL_SECONDS)
        response = requests.get(target_url, headers=headers, timeout=30)
        response.raise_for_status()
        state = (response.json().get("status") or {}).get("state")
        if state == "Available":
            return done
        if state == "Failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{target_namespace}/{name} is {state}")


def main(argv: list[str] | None = None) -> int:
    """Promote every promotion of the file, one after another."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seldon-url", required=True, help="the API base, .../api/v1alpha1")
    parser.add_argument("--oidc-server", required=True, help="the realm's issuer URL")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--username", required=True, help="password in SD_PASSWORD")
    parser.add_argument("--promotions", type=Path, required=True, help="a JSON list")
    args = parser.parse_args(argv)
    password = os.environ["SD_PASSWORD"]
    for promotion in json.loads(args.promotions.read_text()):
        started = time.monotonic()
        try:
            done = promote(args, password, promotion)
        except (requests.RequestException, RuntimeError) as error:
            print(f"{promotion['source']['name']}: failed: {error}", flush=True)
            return 1
        took = time.monotonic() - started
        print(f"{promotion['source']['name']}: Available after {took:.3f} s ({done})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
