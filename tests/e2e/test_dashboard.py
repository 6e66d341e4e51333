"""Every query of the Grafana dashboard (``manifests/monitoring/grafana-dashboard.json``)
runs on the real Prometheus after a demo-sized run, with Grafana's variables put in
as Grafana would: each must parse, and the main panels must return data.

Grafana itself is not run: what this shows is that the PromQL is valid against
Prometheus 3 and that the operator's metrics, scraped for real, feed the panels a
platform team looks at first. Layout, units and legends are not checked.

The run: the harness's Prometheus scrapes the operator's ``--metrics-port`` as
job ``promotion-operator`` while a Replace promotion, a canary that passes its
analysis and one that the analysis rolls back go through.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_canary import NS, TEN_THEN_FIFTY, canary_spec, error_rate, seed_model
from tests.e2e.test_promotion import PROMOTE_IRIS
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import Prometheus, PrometheusQueryError, ScrapeTarget
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).resolve().parents[2] / "manifests/monitoring/grafana-dashboard.json"
JOB = "promotion-operator"
# Grafana's variables as it would fill them: the job picked, and a rate window that
# covers the run (Grafana makes $__rate_interval at least 4 scrape intervals).
SUBSTITUTIONS = {"$__rate_interval": "2m", "$job": JOB}
# The panels a demo-sized run must fill: every query of each returns a finite number.
# The others (errors, failures, notifications, runs past their deadline, quantiles of
# runs) are empty or NaN on a healthy run of three; they must parse.
MAIN_PANELS = {
    "Runs in flight",
    "Runs finished by outcome",
    "Runs started and finished",
    "Mean run duration by outcome",
    "Canary weight",
    "Analysis results by template",
    "Seldon Deploy calls by code",
    "Seldon Deploy latency (p90) by path",
    "Token requests by result",
    "Prometheus queries by result",
    "Work queue",
    "Pass start delay (p50, p99)",
    "Leader",
}
_DATA_TIMEOUT = 30.0


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables put in) of every query of the dashboard."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = str(target["expr"])
            for variable, value in SUBSTITUTIONS.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a variable is left in {expr}"
            queries.append((str(panel["title"]), expr))
    return queries


def finite(samples: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in samples)


@pytest.fixture
def scraped_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    """The operator (measuring analyses on the stack's Prometheus), scraped by it."""
    operator = operator_factory(prometheus=prometheus)
    prometheus.add_scrape_job(JOB, ScrapeTarget(operator.metrics_url.removesuffix("/metrics")))
    try:
        yield operator
    finally:
        prometheus.remove_scrape_job(JOB)


def test_every_dashboard_query_parses_and_the_main_panels_show_data(
    seldon: Simulator,
    scraped_operator: OperatorProcess,
    promotions: Promotions,
    prometheus: Prometheus,
) -> None:
    titles = {title for title, _ in panel_queries()}
    assert titles >= MAIN_PANELS, MAIN_PANELS - titles
    passing, failing = seed_model(seldon), seed_model(seldon)
    seldon.control.set_predictor_behaviour(NS, failing, "canary", error_rate=0.2)

    promotions.apply("replace", PROMOTE_IRIS)
    promotions.apply("canary", canary_spec(passing, TEN_THEN_FIFTY, templates=[error_rate()]))
    promotions.apply("rolled-back", canary_spec(failing, TEN_THEN_FIFTY, templates=[error_rate()]))
    outcomes = {
        name: promotions.wait_for_phase(name, FINISHED_PHASES, timeout=180)["phase"]
        for name in ("replace", "canary", "rolled-back")
    }
    assert outcomes == {"replace": "Succeeded", "canary": "Succeeded", "rolled-back": "RolledBack"}
    prometheus.wait_for(f'sum(modelpromotion_runs_finished_total{{job="{JOB}"}}) == 3')

    # Every query parses and runs (a refused one raises with Prometheus' message).
    # The main panels' data comes with the next scrapes: poll a little for it.
    deadline = time.monotonic() + _DATA_TIMEOUT
    while True:
        empty = []
        for title, expr in panel_queries():
            try:
                samples = prometheus.query(expr)
            except PrometheusQueryError as error:
                pytest.fail(f"panel {title!r}: Prometheus refused {expr}: {error}")
            if title in MAIN_PANELS and not finite(samples):
                empty.append(f"{title}: {expr}")
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not empty, "main panels without data:\n" + "\n".join(empty)

    # And what two of them show is the run: two successes and a rollback, the canary
    # that passed at 100 % and the one rolled back at 0 %.
    queries = dict(panel_queries())
    by_outcome: dict[str, float] = {}
    for sample in prometheus.query(queries["Runs finished by outcome"]):
        outcome = sample["metric"]["outcome"]
        by_outcome[outcome] = by_outcome.get(outcome, 0.0) + float(sample["value"][1])
    assert by_outcome == {"Succeeded": 2.0, "RolledBack": 1.0}
    weights = {
        sample["metric"]["name"]: float(sample["value"][1])
        for sample in prometheus.query(queries["Canary weight"])
        if sample["metric"]["namespace"] == promotions.namespace
    }
    assert weights == {"canary": 100.0, "rolled-back": 0.0}
