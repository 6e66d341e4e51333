"""Core v2 synthetic traffic: pipeline and model counters, experiment splits, readiness,
errors and latency, the `/metrics` families and their control calls."""

from __future__ import annotations

from typing import Any, cast

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.simulator.control import ControlError, SimulatorControl
from tests.simulator.core_v2 import canary_spec, shadow_spec
from tests.simulator.namespaces import RESTRICTED_LABEL, Namespace
from tests.simulator.store import Delays, FailureMark, State, Store
from tests.simulator.testing import (
    ApiCaller,
    RunningSimulator,
    model_body,
    pipeline_body,
    wait_for,
)
from tests.simulator.traffic import InvalidTrafficSetting, TrafficModel
from tests.simulator.validation import parse_model, parse_pipeline

NS = "prod"
T0 = 1_800_000_000.0
ROLLOUT = 1.0
ALICE = "alice@example.com"

Counts = dict[tuple[str, str, str], int]


class World:
    """A store, a traffic model and a clock the test moves by hand."""

    def __init__(self) -> None:
        self.store = Store(default_delays=Delays(rollout_seconds=ROLLOUT, gitops_sync_seconds=2))
        self.model = TrafficModel()
        self.namespace = Namespace(NS, labels={RESTRICTED_LABEL: "false"})

    def seed_model(self, name: str, at: float, state: str | None = "Available") -> None:
        self.model.advance(self.store, at)
        parsed = parse_model(model_body(name), NS)
        self.store.seed(
            self.namespace,
            parsed,
            at,
            state=cast(State | None, state),
            description=None,
            kind="Model",
        )

    def seed_pipeline(
        self, name: str, steps: list[str], at: float, state: str | None = "Available"
    ) -> None:
        self.model.advance(self.store, at)
        parsed = parse_pipeline(pipeline_body(name, steps), NS)
        self.store.seed(
            self.namespace,
            parsed,
            at,
            state=cast(State | None, state),
            description=None,
            kind="Pipeline",
        )

    def write_model(self, name: str, at: float, uri: str = "gs://models/v1") -> None:
        self.model.advance(self.store, at)
        body = parse_model(model_body(name, storage_uri=uri), NS)
        self.store.write(self.namespace, body, at, "Model")

    def experiment(self, name: str, spec: dict[str, Any], at: float) -> None:
        self.model.advance(self.store, at)
        self.store.put_experiment(NS, name, {}, spec, at)

    def counts(self, at: float) -> Counts:
        """(kind, name, code) -> requests, after advancing to `at`."""
        self.model.advance(self.store, at)
        return {
            (r["kind"], r["name"], r["code"]): r["count"] for r in self.model.core_series_records()
        }


@pytest.fixture
def world() -> World:
    return World()


def _ready_pipe(world: World, *, rate: float = 100) -> None:
    """Ready models iris and wine and pipeline `pipe` (iris -> wine) at `rate` from T0."""
    world.seed_model("iris", T0)
    world.seed_model("wine", T0)
    world.seed_pipeline("pipe", ["iris", "wine"], T0)
    world.model.set_rate(rate, NS, "pipe", "Pipeline")


def test_a_pipeline_without_a_rate_gets_no_traffic(world: World) -> None:
    world.seed_model("iris", T0)
    world.seed_pipeline("pipe", ["iris"], T0)

    assert world.counts(T0 + 10) == {}


def test_each_request_counts_for_the_pipeline_and_each_of_its_models(world: World) -> None:
    _ready_pipe(world)

    assert world.counts(T0 + 2) == {
        ("Pipeline", "pipe", "200"): 200,
        ("Model", "iris", "200"): 200,
        ("Model", "wine", "200"): 200,
    }


def test_canary_weights_split_the_counts(world: World) -> None:
    _ready_pipe(world)
    world.seed_pipeline("pipe-canary", ["iris"], T0)
    world.experiment("pipe", canary_spec("pipe", 10), T0)

    assert world.counts(T0 + 10) == {
        ("Pipeline", "pipe", "200"): 900,
        ("Pipeline", "pipe-canary", "200"): 100,
        ("Model", "iris", "200"): 1000,
        ("Model", "wine", "200"): 900,
    }


def test_a_weight_change_splits_from_that_moment(world: World) -> None:
    _ready_pipe(world)
    world.seed_pipeline("pipe-canary", ["iris"], T0)
    world.experiment("pipe", canary_spec("pipe", 10), T0)
    world.experiment("pipe", canary_spec("pipe", 50), T0 + 10)

    counts = world.counts(T0 + 20)

    assert counts[("Pipeline", "pipe", "200")] == 900 + 500
    assert counts[("Pipeline", "pipe-canary", "200")] == 100 + 500


