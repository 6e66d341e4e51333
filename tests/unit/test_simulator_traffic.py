"""The simulator's traffic model and its ``/metrics`` page: split, errors, latency, clock."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.simulator.control import ControlError, SimulatorControl
from tests.simulator.namespaces import GITOPS_LABEL, RESTRICTED_LABEL, Namespace
from tests.simulator.server import METRICS_CONTENT_TYPE
from tests.simulator.store import Delays, FailureMark, State, Store
from tests.simulator.testing import RunningSimulator, deployment_body, wait_for
from tests.simulator.traffic import (
    BUCKETS,
    LABEL_NAMES,
    METRIC_NAME,
    InvalidTrafficSetting,
    PredictorBehaviour,
    TrafficModel,
    traffic_split,
)
from tests.simulator.validation import parse_deployment

NS = "prod"
T0 = 1_800_000_000.0
ROLLOUT = 1.0
SYNC = 2.0


def two_predictors(name: str, stable: int = 90, canary: int = 10) -> dict[str, Any]:
    """A deployment with predictors `default` and `canary` at the given weights."""
    body = deployment_body(name)
    main = body["spec"]["predictors"][0]
    main["traffic"] = stable
    second = copy.deepcopy(main)
    second.update(name="canary", traffic=canary, annotations={"version": "v2"})
    body["spec"]["predictors"].append(second)
    return body


class World:
    """A store, a traffic model and a clock the test moves by hand."""

    def __init__(self) -> None:
        self.store = Store(default_delays=Delays(rollout_seconds=ROLLOUT, gitops_sync_seconds=SYNC))
        self.model = TrafficModel()
        self.namespaces = {
            NS: Namespace(NS, labels={RESTRICTED_LABEL: "false"}),
            "git": Namespace("git", labels={RESTRICTED_LABEL: "false", GITOPS_LABEL: "enabled"}),
        }

    def seed(self, body: dict[str, Any], at: float, state: str | None = "Available") -> None:
        namespace = self.namespaces[NS]
        parsed = parse_deployment(body, NS, strict_spec=False)
        self.store.seed(namespace, parsed, at, state=cast(State | None, state), description=None)

    def write(self, body: dict[str, Any], at: float, namespace: str = NS) -> None:
        self.store.write(self.namespaces[namespace], parse_deployment(body, namespace), at)

    def counts(self, at: float) -> dict[tuple[str, str], int]:
        """(predictor, code) -> requests, after advancing to `at`."""
        self.model.advance(self.store, at)
        return {(r["predictor_name"], r["code"]): r["count"] for r in self.model.series_records()}


@pytest.fixture
def world() -> World:
    return World()


# -- the split ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("predictors", "expected"),
    [
        ([{"name": "main"}], {"main": 1.0}),
        ([{"name": "main", "traffic": 100}], {"main": 1.0}),
        ([{"name": "a", "traffic": 90}, {"name": "b", "traffic": 10}], {"a": 0.9, "b": 0.1}),
        ([{"name": "a", "traffic": 100}, {"name": "b", "traffic": 0}], {"a": 1.0, "b": 0.0}),
        ([{"name": "a", "traffic": 30}, {"name": "b", "traffic": 30}], {"a": 0.5, "b": 0.5}),
        ([{"name": "a"}, {"name": "b"}], {"a": 0.5, "b": 0.5}),
        ([{"name": "a", "traffic": 50}, {"name": "b"}], {"a": 1.0, "b": 0.0}),
        (
            [{"name": "a", "traffic": 100}, {"name": "s", "shadow": True}],
            {"a": 1.0, "s": 1.0},
        ),
        ([], {}),
    ],
)
def test_traffic_split_follows_seldon_traffic_values(
    predictors: list[dict[str, Any]], expected: dict[str, float]
) -> None:
    assert traffic_split({"predictors": predictors}) == pytest.approx(expected)


def test_requests_are_split_by_traffic(world: World) -> None:
    world.seed(two_predictors("iris"), T0)
    assert world.counts(T0 + 10) == {("canary", "200"): 200, ("default", "200"): 1800}


def test_one_predictor_without_traffic_gets_everything(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    assert world.counts(T0 + 2.5) == {("default", "200"): 500}


def test_rate_is_settable_per_deployment_and_by_default(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.seed(deployment_body("wine"), T0)
    world.model.set_rate(10)
    world.model.set_rate(50, NS, "wine")
    world.model.advance(world.store, T0 + 4)
    by_name = {r["deployment_name"]: r["count"] for r in world.model.series_records()}
    assert by_name == {"iris": 40, "wine": 200}


# -- errors and latency ------------------------------------------------------


def test_error_ratio_of_a_predictor_is_exact_over_any_window(world: World) -> None:
    world.seed(two_predictors("iris"), T0)
    world.model.set_behaviour(NS, "iris", "canary", error_rate=0.2)
    # Scrapes at irregular moments; every window's ratio is within one request.
    moments = [T0 + 0.37 * i + (0.05 if i % 3 else 0) for i in range(1, 60)]
    samples = [world.counts(t) for t in moments]
    for start in range(0, len(samples) - 12, 5):
        first, last = samples[start], samples[start + 12]
        errors = last[("canary", "500")] - first.get(("canary", "500"), 0)
        total = errors + last[("canary", "200")] - first[("canary", "200")]
        assert abs(errors - 0.2 * total) <= 1
    final = samples[-1]
    assert final[("canary", "500")] / (final[("canary", "500")] + final[("canary", "200")]) == (
        pytest.approx(0.2, abs=0.005)
    )
    assert ("default", "500") not in final


def test_error_code_is_settable(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.model.set_behaviour(NS, "iris", "default", error_rate=0.5, error_code=503)
    assert world.counts(T0 + 1) == {("default", "200"): 100, ("default", "503"): 100}


def test_latency_lands_in_the_executor_buckets(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.model.set_behaviour(NS, "iris", "default", latency_seconds=0.3)
    world.model.advance(world.store, T0 + 1)
    ((_, _, _, _, histogram),) = list(world.model.series())
    expected = [200 if bound >= 0.3 else 0 for bound in BUCKETS]
    assert histogram.buckets == expected
    assert histogram.total == pytest.approx(200 * 0.3)


def test_a_latency_change_affects_later_requests_only(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.model.advance(world.store, T0 + 1)
    world.model.set_behaviour(NS, "iris", "default", latency_seconds=2.0)
    world.model.advance(world.store, T0 + 2)
    ((_, _, _, _, histogram),) = list(world.model.series())
    by_bound = dict(zip(BUCKETS, histogram.buckets, strict=True))
    assert by_bound[0.025] == 200  # the default 0.02 s, before the change
    assert by_bound[1.0] == 200
    assert by_bound[2.5] == 400
    assert histogram.total == pytest.approx(200 * 0.02 + 200 * 2.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"error_rate": float("nan")},
        {"latency_seconds": -1.0},
        {"latency_seconds": float("inf")},
        {"error_code": "200"},
        {"error_code": "abc"},
    ],
)
def test_impossible_behaviours_are_refused(settings: dict[str, Any]) -> None:
    model = TrafficModel()
    with pytest.raises(InvalidTrafficSetting):
        model.set_behaviour(NS, "iris", "default", **settings)
    assert model.behaviour(NS, "iris", "default") == PredictorBehaviour()


def test_impossible_rates_are_refused() -> None:
    model = TrafficModel()
    with pytest.raises(InvalidTrafficSetting):
        model.set_rate(-1)
    with pytest.raises(InvalidTrafficSetting):
        model.set_rate(10, NS)


# -- determinism -------------------------------------------------------------


def test_many_small_scrapes_count_what_one_large_one_does() -> None:
    fine, coarse = World(), World()
    for w in (fine, coarse):
        w.seed(two_predictors("iris", 70, 30), T0)
        w.model.set_behaviour(NS, "iris", "canary", error_rate=0.13, latency_seconds=0.07)
    for step in range(1, 1001):
        fine.model.advance(fine.store, T0 + step * 0.013)
    assert fine.counts(T0 + 13) == coarse.counts(T0 + 13)


def test_the_same_scrapes_give_the_same_page() -> None:
    pages = []
    for _ in range(2):
        w = World()
        w.seed(two_predictors("iris"), T0)
        w.model.set_behaviour(NS, "iris", "canary", error_rate=0.2, latency_seconds=0.3)
        for step in range(1, 30):
            w.model.advance(w.store, T0 + step * 0.731)
        pages.append(w.model.exposition())
    assert pages[0] == pages[1]


# -- only Available deployments serve ------------------------------------------


@pytest.mark.parametrize("state", ["Creating", "Failed"])
def test_deployments_that_are_not_available_get_no_traffic(world: World, state: str) -> None:
    world.seed(deployment_body("iris"), T0, state=state)
    assert world.counts(T0 + 10) == {}


def test_traffic_starts_when_a_rollout_becomes_available(world: World) -> None:
    world.write(deployment_body("iris"), T0)
    assert world.counts(T0 + 0.5) == {}  # Creating
    assert world.counts(T0 + ROLLOUT + 2) == {("default", "200"): 400}


def test_a_failed_rollout_serves_nothing(world: World) -> None:
    world.store.failing[(NS, "iris")] = FailureMark()
    world.write(deployment_body("iris"), T0)
    assert world.counts(T0 + 10) == {}


def test_a_write_stops_the_old_split_and_the_new_one_starts_when_available(
    world: World,
) -> None:
    world.seed(deployment_body("iris"), T0)
    world.counts(T0 + 1)
    # Scraped only long after: the old split served until the write at T0 + 2,
    # nothing while the rollout was Creating, the new split from T0 + 3.
    world.write(two_predictors("iris", 50, 50), T0 + 2)
    assert world.counts(T0 + 5) == {("default", "200"): 400 + 200, ("canary", "200"): 200}


def test_a_removed_predictor_drops_out_and_restarts_from_zero(world: World) -> None:
    world.seed(two_predictors("iris"), T0)
    assert world.counts(T0 + 1)[("canary", "200")] == 20
    world.write(deployment_body("iris"), T0 + 1)
    assert world.counts(T0 + 3) == {("default", "200"): 180 + 200}
    world.write(two_predictors("iris"), T0 + 3)
    assert world.counts(T0 + 5)[("canary", "200")] == 20


def test_a_deleted_deployment_drops_out(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.counts(T0 + 1)
    world.store.remove(NS, "iris")
    assert world.counts(T0 + 2) == {}


def test_a_gitops_write_keeps_the_running_split_until_the_sync(world: World) -> None:
    world.write(deployment_body("iris"), T0, namespace="git")
    # Synced at T0 + 2, Available at T0 + 3.
    world.model.advance(world.store, T0 + 4)
    world.write(two_predictors("iris"), T0 + 4, namespace="git")
    # The repository has two predictors now; the cluster runs one until T0 + 6,
    # and the new split serves from T0 + 7.
    world.model.advance(world.store, T0 + 5)
    records = {(r["predictor_name"], r["code"]): r["count"] for r in world.model.series_records()}
    assert records == {("default", "200"): 400}
    world.model.advance(world.store, T0 + 8)
    records = {(r["predictor_name"], r["code"]): r["count"] for r in world.model.series_records()}
    assert records == {("default", "200"): 600 + 180, ("canary", "200"): 20}


def test_reset_forgets_counters_and_settings(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.model.set_rate(5)
    world.model.set_behaviour(NS, "iris", "default", error_rate=1.0)
    world.counts(T0 + 1)
    world.model.reset()
    assert world.model.series_records() == []
    assert world.model.settings_record()["predictors"] == []
    assert world.counts(T0 + 2) == {("default", "200"): 400}


# -- the page and the control API, over HTTP ------------------------------------


def test_metrics_page_has_the_executor_histogram_with_its_labels(
    sim: RunningSimulator, fresh_control: SimulatorControl
) -> None:
    fresh_control.add_namespace(NS)
    fresh_control.seed_deployment(NS, two_predictors("iris"))
    fresh_control.set_predictor_behaviour(NS, "iris", "canary", error_rate=0.5)
    response = requests.get(f"{sim.base_url}/metrics", timeout=10)  # no token needed
    assert response.status_code == 200
    assert response.headers["Content-Type"] == METRICS_CONTENT_TYPE
    wait_for(lambda: 'code="500"' in fresh_control.metrics_text(), timeout=5)
    (family,) = list(text_string_to_metric_families(fresh_control.metrics_text()))
    assert family.name == METRIC_NAME
    assert family.type == "histogram"
    names = {sample.name for sample in family.samples}
    assert names == {f"{METRIC_NAME}_bucket", f"{METRIC_NAME}_count", f"{METRIC_NAME}_sum"}
    counts = [s for s in family.samples if s.name.endswith("_count")]
    assert {tuple(sorted(s.labels)) for s in counts} == {tuple(sorted(LABEL_NAMES))}
    labels = {(s.labels["predictor_name"], s.labels["code"]): s.labels for s in counts}
    assert set(labels) == {("default", "200"), ("canary", "200"), ("canary", "500")}
    assert labels[("canary", "500")] == {
        "deployment_name": "iris",
        "predictor_name": "canary",
        "predictor_version": "v2",
        "service": "predictions",
        "method": "post",
        "code": "500",
        "namespace": NS,
    }
    # The page is neither an API request nor logged as one.
    assert fresh_control.requests_log() == []


def test_control_api_sets_and_reports_traffic(fresh_control: SimulatorControl) -> None:
    fresh_control.add_namespace(NS)
    fresh_control.seed_deployment(NS, deployment_body("iris"))
    record = fresh_control.set_predictor_behaviour(NS, "iris", "default", latency_seconds=0.3)
    assert record == {
        "namespace": NS,
        "name": "iris",
        "predictor": "default",
        "error_rate": 0.0,
        "latency_seconds": 0.3,
        "error_code": "500",
    }
    record = fresh_control.set_predictor_behaviour(NS, "iris", "default", error_rate=0.1)
    assert (record["error_rate"], record["latency_seconds"]) == (0.1, 0.3)
    settings = fresh_control.set_request_rate(1000, namespace=NS, name="iris")
    assert settings["rates"] == [{"namespace": NS, "name": "iris", "requests_per_second": 1000.0}]
    assert fresh_control.set_request_rate(7)["default_requests_per_second"] == 7.0
    traffic = fresh_control.traffic()
    assert traffic["predictors"] == [record]
    assert {s["predictor_name"] for s in traffic["series"]} == {"default"}
    fresh_control.clear_traffic_settings()
    cleared = fresh_control.traffic()
    assert (cleared["default_requests_per_second"], cleared["rates"], cleared["predictors"]) == (
        200.0,
        [],
        [],
    )
    assert cleared["series"], "counters keep counting"


@pytest.mark.parametrize(
    "settings",
    [{"error_rate": 2}, {"latency_seconds": -1}, {"error_code": 302}, {"error_rate": "lots"}],
)
def test_control_api_refuses_impossible_settings(
    fresh_control: SimulatorControl, settings: dict[str, Any]
) -> None:
    with pytest.raises(ControlError, match="400"):
        fresh_control.set_predictor_behaviour(NS, "iris", "default", **settings)


def test_control_api_refuses_unknown_settings(sim: RunningSimulator) -> None:
    response = requests.put(
        f"{sim.base_url}/_control/namespaces/{NS}/traffic/iris/predictors/default",
        json={"errors": 0.5},
        timeout=10,
    )
    assert response.status_code == 400
    assert "errors" in response.json()["message"]


def test_reset_clears_traffic(fresh_control: SimulatorControl) -> None:
    fresh_control.add_namespace(NS)
    fresh_control.seed_deployment(NS, deployment_body("iris"))
    fresh_control.set_request_rate(3)
    fresh_control.reset()
    traffic = fresh_control.traffic()
    assert (traffic["default_requests_per_second"], traffic["series"]) == (200.0, [])
