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
    DEFAULT_PREDICTIONS,
    LABEL_NAMES,
    METRIC_NAME,
    PREDICTION_LABEL_NAMES,
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


def with_shadow(name: str, image: str = "seldonio/sklearn-iris:0.2") -> dict[str, Any]:
    """A deployment with the champion `default` and a `shadow` predictor running `image`."""
    body = deployment_body(name)
    shadow = copy.deepcopy(body["spec"]["predictors"][0])
    shadow.update(name="shadow", shadow=True)
    shadow["componentSpecs"][0]["spec"]["containers"][0]["image"] = image
    body["spec"]["predictors"].append(shadow)
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

    def predictions(self, at: float) -> dict[tuple[str, str], int]:
        """(predictor, label) -> predictions, after advancing to `at`."""
        self.model.advance(self.store, at)
        return {
            (r["predictor_name"], r["class"]): r["count"]
            for r in self.model.prediction_series_records()
        }


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


# -- predictions by label -------------------------------------------------------


def test_the_requests_of_one_scrape_are_split_over_the_labels(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    assert world.predictions(T0 + 1) == {
        ("default", "setosa"): 100,
        ("default", "versicolor"): 60,
        ("default", "virginica"): 40,
    }


def test_a_set_distribution_splits_the_predictions_by_its_normalised_weights(
    world: World,
) -> None:
    world.seed(deployment_body("iris"), T0)
    world.model.set_behaviour(NS, "iris", "default", predictions={"cat": 1, "dog": 3})
    assert world.predictions(T0 + 1) == {("default", "cat"): 50, ("default", "dog"): 150}


def test_only_successful_requests_are_predictions(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.model.set_behaviour(NS, "iris", "default", error_rate=0.5, predictions={"a": 1})
    assert world.predictions(T0 + 1) == {("default", "a"): 100}


def test_a_shadow_predictor_counts_follow_its_own_distribution(world: World) -> None:
    world.seed(with_shadow("iris"), T0)
    world.model.set_behaviour(
        NS, "iris", "shadow", predictions={"setosa": 0.1, "versicolor": 0.1, "virginica": 0.8}
    )
    assert world.predictions(T0 + 1) == {
        ("default", "setosa"): 100,
        ("default", "versicolor"): 60,
        ("default", "virginica"): 40,
        ("shadow", "setosa"): 20,
        ("shadow", "versicolor"): 20,
        ("shadow", "virginica"): 160,
    }


def test_every_predictor_predicts_the_default_distribution(world: World) -> None:
    body = with_shadow("iris")
    body["spec"]["predictors"][0]["traffic"] = 80
    canary = copy.deepcopy(body["spec"]["predictors"][0])
    canary.update(name="canary", traffic=20)
    body["spec"]["predictors"].append(canary)
    world.seed(body, T0)
    counts = world.predictions(T0 + 10)
    for predictor in ("default", "canary", "shadow"):
        total = sum(n for (p, _), n in counts.items() if p == predictor)
        shares = {label: counts[(predictor, label)] / total for label, _ in DEFAULT_PREDICTIONS}
        assert shares == pytest.approx(dict(DEFAULT_PREDICTIONS)), predictor


def test_predictions_add_up_to_the_successful_requests_at_every_scrape(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.model.set_behaviour(
        NS, "iris", "default", error_rate=0.13, predictions={"a": 1, "b": 1, "c": 1}
    )
    for step in range(1, 200):
        predictions = world.predictions(T0 + step * 0.0137)
        successes = world.counts(T0 + step * 0.0137).get(("default", "200"), 0)
        assert sum(predictions.values()) == successes


def test_each_label_is_within_one_prediction_of_its_share(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    weights = {"a": 0.37, "b": 0.21, "c": 0.42}
    world.model.set_behaviour(NS, "iris", "default", predictions=weights)
    for step in range(1, 300):
        at = T0 + step * 0.0171 + (0.003 if step % 7 else 0)
        predictions = world.predictions(at)
        successes = world.counts(at)[("default", "200")]
        for label, share in weights.items():
            assert abs(predictions.get(("default", label), 0) - successes * share) < 1


def test_a_distribution_change_affects_later_predictions_only(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    world.model.advance(world.store, T0 + 1)
    world.model.set_behaviour(NS, "iris", "default", predictions={"setosa": 1})
    assert world.predictions(T0 + 2) == {
        ("default", "setosa"): 100 + 200,
        ("default", "versicolor"): 60,
        ("default", "virginica"): 40,
    }


def test_the_default_distribution_can_be_put_back(world: World) -> None:
    world.model.set_behaviour(NS, "iris", "default", predictions={"x": 1}, error_rate=0.1)
    behaviour = world.model.set_behaviour(NS, "iris", "default", default_predictions=True)
    assert (behaviour.predictions, behaviour.error_rate) == (DEFAULT_PREDICTIONS, 0.1)


def test_a_new_model_image_restarts_the_prediction_counters(world: World) -> None:
    world.seed(deployment_body("iris"), T0)
    assert world.predictions(T0 + 1)[("default", "setosa")] == 100
    world.write(deployment_body("iris", image="seldonio/sklearn-iris:0.2"), T0 + 1)
    # The old pods predict until the write; the new ones from T0 + 2, from zero.
    world.model.advance(world.store, T0 + 1.5)
    assert world.predictions(T0 + 1.5)[("default", "setosa")] == 100
    world.model.advance(world.store, T0 + 3)
    ((_, _, model, _, count), *_) = list(world.model.prediction_series())
    assert (model.image, model.version, count) == ("seldonio/sklearn-iris", "0.2", 100)


@pytest.mark.parametrize(
    "weights",
    [
        {},
        {"setosa": -0.1, "virginica": 1},
        {"setosa": "lots"},
        {"setosa": None},
        {"setosa": True},
        {"setosa": float("nan")},
        {"setosa": float("inf")},
        {"setosa": 0, "virginica": 0},
        {"": 1},
        ["setosa"],
        "setosa",
    ],
)
def test_impossible_distributions_are_refused(weights: Any) -> None:
    model = TrafficModel()
    with pytest.raises(InvalidTrafficSetting, match="predictions"):
        model.set_behaviour(NS, "iris", "default", predictions=weights)
    assert model.behaviour(NS, "iris", "default") == PredictorBehaviour()


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
    families = list(text_string_to_metric_families(fresh_control.metrics_text()))
    (family,) = [f for f in families if f.name == METRIC_NAME]
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


def test_metrics_page_has_the_prediction_counter_with_the_wrappers_labels(
    fresh_control: SimulatorControl,
) -> None:
    body = with_shadow("iris")
    body["spec"]["predictors"][1]["labels"] = {"version": "v2"}
    fresh_control.add_namespace(NS)
    # Before the seed: the shadow's first request already follows it.
    fresh_control.set_predictor_behaviour(NS, "iris", "shadow", predictions={"virginica": 1})
    fresh_control.seed_deployment(NS, body)

    def every_label_counted() -> bool:
        # The champion's rarest class gets its first count a few requests in.
        counted = {
            (sample.labels["predictor_name"], sample.labels["class"])
            for family in text_string_to_metric_families(fresh_control.metrics_text())
            if family.name == "predictions"
            for sample in family.samples
        }
        return ("shadow", "virginica") in counted and {
            ("default", c) for c in ("setosa", "versicolor", "virginica")
        } <= counted

    wait_for(every_label_counted, timeout=5)
    families = list(text_string_to_metric_families(fresh_control.metrics_text()))

    (family,) = [f for f in families if f.name == "predictions"]
    assert family.type == "counter"
    assert {s.name for s in family.samples} == {"predictions_total"}
    assert {tuple(sorted(s.labels)) for s in family.samples} == {
        tuple(sorted(PREDICTION_LABEL_NAMES))
    }
    shadow = [s.labels for s in family.samples if s.labels["predictor_name"] == "shadow"]
    assert shadow == [
        {
            "class": "virginica",
            "method": "predict",
            "deployment_name": "iris",
            "model_name": "classifier",
            "model_image": "seldonio/sklearn-iris",
            "model_version": "0.2",
            "predictor_name": "shadow",
            "predictor_version": "v2",
            "seldon_deployment_name": "iris",
            "image_name": "seldonio/sklearn-iris",
            "image_version": "0.2",
            "worker_id": "1",
            "namespace": NS,
        }
    ]
    champion = [s.labels for s in family.samples if s.labels["predictor_name"] == "default"]
    assert {labels["class"] for labels in champion} == {"setosa", "versicolor", "virginica"}


def test_metrics_page_has_no_prediction_counter_without_predictions(
    sim: RunningSimulator, fresh_control: SimulatorControl
) -> None:
    fresh_control.add_namespace(NS)
    fresh_control.set_predictor_behaviour(NS, "iris", "default", error_rate=1.0)
    fresh_control.seed_deployment(NS, deployment_body("iris"))
    wait_for(lambda: 'code="500"' in fresh_control.metrics_text(), timeout=5)
    assert "predictions_total" not in fresh_control.metrics_text()


def test_control_api_sets_shows_and_resets_a_distribution(
    fresh_control: SimulatorControl,
) -> None:
    fresh_control.add_namespace(NS)
    fresh_control.seed_deployment(NS, with_shadow("iris"))
    record = fresh_control.set_predictor_behaviour(
        NS, "iris", "shadow", predictions={"setosa": 1, "virginica": 3}
    )
    assert record["predictions"] == {"setosa": 0.25, "virginica": 0.75}
    assert fresh_control.traffic()["predictors"] == [record]
    record = fresh_control.set_predictor_behaviour(NS, "iris", "shadow", default_predictions=True)
    assert record["predictions"] == dict(DEFAULT_PREDICTIONS)


def test_control_api_reports_the_prediction_counts(fresh_control: SimulatorControl) -> None:
    fresh_control.add_namespace(NS)
    fresh_control.set_predictor_behaviour(NS, "iris", "default", predictions={"setosa": 1})
    fresh_control.seed_deployment(NS, deployment_body("iris"))

    series = wait_for(lambda: fresh_control.traffic()["prediction_series"], timeout=5)

    assert [(s["predictor_name"], s["model_name"], s["class"]) for s in series] == [
        ("default", "classifier", "setosa")
    ]


def test_clearing_the_traffic_settings_resets_the_distributions(
    fresh_control: SimulatorControl,
) -> None:
    fresh_control.set_predictor_behaviour(NS, "iris", "default", predictions={"setosa": 1})
    fresh_control.clear_traffic_settings()
    assert fresh_control.traffic()["predictors"] == []


@pytest.mark.parametrize(
    "weights",
    [{"setosa": -1, "virginica": 2}, {}, {"setosa": "lots"}, {"setosa": 0}, ["setosa"], 3],
)
def test_control_api_refuses_impossible_distributions_naming_the_field(
    sim: RunningSimulator, weights: Any
) -> None:
    response = requests.put(
        f"{sim.base_url}/_control/namespaces/{NS}/traffic/iris/predictors/default",
        json={"predictions": weights},
        timeout=10,
    )
    assert response.status_code == 400
    assert "predictions" in response.json()["message"]


def test_core_v2_behaviours_have_no_distribution(sim: RunningSimulator) -> None:
    response = requests.put(
        f"{sim.base_url}/_control/namespaces/{NS}/models/iris/traffic",
        json={"predictions": {"setosa": 1}},
        timeout=10,
    )
    assert response.status_code == 400
    assert "predictions" in response.json()["message"]


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
        "predictions": {"setosa": 0.5, "versicolor": 0.3, "virginica": 0.2},
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
