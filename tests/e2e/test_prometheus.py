"""The real Prometheus of the stack measures the simulator's synthetic traffic.

What the Canary strategy's analysis will rely on: the issue's PromQL against
``/api/v1/query`` gives the error ratio and latency a test set on a predictor,
and Prometheus can be stopped and started again mid-test.
"""

from __future__ import annotations

import copy
import subprocess
import time
import uuid
from typing import Any

import pytest
import requests

from tests.harness.binaries import PROMETHEUS_VERSION
from tests.harness.prometheus import SCRAPE_JOB, Prometheus
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

NS = "production"
WINDOW_SECONDS = 5
# The error-rate template with its placeholders filled in.
ERROR_RATE = (
    "sum(rate(seldon_api_executor_server_requests_seconds_count"
    '{{deployment_name="{target}",predictor_name="{canary}",code!~"2.."}}[{interval}]))'
    " / sum(rate(seldon_api_executor_server_requests_seconds_count"
    '{{deployment_name="{target}",predictor_name="{canary}"}}[{interval}]))'
)
SHARE = (
    "sum(rate(seldon_api_executor_server_requests_seconds_count"
    '{{deployment_name="{target}",predictor_name="{canary}"}}[{interval}]))'
    " / sum(rate(seldon_api_executor_server_requests_seconds_count"
    '{{deployment_name="{target}"}}[{interval}]))'
)
P95 = (
    "histogram_quantile(0.95, sum by (le) (rate("
    'seldon_api_executor_server_requests_seconds_bucket{{deployment_name="{target}",'
    'predictor_name="{canary}"}}[{interval}])))'
)


def canary_deployment(name: str, stable: int, canary: int) -> dict[str, Any]:
    """A target as a canary leaves it: predictor `default` and predictor `canary`."""
    body = deployment_body(name, image="seldonio/sklearn-iris:1.4")
    main = body["spec"]["predictors"][0]
    main["traffic"] = stable
    second = copy.deepcopy(main)
    second.update(name="canary", traffic=canary)
    second["componentSpecs"][0]["spec"]["containers"][0]["image"] = "seldonio/sklearn-iris:1.5"
    body["spec"]["predictors"].append(second)
    return body


def _fill(template: str, target: str) -> str:
    return template.format(target=target, canary="canary", interval=f"{WINDOW_SECONDS}s")


def test_the_binary_is_the_pinned_release(prometheus: Prometheus) -> None:
    out = subprocess.run(
        [str(prometheus.binary), "--version"], capture_output=True, text=True, check=True
    )
    assert f"prometheus, version {PROMETHEUS_VERSION} " in out.stdout
    info = requests.get(f"{prometheus.url}/api/v1/status/buildinfo", timeout=10).json()
    assert info["data"]["version"] == PROMETHEUS_VERSION


def test_error_ratio_and_latency_of_a_canary_predictor(
    simulator: Simulator, prometheus: Prometheus
) -> None:
    control = simulator.control
    control.add_namespace(NS)
    # A fresh name per run: its series start at zero, untouched by earlier tests.
    target = f"iris-{uuid.uuid4().hex[:6]}"
    control.set_predictor_behaviour(NS, target, "canary", error_rate=0.2, latency_seconds=0.3)
    seeded = time.monotonic()
    control.seed_deployment(NS, canary_deployment(target, stable=90, canary=10))

    # The window is full once a scrape lands more than WINDOW_SECONDS after the seed.
    prometheus.wait_for(_fill(ERROR_RATE, target), timeout=30)
    time.sleep(max(0.0, WINDOW_SECONDS + 1.5 - (time.monotonic() - seeded)))

    ratios = []
    for _ in range(3):
        ratios.append(prometheus.wait_for(_fill(ERROR_RATE, target)))
        time.sleep(1)
    assert all(abs(ratio - 0.2) <= 0.02 for ratio in ratios), ratios
    share = prometheus.wait_for(_fill(SHARE, target))
    assert abs(share - 0.1) <= 0.01, share
    # Every canary request takes 0.3 s: its p95 lies in the executor's (0.25, 0.5] bucket.
    p95 = prometheus.wait_for(_fill(P95, target))
    assert 0.25 < p95 <= 0.5, p95
    # As with the real executor, a predictor that never failed has no non-2xx series,
    # so the query returns no data for it (not 0): the analysis must tell
    # that apart from missing evidence (e.g. with `or vector(0)` on the numerator).
    flawless = _fill(ERROR_RATE, target).replace('"canary"', '"default"')
    assert prometheus.query(flawless) == []
    numerator, denominator = flawless.split(" / ")
    assert prometheus.wait_for(f"({numerator} or vector(0)) / {denominator}") == 0.0


def test_prometheus_stops_and_starts_again_with_its_data(
    simulator: Simulator, prometheus: Prometheus
) -> None:
    control = simulator.control
    control.add_namespace(NS)
    target = f"iris-{uuid.uuid4().hex[:6]}"
    control.seed_deployment(NS, deployment_body(target))
    count = f'seldon_api_executor_server_requests_seconds_count{{deployment_name="{target}"}}'
    before = prometheus.wait_for(count)

    prometheus.stop_server()
    assert not prometheus.ready()
    with pytest.raises(requests.ConnectionError):
        prometheus.query(count)
    time.sleep(2)

    started = time.monotonic()
    prometheus.start_server()
    restart_seconds = time.monotonic() - started
    assert prometheus.ready()
    assert restart_seconds < 30, restart_seconds
    # The samples from before the stop survived (the TSDB was kept) ...
    assert prometheus.wait_for(f"min_over_time({count}[10m])") <= before
    # ... and scraping goes on: a new, larger count, and the target is up.
    prometheus.wait_for(f"{count} > {before}", timeout=15)
    assert prometheus.wait_for(f'up{{job="{SCRAPE_JOB}"}}', timeout=15) == 1.0
