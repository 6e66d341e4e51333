"""The CRD's Seldon Core v2 fields: a kind for source and target, overrides per kind, and
admission refusing what does not fit the kind, naming the field and what to do instead."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import apply_json, explain, refusal

pytestmark = pytest.mark.e2e

MODEL: dict[str, Any] = {
    "source": {"kind": "Model", "namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
}
PIPELINE: dict[str, Any] = {
    "source": {"kind": "Pipeline", "namespace": "staging", "name": "chain"},
    "target": {"namespace": "production"},
}
CANARY_STEPS = {"steps": [{"setWeight": 10}]}


def _apply(control_plane: ControlPlane, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    applied = apply_json(control_plane, name, spec)
    control_plane.kubectl("delete", "mp", name, "-n", "default")
    return applied


def _explain(control_plane: ControlPlane, field: str) -> str:
    return " ".join(explain(control_plane, field).split())  # kubectl wraps lines


def test_a_promotion_without_a_kind_promotes_a_seldon_deployment(
    control_plane: ControlPlane, crds: None
) -> None:
    spec = _apply(control_plane, "no-kind", {**MODEL, "source": {"namespace": "s", "name": "a"}})
    assert spec["spec"]["source"]["kind"] == "SeldonDeployment"


def test_a_model_with_its_overrides_is_accepted_as_written(
    control_plane: ControlPlane, crds: None
) -> None:
    overrides = {"replicas": 2, "model": {"storageUri": "s3://b/iris", "requirements": ["sklearn"]}}
    spec = _apply(control_plane, "model", {**MODEL, "overrides": overrides})["spec"]
    assert spec["source"]["kind"] == "Model"
    assert spec["overrides"] == overrides


def test_a_pipeline_with_overrides_of_its_models_is_accepted_as_written(
    control_plane: ControlPlane, crds: None
) -> None:
    overrides = {
        "models": [{"name": "iris", "storageUri": "s3://b/iris"}, {"name": "prep", "replicas": 2}]
    }
    spec = _apply(control_plane, "pipeline", {**PIPELINE, "overrides": overrides})["spec"]
    assert spec["overrides"] == overrides


def test_a_pipeline_canary_is_accepted(control_plane: ControlPlane, crds: None) -> None:
    spec = _apply(
        control_plane, "pipeline-canary", {**PIPELINE, "strategy": "Canary", "canary": CANARY_STEPS}
    )
    assert spec["spec"]["strategy"] == "Canary"


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        pytest.param(
            {**MODEL, "source": {**MODEL["source"], "kind": "Deployment"}},
            "spec.source.kind",
            'Unsupported value: "Deployment"',
            id="unknown-kind",
        ),
        pytest.param(
            {**MODEL, "target": {"namespace": "production", "kind": "Pipeline"}},
            "spec.target.kind",
            "spec.target.kind must be spec.source.kind",
            id="target-of-another-kind",
        ),
        pytest.param(
            {**MODEL, "overrides": {"components": [{"name": "c", "image": "i:1"}]}},
            "spec.overrides.components",
            "is for SeldonDeployments; for a Model use spec.overrides.model",
            id="components-for-a-model",
        ),
        pytest.param(
            {**PIPELINE, "overrides": {"model": {"storageUri": "s3://b/x"}}},
            "spec.overrides.model",
            "for a Pipeline's models use spec.overrides.models",
            id="model-override-for-a-pipeline",
        ),
        pytest.param(
            {**MODEL, "overrides": {"models": [{"name": "iris", "replicas": 1}]}},
            "spec.overrides.models",
            "spec.overrides.models is for a Pipeline",
            id="models-override-for-a-model",
        ),
        pytest.param(
            {**PIPELINE, "overrides": {"replicas": 2}},
            "spec.overrides.replicas",
            "set them per model with spec.overrides.models[].replicas",
            id="replicas-for-a-pipeline",
        ),
        pytest.param(
            {**PIPELINE, "overrides": {"models": [{"name": "iris"}]}},
            "spec.overrides.models[0]",
            "each spec.overrides.models entry needs a storageUri, requirements or replicas",
            id="empty-model-override",
        ),
        pytest.param(
            {**PIPELINE, "overrides": {"models": [{"name": "iris", "replicas": 1}] * 2}},
            "spec.overrides.models[1]",
            'Duplicate value: {"name":"iris"}',
            id="one-model-overridden-twice",
        ),
        pytest.param(
            {**MODEL, "overrides": {"model": {"storageUri": 's3://b/"x"'}}},
            "spec.overrides.model.storageUri",
            "should match",
            id="storage-uri-with-a-quote",
        ),
        pytest.param(
            {**MODEL, "strategy": "Canary", "canary": CANARY_STEPS},
            "spec.strategy",
            "Seldon Deploy runs Core v2 canaries as experiments on Pipelines",
            id="canary-of-a-model",
        ),
    ],
)
def test_what_does_not_fit_the_kind_is_refused_naming_the_field(
    control_plane: ControlPlane, crds: None, spec: dict[str, Any], field: str, words: str
) -> None:
    refused = refusal(control_plane, spec)
    assert f"{field}: " in refused, refused
    assert words in refused, refused


def test_kubectl_explain_teaches_the_kinds_and_their_overrides(
    control_plane: ControlPlane, crds: None
) -> None:
    kind = _explain(control_plane, "modelpromotion.spec.source.kind")
    assert "a Seldon Core v2 Model or Pipeline" in kind
    assert "must be Ready before the Pipeline is written" in kind
    models = _explain(control_plane, "modelpromotion.spec.overrides.models")
    assert "Changes to the Models a promoted Pipeline's steps name" in models
    model = _explain(control_plane, "modelpromotion.spec.overrides.model")
    assert "storageUri" in model
    status = _explain(control_plane, "modelpromotion.status.models")
    assert "kept to roll back what it wrote" in status
