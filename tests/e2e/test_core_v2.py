"""Seldon Core v2 promotions end to end: a Model, a Pipeline with the Models its steps
name, their rollback, a Pipeline canary through the Experiments API gated by the real
Prometheus, and a SIGKILL in the middle of a Pipeline's promotion.

Each test promotes resources of its own names (``chain-<hex>``, ``iris-<hex>``):
Prometheus keeps every earlier test's series, and fresh names keep them apart. What
the operator did is read from the simulator's request log (method and path of every
call, in order) and its control API.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import WRITERS, StartOperator
from tests.e2e.test_canary import operator_with_prometheus
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import Prometheus
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator
from tests.simulator.testing import model_body, pipeline_body

pytestmark = pytest.mark.e2e

API = "/seldon-deploy/api/v1alpha1/namespaces/production"
REQUESTS_PER_SECOND = 100.0


@dataclass(frozen=True)
class Names:
    """One test's resources: a Pipeline and the two Models its steps name."""

    pipeline: str
    prep: str
    model: str


@pytest.fixture
def names() -> Names:
    suffix = uuid.uuid4().hex[:6]
    return Names(f"chain-{suffix}", f"prep-{suffix}", f"iris-{suffix}")


def _model_spec(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": {"kind": "Model", "namespace": "staging", "name": name},
        "target": {"namespace": "production"},
        "verification": {"timeout": "1m"},
        **extra,
    }


def _pipeline_spec(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": {"kind": "Pipeline", "namespace": "staging", "name": name},
        "target": {"namespace": "production"},
        "verification": {"timeout": "1m"},
        **extra,
    }


def _seed_pipeline(seldon: Simulator, names: Names, *, model_uri: str = "gs://m/iris/v2") -> None:
    """staging: the Pipeline chaining prep -> model, and both Models, Ready."""
    control = seldon.control
    control.seed_model("staging", model_body(names.prep, storage_uri="gs://m/prep/v1"))
    control.seed_model("staging", model_body(names.model, storage_uri=model_uri))
    control.seed_pipeline("staging", pipeline_body(names.pipeline, [names.prep, names.model]))