def test_a_shadow_gets_a_copy_of_every_request(world: World) -> None:
    _ready_pipe(world)
    world.seed_pipeline("pipe-shadow", ["iris"], T0)
    world.experiment("pipe", shadow_spec("pipe"), T0)

    counts = world.counts(T0 + 1)

    assert counts[("Pipeline", "pipe", "200")] == 100
    assert counts[("Pipeline", "pipe-shadow", "200")] == 100
    assert counts[("Model", "iris", "200")] == 200


def test_requests_routed_to_a_pipeline_that_is_not_ready_are_not_counted(
    world: World,
) -> None:
    _ready_pipe(world)
    world.seed_pipeline("pipe-canary", ["iris", "lemon"], T0)  # lemon does not exist
    world.experiment("pipe", canary_spec("pipe", 10), T0)

    counts = world.counts(T0 + 10)

    assert ("Pipeline", "pipe-canary", "200") not in counts
    assert counts[("Pipeline", "pipe", "200")] == 900


def test_traffic_starts_when_the_last_model_becomes_ready(world: World) -> None:
    world.seed_model("iris", T0)
    world.seed_pipeline("pipe", ["iris", "wine"], T0)
    world.model.set_rate(100, NS, "pipe", "Pipeline")
    world.write_model("wine", T0 + 2)  # Ready at T0 + 3

    # Scraped only long after: readiness is read from the timestamps.
    assert world.counts(T0 + 5)[("Pipeline", "pipe", "200")] == 200


def test_a_failed_model_stops_its_pipelines(world: World) -> None:
    _ready_pipe(world)
    world.store.model_failing[(NS, "wine")] = FailureMark()
    world.write_model("wine", T0 + 1, uri="gs://models/broken")

    assert world.counts(T0 + 10)[("Pipeline", "pipe", "200")] == 100


def test_a_pipeline_that_is_not_available_serves_nothing(world: World) -> None:
    world.seed_model("iris", T0)
    world.seed_pipeline("pipe", ["iris"], T0, state="Failed")
    world.model.set_rate(100, NS, "pipe", "Pipeline")

    assert world.counts(T0 + 10) == {}


def test_error_rate_and_code_are_set_per_pipeline_and_per_model(world: World) -> None:
    _ready_pipe(world)
    world.model.set_core_behaviour("Pipeline", NS, "pipe", error_rate=0.25, error_code=503)
    world.model.set_core_behaviour("Model", NS, "wine", error_rate=0.5)

    assert world.counts(T0 + 4) == {
        ("Pipeline", "pipe", "200"): 300,
        ("Pipeline", "pipe", "503"): 100,
        ("Model", "iris", "200"): 400,
        ("Model", "wine", "200"): 200,
        ("Model", "wine", "500"): 200,
    }


def test_latency_sums_follow_the_behaviour(world: World) -> None:
    _ready_pipe(world)
    world.model.set_core_behaviour("Model", NS, "iris", latency_seconds=0.5)
    world.counts(T0 + 1)

    sums = {(r["kind"], r["name"]): r["sum"] for r in world.model.core_series_records()}

    assert sums[("Model", "iris")] == pytest.approx(100 * 0.5)
    assert sums[("Pipeline", "pipe")] == pytest.approx(100 * 0.02)


def test_many_small_advances_count_what_one_large_one_does() -> None:
    fine, coarse = World(), World()
    for w in (fine, coarse):
        _ready_pipe(w, rate=37)
        w.seed_pipeline("pipe-canary", ["iris"], T0)
        w.experiment("pipe", canary_spec("pipe", 30), T0)
        w.model.set_core_behaviour("Pipeline", NS, "pipe-canary", error_rate=0.13)
    for step in range(1, 1001):
        fine.model.advance(fine.store, T0 + step * 0.013)
    assert fine.counts(T0 + 13) == coarse.counts(T0 + 13)


def test_a_deleted_pipeline_drops_out(world: World) -> None:
    _ready_pipe(world)
    world.counts(T0 + 1)
    world.store.remove(NS, "pipe", "Pipeline")

    counts = world.counts(T0 + 2)

    assert ("Pipeline", "pipe", "200") not in counts
    assert counts[("Model", "iris", "200")] == 100  # the model still exists


def test_model_rates_are_refused() -> None:
    with pytest.raises(InvalidTrafficSetting):
        TrafficModel().set_rate(10, NS, "iris", "Model")


def test_pipeline_rate_needs_a_name() -> None:
    with pytest.raises(InvalidTrafficSetting):
        TrafficModel().set_rate(10, kind="Pipeline")


def test_reset_forgets_core_v2_counters_and_settings(world: World) -> None:
    _ready_pipe(world)
    world.model.set_core_behaviour("Model", NS, "iris", error_rate=1.0)
    world.counts(T0 + 1)

    world.model.reset()

    settings = world.model.settings_record()
    assert (settings["pipeline_rates"], settings["core_behaviours"]) == ([], [])
    assert world.model.core_series_records() == []


