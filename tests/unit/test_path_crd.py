"""The PromotionPath CRD keeps in step with the ModelPromotion CRD it templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CRDS = Path(__file__).resolve().parents[2] / "crds"


def _spec(name: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / name).read_text())
    spec: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    return spec


PROMOTION = _spec("modelpromotions.deploy.mlops.dev.yaml")
PATH = _spec("promotionpaths.deploy.mlops.dev.yaml")
TEMPLATE = PATH["properties"]["stages"]["items"]["properties"]["template"]


def test_the_template_has_every_field_of_a_promotion_but_source_and_target() -> None:
    expected = {k: v for k, v in PROMOTION["properties"].items() if k not in ("source", "target")}
    assert TEMPLATE["properties"] == expected


def test_the_template_keeps_every_rule_that_does_not_name_source_or_target() -> None:
    kept = [
        r["rule"]
        for r in PROMOTION["x-kubernetes-validations"]
        if "source" not in r["rule"] and "target" not in r["rule"]
    ]
    assert [r["rule"] for r in TEMPLATE["x-kubernetes-validations"]] == kept


def test_the_path_source_has_the_fields_of_a_promotions_deployment_source() -> None:
    # A path's freight is found by polling a source deployment: no registry source, and
    # no pinned generation (the path pins one on each run it creates).
    source = PATH["properties"]["source"]["properties"]
    expected = PROMOTION["properties"]["source"]["properties"]
    assert source == {k: v for k, v in expected.items() if k not in ("registry", "generation")}


def test_every_path_field_has_a_description() -> None:
    def walk(schema: dict[str, Any], at: str) -> list[str]:
        # An array's items are explained by the array's description.
        described = "description" in schema or at.endswith((".metadata", "[]"))
        missing = [] if described else [at]
        for key, child in (schema.get("properties") or {}).items():
            missing += walk(child, f"{at}.{key}")
        if "items" in schema:
            missing += walk(schema["items"], f"{at}[]")
        return missing

    crd = yaml.safe_load((CRDS / "promotionpaths.deploy.mlops.dev.yaml").read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert [m for m in walk(root, "") if not m.startswith(".spec.stages[].template")] == []
