"""Helpers to run the simulator in-process for fast tests, without Keycloak.

`LocalIdentityProvider` makes an RSA key, serves its JWKS and signs tokens;
`RunningSimulator` runs that and the simulator on free loopback ports in a
background event loop thread, so tests talk real HTTP with `requests` or the SDK.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import jwt
import requests
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.simulator.config import SimulatorConfig
from tests.simulator.control import SimulatorControl
from tests.simulator.server import create_app

T = TypeVar("T")

ISSUER_PATH = "/realms/deploy-realm"
API_PATH = "/seldon-deploy/api/v1alpha1"


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key (fast enough for a test module's setup)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class LocalIdentityProvider:
    """Signs tokens like Keycloak would and publishes the public key as a JWKS."""

    def __init__(self) -> None:
        self.key = new_rsa_key()
        self.kid = uuid.uuid4().hex
        self.issuer = ""  # set once the server knows its port

    def jwks(self) -> dict[str, Any]:
        """The JWKS document, with an encryption key Keycloak also publishes, to be ignored."""
        signing = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        signing.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        enc = dict(signing, kid=self.kid + "-enc", use="enc", alg="RSA-OAEP")
        return {"keys": [signing, enc]}

    def app(self) -> web.Application:
        """An aiohttp app serving the JWKS at Keycloak's path under the issuer."""

        async def certs(_: web.Request) -> web.Response:
            return web.json_response(self.jwks())

        app = web.Application()
        app.router.add_get(ISSUER_PATH + "/protocol/openid-connect/certs", certs)
        return app

    def token(
        self,
        user: str | None = "alice@example.com",
        *,
        groups: list[str] | None = None,
        expires_in: float = 300,
        issuer: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        **claims: Any,
    ) -> str:
        """A signed token; override issuer, key or kid to forge a bad one."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "iat": now,
            "exp": now + int(expires_in),
            "aud": "account",
            "preferred_username": (user or "").split("@")[0],
            "typ": "Bearer",
        }
        if user is not None:
            payload["email"] = user
        if groups is not None:
            payload["groups"] = groups
        payload.update(claims)
        headers = {"kid": kid or self.kid}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers=headers)


class RunningSimulator:
    """The simulator and a local identity provider on loopback, in a background thread."""

    def __init__(self, *, rollout_seconds: float = 0.2, gitops_sync_seconds: float = 0.3) -> None:
        self.idp = LocalIdentityProvider()
        self._rollout = rollout_seconds
        self._sync = gitops_sync_seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []
        self.base_url = ""

    def __enter__(self) -> RunningSimulator:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    def start(self) -> None:
        """Bind both servers on free ports."""
        self._thread.start()
        idp_url = self._run(self._serve(self.idp.app()))
        self.idp.issuer = idp_url + ISSUER_PATH
        config = SimulatorConfig(
            issuer=self.idp.issuer,
            rollout_seconds=self._rollout,
            gitops_sync_seconds=self._sync,
        )
        self.base_url = self._run(self._serve(create_app(config)))

    def stop(self) -> None:
        """Shut both servers down and end the thread."""

        async def cleanup() -> None:
            for runner in reversed(self._runners):
                await runner.cleanup()

        if self._thread.is_alive():
            self._run(cleanup())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def control(self) -> SimulatorControl:
        """A control client for this simulator."""
        return SimulatorControl(self.base_url)


def deployment_body(
    name: str, *, image: str = "seldonio/sklearn-iris:0.1", replicas: int = 1, **labels: str
) -> dict[str, Any]:
    """A small valid SeldonDeployment; change `image` or `replicas` to change the spec."""
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "predictors": [
                {
                    "name": "default",
                    "replicas": replicas,
                    "graph": {"name": "classifier", "type": "MODEL"},
                    "componentSpecs": [
                        {"spec": {"containers": [{"name": "classifier", "image": image}]}}
                    ],
                }
            ]
        },
    }


def model_body(
    name: str,
    *,
    storage_uri: str = "gs://seldon-models/scikit-learn/iris",
    requirements: list[str] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A small valid Core v2 Model; change `storage_uri` (or add spec keys) to change the spec."""
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = dict(labels)
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Model",
        "metadata": metadata,
        "spec": {
            "storageUri": storage_uri,
            "requirements": list(requirements or ["sklearn"]),
            **spec,
        },
    }


def pipeline_body(
    name: str,
    steps: list[str],
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A valid Core v2 Pipeline chaining `steps` (model names), the last one as its output."""
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = dict(labels)
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    chain: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        entry: dict[str, Any] = {"name": step}
        if index:
            entry["inputs"] = [steps[index - 1]]
        chain.append(entry)
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": metadata,
        "spec": {"steps": chain, "output": {"steps": steps[-1:]}},
    }


class ApiCaller:
    """Plain HTTP calls to the simulated Seldon Deploy API with a bearer token."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.api_url = base_url.rstrip("/") + API_PATH
        self.token = token
        self.session = requests.Session()

    def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """Send one request; `token` overrides the default one for this call."""
        headers = dict(kwargs.pop("headers", {}))
        bearer = token if token is not None else self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.api_url + path, headers=headers, **kwargs)

    def list(self, ns: str, **kw: Any) -> requests.Response:
        """GET the namespace's deployments."""
        return self.call("GET", f"/namespaces/{ns}/seldondeployments", **kw)

    def read(self, ns: str, name: str, **kw: Any) -> requests.Response:
        """GET one deployment."""
        return self.call("GET", f"/namespaces/{ns}/seldondeployments/{name}", **kw)

    def create(self, ns: str, body: object, **kw: Any) -> requests.Response:
        """POST a deployment; pass `params={"action":..., "message":...}` for commits."""
        return self.call("POST", f"/namespaces/{ns}/seldondeployments", json=body, **kw)

    def update(self, ns: str, name: str, body: object, **kw: Any) -> requests.Response:
        """PUT a deployment."""
        return self.call("PUT", f"/namespaces/{ns}/seldondeployments/{name}", json=body, **kw)

    def delete(self, ns: str, name: str, **kw: Any) -> requests.Response:
        """DELETE a deployment."""
        return self.call("DELETE", f"/namespaces/{ns}/seldondeployments/{name}", **kw)

    def validate(self, ns: str, body: object, **kw: Any) -> requests.Response:
        """GET validate with the deployment as the body."""
        return self.call("GET", f"/namespaces/{ns}/seldondeployments/validate", json=body, **kw)

    def gitlogs(self, ns: str, name: str, **kw: Any) -> requests.Response:
        """GET a deployment's commits."""
        return self.call("GET", f"/namespaces/{ns}/seldondeployments/{name}/gitlogs", **kw)

    def gitrevert(self, ns: str, name: str, commit: str, **kw: Any) -> requests.Response:
        """POST a revert of `commit`."""
        params = {"hash": commit, **kw.pop("params", {})}
        path = f"/namespaces/{ns}/seldondeployments/{name}/gitrevert"
        return self.call("POST", path, params=params, **kw)

    def gitrestore(
        self, ns: str, name: str, commit: str | None = None, **kw: Any
    ) -> requests.Response:
        """POST a restore, at `commit` or from the last existing state."""
        params = dict(kw.pop("params", {}))
        if commit:
            params["hash"] = commit
        path = f"/namespaces/{ns}/seldondeployments/{name}/gitrestore"
        return self.call("POST", path, params=params, **kw)


def wait_for(probe: Callable[[], T | None], *, timeout: float = 5.0, interval: float = 0.02) -> T:
    """Poll until `probe` returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        time.sleep(interval)
