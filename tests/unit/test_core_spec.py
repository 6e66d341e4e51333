"""The ModelPromotion spec read into typed plain data (docs/contract.md: the resource)."""

from __future__ import annotations

from typing import Any

import pytest

from promotion_operator.core.durations import parse_duration
from promotion_operator.core.spec import (
    ComponentOverride,
    DeploymentRef,
    Overrides,
    parse_spec,
)

MINIMAL: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
}


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(MINIMAL)

    assert spec.source == DeploymentRef("staging", "iris", None)
    assert spec.target == DeploymentRef("production", "iris", None)
    assert spec.timeout_seconds == 600.0
    assert spec.rollback_on_failure is True
    assert spec.strategy == "Replace"
    assert spec.gitops_message is None
    assert spec.dry_run is False
    assert spec.suspend is False
    assert spec.overrides == Overrides()


@pytest.mark.parametrize(
    ("source_instance", "target_instance", "expected"),
    [
        pytest.param(None, None, None, id="neither-set"),
        pytest.param("eu", None, "eu", id="target-defaults-to-source-instance"),
        pytest.param("eu", "us", "us", id="target-instance-wins"),
        pytest.param(None, "us", "us", id="only-target-set"),
    ],
)
def test_target_instance_defaults_to_source_instance(
    source_instance: str | None, target_instance: str | None, expected: str | None
) -> None:
    source: dict[str, Any] = {"namespace": "staging", "name": "iris"}
    target: dict[str, Any] = {"namespace": "production"}
    if source_instance:
        source["instance"] = source_instance
    if target_instance:
        target["instance"] = target_instance

    spec = parse_spec({"source": source, "target": target})

    assert spec.source.instance == source_instance
    assert spec.target.instance == expected


def test_explicit_target_name_is_kept() -> None:
    spec = parse_spec({**MINIMAL, "target": {"namespace": "production", "name": "iris-prod"}})

    assert spec.target.name == "iris-prod"


def test_a_pinned_source_generation_is_read() -> None:
    source = {**MINIMAL["source"], "generation": 7}

    assert parse_spec({**MINIMAL, "source": source}).source_generation == 7
    assert parse_spec(MINIMAL).source_generation is None


def test_every_field_is_read() -> None:
    spec = parse_spec(
        {
            "source": {"namespace": "staging", "name": "iris", "instance": "eu"},
            "target": {"namespace": "production", "name": "iris-prod", "instance": "us"},
            "strategy": "Replace",
            "overrides": {
                "replicas": 3,
                "labels": {"env": "prod"},
                "annotations": {"team": "ml"},
                "components": [
                    {"name": "classifier", "image": "seldonio/iris:2.0"},
                    {"name": "classifier", "predictor": "main", "modelUri": "gs://m/v2"},
                ],
            },
            "verification": {"timeout": "90s"},
            "rollback": {"onFailure": False},
            "gitops": {"message": "Promote iris"},
            "dryRun": True,
            "suspend": True,
        }
    )

    assert spec.overrides == Overrides(
        replicas=3,
        labels={"env": "prod"},
        annotations={"team": "ml"},
        components=(
            ComponentOverride("classifier", image="seldonio/iris:2.0"),
            ComponentOverride("classifier", predictor="main", model_uri="gs://m/v2"),
        ),
    )
    assert spec.timeout_seconds == 90.0
    assert spec.rollback_on_failure is False
    assert spec.gitops_message == "Promote iris"
    assert spec.dry_run is True
    assert spec.suspend is True


@pytest.mark.parametrize(
    "section",
    [
        pytest.param({"overrides": None}, id="overrides-null"),
        pytest.param({"overrides": {}}, id="overrides-empty"),
        pytest.param({"verification": None}, id="verification-null"),
        pytest.param({"verification": {}}, id="verification-empty"),
        pytest.param({"rollback": None}, id="rollback-null"),
        pytest.param({"rollback": {}}, id="rollback-empty"),
        pytest.param({"gitops": None}, id="gitops-null"),
    ],
)
def test_null_or_empty_sections_mean_defaults(section: dict[str, Any]) -> None:
    assert parse_spec({**MINIMAL, **section}) == parse_spec(MINIMAL)


def test_invalid_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_spec({**MINIMAL, "verification": {"timeout": "ten minutes"}})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90s", 90.0, id="seconds"),
        pytest.param("10m", 600.0, id="minutes"),
        pytest.param("1h", 3600.0, id="hours"),
        pytest.param("1h30m", 5400.0, id="hours-and-minutes"),
        pytest.param("1m30s", 90.0, id="minutes-and-seconds"),
        pytest.param("1.5s", 1.5, id="fractional"),
        pytest.param("250ms", 0.25, id="milliseconds"),
        pytest.param("0s", 0.0, id="zero"),
    ],
)
def test_parse_duration_accepts_go_style_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("10", id="no-unit"),
        pytest.param("-5m", id="negative"),
        pytest.param("5 m", id="space-inside"),
        pytest.param(" 5m", id="leading-space"),
        pytest.param("m", id="unit-only"),
        pytest.param("5x", id="unknown-unit"),
        pytest.param("5m10", id="trailing-number"),
        pytest.param("1.5.5s", id="two-decimal-points"),
    ],
)
def test_parse_duration_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("ref", "text"),
    [
        pytest.param(DeploymentRef("staging", "iris"), "staging/iris", id="no-instance"),
        pytest.param(DeploymentRef("staging", "iris", "eu"), "eu:staging/iris", id="instance"),
    ],
)
def test_deployment_ref_reads_as_instance_namespace_name(ref: DeploymentRef, text: str) -> None:
    assert str(ref) == text
