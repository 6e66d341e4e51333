"""PromotionPaths on the real stack: freight moves dev -> staging -> production, soaks,
stops at a failure, waits for a person at a manual stage, is superseded by a newer
freight while it waits, and the path's runs go with it through the garbage collector.
Operated with ``kubectl promotion path``: a held stage does not start after its soak and
starts once released, and ``path watch`` exits 0 when the freight reaches the end."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import WRITERS, StartOperator
from tests.harness.controlplane import ControlPlane
from tests.harness.promotion_paths import (
    Paths,
    history,
    newest_freight,
    path_manifest,
    stage,
    stage_is,
)
from tests.harness.promotions import explain
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

V1 = "seldonio/sklearn-iris:1.0"
V2 = "seldonio/sklearn-iris:2.0"
GC_TIMEOUT = 120.0  # the garbage collector finds a new kind within its 30 s discovery resync


def moment(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def image_of(seldon: Simulator, namespace: str) -> str:
    deployment = seldon.control.get_deployment(namespace, "iris") or {}
    predictors = deployment["spec"]["predictors"]
    return str(predictors[0]["componentSpecs"][0]["spec"]["containers"][0]["image"])


@pytest.fixture
def paths(control_plane: ControlPlane, namespace: str) -> Paths:
    return Paths(control_plane, namespace)


@pytest.fixture
def source(seldon: Simulator) -> Simulator:
    """`build/iris` (the source, at V1) and the `dev` stage's namespace."""
    seldon.control.add_namespace("build", groups=WRITERS)
    seldon.control.add_namespace("dev", groups=WRITERS)
    seldon.control.seed_deployment("build", deployment_body("iris", image=V1))
    return seldon


def publish(seldon: Simulator, image: str, generation: int) -> None:
    """A new version at the source: the next freight."""
    seldon.control.seed_deployment(
        "build", deployment_body("iris", image=image), generation=generation
    )


