"""The CRD's shadow step and comparison templates: accepted with their defaults, taught
by kubectl explain, and refused at admission, naming the field, where they cannot work."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import apply_json, explain, refusal

pytestmark = pytest.mark.e2e

LATENCY = (
    "histogram_quantile(0.95, sum by (le) (rate(seldon_api_executor_server_requests_seconds_bucket"
    '{deployment_name="{{target}}",predictor_name="{{predictor}}"}[{{interval}}])))'
)
SHADOW: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
    "strategy": "Canary",
    "canary": {"steps": [{"shadow": {}}, {"analysis": {"templates": ["latency"]}}]},
    "analysis": {
        "templates": [{"name": "latency", "query": LATENCY, "compare": {"ratio": {"max": 1.1}}}]
    },
}


def _steps(*steps: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(SHADOW)
    spec["canary"]["steps"] = list(steps)
    return spec


def _template(**fields: Any) -> dict[str, Any]:
    """SHADOW with its template changed: ``fields`` set, those given as None removed."""
    spec = copy.deepcopy(SHADOW)
    template = {**spec["analysis"]["templates"][0], **fields}
    spec["analysis"]["templates"][0] = {k: v for k, v in template.items() if v is not None}
    return spec


def test_a_shadow_with_a_mann_whitney_comparison_is_accepted_with_its_defaults(
    control_plane: ControlPlane, crds: None
) -> None:
    spec = _template(compare={"mannWhitney": {}}, count=5)

    applied = apply_json(control_plane, "shadow-defaults", spec)["spec"]
    control_plane.kubectl("delete", "mp", "shadow-defaults", "-n", "default")

    assert applied["canary"]["steps"][0] == {"shadow": {}}
    compare = applied["analysis"]["templates"][0]["compare"]
    assert compare == {"mannWhitney": {"worse": "Higher", "significance": 0.05}}


def test_a_shadow_of_a_pipeline_is_accepted(control_plane: ControlPlane, crds: None) -> None:
    spec = {
        **SHADOW,
        "source": {"kind": "Pipeline", "namespace": "staging", "name": "chain"},
    }

    applied = apply_json(control_plane, "pipeline-shadow", spec)["spec"]
    control_plane.kubectl("delete", "mp", "pipeline-shadow", "-n", "default")

    assert applied["source"]["kind"] == "Pipeline"
    assert applied["canary"]["steps"][0] == {"shadow": {}}


def test_kubectl_explain_teaches_the_shadow_and_the_comparisons(
    control_plane: ControlPlane, crds: None
) -> None:
    shadow = " ".join(explain(control_plane, "modelpromotion.spec.canary.steps.shadow").split())
    assert "a copy of all the target's traffic" in shadow
    compare = " ".join(
        explain(control_plane, "modelpromotion.spec.analysis.templates.compare").split()
    )
    for field in ("ratio", "difference", "mannWhitney", "distribution"):
        assert field in compare
    assert "{{predictor}}" in compare
    distribution = " ".join(
        explain(
            control_plane, "modelpromotion.spec.analysis.templates.compare.distribution"
        ).split()
    )
    assert "population stability index" in distribution


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        pytest.param(
            _steps({"shadow": {}}, {"shadow": {}}),
            "spec.canary.steps",
            "spec.canary.steps may have one shadow step",
            id="two-shadows",
        ),
        pytest.param(
            _steps({"setWeight": 10}, {"shadow": {}}),
            "spec.canary.steps",
            "the shadow step must come before any setWeight",
            id="shadow-after-a-setweight",
        ),
        pytest.param(
            _steps({"shadow": {}, "setWeight": 10}),
            "spec.canary.steps[0]",
            "exactly one of shadow, setWeight, analysis or pause; this one has several",
            id="shadow-and-setweight-in-one-step",
        ),
        pytest.param(
            _template(max=1.0),
            "spec.analysis.templates[0].compare",
            "it takes the place of min and max",
            id="compare-with-max",
        ),
        pytest.param(
            _template(query='latency{predictor_name="{{canary}}"}'),
            "spec.analysis.templates[0].query",
            "the query must name them with {{predictor}}",
            id="compare-without-the-predictor-placeholder",
        ),
        pytest.param(
            _template(compare={"ratio": {"max": 1.1}, "difference": {"max": 0.1}}),
            "spec.analysis.templates[0].compare",
            "must be exactly one of ratio, difference, mannWhitney or distribution",
            id="two-comparisons",
        ),
        pytest.param(
            _template(compare={"ratio": {}}),
            "spec.analysis.templates[0].compare.ratio",
            "compare.ratio needs min, max or both",
            id="ratio-without-a-bound",
        ),
        pytest.param(
            _template(compare={"mannWhitney": {}}, count=3),
            "spec.analysis.templates[0].count",
            "count must be at least 4",
            id="mann-whitney-with-three-samples",
        ),
        pytest.param(
            _template(compare={"mannWhitney": {"significance": 0}}, count=5),
            "spec.analysis.templates[0].compare.mannWhitney.significance",
            "should be greater than 0",
            id="mann-whitney-significance-0",
        ),
        pytest.param(
            _template(
                compare={"distribution": {"by": "class", "significance": 0.01, "maxPSI": 0.2}}
            ),
            "spec.analysis.templates[0].compare.distribution",
            "needs exactly one of significance (chi-square) or maxPSI",
            id="distribution-with-both-tests",
        ),
        pytest.param(
            _template(compare={"distribution": {"by": "class label"}}),
            "spec.analysis.templates[0].compare.distribution.by",
            "should match",
            id="distribution-by-not-a-label-name",
        ),
    ],
)
def test_a_shadow_or_comparison_that_cannot_work_is_refused_naming_the_field(
    control_plane: ControlPlane, crds: None, spec: dict[str, Any], field: str, words: str
) -> None:
    refused = refusal(control_plane, spec)
    assert f"{field}: " in refused, refused
    assert words in refused, refused
