"""``make demo``: the example promotions on the local stack, from a person's point of view.

Brings the stack up, installs the CRD, gives the simulator a ``staging`` and a
GitOps ``production`` namespace, a source deployment and a Seldon Core v2
Pipeline with its two Models, starts the operator as its own process with a
credentials directory like a mounted Secret and the stack's Prometheus for
canary analyses, then applies ``examples/`` in two rounds, printing each change
as it happens:

1. every example that is not a canary (the Replace promotion of ``staging/iris``
   creates ``production/iris``; the dry run plans; the Pipeline
   ``staging/chain`` creates the Models ``prep`` and ``iris`` in production,
   then, once they are Ready, ``production/chain``);
2. the canary examples (``strategy: Canary``, anywhere under ``examples/``),
   once their targets exist: ``staging/iris`` gets a new version first, which
   answers a copy of ``production/iris``'s traffic as a shadow and is compared
   with the serving predictor on it, then the canary moves the traffic to it
   step by step. Each phase, step and weight change is printed, and so is each
   measurement Prometheus gives the analysis (a comparison with both values).

3. the registry examples (``spec.source.registry``): a real MLflow server (started
   only for them) gets the registered model with a version behind the alias, and the
   run writes that version's URI into ``production/iris``.
4. the PromotionPath of ``examples/paths/`` with short soaks (``demo_path.py``): a new
   version of ``build/iris`` through dev, staging and production, promoted at the
   manual production stage with ``kubectl promotion path promote``.

Ends with ``kubectl get mp`` and the GitOps commits. Exit code 0 when every
example ended Ready.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from tests.harness.demo_path import run_path_round
from tests.harness.demo_screenshot import CanaryScreenshot
from tests.harness.keycloak import DATA_SCIENTIST
from tests.harness.mlflow import MlflowServer, start_mlflow
from tests.harness.operator_process import install_crds, password_credentials, start_operator
from tests.harness.stack import Stack, start_stack
from tests.simulator.testing import deployment_body, model_body, pipeline_body

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Where the model version the registry examples promote keeps its files.
REGISTRY_URI = "gs://models/{model}/v2"
NAMESPACE = "default"
SETTLED = ("Succeeded", "Failed", "RolledBack", "Suspended")
# What the canary promotes: the version staging/iris gets after the Replace example.
NEW_IMAGE = "seldonio/sklearn-iris:1.5"
# The share of the canary predictor's requests that fail, below the example's 5 %.
CANARY_ERROR_RATE = 0.02
_TIMEOUT = 300.0


def _promotions(stack: Stack) -> list[dict[str, Any]]:
    listing = stack.control_plane.kubectl("get", "mp", "-n", NAMESPACE, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(listing)["items"]
    return items


def _ready(item: dict[str, Any]) -> dict[str, Any]:
    conditions = (item.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _settled(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    return (
        status.get("observedGeneration") == item["metadata"]["generation"]
        and status.get("phase") in SETTLED
    )


def _examples() -> tuple[list[Path], list[Path], list[Path]]:
    """The example files (under ``examples/``, subdirectories included), as
    (not canaries, canaries, registry sources): a canary needs its target to exist
    already, and a registry source writes into an existing target too (after the
    canaries, which write the same target)."""
    plain: list[Path] = []
    canaries: list[Path] = []
    registry: list[Path] = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        if not any(d.get("kind") == "ModelPromotion" for d in documents):
            continue  # a PromotionPolicy would hold the demo's runs: not applied here
        specs = [d.get("spec") or {} for d in documents]
        if any((spec.get("source") or {}).get("registry") for spec in specs):
            registry.append(path)
        elif any(spec.get("strategy") == "Canary" for spec in specs):
            canaries.append(path)
        else:
            plain.append(path)
    return plain, canaries, registry


def _registries(paths: list[Path]) -> list[dict[str, Any]]:
    """``spec.source.registry`` of each registry example."""
    return [
        dict(document["spec"]["source"]["registry"])
        for path in paths
        for document in yaml.safe_load_all(path.read_text())
        if isinstance(document, dict)
    ]


def _prepare_registry(mlflow: MlflowServer, paths: list[Path]) -> None:
    """In MLflow, each registry example's model with a version, named by its alias."""
    for registry in _registries(paths):
        model = str(registry["model"])
        version = mlflow.register(model, REGISTRY_URI.format(model=model))
        if registry.get("alias"):
            mlflow.set_alias(model, str(registry["alias"]), version)
        print(
            f"MLflow: registered model {model} version {version} at "
            f"{REGISTRY_URI.format(model=model)}"
            + (f", alias {registry['alias']}" if registry.get("alias") else "")
        )