def plugin(
    control_plane: ControlPlane, namespace: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "promotion_operator.kubectl_plugin", *args,
         "-n", namespace, "--kubeconfig", str(control_plane.kubeconfig)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_freight_moves_through_three_stages_and_each_waits_for_the_soak(
    paths: Paths, source: Simulator, operator_factory: StartOperator, control_plane: ControlPlane
) -> None:
    operator_factory()
    paths.apply("iris", stage("dev"), stage("staging", soak="10s"), stage("production", soak="10s"))
    body = paths.wait_for(
        "iris", stage_is("production", phase="Succeeded"), "production Succeeded", timeout=180
    )
    freight = newest_freight(body)
    assert [s["promoted"] for s in body["status"]["stages"]] == [freight] * 3
    assert image_of(source, "production") == V1
    dev, staging, production = (history(body, s, freight) for s in ("dev", "staging", "production"))
    # Each later stage started only once the previous one had soaked 10 s after its run ended.
    assert moment(staging["startedAt"]) >= moment(dev["finishedAt"]) + datetime.timedelta(
        seconds=10
    )
    assert moment(production["startedAt"]) >= moment(staging["finishedAt"]) + datetime.timedelta(
        seconds=10
    )
    runs = paths.runs("iris")
    assert sorted(r["metadata"]["labels"]["deploy.mlops.dev/stage"] for r in runs) == [
        "dev", "production", "staging",
    ]  # fmt: skip
    owner = runs[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "PromotionPath",
        True,
        True,
    )
    assert all(r["status"]["phase"] == "Succeeded" for r in runs)


def test_a_failure_in_staging_stops_the_path_and_production_keeps_its_freight(
    paths: Paths, source: Simulator, operator_factory: StartOperator
) -> None:
    operator_factory()
    paths.apply("iris", stage("dev"), stage("staging", soak="1s"), stage("production", soak="1s"))
    first = newest_freight(
        paths.wait_for("iris", stage_is("production", phase="Succeeded"), "the first freight")
    )
    source.control.mark_failing(
        "staging", "iris", description="ImagePullBackOff", spec_contains="2.0"
    )
    publish(source, V2, generation=2)
    body = paths.wait_for("iris", stage_is("staging", phase="Failed"), "staging Failed")
    second = newest_freight(body)
    assert second != first
    time.sleep(5)  # well past the soak and several polls: production must not move
    body = paths.get("iris")
    production = next(s for s in body["status"]["stages"] if s["name"] == "production")
    assert production["promoted"] == first
    assert production["reason"] == "PreviousStageFailed"
    assert history(body, "production", second) == {}
    assert image_of(source, "production") == V1
    assert image_of(source, "dev") == V2


def test_a_manual_stage_waits_for_kubectl_promotion(
    paths: Paths, source: Simulator, operator_factory: StartOperator, control_plane: ControlPlane
) -> None:
    operator_factory()
    paths.apply("iris", stage("dev"), stage("production", policy="manual", soak="1s"))
    body = paths.wait_for(
        "iris", stage_is("production", phase="WaitingForPromotion"), "production waiting"
    )
    freight = newest_freight(body)
    time.sleep(3)
    assert paths.runs("iris") and len(paths.runs("iris")) == 1  # dev's only
    shown = plugin(control_plane, paths.namespace, "path", "get", "iris")
    assert shown.returncode == 0, shown.stderr
    assert "WaitingForPromotion" in shown.stdout and freight in shown.stdout
    refused = plugin(control_plane, paths.namespace, "path", "promote", "iris", "dev")
    assert refused.returncode == 6 and "policy auto" in refused.stderr
    promoted = plugin(control_plane, paths.namespace, "path", "promote", "iris", "production")
    assert promoted.returncode == 0, promoted.stderr
    body = paths.wait_for(
        "iris", stage_is("production", phase="Succeeded", promoted=freight), "production promoted"
    )
    assert image_of(source, "production") == V1


def test_a_run_whose_source_changed_since_the_path_checked_it_writes_nothing(
    paths: Paths, source: Simulator, operator_factory: StartOperator, control_plane: ControlPlane
) -> None:
    # The run waits for approval after it planned; the source moves on meanwhile.
    operator_factory()
    paths.apply("iris", stage("dev", template={"approval": {"required": True}}))
    first = run_in_phase(paths, "AwaitingApproval")
    assert first["spec"]["source"]["generation"] == 1
    publish(source, V2, generation=2)
    approved = plugin(control_plane, paths.namespace, "approve", first["metadata"]["name"])
    assert approved.returncode == 0, approved.stderr
    failed = run_in_phase(paths, "Failed", name=first["metadata"]["name"])
    ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "SourceChanged"
    assert "generation 2, not the generation 1" in ready["message"]
    assert source.control.get_deployment("dev", "iris") is None
    # The newer version is a freight of its own, with a run that pins it.
    second = run_in_phase(paths, "AwaitingApproval")
    assert second["spec"]["source"]["generation"] == 2


def run_in_phase(paths: Paths, phase: str, name: str | None = None) -> dict[str, Any]:
    """The path's run (or the run ``name``) once it is in ``phase``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for run in paths.runs("iris"):
            if name is not None and run["metadata"]["name"] != name:
                continue
            if (run.get("status") or {}).get("phase") == phase:
                return run
        time.sleep(0.5)
    raise AssertionError(f"no run of path iris reached {phase}: {paths.runs('iris')}")


def test_a_newer_freight_supersedes_one_that_waits(
    paths: Paths, source: Simulator, operator_factory: StartOperator, control_plane: ControlPlane
) -> None:
    operator_factory()
    paths.apply("iris", stage("dev"), stage("production", policy="manual"))
    first = newest_freight(
        paths.wait_for("iris", stage_is("production", phase="WaitingForPromotion"), "waiting")
    )
    publish(source, V2, generation=2)
    body = paths.wait_for(
        "iris",
        lambda b: (
            newest_freight(b) != first
            and stage_is("production", phase="WaitingForPromotion", freight=newest_freight(b))(b)
        ),
        "the newer freight waiting",
    )
    second = newest_freight(body)
    promoted = plugin(control_plane, paths.namespace, "path", "promote", "iris", "production")
    assert promoted.returncode == 0, promoted.stderr
    body = paths.wait_for(
        "iris", stage_is("production", phase="Succeeded", promoted=second), "production promoted"
    )
    assert history(body, "production", first) == {}  # the older freight never ran there
    assert image_of(source, "production") == V2


def test_deleting_the_path_deletes_its_runs_through_the_garbage_collector(
    paths: Paths, source: Simulator, operator_factory: StartOperator, control_plane: ControlPlane
) -> None:
    operator_factory()
    paths.apply("iris", stage("dev"), stage("staging"))
    paths.wait_for("iris", stage_is("staging", phase="Succeeded"), "staging Succeeded")
    assert len(paths.runs("iris")) == 2
    control_plane.kubectl("delete", "promotionpath", "iris", "-n", paths.namespace)
    deadline = time.monotonic() + GC_TIMEOUT
    while paths.runs("iris") and time.monotonic() < deadline:
        time.sleep(1)
    assert paths.runs("iris") == []
    assert image_of(source, "staging") == V1  # what the runs promoted stays


def test_the_api_server_refuses_a_bad_path_naming_the_field(
    paths: Paths, control_plane: ControlPlane
) -> None:
    manifest = path_manifest("bad", stage("dev"), stage("dev", soak="1s"))
    refused = control_plane.kubectl(
        "apply", "-n", paths.namespace, "-f", "-", input_text=manifest, check=False
    )
    assert refused.returncode != 0
    assert "spec.stages[].name must be unique in the path" in refused.stderr
    manifest = path_manifest("bad", stage("dev", soak="200h"))
    refused = control_plane.kubectl(
        "apply", "-n", paths.namespace, "-f", "-", input_text=manifest, check=False
    )
    assert "spec.stages[].soak must be at most 168h" in refused.stderr
    manifest = path_manifest("bad", stage("dev", template={"strategy": "Canary"}))
    refused = control_plane.kubectl(
        "apply", "-n", paths.namespace, "-f", "-", input_text=manifest, check=False
    )
    assert "spec.stages[].template.canary is required" in refused.stderr


def test_the_three_stage_example_is_accepted_and_explained(
    paths: Paths, control_plane: ControlPlane
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "paths" / "iris-path.yaml"
    accepted = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", paths.namespace, "-f", str(example), check=False
    )
    assert accepted.returncode == 0, accepted.stderr
    explained = " ".join(explain(control_plane, "promotionpath.spec.stages.soak").split())
    assert "must stay healthy with the freight" in explained
    assert "Baking" in explain(control_plane, "promotionpath.spec.stages.template.bake")


def test_sigkills_mid_path_promote_nothing_twice(
    paths: Paths, source: Simulator, operator_factory: StartOperator
) -> None:
    operator = operator_factory()
    source.control.set_delays(rollout_seconds=2.0)
    source.control.clear_requests_log()
    paths.apply("iris", stage("dev"), stage("staging", soak="2s"), stage("production", soak="2s"))
    for moment_s in (1.0, 3.5, 2.5, 4.0, 3.0):  # spread over the stages' runs and soaks
        time.sleep(moment_s)
        operator.kill()
        operator.restart()
    body = paths.wait_for(
        "iris", stage_is("production", phase="Succeeded"), "production Succeeded", timeout=180
    )
    freight = newest_freight(body)
    runs = paths.runs("iris")
    assert sorted(r["metadata"]["name"] for r in runs) == sorted(
        f"iris-{s}-{freight}" for s in ("dev", "staging", "production")
    )
    for namespace, method in (("dev", "POST"), ("staging", "PUT"), ("production", "POST")):
        done = [w for w in writes(source, namespace) if not w[1].endswith("/validate")]
        assert [m for m, _ in done] == [method], (namespace, done)  # one write per target


def message_of(body: dict[str, Any], stage_name: str) -> str:
    stages = (body.get("status") or {}).get("stages") or []
    return str(next((s.get("message") for s in stages if s["name"] == stage_name), "") or "")


def test_a_held_auto_stage_does_not_start_after_its_soak_and_starts_once_released(
    paths: Paths, source: Simulator, operator_factory: StartOperator, control_plane: ControlPlane
) -> None:
    operator_factory()
    paths.apply("iris", stage("dev"), stage("staging", soak="5s"))
    held = plugin(
        control_plane, paths.namespace, "path", "hold", "iris", "staging", "--reason", "INC-42"
    )
    assert held.returncode == 0, held.stderr
    body = paths.wait_for(
        "iris",
        lambda b: (
            stage_is("dev", phase="Succeeded")(b)
            and stage_is("staging", phase="Held")(b)
            and "is ready and waits for the release" in message_of(b, "staging")
        ),
        "staging held after its soak",
    )
    freight = newest_freight(body)
    message = message_of(body, "staging")
    assert message.startswith("held by ") and "INC-42" in message
    time.sleep(3)  # several polls past the soak: staging must still not start
    stages = [r["metadata"]["labels"]["deploy.mlops.dev/stage"] for r in paths.runs("iris")]
    assert stages == ["dev"]
    shown = plugin(control_plane, paths.namespace, "path", "get", "iris")
    assert "Held" in shown.stdout and "INC-42" in shown.stdout, shown
    released_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    released = plugin(control_plane, paths.namespace, "path", "release", "iris", "staging")
    assert released.returncode == 0, released.stderr
    body = paths.wait_for(
        "iris", stage_is("staging", phase="Succeeded", promoted=freight), "staging promoted"
    )
    assert moment(history(body, "staging", freight)["startedAt"]) >= released_at


def test_path_watch_exits_0_when_the_freight_reaches_the_last_stage(
    paths: Paths, source: Simulator, operator_factory: StartOperator, control_plane: ControlPlane
) -> None:
    operator_factory()
    # A 10 s soak: the watch (a new Python process) starts well before the freight
    # reaches staging, and so sees it soak there.
    paths.apply("iris", stage("dev"), stage("staging", soak="10s"))
    watched = plugin(
        control_plane, paths.namespace, "path", "watch", "iris", "--timeout", "120s", timeout=150
    )
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    freight = newest_freight(paths.get("iris"))
    lines = watched.stdout.splitlines()
    assert lines[-1] == f"{paths.namespace}/iris: freight {freight} reached stage staging"
    assert any("staging: Soaking" in line for line in lines), lines
    assert any(f"staging: Succeeded {freight}" in line for line in lines), lines