def _ready(resource: dict[str, Any] | None) -> bool:
    conditions = (resource or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# --- Replace ---------------------------------------------------------------------------


def test_a_model_is_promoted_with_its_overrides_and_becomes_ready(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, names: Names
) -> None:
    seldon.control.seed_model("staging", model_body(names.model, storage_uri="gs://m/iris/v2"))
    overrides = {"replicas": 2, "model": {"storageUri": "s3://prod/iris/v2"}}
    promotions.apply("model", _model_spec(names.model, overrides=overrides))

    status = promotions.wait_for_phase("model", FINISHED_PHASES)

    assert status["phase"] == "Succeeded", status
    promoted = seldon.control.get_model("production", names.model)
    assert promoted is not None and _ready(promoted)
    assert promoted["spec"]["storageUri"] == "s3://prod/iris/v2"
    assert promoted["spec"]["replicas"] == 2
    assert status["plan"]["modelUris"] == ["s3://prod/iris/v2"]
    assert promotions.ready("model")["message"].endswith("is Ready with the promoted spec")
    assert writes(seldon, "production") == [("POST", f"{API}/models")]


def test_a_pipeline_creates_the_model_the_target_lacks_before_itself(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, names: Names
) -> None:
    _seed_pipeline(seldon, names)
    # production already has prep at the promoted spec: it is left alone.
    seldon.control.seed_model("production", model_body(names.prep, storage_uri="gs://m/prep/v1"))
    seldon.control.set_delays(
        rollout_seconds=2.0, namespace="production", name=names.model, kind="Model"
    )
    seldon.control.clear_requests_log()
    promotions.apply("chain", _pipeline_spec(names.pipeline))

    status = promotions.wait_for_phase("chain", FINISHED_PHASES)

    assert status["phase"] == "Succeeded", status
    assert writes(seldon, "production") == [
        ("POST", f"{API}/models"),
        ("POST", f"{API}/pipelines"),
    ]
    created = seldon.control.get_model("production", names.model)
    pipeline = seldon.control.get_pipeline("production", names.pipeline)
    assert _ready(created) and _ready(pipeline)
    # The Pipeline was written only once its Model was Ready (the model's rollout: 2 s).
    log = seldon.control.requests_log()
    model_at = next(
        e["time"] for e in log if e["method"] == "POST" and e["path"].endswith("/models")
    )
    pipeline_at = next(
        e["time"] for e in log if e["method"] == "POST" and e["path"].endswith("/pipelines")
    )
    assert _seconds(pipeline_at) - _seconds(model_at) >= 2.0
    assert [(m["name"], m["action"]) for m in status["models"]] == [
        (names.prep, "Unchanged"),
        (names.model, "Create"),
    ]


def test_a_failing_pipeline_is_rolled_back_with_the_models_the_run_wrote(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, names: Names
) -> None:
    _seed_pipeline(seldon, names)
    # production has an older iris (updated by the run, then restored) and no prep
    # (created by the run, then removed); the new Pipeline fails to start.
    older = model_body(names.model, storage_uri="gs://m/iris/v1")
    seldon.control.seed_model("production", older)
    seldon.control.mark_failing(
        "production", names.pipeline, description="dataflow engine unreachable", kind="Pipeline"
    )
    seldon.control.clear_requests_log()
    promotions.apply("chain", _pipeline_spec(names.pipeline))

    status = promotions.wait_for_phase("chain", FINISHED_PHASES)

    assert status["phase"] == "RolledBack", status
    assert status["outcome"]["reason"] == "TargetFailed"
    assert "dataflow engine unreachable" in status["outcome"]["message"]
    assert writes(seldon, "production") == [
        ("POST", f"{API}/models"),  # prep
        ("PUT", f"{API}/models/{names.model}"),
        ("POST", f"{API}/pipelines"),
        ("DELETE", f"{API}/pipelines/{names.pipeline}"),
        ("PUT", f"{API}/models/{names.model}"),  # restored
        ("DELETE", f"{API}/models/{names.prep}"),
    ]
    assert seldon.control.get_pipeline("production", names.pipeline) is None
    assert seldon.control.get_model("production", names.prep) is None
    restored = seldon.control.get_model("production", names.model)
    assert restored is not None and restored["spec"] == older["spec"]
    message = promotions.ready("chain")["message"]
    assert f"restored Model production/{names.model}" in message
    assert f"removed Model production/{names.prep}" in message


def test_a_sigkill_mid_pipeline_promotion_creates_nothing_twice(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, names: Names
) -> None:
    _seed_pipeline(seldon, names)
    seldon.control.set_delays(rollout_seconds=3.0)
    seldon.control.clear_requests_log()
    promotions.apply("chain", _pipeline_spec(names.pipeline))
    _wait_for_writes(seldon, 1)  # the first Model is created; the second is next

    operator.kill()
    operator.restart()

    status = promotions.wait_for_phase("chain", FINISHED_PHASES, timeout=120)
    assert status["phase"] == "Succeeded", status
    assert writes(seldon, "production") == [
        ("POST", f"{API}/models"),
        ("POST", f"{API}/models"),
        ("POST", f"{API}/pipelines"),
    ]


def test_a_pipeline_promoted_into_a_gitops_namespace_waits_for_each_sync(
    seldon: Simulator, operator: OperatorProcess, promotions: Promotions, names: Names
) -> None:
    _seed_pipeline(seldon, names)
    seldon.control.add_namespace("production", gitops=True, groups=WRITERS)
    seldon.control.set_delays(rollout_seconds=1.0, gitops_sync_seconds=2.0)
    promotions.apply("chain", _pipeline_spec(names.pipeline))

    status = promotions.wait_for_phase("chain", FINISHED_PHASES, timeout=120)

    assert status["phase"] == "Succeeded", status
    commits = seldon.control.commits("production")
    assert [(c["kind"], c["name"], c["action"]) for c in commits] == [
        ("Model", names.prep, "Promote"),
        ("Model", names.model, "Promote"),
        ("Pipeline", names.pipeline, "Promote"),
    ]
    # Each Model was synced and Ready (a sync, then a rollout: 3 s) before the
    # Pipeline was committed.
    model_at = _seconds(commits[1]["timestamp"])
    assert _seconds(commits[2]["timestamp"]) - model_at >= 3.0
    assert _ready(seldon.control.get_pipeline("production", names.pipeline))


# --- Canary ----------------------------------------------------------------------------

# The share of the new Model's requests that failed: the Core v2 metric, by model name.
MODEL_ERRORS = (
    '(sum(rate(seldon_model_infer_total{namespace="production",model="MODEL",code!="200"}'
    "[{{interval}}])) or vector(0))"
    ' / sum(rate(seldon_model_infer_total{namespace="production",model="MODEL"}[{{interval}}]))'
)


@pytest.fixture
def canary_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    yield from operator_with_prometheus(operator_factory, prometheus)


def _canary_spec(names: Names) -> dict[str, Any]:
    template = {
        "name": "model-errors",
        "query": MODEL_ERRORS.replace("MODEL", names.model),
        "max": 0.05,
        "interval": "3s",
        "count": 2,
    }
    return _pipeline_spec(
        names.pipeline,
        strategy="Canary",
        canary={
            "steps": [
                {"setWeight": 20},
                {"analysis": {"templates": ["model-errors"]}},
                {"setWeight": 60},
            ]
        },
        analysis={"templates": [template]},
    )


def _seed_canary(seldon: Simulator, names: Names) -> None:
    """production serves chain(prep -> iris-v1) under traffic; staging has chain(prep ->
    the new model), whose Model the target lacks."""
    control = seldon.control
    control.seed_model("staging", model_body(names.prep, storage_uri="gs://m/prep/v1"))
    control.seed_model("staging", model_body(names.model, storage_uri="gs://m/iris/v2"))
    control.seed_pipeline("staging", pipeline_body(names.pipeline, [names.prep, names.model]))
    control.seed_model("production", model_body(names.prep, storage_uri="gs://m/prep/v1"))
    control.seed_model("production", model_body("iris-v1", storage_uri="gs://m/iris/v1"))
    control.seed_pipeline("production", pipeline_body(names.pipeline, [names.prep, "iris-v1"]))
    control.set_request_rate(
        REQUESTS_PER_SECOND, namespace="production", name=names.pipeline, kind="Pipeline"
    )
    control.clear_requests_log()


def test_a_pipeline_canary_passing_its_analysis_is_promoted(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    names: Names,
) -> None:
    _seed_canary(seldon, names)
    promotions.apply("chain", _canary_spec(names))

    status = promotions.wait_for_phase("chain", FINISHED_PHASES, timeout=120)

    assert status["phase"] == "Succeeded", status
    experiment = f"{API}/pipelines/{names.pipeline}/experiment/canary"
    assert writes(seldon, "production") == [
        ("POST", f"{API}/models"),
        ("POST", f"{API}/pipelines"),  # the canary Pipeline
        ("POST", experiment),  # 20 %
        ("POST", experiment),  # 60 %
        ("PUT", experiment),  # promoted
    ]
    weights = [
        e["query"].get("weight")
        for e in seldon.control.requests_log()
        if e["method"] == "POST" and e["path"] == experiment
    ]
    assert weights == ["20", "60"]
    promoted = seldon.control.get_pipeline("production", names.pipeline)
    assert promoted is not None and _ready(promoted)
    assert [s["name"] for s in promoted["spec"]["steps"]] == [names.prep, names.model]
    assert seldon.control.get_pipeline("production", f"{names.pipeline}-canary") is None
    assert seldon.control.get_experiment("production", names.pipeline) is None
    passed = [m for m in status["canary"]["measurements"] if m["result"] == "Passed"]
    assert len(passed) == 2


def test_a_pipeline_canary_failing_its_analysis_is_removed_with_its_new_model(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    names: Names,
) -> None:
    _seed_canary(seldon, names)
    seldon.control.set_core_v2_behaviour(
        "production", names.model, kind="Model", error_rate=0.5, error_code=500
    )
    stable = seldon.control.get_pipeline("production", names.pipeline)
    promotions.apply("chain", _canary_spec(names))

    status = promotions.wait_for_phase("chain", FINISHED_PHASES, timeout=120)

    assert status["phase"] == "RolledBack", status
    assert status["outcome"]["reason"] == "AnalysisFailed"
    experiment = f"{API}/pipelines/{names.pipeline}/experiment/canary"
    assert writes(seldon, "production") == [
        ("POST", f"{API}/models"),
        ("POST", f"{API}/pipelines"),
        ("POST", experiment),  # 20 %
        ("DELETE", experiment),  # the experiment and the canary Pipeline removed
        ("DELETE", f"{API}/models/{names.model}"),
    ]
    after = seldon.control.get_pipeline("production", names.pipeline)
    assert stable is not None and after is not None
    assert after["spec"] == stable["spec"]
    assert after["metadata"]["generation"] == stable["metadata"]["generation"]
    assert seldon.control.get_model("production", names.model) is None


def _wait_for_writes(seldon: Simulator, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(writes(seldon, "production")) < count:
        assert time.monotonic() < deadline, writes(seldon, "production")
        time.sleep(0.05)


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
