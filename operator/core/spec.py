"""The ModelPromotion spec as typed, validated plain data."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promotion_operator.core.canary_steps import (
    DEFAULT_INTERVAL,
    AnalysisTemplate,
    CanaryStep,
    parse_step,
)
from promotion_operator.core.comparisons import parse_comparison
from promotion_operator.core.durations import parse_duration

DEFAULT_TIMEOUT = "10m"


class Kind(enum.StrEnum):
    """The kinds of resource a ModelPromotion promotes through Seldon Deploy."""

    SELDON_DEPLOYMENT = "SeldonDeployment"  # Seldon Core v1
    MODEL = "Model"  # Seldon Core v2
    PIPELINE = "Pipeline"  # Seldon Core v2: steps naming Models


@dataclass(frozen=True)
class DeploymentRef:
    """Where a resource lives: instance (credentials profile), namespace, name, and its kind."""

    namespace: str
    name: str
    instance: str | None = None
    kind: Kind = Kind.SELDON_DEPLOYMENT

    def __str__(self) -> str:
        prefix = f"{self.instance}:" if self.instance else ""
        return f"{prefix}{self.namespace}/{self.name}"

    @property
    def described(self) -> str:
        """How messages name it: ``staging/iris``, or ``Model staging/iris`` for Core v2."""
        if self.kind is Kind.SELDON_DEPLOYMENT:
            return str(self)
        return f"{self.kind} {self}"

    @property
    def noun(self) -> str:
        """How a missing one is named: ``deployment staging/iris``, ``Pipeline staging/chain``."""
        if self.kind is Kind.SELDON_DEPLOYMENT:
            return f"deployment {self}"
        return self.described

    def model(self, name: str) -> DeploymentRef:
        """The Model ``name`` beside this resource (a Pipeline's step, say)."""
        return DeploymentRef(self.namespace, name, self.instance, Kind.MODEL)

    def sibling(self, name: str) -> DeploymentRef:
        """The resource of this kind called ``name`` beside this one (a canary Pipeline)."""
        return DeploymentRef(self.namespace, name, self.instance, self.kind)


@dataclass(frozen=True)
class ComponentOverride:
    """A new image for a container, or a new model URI for a graph node, by name."""

    name: str
    predictor: str | None = None
    image: str | None = None
    model_uri: str | None = None


@dataclass(frozen=True)
class ModelOverride:
    """New values for a Core v2 Model's spec; ``name`` picks a Pipeline's step model."""

    name: str | None = None
    storage_uri: str | None = None
    requirements: tuple[str, ...] | None = None
    replicas: int | None = None


@dataclass(frozen=True)
class Overrides:
    """Changes applied to the promoted spec."""

    replicas: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    components: tuple[ComponentOverride, ...] = ()  # SeldonDeployment
    model: ModelOverride | None = None  # Model
    models: tuple[ModelOverride, ...] = ()  # Pipeline: its steps' models, by name


@dataclass(frozen=True)
class Bake:
    """A while of watching the promotion once its last write is verified, before the
    run succeeds: ``seconds`` long (``duration`` as written), measuring ``templates``
    (names in ``spec.analysis.templates``) and watching for firing alerts whose labels
    equal ``alerts`` (``matchLabels``, placeholders not filled in yet)."""

    seconds: float
    duration: str = ""
    templates: tuple[str, ...] = ()
    alerts: Mapping[str, str] = field(default_factory=dict)
    # A SeldonDeployment's previous version kept at traffic 0 during the bake (core/warm.py).
    warm: bool = True


class Strategy(enum.StrEnum):
    """How the target is changed."""

    REPLACE = "Replace"  # the promoted spec in one write
    CANARY = "Canary"  # traffic steps on a canary predictor, gated by analysis


@dataclass(frozen=True)
class RegistryWriteBack:
    """What the operator writes back to the model version after each outcome: tags
    (``tags``) saying where, when and how it was promoted, and on success an alias
    (``alias``, e.g. ``production``; None: none)."""

    tags: bool = True
    alias: str | None = None


@dataclass(frozen=True)
class RegistrySource:
    """A version of a registered model in an MLflow Model Registry, by ``alias`` or by
    ``version`` (exactly one), whose storage URI is written into the existing target:
    the graph node ``node`` of predictor ``predictor`` of a SeldonDeployment (None:
    the only predictor, its root node), or a Core v2 Model's ``storageUri``."""

    model: str
    alias: str | None = None
    version: str | None = None
    predictor: str | None = None
    node: str | None = None
    follow: bool = False  # a new version behind the alias starts a new run
    poll_seconds: float = 60.0
    write_back: RegistryWriteBack = RegistryWriteBack()

    @property
    def described(self) -> str:
        """How messages name it: ``MLflow model iris@champion`` or ``MLflow model iris/7``."""
        which = f"@{self.alias}" if self.alias is not None else f"/{self.version}"
        return f"MLflow model {self.model}{which}"


@dataclass(frozen=True)
class PromotionSpec:
    """What one ModelPromotion asks for."""

    source: DeploymentRef
    target: DeploymentRef
    overrides: Overrides = Overrides()
    timeout_seconds: float = 600.0
    rollback_on_failure: bool = True
    gitops_message: str | None = None
    dry_run: bool = False
    suspend: bool = False
    strategy: Strategy = Strategy.REPLACE
    canary_steps: tuple[CanaryStep, ...] = ()
    templates: Mapping[str, AnalysisTemplate] = field(default_factory=dict)
    approval_required: bool = False
    approval_groups: tuple[str, ...] = ()  # enforced by the API server's admission policy
    bake: Bake | None = None  # after the last write is verified: watch it a while
    # Where the new version comes from when not from a source deployment: the registry.
    # ``source`` is then the target itself, which the version's URI is written into.
    registry: RegistrySource | None = None
    # Promote only this metadata.generation of the source (a PromotionPath pins the
    # freight it checked); None: whatever the source is when the run reads it.
    source_generation: int | None = None

    @property
    def origin(self) -> str:
        """How messages and ``status.source`` name where the new version comes from."""
        return self.registry.described if self.registry is not None else self.source.described


def follows_alias(spec: Mapping[str, Any]) -> bool:
    """Whether the resource's spec follows a registry alias (``spec.source.registry.
    follow``): its run is polled even once settled. Read from the raw spec, as the
    controller has it before any pass."""
    registry = (spec.get("source") or {}).get("registry") or {}
    return bool(registry.get("follow")) and bool(registry.get("alias"))


def parse_spec(spec: Mapping[str, Any]) -> PromotionSpec:
    """Read the resource's spec (already checked by the CRD schema) into a PromotionSpec."""
    source = spec["source"]
    target = spec["target"]
    overrides = spec.get("overrides") or {}
    # The target is of the source's kind (the CRD refuses another).
    kind = Kind(source.get("kind") or Kind.SELDON_DEPLOYMENT)
    registry = _registry(source["registry"]) if source.get("registry") else None
    target_ref = DeploymentRef(
        target["namespace"],
        # A registry source names no deployment: the CRD requires the target's name.
        target.get("name") or source.get("name") or "",
        target.get("instance", source.get("instance")),
        kind,
    )
    return PromotionSpec(
        source=target_ref
        if registry is not None
        else DeploymentRef(source["namespace"], source["name"], source.get("instance"), kind),
        target=target_ref,
        registry=registry,
        overrides=Overrides(
            replicas=overrides.get("replicas"),
            labels=dict(overrides.get("labels") or {}),
            annotations=dict(overrides.get("annotations") or {}),
            components=tuple(
                ComponentOverride(
                    name=c["name"],
                    predictor=c.get("predictor"),
                    image=c.get("image"),
                    model_uri=c.get("modelUri"),
                )
                for c in overrides.get("components") or ()
            ),
            model=_model_override(overrides["model"]) if overrides.get("model") else None,
            models=tuple(_model_override(m) for m in overrides.get("models") or ()),
        ),
        timeout_seconds=parse_duration(
            (spec.get("verification") or {}).get("timeout", DEFAULT_TIMEOUT)
        ),
        rollback_on_failure=(spec.get("rollback") or {}).get("onFailure", True),
        gitops_message=(spec.get("gitops") or {}).get("message"),
        dry_run=bool(spec.get("dryRun", False)),
        suspend=bool(spec.get("suspend", False)),
        strategy=Strategy(spec.get("strategy", Strategy.REPLACE)),
        canary_steps=tuple(parse_step(s) for s in (spec.get("canary") or {}).get("steps") or ()),
        templates={
            t["name"]: _template(t) for t in (spec.get("analysis") or {}).get("templates") or ()
        },
        approval_required=bool((spec.get("approval") or {}).get("required", False)),
        approval_groups=tuple((spec.get("approval") or {}).get("groups") or ()),
        bake=_bake(spec["bake"]) if spec.get("bake") else None,
        source_generation=source.get("generation"),
    )


def _registry(registry: Mapping[str, Any]) -> RegistrySource:
    write_back = registry.get("writeBack") or {}
    version = registry.get("version")
    return RegistrySource(
        model=str(registry["model"]),
        alias=registry.get("alias"),
        version=str(version) if version is not None else None,
        predictor=registry.get("predictor"),
        node=registry.get("node"),
        follow=bool(registry.get("follow", False)),
        poll_seconds=parse_duration(str(registry.get("pollInterval") or "1m")),
        write_back=RegistryWriteBack(
            tags=write_back.get("tags") is not False, alias=write_back.get("alias")
        ),
    )


def _bake(bake: Mapping[str, Any]) -> Bake:
    duration = str(bake.get("duration") or "")
    alerts = (bake.get("alerts") or {}).get("matchLabels") or {}
    return Bake(
        seconds=parse_duration(duration) if duration else 0.0,
        duration=duration,
        templates=tuple(bake.get("templates") or ()),
        alerts={str(name): str(value) for name, value in alerts.items()},
        warm=bake.get("warm") is not False,
    )


def _model_override(override: Mapping[str, Any]) -> ModelOverride:
    requirements = override.get("requirements")
    return ModelOverride(
        name=override.get("name"),
        storage_uri=override.get("storageUri"),
        requirements=tuple(requirements) if requirements is not None else None,
        replicas=override.get("replicas"),
    )


def _template(template: Mapping[str, Any]) -> AnalysisTemplate:
    return AnalysisTemplate(
        name=template["name"],
        query=template["query"],
        min=float(template["min"]) if template.get("min") is not None else None,
        max=float(template["max"]) if template.get("max") is not None else None,
        interval=template.get("interval", DEFAULT_INTERVAL),
        count=int(template.get("count", 1)),
        failure_limit=int(template.get("failureLimit", 0)),
        compare=parse_comparison(template["compare"]) if template.get("compare") else None,
    )
