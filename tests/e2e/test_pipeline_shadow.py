"""A Pipeline's shadow end to end: the promoted Pipeline runs as ``<target>-shadow``,
Seldon Deploy's shadow experiment mirrors the target's traffic to it on the simulator,
the real Prometheus measures both Pipelines by name (``seldon_pipeline_infer_total``),
and the comparisons decide whether it is promoted (``PUT .../experiment/shadow``),
handed over to a weighted canary, or rolled back. Helpers and conventions:
``test_core_v2``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_canary import operator_with_prometheus
from tests.e2e.test_core_v2 import API, Names, _pipeline_spec, _ready, _seed_canary
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import Prometheus
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

_PIPELINE = 'namespace="{{namespace}}",pipeline="{{predictor}}"'
#: The share of a Pipeline's requests that failed, for the champion and the challenger.
ERRORS_QUERY = (
    f'(sum(rate(seldon_pipeline_infer_total{{{_PIPELINE},code!="200"}}[{{{{interval}}}}]))'
    " or vector(0))"
    f" / sum(rate(seldon_pipeline_infer_total{{{_PIPELINE}}}[{{{{interval}}}}]))"
)
#: A Pipeline's mean latency: its seconds over its requests.
LATENCY_QUERY = (
    f"sum(rate(seldon_pipeline_infer_seconds_total{{{_PIPELINE}}}[{{{{interval}}}}]))"
    f" / sum(rate(seldon_pipeline_infer_total{{{_PIPELINE}}}[{{{{interval}}}}]))"
)
ERRORS: dict[str, Any] = {
    "name": "errors",
    "query": ERRORS_QUERY,
    "compare": {"difference": {"max": 0.05}},
    "interval": "3s",
    "count": 2,
}
LATENCY: dict[str, Any] = {
    "name": "latency",
    "query": LATENCY_QUERY,
    "compare": {"ratio": {"max": 1.5}},
    "interval": "3s",
    "count": 2,
}


@pytest.fixture
def names() -> Names:
    """Fresh names: Prometheus keeps every earlier test's series."""
    suffix = uuid.uuid4().hex[:6]
    return Names(f"chain-{suffix}", f"prep-{suffix}", f"iris-{suffix}")


@pytest.fixture
def shadow_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    """The operator, measuring on the stack's Prometheus."""
    yield from operator_with_prometheus(operator_factory, prometheus)


def _shadow_spec(names: Names, *steps: dict[str, Any], templates: list[Any]) -> dict[str, Any]:
    return _pipeline_spec(
        names.pipeline,
        strategy="Canary",
        canary={"steps": [{"shadow": {}}, *steps]},
        analysis={"templates": templates},
    )


def _passed(status: dict[str, Any]) -> list[dict[str, Any]]:
    measurements = (status.get("canary") or {}).get("measurements") or []
    return [m for m in measurements if m["result"] == "Passed"]


def test_a_pipeline_shadow_matching_the_champion_is_promoted_through_its_experiment(
    seldon: Simulator,
    shadow_operator: OperatorProcess,
    promotions: Promotions,
    names: Names,
) -> None:
    _seed_canary(seldon, names)
    spec = _shadow_spec(
        names, {"analysis": {"templates": ["errors", "latency"]}}, templates=[ERRORS, LATENCY]
    )
    promotions.apply("chain", spec)

    status = promotions.wait_for_phase("chain", FINISHED_PHASES, timeout=120)

    assert status["phase"] == "Succeeded", status
    shadow = f"{API}/pipelines/{names.pipeline}/experiment/shadow"
    assert writes(seldon, "production") == [
        ("POST", f"{API}/models"),
        ("POST", f"{API}/pipelines"),  # the shadow Pipeline
        ("POST", shadow),  # the mirror
        ("PUT", shadow),  # promoted
    ]
    promoted = seldon.control.get_pipeline("production", names.pipeline)
    assert promoted is not None and _ready(promoted)
    assert [s["name"] for s in promoted["spec"]["steps"]] == [names.prep, names.model]
    assert seldon.control.get_pipeline("production", f"{names.pipeline}-shadow") is None
    assert seldon.control.get_experiment("production", names.pipeline) is None
    assert status["canary"]["canaryPredictor"] == f"{names.pipeline}-shadow"
    assert status["canary"]["stablePredictor"] == names.pipeline
    # Both Pipelines were measured on the same traffic: both values in each measurement.
    passed = _passed(status)
    assert {m["template"] for m in passed} == {"errors", "latency"}
    ratio = next(m for m in passed if m["template"] == "latency")
    assert ratio["value"] > 0 and ratio["champion"] > 0
    assert ratio["score"] == pytest.approx(ratio["value"] / ratio["champion"])