def _show_write_back(mlflow: MlflowServer, paths: list[Path]) -> None:
    """What the registry runs wrote back to MLflow: the version's tags and the model's
    aliases (written in the pass that ended the run, so waited for briefly)."""
    for registry in _registries(paths):
        model = str(registry["model"])
        aliases = mlflow.aliases(model)
        version = aliases.get(str(registry.get("alias") or ""), registry.get("version"))
        tags: dict[str, str] = {}
        for _ in range(20):
            tags = mlflow.tags(model, str(version))
            if tags:
                break
            time.sleep(0.5)
        for key, value in sorted(tags.items()):
            print(f"MLflow: {model} version {version} tag {key} = {value}")
        # Read again: the write-back alias follows the tag.
        print(f"MLflow: {model} aliases {json.dumps(mlflow.aliases(model), sort_keys=True)}")


def _sources_and_targets(paths: list[Path]) -> list[tuple[str, str, str, str]]:
    """(source namespace, source name, target namespace, target name) of each resource."""
    found = []
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            spec = (document or {}).get("spec") or {}
            source, target = spec.get("source") or {}, spec.get("target") or {}
            found.append(
                (
                    str(source.get("namespace")),
                    str(source.get("name")),
                    str(target.get("namespace")),
                    str(target.get("name") or source.get("name")),
                )
            )
    return found


def prepare_seldon(stack: Stack, *, rollout_seconds: float = 2.0) -> None:
    """The demos' Seldon Deploy: staging/iris Available, production a GitOps namespace."""
    control = stack.simulator.control
    writers = {"data-scientists": ["read", "write"]}
    control.add_namespace("staging", groups=writers)
    control.add_namespace("production", gitops=True, groups=writers)
    control.set_delays(rollout_seconds=rollout_seconds, gitops_sync_seconds=3.0)
    control.seed_deployment("staging", deployment_body("iris", image="seldonio/sklearn-iris:1.4"))
    print("Seldon Deploy: staging/iris is Available; production is a GitOps namespace")


def prepare_core_v2(stack: Stack) -> None:
    """The Core v2 example's source: staging/chain, a Pipeline chaining the Models
    prep and iris, all Ready; production has none of them yet."""
    control = stack.simulator.control
    control.seed_model("staging", model_body("prep", storage_uri="gs://models/iris-prep/v1"))
    control.seed_model("staging", model_body("iris", storage_uri="gs://models/iris/v1"))
    control.seed_pipeline("staging", pipeline_body("chain", ["prep", "iris"]))
    print("Seldon Deploy: staging/chain is a Core v2 Pipeline (prep -> iris), Ready")


def _prepare_canaries(stack: Stack, canaries: list[Path]) -> None:
    """A new version in each canary's source, and a canary predictor that fails a little."""
    control = stack.simulator.control
    for source_ns, source, target_ns, target in _sources_and_targets(canaries):
        control.seed_deployment(source_ns, deployment_body(source, image=NEW_IMAGE))
        control.set_predictor_behaviour(target_ns, target, "canary", error_rate=CANARY_ERROR_RATE)
        print(
            f"Seldon Deploy: {source_ns}/{source} now runs {NEW_IMAGE}; "
            f"{target_ns}/{target} serves synthetic traffic, and its canary predictor "
            f"will answer {CANARY_ERROR_RATE:.0%} of its requests with errors"
        )


def _apply(stack: Stack, paths: list[Path]) -> None:
    for path in paths:
        applied = stack.control_plane.kubectl("apply", "-n", NAMESPACE, "-f", str(path))
        print(applied.stdout.strip())


