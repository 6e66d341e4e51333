"""Planning the deployment written to the target (docs/contract.md sections 2 and 4)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from promotion_operator.core.planning import (
    GENERATION_ANNOTATION,
    PROMOTION_ANNOTATION,
    PROMOTION_UID_ANNOTATION,
    SOURCE_ANNOTATION,
    SOURCE_HASH_ANNOTATION,
    PlanningError,
    plan_promotion,
    spec_hash,
    strip_server_fields,
    written_by,
)
from promotion_operator.core.promotion import PromotionRef
from promotion_operator.core.spec import (
    ComponentOverride,
    DeploymentRef,
    Overrides,
    PromotionSpec,
)
from tests.unit.core_builders import PROMOTION, make_spec, plan_for, source_deployment


def with_overrides(**fields: Any) -> PromotionSpec:
    return make_spec(overrides=Overrides(**fields))


def predictor(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in deployment["spec"]["predictors"] if p["name"] == name]
    assert len(found) == 1
    return found[0]


def container(deployment: dict[str, Any], predictor_name: str, name: str) -> dict[str, Any]:
    containers = predictor(deployment, predictor_name)["componentSpecs"][0]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


# --- server-set fields, name and namespace --------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "ownerReferences",
    ],
)
def test_server_set_metadata_is_removed(field: str) -> None:
    assert field not in plan_for().deployment["metadata"]


def test_status_is_removed() -> None:
    assert "status" not in plan_for().deployment


def test_target_name_and_namespace_are_set() -> None:
    metadata = plan_for().deployment["metadata"]

    assert (metadata["namespace"], metadata["name"]) == ("production", "iris")


def test_explicit_target_name_is_used() -> None:
    spec = make_spec(target=DeploymentRef("production", "iris-prod"))

    assert plan_for(spec).deployment["metadata"]["name"] == "iris-prod"


def test_planning_leaves_the_source_untouched() -> None:
    source = source_deployment()
    before = copy.deepcopy(source)
    spec = with_overrides(
        replicas=4, components=(ComponentOverride("classifier", image="seldonio/iris:9"),)
    )

    plan_promotion(source, spec, PROMOTION)

    assert source == before


def test_strip_server_fields_drops_last_applied_configuration() -> None:
    clean = strip_server_fields(source_deployment())

    assert (
        "kubectl.kubernetes.io/last-applied-configuration" not in clean["metadata"]["annotations"]
    )
    assert clean["metadata"]["annotations"]["owner"] == "ds-team"


def test_strip_server_fields_tolerates_missing_metadata() -> None:
    assert strip_server_fields({"spec": {}, "status": {"state": "Available"}}) == {
        "spec": {},
        "metadata": {},
    }


# --- labels and annotations -------------------------------------------------------------


def test_label_overrides_are_merged_over_the_source_labels() -> None:
    spec = with_overrides(labels={"env": "prod", "tier": "gold"})

    labels = plan_for(spec).deployment["metadata"]["labels"]

    assert labels == {"team": "ds", "env": "prod", "tier": "gold"}


def test_annotation_overrides_are_merged_over_the_source_annotations() -> None:
    spec = with_overrides(annotations={"owner": "ml-platform", "ticket": "OPS-1"})

    annotations = plan_for(spec).deployment["metadata"]["annotations"]

    assert annotations["owner"] == "ml-platform"
    assert annotations["ticket"] == "OPS-1"


def test_provenance_annotations_name_the_promotion_and_the_source_hash() -> None:
    plan = plan_for()

    annotations = plan.deployment["metadata"]["annotations"]

    assert annotations[PROMOTION_ANNOTATION] == "ml-promotions/iris-to-prod"
    assert annotations[PROMOTION_UID_ANNOTATION] == PROMOTION.uid
    assert annotations[GENERATION_ANNOTATION] == str(PROMOTION.generation)
    assert annotations[SOURCE_ANNOTATION] == "staging/iris"
    assert annotations[SOURCE_HASH_ANNOTATION] == plan.source_spec_hash
    assert plan.source_spec_hash == spec_hash(source_deployment()["spec"])


def test_stale_provenance_annotations_from_the_source_are_not_copied() -> None:
    annotations = plan_for().deployment["metadata"]["annotations"]

    ours = {k for k in annotations if k.startswith("deploy.mlops.dev/")}
    assert ours == {
        PROMOTION_ANNOTATION,
        PROMOTION_UID_ANNOTATION,
        GENERATION_ANNOTATION,
        SOURCE_ANNOTATION,
        SOURCE_HASH_ANNOTATION,
    }
    assert annotations[SOURCE_HASH_ANNOTATION] != "stale"


def test_overrides_cannot_forge_provenance_annotations() -> None:
    spec = with_overrides(annotations={PROMOTION_UID_ANNOTATION: "forged"})

    annotations = plan_for(spec).deployment["metadata"]["annotations"]

    assert annotations[PROMOTION_UID_ANNOTATION] == PROMOTION.uid


# --- spec overrides -------------------------------------------------------------------


def test_replicas_override_applies_to_every_predictor() -> None:
    deployment = plan_for(with_overrides(replicas=4)).deployment

    assert [p["replicas"] for p in deployment["spec"]["predictors"]] == [4, 4]


def test_no_replicas_override_keeps_source_replicas() -> None:
    deployment = plan_for().deployment

    assert [p["replicas"] for p in deployment["spec"]["predictors"]] == [1, 1]


def test_image_override_replaces_the_container_by_name_in_every_predictor() -> None:
    spec = with_overrides(components=(ComponentOverride("classifier", image="seldonio/iris:3.0"),))

    plan = plan_for(spec)

    assert container(plan.deployment, "main", "classifier")["image"] == "seldonio/iris:3.0"
    assert container(plan.deployment, "shadow", "classifier")["image"] == "seldonio/iris:3.0"
    assert container(plan.deployment, "main", "sidecar")["image"] == "envoy:1.29"
    assert plan.images == ("envoy:1.29", "seldonio/iris:3.0")


def test_model_uri_override_reaches_nested_graph_children() -> None:
    spec = with_overrides(
        components=(ComponentOverride("explainer", model_uri="gs://models/explain/v2"),)
    )

    plan = plan_for(spec)

    graph = predictor(plan.deployment, "main")["graph"]
    assert graph["children"][0]["children"][0]["modelUri"] == "gs://models/explain/v2"
    assert graph["children"][0]["modelUri"] == "gs://models/iris/v1"
    assert "gs://models/explain/v2" in plan.model_uris
    assert "gs://models/explain/v1" not in plan.model_uris


def test_predictor_scoped_override_leaves_other_predictors_alone() -> None:
    spec = with_overrides(
        components=(
            ComponentOverride(
                "classifier", predictor="shadow", image="seldonio/iris:3.0", model_uri="gs://m/v3"
            ),
        )
    )

    deployment = plan_for(spec).deployment

    assert container(deployment, "shadow", "classifier")["image"] == "seldonio/iris:3.0"
    assert predictor(deployment, "shadow")["graph"]["modelUri"] == "gs://m/v3"
    assert container(deployment, "main", "classifier")["image"] == "seldonio/iris:1.0"
    assert predictor(deployment, "main")["graph"]["children"][0]["modelUri"] == (
        "gs://models/iris/v1"
    )


def test_plan_summarises_images_and_model_uris_sorted_and_unique() -> None:
    plan = plan_for()

    assert plan.images == ("envoy:1.29", "seldonio/iris:1.0", "seldonio/iris:2.0")
    assert plan.model_uris == (
        "gs://models/explain/v1",
        "gs://models/iris/v1",
        "gs://models/iris/v2",
    )


@pytest.mark.parametrize(
    ("override", "mentions"),
    [
        pytest.param(ComponentOverride("scorer", image="x:1"), "'scorer'", id="unknown-container"),
        pytest.param(
            ComponentOverride("scorer", model_uri="gs://x"), "'scorer'", id="unknown-graph-node"
        ),
        pytest.param(
            ComponentOverride("classifier", predictor="canary", image="x:1"),
            "predictor 'canary'",
            id="unknown-predictor",
        ),
        pytest.param(
            ComponentOverride("explainer", predictor="shadow", model_uri="gs://x"),
            "predictor 'shadow'",
            id="node-not-in-that-predictor",
        ),
        pytest.param(
            ComponentOverride("router", image="x:1"),
            "'router'",
            id="image-for-a-graph-node-without-container",
        ),
    ],
)
def test_override_naming_no_component_is_a_planning_error(
    override: ComponentOverride, mentions: str
) -> None:
    with pytest.raises(PlanningError) as raised:
        plan_for(with_overrides(components=(override,)))

    message = str(raised.value)
    assert "spec.overrides.components" in message
    assert mentions in message


def test_planning_error_is_a_value_error() -> None:
    assert issubclass(PlanningError, ValueError)


def test_apiversion_and_kind_default_when_the_source_omits_them() -> None:
    source = source_deployment()
    del source["apiVersion"], source["kind"]

    deployment = plan_promotion(source, make_spec(), PROMOTION).deployment

    assert deployment["apiVersion"] == "machinelearning.seldon.io/v1"
    assert deployment["kind"] == "SeldonDeployment"


# --- hashing and provenance -----------------------------------------------------------


def test_spec_hash_is_stable_under_key_order() -> None:
    spec = source_deployment()["spec"]
    reordered = json.loads(json.dumps(spec, sort_keys=True))
    reversed_keys = {k: spec[k] for k in reversed(list(spec))}

    assert spec_hash(spec) == spec_hash(reordered) == spec_hash(reversed_keys)


def test_spec_hash_changes_with_content() -> None:
    spec = source_deployment()["spec"]
    changed = copy.deepcopy(spec)
    changed["predictors"][0]["replicas"] = 2

    assert spec_hash(spec) != spec_hash(changed)


def test_source_hash_ignores_overrides() -> None:
    assert plan_for(with_overrides(replicas=9)).source_spec_hash == plan_for().source_spec_hash


@pytest.mark.parametrize(
    ("promotion", "expected"),
    [
        pytest.param(PROMOTION, True, id="same-uid-and-generation"),
        pytest.param(
            PromotionRef(PROMOTION.namespace, PROMOTION.name, PROMOTION.uid, 3),
            False,
            id="next-generation",
        ),
        pytest.param(
            PromotionRef(PROMOTION.namespace, PROMOTION.name, "other-uid", 2),
            False,
            id="recreated-promotion-same-name",
        ),
    ],
)
def test_written_by_requires_same_uid_and_generation(
    promotion: PromotionRef, expected: bool
) -> None:
    assert written_by(plan_for().deployment, promotion) is expected


@pytest.mark.parametrize(
    "deployment",
    [
        pytest.param({}, id="no-metadata"),
        pytest.param({"metadata": {}}, id="no-annotations"),
        pytest.param({"metadata": {"annotations": None}}, id="null-annotations"),
        pytest.param(source_deployment(), id="stale-foreign-annotations"),
    ],
)
def test_written_by_is_false_without_our_annotations(deployment: dict[str, Any]) -> None:
    assert written_by(deployment, PROMOTION) is False