def test_a_pipeline_shadow_that_errors_is_removed_and_the_target_never_changes(
    seldon: Simulator,
    shadow_operator: OperatorProcess,
    promotions: Promotions,
    names: Names,
) -> None:
    _seed_canary(seldon, names)
    # The shadow Pipeline the run creates answers half its mirrored requests with 500.
    seldon.control.set_core_v2_behaviour(
        "production", f"{names.pipeline}-shadow", kind="Pipeline", error_rate=0.5, error_code=500
    )
    stable = seldon.control.get_pipeline("production", names.pipeline)
    promotions.apply(
        "chain",
        _shadow_spec(names, {"analysis": {"templates": ["errors"]}}, templates=[ERRORS]),
    )

    status = promotions.wait_for_phase("chain", FINISHED_PHASES, timeout=120)

    assert status["phase"] == "RolledBack", status
    assert status["outcome"]["reason"] == "AnalysisFailed"
    assert "analysis 'errors' measured difference" in status["outcome"]["message"]
    shadow = f"{API}/pipelines/{names.pipeline}/experiment/shadow"
    assert writes(seldon, "production") == [
        ("POST", f"{API}/models"),
        ("POST", f"{API}/pipelines"),
        ("POST", shadow),
        ("DELETE", shadow),  # the experiment and the shadow Pipeline removed
        ("DELETE", f"{API}/models/{names.model}"),
    ]
    after = seldon.control.get_pipeline("production", names.pipeline)
    assert stable is not None and after is not None
    assert after["spec"] == stable["spec"]
    assert after["metadata"]["generation"] == stable["metadata"]["generation"]
    assert seldon.control.get_pipeline("production", f"{names.pipeline}-shadow") is None
    assert seldon.control.get_experiment("production", names.pipeline) is None
    assert seldon.control.get_model("production", names.model) is None


def test_a_pipeline_shadow_is_handed_over_to_a_weighted_canary(
    seldon: Simulator,
    shadow_operator: OperatorProcess,
    promotions: Promotions,
    names: Names,
) -> None:
    _seed_canary(seldon, names)
    spec = _shadow_spec(
        names,
        {"analysis": {"templates": ["errors"]}},
        {"setWeight": 20},
        {"analysis": {"templates": ["errors"]}},
        templates=[ERRORS],
    )
    promotions.apply("chain", spec)

    status = promotions.wait_for_phase("chain", FINISHED_PHASES, timeout=180)

    assert status["phase"] == "Succeeded", status
    shadow = f"{API}/pipelines/{names.pipeline}/experiment/shadow"
    canary = f"{API}/pipelines/{names.pipeline}/experiment/canary"
    assert writes(seldon, "production") == [
        ("POST", f"{API}/models"),
        ("POST", f"{API}/pipelines"),  # the shadow Pipeline
        ("POST", shadow),
        ("DELETE", shadow),  # one experiment at a time: the shadow goes first
        ("POST", f"{API}/pipelines"),  # the canary Pipeline
        ("POST", canary),  # 20 %
        ("PUT", canary),  # promoted
    ]
    promoted = seldon.control.get_pipeline("production", names.pipeline)
    assert promoted is not None and _ready(promoted)
    assert [s["name"] for s in promoted["spec"]["steps"]] == [names.prep, names.model]
    for candidate in ("shadow", "canary"):
        assert seldon.control.get_pipeline("production", f"{names.pipeline}-{candidate}") is None
    assert seldon.control.get_experiment("production", names.pipeline) is None
    # The second analysis judged the canary Pipeline, which took over from the shadow.
    assert status["canary"]["canaryPredictor"] == f"{names.pipeline}-canary"
    assert len(_passed(status)) == 4