class _Printer:
    """Prints each promotion's changes (phase, Ready reason, canary step and weight)
    and each new canary measurement, with the time since the demo started."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._measured: set[tuple[str, str, str]] = set()
        self.screenshot: CanaryScreenshot | None = None  # offered every promotion read

    def show(self, item: dict[str, Any]) -> None:
        """Print what is new about ``item``: measurements first, as they led to the step."""
        name, status, ready = item["metadata"]["name"], item.get("status") or {}, _ready(item)
        if self.screenshot is not None:
            self.screenshot.offer(item)
        canary = status.get("canary") or {}
        for measured in canary.get("measurements") or []:
            key = (name, str(measured.get("template")), str(measured.get("at")))
            if key not in self._measured:
                self._measured.add(key)
                self._print(f"{name}:   {_measurement(measured)}")
        now = (
            status.get("phase", ""),
            ready.get("reason", ""),
            canary.get("step"),
            canary.get("weight"),
        )
        if now[0] and now != self._seen.get(name):
            self._seen[name] = now
            where = ""
            if canary:
                # status.canary.step indexes spec.canary.steps; messages count from 1.
                where = f" [steps[{canary.get('step')}], canary at {canary.get('weight')}%]"
            self._print(f"{name}: {now[0]:<11} {now[1]}{where}: {ready.get('message', '')}")

    def _print(self, line: str) -> None:
        print(f"  +{time.monotonic() - self.started:5.1f}s {line}")

    def follow(self, stack: Stack, names: Collection[str]) -> bool:
        """Print changes until the named promotions settle; False on a timeout."""
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline:
            items = [i for i in _promotions(stack) if i["metadata"]["name"] in names]
            for item in items:
                self.show(item)
            if len(items) == len(names) and all(_settled(i) for i in items):
                return True
            time.sleep(0.3)
        print(f"timed out after {_TIMEOUT:.0f}s waiting for {', '.join(sorted(names))}")
        return False


def _measurement(measured: dict[str, Any]) -> str:
    """One canary measurement for a person: template, value, bounds, result. A
    comparison says what it compared: its score, the challenger's and the champion's
    values."""
    bounds = ", ".join(f"{b} {measured[b]:g}" for b in ("min", "max") if b in measured)
    if "score" in measured or "champion" in measured:
        return (
            f"measured {measured.get('template')}: {measured.get('message')} ({bounds}): "
            f"{measured.get('result')}"
        )
    value = measured.get("value")
    shown = f"{value:.4f}" if isinstance(value, int | float) else "no value"
    detail = f" ({measured['message']})" if measured.get("message") else ""
    return (
        f"measured {measured.get('template')} = {shown} ({bounds}): "
        f"{measured.get('result')}{detail}"
    )


def _names(paths: list[Path]) -> set[str]:
    return {
        str(document["metadata"]["name"])
        for path in paths
        for document in yaml.safe_load_all(path.read_text())
        if isinstance(document, dict)
    }


def run_demo(screenshot: Path | None = None) -> int:
    """Run the demo; 0 when every example promotion ended Ready. ``screenshot``: also
    save the dashboard's page of the canary there."""
    stack = start_stack()
    operator = None
    mlflow = None
    try:
        install_crds(stack.control_plane)
        prepare_seldon(stack)
        prepare_core_v2(stack)
        plain, canaries, registry = _examples()
        mlflow = start_mlflow() if registry else None
        operator = start_operator(
            stack.control_plane,
            stack.simulator,
            password_credentials(stack.keycloak),
            prometheus=stack.prometheus,
            extra_env={"MLFLOW_TRACKING_URI": mlflow.url} if mlflow is not None else None,
        )
        print(
            f"operator running as its own process, signed in as {DATA_SCIENTIST.username}, "
            f"measuring canaries on Prometheus at {stack.prometheus.url}"
        )
        printer = _Printer()

        print("\n== promotions (Replace, dry run, a Core v2 Pipeline)")
        _apply(stack, plain)
        finished = printer.follow(stack, _names(plain))
        if finished and canaries:
            print("\n== canary promotions, once their targets exist")
            _prepare_canaries(stack, canaries)
            with contextlib.ExitStack() as taking:
                if screenshot is not None:
                    printer.screenshot = taking.enter_context(
                        CanaryScreenshot(stack, NAMESPACE, screenshot)
                    )
                _apply(stack, canaries)
                finished = printer.follow(stack, _names(canaries))
                printer.screenshot = None
        if finished and mlflow is not None:
            print("\n== a model version from the MLflow registry, into an existing target")
            _prepare_registry(mlflow, registry)
            _apply(stack, registry)
            finished = printer.follow(stack, _names(registry))
            _show_write_back(mlflow, registry)
        if finished:
            print("\n== a PromotionPath: dev, staging, production (examples/paths/, short soaks)")
            finished = run_path_round(stack, NAMESPACE, printer.started)

        print()
        print(stack.control_plane.kubectl("get", "mp", "-n", NAMESPACE).stdout)
        for commit in stack.simulator.control.commits("production"):
            print(
                f"GitOps commit in production: {commit['action']} {commit['kind']} "
                f"{commit['name']} by {commit['author']}: {commit['message']}"
            )
        items = _promotions(stack)
        expected = _names(plain) | _names(canaries) | _names(registry)  # and the path's runs
        ok = (
            finished
            and {i["metadata"]["name"] for i in items} >= expected
            and all(_ready(i).get("status") == "True" for i in items)
        )
        print("demo succeeded" if ok else "demo FAILED: not every promotion is Ready")
        print(
            "To watch promotions live in a browser: `make stack`, then, with the KUBECONFIG "
            "it prints, `.venv/bin/kubectl-promotion dashboard` (docs/dashboard.md)"
        )
        return 0 if ok else 1
    finally:
        if operator is not None:
            operator.stop()
        if mlflow is not None:
            mlflow.stop()
        stack.stop()
