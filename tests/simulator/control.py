"""A typed client of the simulator's control API, for unit and end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

import requests

from tests.simulator.records import (
    CommitRecord,
    CoreBehaviourRecord,
    FaultKind,
    FaultRecord,
    PredictorBehaviourRecord,
    RequestLogEntry,
    TrafficRecord,
    TrafficSettingsRecord,
)

API_PATH = "/seldon-deploy/api/v1alpha1"

# What a failure mark, a delay or a rate applies to (kept free of the server's imports).
ObjectKind = Literal["SeldonDeployment", "Model", "Pipeline"]
CoreKind = Literal["Model", "Pipeline"]


class ControlError(RuntimeError):
    """The control API refused a request; the message carries its answer."""


class SimulatorControl:
    """Drive one simulator: namespaces, seeds, failures, delays, faults, logs.

    `base_url` is the simulator's root (what the ready line prints), without the
    API path; `api_url` is what a Seldon Deploy client should use as its host.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, verify: bool | str = True) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        # Passed per request: REQUESTS_CA_BUNDLE in the environment would override a
        # session-level `verify` (psf/requests#3829).
        self._verify = verify

    @property
    def api_url(self) -> str:
        """The Seldon Deploy API base URL (`Configuration.host` for the SDK)."""
        return self.base_url + API_PATH

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}/_control{path}"
        response = self._session.request(
            method, url, timeout=self._timeout, verify=self._verify, **kwargs
        )
        if response.status_code >= 400:
            raise ControlError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll the health endpoint until it answers or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/health")
                return
            except (requests.ConnectionError, ControlError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def reset(self) -> None:
        """Forget namespaces, every object, commits, faults, marks, delays, traffic and the log."""
        self._call("POST", "/reset")

    def add_namespace(
        self,
        name: str,
        *,
        gitops: bool = False,
        managed: bool = True,
        users: Mapping[str, Iterable[str]] | None = None,
        groups: Mapping[str, Iterable[str]] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Create or replace a namespace; permissions map a user/group to "read"/"write"."""
        self._call(
            "PUT",
            f"/namespaces/{name}",
            json={
                "labels": dict(labels or {}),
                "managed": managed,
                "gitops": gitops,
                "users": {u: list(a) for u, a in (users or {}).items()},
                "groups": {g: list(a) for g, a in (groups or {}).items()},
            },
        )

    def remove_namespace(self, name: str) -> None:
        """Delete a namespace and its deployments, models, pipelines and experiments."""
        self._call("DELETE", f"/namespaces/{name}")

    def namespaces(self) -> list[dict[str, Any]]:
        """Namespaces with labels and policies."""
        return cast(list[dict[str, Any]], self._call("GET", "/namespaces"))

    def seed_deployment(
        self,
        namespace: str,
        body: Mapping[str, Any],
        state: str | None = "Available",
        *,
        description: str | None = None,
        generation: int = 1,
    ) -> dict[str, Any]:
        """Plant a deployment; `state=None` rolls it out from now instead of fixing a state."""
        return self._seed(
            namespace, "deployments", "deployment", body, state, description, generation
        )

    def _seed(
        self,
        namespace: str,
        collection: str,
        key: str,
        body: Mapping[str, Any],
        state: str | None,
        description: str | None,
        generation: int,
    ) -> dict[str, Any]:
        payload = {
            key: dict(body),
            "state": state,
            "description": description,
            "generation": generation,
        }
        path = f"/namespaces/{namespace}/{collection}"
        return cast(dict[str, Any], self._call("POST", path, json=payload))

    def _peek(self, path: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._call("GET", path))
        except ControlError as exc:
            if "-> 404" in str(exc):
                return None
            raise

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The deployment as the API would return it now, or None."""
        return self._peek(f"/namespaces/{namespace}/deployments/{name}")

    def seed_model(
        self,
        namespace: str,
        body: Mapping[str, Any],
        state: str | None = "Available",
        *,
        description: str | None = None,
        generation: int = 1,
    ) -> dict[str, Any]:
        """Plant a Core v2 Model (nested metadata), as `seed_deployment` plants a deployment.

        `state` "Available" (default) is ModelReady True at once, "Creating"
        ModelProgressing and "Failed" ModelFailed (message `description`), each
        kept until the next write; None rolls it out from now.
        """
        return self._seed(namespace, "models", "model", body, state, description, generation)

    def seed_pipeline(
        self,
        namespace: str,
        body: Mapping[str, Any],
        state: str | None = "Available",
        *,
        description: str | None = None,
        generation: int = 1,
    ) -> dict[str, Any]:
        """Plant a Core v2 Pipeline; `state` is its PipelineReady as for `seed_model`.

        Ready also needs every model its steps name to exist and be Ready
        (read-time, so models may be seeded before or after).
        """
        return self._seed(namespace, "pipelines", "pipeline", body, state, description, generation)

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Model as the API would return it now, or None."""
        return self._peek(f"/namespaces/{namespace}/models/{name}")

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Pipeline as the API would return it now, or None."""
        return self._peek(f"/namespaces/{namespace}/pipelines/{name}")

    def get_experiment(self, namespace: str, pipeline: str) -> dict[str, Any] | None:
        """The experiment of `pipeline` (a `SeldonExperiment`) as the API shows it, or None."""
        return self._peek(f"/namespaces/{namespace}/experiments/{pipeline}")

    def mark_failing(
        self,
        namespace: str,
        name: str,
        *,
        description: str | None = None,
        spec_contains: str | None = None,
        kind: ObjectKind = "SeldonDeployment",
    ) -> None:
        """Make later rollouts of the object fail (only specs containing a text, if given).

        `kind` picks a SeldonDeployment (default), a Model (ModelFailed) or a
        Pipeline (PipelineFailed); the failure text becomes the description or
        the conditions' message.
        """
        self._call(
            "PUT",
            f"/namespaces/{namespace}/failing/{name}",
            json={"description": description, "spec_contains": spec_contains, "kind": kind},
        )

    def unmark_failing(
        self, namespace: str, name: str, *, kind: ObjectKind = "SeldonDeployment"
    ) -> None:
        """Let later rollouts of the object succeed."""
        self._call("DELETE", f"/namespaces/{namespace}/failing/{name}", params={"kind": kind})

    def set_delays(
        self,
        *,
        rollout_seconds: float | None = None,
        gitops_sync_seconds: float | None = None,
        traffic_seconds: float | None = None,
        namespace: str | None = None,
        name: str | None = None,
        kind: ObjectKind = "SeldonDeployment",
    ) -> dict[str, Any]:
        """Set delays globally (all kinds), or for one object of `kind` by namespace and name.

        Applies to later writes. ``traffic_seconds``: how long a SeldonDeployment write
        that changes only its predictors' ``traffic`` takes (default 0). The answer
        lists deployment overrides under `overrides` and model/pipeline ones (with their
        `kind`) under `core_overrides`.
        """
        payload = {
            "rollout_seconds": rollout_seconds,
            "gitops_sync_seconds": gitops_sync_seconds,
            "traffic_seconds": traffic_seconds,
            "namespace": namespace,
            "name": name,
            "kind": kind,
        }
        return cast(dict[str, Any], self._call("PUT", "/delays", json=payload))

    def inject_fault(
        self,
        kind: FaultKind,
        *,
        status_codes: Iterable[int] | None = None,
        probability: float = 1.0,
        count: int | None = None,
        latency_ms: int = 0,
        retry_after_seconds: int | None = None,
        method: str | None = None,
        path: str | None = None,
        seed: int | None = None,
        body: str = "not-json",
    ) -> str:
        """Install a fault rule and return its id.

        `method` is a regex matched against the whole method, `path` one searched
        in the full request path; `count` limits the triggers; `seed` makes
        `probability` repeatable.
        """
        payload: dict[str, Any] = {
            "kind": kind,
            "probability": probability,
            "count": count,
            "latency_ms": latency_ms,
            "retry_after_seconds": retry_after_seconds,
            "method": method,
            "path": path,
            "body": body,
        }
        if status_codes is not None:
            payload["status_codes"] = list(status_codes)
        if seed is not None:
            payload["seed"] = seed
        record = cast(FaultRecord, self._call("POST", "/faults", json=payload))
        return record["id"]

    def add_latency(
        self, latency_ms: int, *, method: str | None = None, path: str | None = None
    ) -> str:
        """Delay every matching request."""
        return self.inject_fault("latency", latency_ms=latency_ms, method=method, path=path)

    def fail_next(
        self, count: int, status: int = 503, *, method: str | None = None, path: str | None = None
    ) -> str:
        """Fail the next `count` matching requests with `status`."""
        return self.inject_fault(
            "error", status_codes=[status], count=count, method=method, path=path
        )

    def error_rate(
        self,
        probability: float,
        status_codes: Iterable[int] = (503, 500),
        *,
        method: str | None = None,
        path: str | None = None,
        seed: int | None = None,
    ) -> str:
        """Fail a fraction of matching requests with one of `status_codes`."""
        return self.inject_fault(
            "error",
            status_codes=status_codes,
            probability=probability,
            method=method,
            path=path,
            seed=seed,
        )

    def rate_limit(
        self,
        retry_after_seconds: int,
        *,
        count: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> str:
        """Answer matching requests with 429 and `Retry-After`."""
        return self.inject_fault(
            "rate_limit",
            retry_after_seconds=retry_after_seconds,
            count=count,
            method=method,
            path=path,
        )

    def drop_connections(
        self, *, count: int | None = None, method: str | None = None, path: str | None = None
    ) -> str:
        """Close the connection of matching requests without any response."""
        return self.inject_fault("drop", count=count, method=method, path=path)

    def faults(self) -> list[FaultRecord]:
        """Installed fault rules."""
        return cast(list[FaultRecord], self._call("GET", "/faults"))

    def remove_fault(self, fault_id: str) -> None:
        """Remove one fault rule."""
        self._call("DELETE", f"/faults/{fault_id}")

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._call("DELETE", "/faults")

    def requests_log(self) -> list[RequestLogEntry]:
        """API requests seen so far, oldest first."""
        return cast(list[RequestLogEntry], self._call("GET", "/requests"))

    def clear_requests_log(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "/requests")

    def commits(
        self,
        namespace: str | None = None,
        name: str | None = None,
        *,
        kind: ObjectKind | None = None,
    ) -> list[CommitRecord]:
        """GitOps commits oldest first, optionally of one namespace, name and/or kind."""
        params = {
            k: v
            for k, v in (("namespace", namespace), ("name", name), ("kind", kind))
            if v is not None
        }
        return cast(list[CommitRecord], self._call("GET", "/commits", params=params))

    def set_predictor_behaviour(
        self,
        namespace: str,
        name: str,
        predictor: str,
        *,
        error_rate: float | None = None,
        latency_seconds: float | None = None,
        error_code: int | str | None = None,
        predictions: Mapping[str, float] | None = None,
        default_predictions: bool = False,
    ) -> PredictorBehaviourRecord:
        """Set how one predictor answers the synthetic traffic, from now on.

        `error_rate` is the share (0..1) of its requests answered with
        `error_code` (default 500); every request takes `latency_seconds`
        (default 0.02). Each successful request is one prediction, counted by
        label in `predictions_total`: `predictions` is `{label: weight}` (weights
        normalised; default setosa 0.5, versicolor 0.3, virginica 0.2), and
        `default_predictions=True` puts that default back. Parts left out keep
        their value; the predictor need not exist yet (say, a canary predictor a
        later write adds).
        """
        payload: dict[str, Any] = {
            key: value
            for key, value in (
                ("error_rate", error_rate),
                ("latency_seconds", latency_seconds),
                ("error_code", error_code),
            )
            if value is not None
        }
        if predictions is not None and default_predictions:
            raise ValueError("give predictions or default_predictions, not both")
        if predictions is not None:
            payload["predictions"] = dict(predictions)
        elif default_predictions:
            payload["predictions"] = None
        path = f"/namespaces/{namespace}/traffic/{name}/predictors/{predictor}"
        return cast(PredictorBehaviourRecord, self._call("PUT", path, json=payload))

    def set_request_rate(
        self,
        requests_per_second: float,
        *,
        namespace: str | None = None,
        name: str | None = None,
        kind: Literal["SeldonDeployment", "Pipeline"] = "SeldonDeployment",
    ) -> TrafficSettingsRecord:
        """Requests per second of one deployment (namespace and name), or the default (200).

        With `kind="Pipeline"` (namespace and name required) it is the rate of
        requests to one Core v2 pipeline; pipelines have no default rate, so a
        pipeline serves nothing until it has one. The pipeline need not exist yet.
        """
        if (namespace is None) != (name is None):
            raise ValueError("give both namespace and name, or neither")
        if kind == "Pipeline" and namespace is None:
            raise ValueError("a pipeline rate needs namespace and name")
        path = "/traffic" if namespace is None else f"/namespaces/{namespace}/traffic/{name}"
        payload: dict[str, Any] = {"requests_per_second": requests_per_second}
        if kind != "SeldonDeployment":
            payload["kind"] = kind
        return cast(TrafficSettingsRecord, self._call("PUT", path, json=payload))

    def set_core_v2_behaviour(
        self,
        namespace: str,
        name: str,
        *,
        kind: CoreKind,
        error_rate: float | None = None,
        latency_seconds: float | None = None,
        error_code: int | str | None = None,
    ) -> CoreBehaviourRecord:
        """Set how one Core v2 Model or Pipeline answers the synthetic traffic, from now on.

        As `set_predictor_behaviour`: `error_rate` (0..1) of its requests are
        answered with `error_code` (default 500), each takes `latency_seconds`
        (default 0.02); parts left out keep their value; the object need not
        exist yet. A model's settings shape only the `seldon_model_*` series, a
        pipeline's only the `seldon_pipeline_*` ones.
        """
        if kind not in ("Model", "Pipeline"):
            raise ValueError("kind must be Model or Pipeline")
        payload = {
            key: value
            for key, value in (
                ("error_rate", error_rate),
                ("latency_seconds", latency_seconds),
                ("error_code", error_code),
            )
            if value is not None
        }
        segment = "models" if kind == "Model" else "pipelines"
        path = f"/namespaces/{namespace}/{segment}/{name}/traffic"
        return cast(CoreBehaviourRecord, self._call("PUT", path, json=payload))

    def traffic(self) -> TrafficRecord:
        """Traffic settings and every exported series' counters, as of now."""
        return cast(TrafficRecord, self._call("GET", "/traffic"))

    def clear_traffic_settings(self) -> None:
        """Every rate and predictor/model/pipeline behaviour back to the defaults.

        Counters keep counting.
        """
        self._call("DELETE", "/traffic")

    def metrics_text(self) -> str:
        """The `/metrics` page Prometheus scrapes (executor and Core v2 metrics, text format)."""
        response = self._session.get(
            f"{self.base_url}/metrics", timeout=self._timeout, verify=self._verify
        )
        response.raise_for_status()
        return response.text