# -- Over HTTP -------------------------------------------------------------------


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_page_serves_the_core_v2_counters(
    sim: RunningSimulator, fresh_control: SimulatorControl
) -> None:
    ctl = fresh_control
    ctl.add_namespace(NS)
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    ctl.set_core_v2_behaviour(NS, "pipe", kind="Pipeline", error_rate=0.5, error_code=502)
    ctl.set_request_rate(100, namespace=NS, name="pipe", kind="Pipeline")

    wait_for(lambda: 'code="502"' in ctl.metrics_text(), timeout=5)
    families = _families(ctl.metrics_text())

    for name in (
        "seldon_pipeline_infer",
        "seldon_pipeline_infer_seconds",
        "seldon_model_infer",
        "seldon_model_infer_seconds",
    ):
        assert families[name].type == "counter"
        assert {s.name for s in families[name].samples} == {name + "_total"}
    pipeline_labels = [s.labels for s in families["seldon_pipeline_infer"].samples]
    assert {"namespace": NS, "pipeline": "pipe", "code": "502"} in pipeline_labels
    (model_sample,) = families["seldon_model_infer"].samples
    assert model_sample.labels == {"namespace": NS, "model": "iris", "code": "200"}


def test_metrics_page_has_no_core_v2_families_without_samples(
    sim: RunningSimulator, fresh_control: SimulatorControl
) -> None:
    fresh_control.add_namespace(NS)
    fresh_control.seed_model(NS, model_body("iris"))
    fresh_control.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))

    text = requests.get(f"{sim.base_url}/metrics", timeout=10).text

    assert "seldon_pipeline_infer" not in text
    assert "seldon_model_infer" not in text


def test_canary_through_the_api_splits_the_counts(
    sim: RunningSimulator, fresh_control: SimulatorControl
) -> None:
    ctl = fresh_control
    ctl.add_namespace(NS, users={ALICE: ["read", "write"]})
    ctl.seed_model(NS, model_body("iris"))
    ctl.seed_pipeline(NS, pipeline_body("pipe", ["iris"]))
    ctl.seed_pipeline(NS, pipeline_body("pipe-canary", ["iris"]))
    ctl.set_request_rate(1000, namespace=NS, name="pipe", kind="Pipeline")
    api = ApiCaller(sim.base_url, sim.idp.token(ALICE))
    ctl.traffic()  # the counters start here, all to `pipe`
    api.call("POST", f"/namespaces/{NS}/pipelines/pipe/experiment/canary", params={"weight": 25})
    baseline = {s["name"]: s["count"] for s in ctl.traffic()["core_series"]}

    def counted() -> dict[str, int] | None:
        now = {s["name"]: s["count"] for s in ctl.traffic()["core_series"]}
        grown = {k: v - baseline.get(k, 0) for k, v in now.items()}
        return grown if grown.get("pipe-canary", 0) >= 200 else None

    grown = wait_for(counted, timeout=5)
    share = grown["pipe-canary"] / (grown["pipe"] + grown["pipe-canary"])
    assert share == pytest.approx(0.25, abs=0.02)


def test_control_sets_and_reports_core_v2_traffic(fresh_control: SimulatorControl) -> None:
    record = fresh_control.set_core_v2_behaviour(NS, "iris", kind="Model", latency_seconds=0.3)
    assert record == {
        "kind": "Model",
        "namespace": NS,
        "name": "iris",
        "error_rate": 0.0,
        "latency_seconds": 0.3,
        "error_code": "500",
    }
    settings = fresh_control.set_request_rate(50, namespace=NS, name="pipe", kind="Pipeline")
    assert settings["pipeline_rates"] == [
        {"namespace": NS, "name": "pipe", "requests_per_second": 50.0}
    ]
    assert settings["rates"] == []
    traffic = fresh_control.traffic()
    assert (traffic["core_behaviours"], traffic["core_series"]) == ([record], [])
    fresh_control.clear_traffic_settings()
    cleared = fresh_control.traffic()
    assert (cleared["pipeline_rates"], cleared["core_behaviours"]) == ([], [])


@pytest.mark.parametrize("settings", [{"error_rate": 2}, {"error_code": 302}])
def test_control_refuses_impossible_core_v2_behaviours(
    fresh_control: SimulatorControl, settings: dict[str, Any]
) -> None:
    with pytest.raises(ControlError, match="400"):
        fresh_control.set_core_v2_behaviour(NS, "pipe", kind="Pipeline", **settings)


def test_control_refuses_a_model_rate(sim: RunningSimulator) -> None:
    response = requests.put(
        f"{sim.base_url}/_control/namespaces/{NS}/traffic/iris",
        json={"requests_per_second": 5, "kind": "Model"},
        timeout=10,
    )

    assert response.status_code == 400
