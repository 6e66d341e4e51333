"""A real Prometheus on loopback, scraping the simulator's executor metrics.

Started the way etcd is: the pinned binary from the cache (built from the Go
module by ``binaries``), a free port on 127.0.0.1, a temporary directory (swept
like the others) holding the generated configuration and the TSDB, a
supervised process that dies with the harness, and a readiness wait on
``/-/ready``. Scrapes and rule evaluation run every second so that tests see
``rate(...[5s])`` move within seconds; the data lives an hour at most.

It can be stopped and started again on the same port with the same data
directory (``stop_server``/``start_server``/``restart``), as a canary analysis
must survive its metrics source going away.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from tests.harness.binaries import ensure_binaries
from tests.harness.ports import free_port
from tests.harness.processes import HarnessError, ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say

SCRAPE_JOB = "seldon-executor"
METRICS_PATH = "/metrics"
DEFAULT_SCRAPE_INTERVAL = 1.0
RETENTION = "1h"
_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ScrapeTarget:
    """One page Prometheus scrapes: a base URL (http or https) and the CA to trust."""

    url: str
    ca_file: Path | None = None
    metrics_path: str = METRICS_PATH


def prometheus_duration(seconds: float) -> str:
    """A Prometheus duration for a number of seconds: ``1s``, ``500ms``, ``2m``."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError("a Prometheus duration must be positive")
    millis = round(seconds * 1000)
    if millis < 1:
        raise ValueError("a Prometheus duration has millisecond resolution")
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def prometheus_config(
    targets: Sequence[ScrapeTarget], *, interval: float = DEFAULT_SCRAPE_INTERVAL
) -> dict[str, Any]:
    """The configuration: one job per scheme and CA, all scraped every ``interval``,
    samples kept for ``RETENTION`` (set in the file: the flag is deprecated).

    ``honor_labels`` keeps the page's own ``namespace`` (the label a real
    Prometheus gets from Kubernetes service discovery) should a target label
    ever clash with it.
    """
    if not targets:
        raise ValueError("at least one scrape target is needed")
    step = prometheus_duration(interval)
    groups: dict[tuple[str, str | None, str], list[str]] = {}
    for target in targets:
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"scrape target {target.url!r} is not an http(s) URL")
        ca = str(target.ca_file) if target.ca_file is not None else None
        groups.setdefault((parts.scheme, ca, target.metrics_path), []).append(parts.netloc)
    jobs: list[dict[str, Any]] = []
    for index, ((scheme, ca, path), addresses) in enumerate(sorted(groups.items(), key=str)):
        job: dict[str, Any] = {
            "job_name": SCRAPE_JOB if index == 0 else f"{SCRAPE_JOB}-{index}",
            "scheme": scheme,
            "metrics_path": path,
            "honor_labels": True,
            "static_configs": [{"targets": addresses}],
        }
        if ca is not None:
            job["tls_config"] = {"ca_file": ca}
        jobs.append(job)
    return {
        "global": {
            "scrape_interval": step,
            "scrape_timeout": step,
            "evaluation_interval": step,
        },
        "scrape_configs": jobs,
        "storage": {"tsdb": {"retention": {"time": RETENTION}}},
    }


def render_config(
    targets: Sequence[ScrapeTarget], *, interval: float = DEFAULT_SCRAPE_INTERVAL
) -> str:
    """:func:`scrape_config` as the YAML file Prometheus reads."""
    return yaml.safe_dump(prometheus_config(targets, interval=interval), sort_keys=False)


class PrometheusQueryError(RuntimeError):
    """Prometheus answered a query with an error; the message is Prometheus' own."""


@dataclass(eq=False)
class Prometheus:
    """A running Prometheus: its URL, configuration, data and process."""

    url: str
    binary: Path
    workdir: Path
    config_path: Path
    process: ManagedProcess

    def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200 (the TSDB is open and it serves queries)."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self) -> None:
        """Block until ``/-/ready`` answers."""
        self.process.wait_until(self.ready, _START_TIMEOUT, f"{self.url}/-/ready answered 200")

    def query(self, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query through ``/api/v1/query``: the vector's samples.

        Raises :class:`PrometheusQueryError` with Prometheus' message for a bad
        query, ``requests.ConnectionError`` when Prometheus is down.
        """
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body: dict[str, Any] = response.json()
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{body.get('errorType')}: {body.get('error')}")
        data: dict[str, Any] = body["data"]
        if data["resultType"] != "vector":
            raise PrometheusQueryError(f"expected a vector, got {data['resultType']}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str) -> float | None:
        """The single number a query returns now, or None when it returns nothing."""
        samples = self.query(promql)
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusQueryError(f"expected one series, got {len(samples)}")
        return float(samples[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        response = requests.get(f"{self.url}/api/v1/targets", timeout=10)
        response.raise_for_status()
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active

    def wait_for(self, promql: str, *, timeout: float = 30.0, interval: float = 0.5) -> float:
        """Poll a query until it returns a number (not NaN); return that number."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            try:
                last = self.query_value(promql)
            except requests.ConnectionError:
                last = None
            if last is not None and not math.isnan(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql!r} returned no number within {timeout} s: {last}")
            time.sleep(interval)

    def stop_server(self) -> None:
        """Stop the process and keep its data (SIGTERM: Prometheus flushes and exits)."""
        self.process.stop()

    def start_server(self) -> None:
        """Start a stopped Prometheus again on the same port and data; wait until ready."""
        if self.process.running():
            raise HarnessError("Prometheus is already running")
        self.process.restart()
        self.wait_ready()

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop Prometheus, stay down ``down_for`` seconds, start it again (same port, data)."""
        self.stop_server()
        time.sleep(down_for)
        self.start_server()

    def stop(self) -> None:
        """Stop Prometheus and remove its configuration and data."""
        self.process.stop()
        remove_temp_dir(self.workdir)


def start_prometheus(
    targets: Sequence[ScrapeTarget], *, interval: float = DEFAULT_SCRAPE_INTERVAL
) -> Prometheus:
    """Build (if needed) and start Prometheus scraping ``targets``; return once ready."""
    binary = ensure_binaries().prometheus
    workdir = make_temp_dir("prometheus")
    config_path = workdir / "prometheus.yml"
    config_path.write_text(render_config(targets, interval=interval))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"starting Prometheus on {url}")
    process = ManagedProcess(
        "prometheus",
        [
            str(binary),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--no-storage.tsdb.wal-compression",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        workdir / "prometheus.log",
        # Without built-in web assets Prometheus looks for them relative to its
        # working directory; the API does not need them.
        cwd=workdir,
    )
    prometheus = Prometheus(url, binary, workdir, config_path, process)
    started = time.monotonic()
    prometheus.wait_ready()
    say(f"Prometheus ready in {time.monotonic() - started:.1f}s; scraping every {interval:g}s")
    return prometheus
