"""The CRD's spec.bake: accepted as written, taught by kubectl explain, refused at
admission, naming the field, where a bake cannot work; and status.bake kept."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest

from promotion_operator.core.run import (
    BakeState,
    FiringAlert,
    Measurement,
    Phase,
    Run,
    TemplateProgress,
    Verdict,
    to_status,
)
from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import apply_json, explain, refusal

pytestmark = pytest.mark.e2e

ERROR_RATE: dict[str, Any] = {
    "name": "error-rate",
    "query": 'errors{deployment_name="{{target}}"}[{{interval}}]',
    "max": 0.01,
    "interval": "10s",
    "count": 3,
}
BAKED: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
    "analysis": {"templates": [ERROR_RATE]},
    "bake": {
        "duration": "10m",
        "templates": ["error-rate"],
        "alerts": {"matchLabels": {"namespace": "{{namespace}}", "deployment_name": "{{target}}"}},
    },
}


def _bake(**fields: Any) -> dict[str, Any]:
    """BAKED with its bake changed: ``fields`` set, those given as None removed."""
    spec = copy.deepcopy(BAKED)
    bake = {**spec["bake"], **fields}
    spec["bake"] = {k: v for k, v in bake.items() if v is not None}
    return spec


def _labels(labels: dict[str, str]) -> dict[str, Any]:
    return _bake(alerts={"matchLabels": labels})


def _template(**fields: Any) -> dict[str, Any]:
    """BAKED with its template changed: ``fields`` set, those given as None removed."""
    spec = copy.deepcopy(BAKED)
    template = {**ERROR_RATE, **fields}
    spec["analysis"]["templates"] = [{k: v for k, v in template.items() if v is not None}]
    return spec


def test_a_bake_is_accepted_as_written(control_plane: ControlPlane, crds: None) -> None:
    applied = apply_json(control_plane, "baked", BAKED)["spec"]
    control_plane.kubectl("delete", "mp", "baked", "-n", "default")

    # As written, with the default of warm.
    assert applied["bake"] == {**BAKED["bake"], "warm": True}


def test_kubectl_explain_teaches_the_bake(control_plane: ControlPlane, crds: None) -> None:
    bake = " ".join(explain(control_plane, "modelpromotion.spec.bake").split())
    for words in ("phase Baking", "AlertFiring", "never passes on missing evidence"):
        assert words in bake
    labels = " ".join(explain(control_plane, "modelpromotion.spec.bake.alerts.matchLabels").split())
    assert "{{target}} and {{namespace}}" in labels


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        pytest.param(_bake(duration=None), "spec.bake.duration", "Required", id="no-duration"),
        pytest.param(_bake(duration="25h"), "spec.bake.duration", "between 1s and 24h", id="25h"),
        pytest.param(
            _bake(templates=None, alerts=None), "spec.bake", "needs templates", id="nothing"
        ),
        pytest.param(
            _bake(templates=["latency"]),
            "spec.bake.templates",
            "must be defined in spec.analysis.templates",
            id="undefined-template",
        ),
        pytest.param(
            _template(query="x{p='{{predictor}}'}", max=None, compare={"ratio": {"max": 1.1}}),
            "spec.bake.templates",
            "cannot use templates with compare",
            id="compare",
        ),
        pytest.param(
            _template(query="x{p='{{canary}}'}"),
            "spec.bake.templates",
            "{{canary}} or {{stable}}",
            id="canary-placeholder",
        ),
        pytest.param(
            _labels({"deployment-name": "iris"}),
            "spec.bake.alerts.matchLabels",
            "must be Prometheus label names",
            id="label-name",
        ),
        pytest.param(
            _labels({"alertstate": "pending"}),
            "spec.bake.alerts.matchLabels",
            "cannot match alertstate",
            id="alertstate",
        ),
        pytest.param(
            _labels({"a": 'x"y'}), "spec.bake.alerts.matchLabels.a", "should match", id="quote"
        ),
        pytest.param(_labels({}), "spec.bake.alerts.matchLabels", "at least 1", id="empty"),
        pytest.param(
            _labels({f"l{i}": "v" for i in range(4)}),
            "spec.bake.alerts.matchLabels",
            "at most 3",
            id="four-labels",
        ),
        pytest.param(
            _labels({"a": "v" * 64}),
            "spec.bake.alerts.matchLabels.a",
            "may not be more than 63",
            id="label-value-too-long",
        ),
    ],
)
def test_a_bake_that_cannot_work_is_refused_naming_the_field(
    control_plane: ControlPlane, crds: None, spec: dict[str, Any], field: str, words: str
) -> None:
    refused = refusal(control_plane, spec)
    assert f"{field}: " in refused, refused
    assert words in refused, refused


def test_the_bake_status_the_core_writes_is_kept(control_plane: ControlPlane, crds: None) -> None:
    at = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)
    bake = BakeState(
        at,
        at + datetime.timedelta(minutes=10),
        (TemplateProgress("error-rate", at, 1, 0, 1),),
        (
            Measurement("error-rate", Verdict.PASSED, at, 0.001, None, 0.01),
            Measurement("error-rate", Verdict.INCONCLUSIVE, at, message="no data"),
        ),
        (FiringAlert("PredictorErrorRateHigh", {"predictor_name": "main"}),),
    )
    status = to_status(Run(1, Phase.BAKING, at, at, bake=bake))
    apply_json(control_plane, "baking", BAKED)
    control_plane.kubectl(
        "patch", "mp", "baking", "-n", "default", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    got = json.loads(
        control_plane.kubectl("get", "mp", "baking", "-n", "default", "-o", "json").stdout
    )
    control_plane.kubectl("delete", "mp", "baking", "-n", "default")

    assert got["status"]["phase"] == "Baking"
    # A merge patch's nulls remove the fields (warmPredictor, passedAt unset here).
    assert got["status"]["bake"] == {k: v for k, v in status["bake"].items() if v is not None}
