"""The CRD teaches its fields and refuses bad resources at admission, naming the field."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness.controlplane import ControlPlane
from tests.harness.promotions import manifest

pytestmark = pytest.mark.e2e

VALID: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
}


def _explain(control_plane: ControlPlane, field: str) -> str:
    # Discovery needs a moment after the CRD is established.
    for _ in range(50):
        explained = control_plane.kubectl("explain", field, check=False)
        if explained.returncode == 0:
            return explained.stdout
        time.sleep(0.2)
    raise AssertionError(explained.stderr)


def test_kubectl_explain_teaches_the_spec(control_plane: ControlPlane, crds: None) -> None:
    text = _explain(control_plane, "modelpromotion.spec")
    assert "What to promote, where to, and how." in text
    for field in ("source", "target", "overrides", "verification", "rollback", "gitops"):
        assert field in text
    timeout = _explain(control_plane, "modelpromotion.spec.verification.timeout")
    assert "How long the target may take to become Available" in timeout


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        pytest.param(
            {
                "source": {"namespace": "staging", "name": "iris"},
                "target": {"namespace": "staging"},
            },
            "spec.target",
            "must differ from spec.source",
            id="target-is-source",
        ),
        pytest.param(
            {**VALID, "verification": {"timeout": "-5m"}},
            "spec.verification.timeout",
            "should match",
            id="negative-timeout",
        ),
        pytest.param(
            {**VALID, "verification": {"timeout": "3d"}},
            "spec.verification.timeout",
            "should match",
            id="unparsable-timeout",
        ),
        pytest.param(
            {**VALID, "verification": {"timeout": "48h"}},
            "spec.verification.timeout",
            "between 1s and 24h",
            id="timeout-too-long",
        ),
        pytest.param(
            {**VALID, "strategy": "Canary"},
            "spec.strategy",
            'supported values: "Replace"',
            id="unknown-strategy",
        ),
        pytest.param(
            {"source": {"namespace": "staging"}, "target": {"namespace": "production"}},
            "spec.source.name",
            "Required value",
            id="source-without-name",
        ),
        pytest.param(
            {**VALID, "overrides": {"components": [{"name": "classifier"}]}},
            "spec.overrides.components[0]",
            "needs an image or a modelUri",
            id="override-without-change",
        ),
        pytest.param(
            {**VALID, "overrides": {"labels": {"big": "x" * 150_000}}},
            "spec.overrides.labels.big",
            "Too long",
            id="label-value-too-long",
        ),
        pytest.param(
            {**VALID, "source": {"namespace": "staging", "name": "a..b"}},
            "spec.source.name",
            "should match",
            id="name-not-a-dns-subdomain",
        ),
        pytest.param(
            {**VALID, "overrides": {"replicas": -1}},
            "spec.overrides.replicas",
            "should be greater than or equal to 0",
            id="negative-replicas",
        ),
    ],
)
def test_invalid_promotion_is_refused_naming_the_field(
    control_plane: ControlPlane, crds: None, spec: dict[str, Any], field: str, words: str
) -> None:
    refused = control_plane.kubectl(
        "apply", "-n", "default", "-f", "-", input_text=manifest("bad", spec), check=False
    )
    assert refused.returncode != 0
    assert field in refused.stderr
    assert words in refused.stderr


def test_source_and_target_are_immutable(control_plane: ControlPlane, crds: None) -> None:
    control_plane.kubectl(
        "apply", "-n", "default", "-f", "-", input_text=manifest("immutable", VALID)
    )
    changed = {**VALID, "target": {"namespace": "elsewhere"}}
    refused = control_plane.kubectl(
        "apply", "-n", "default", "-f", "-", input_text=manifest("immutable", changed), check=False
    )
    assert refused.returncode != 0
    assert "spec.target is immutable" in refused.stderr
    control_plane.kubectl("delete", "mp", "immutable", "-n", "default")
