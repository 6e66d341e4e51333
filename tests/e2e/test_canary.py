"""Canary promotions end to end: traffic steps on an existing target, gated by the
real Prometheus measuring the simulator's synthetic traffic, then promoted or
rolled back.

Each test promotes its own model name (``iris-<hex>``): Prometheus keeps every
earlier test's series, and a fresh ``deployment_name`` keeps them apart. The
target exists before the run (a canary needs a stable predictor to keep
serving) and carries an older image than the source.

What was written is read from the simulator: its request log has every call
(method, path, ``action`` and ``message``, not the body), and
:class:`TargetHistory` records every version of the target (each new
``metadata.generation``, annotations and predictors included) by reading it
through the control API every 0.1 s; every write waits for its rollout (1 s),
so no version goes unseen.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import WRITERS, StartOperator
from tests.harness.controlplane import ControlPlane
from tests.harness.keycloak import DATA_SCIENTIST, Keycloak
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import Prometheus
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.simulator import Simulator
from tests.simulator.control import SimulatorControl
from tests.simulator.testing import ApiCaller, deployment_body

pytestmark = pytest.mark.e2e

NS = "production"
STABLE_IMAGE = "seldonio/sklearn-iris:1.3"
PROMOTED_IMAGE = "seldonio/sklearn-iris:1.5"
REQUESTS_PER_SECOND = 200.0

STEP_ANNOTATION = "deploy.mlops.dev/canary-step"
UID_ANNOTATION = "deploy.mlops.dev/promotion-uid"
GENERATION_ANNOTATION = "deploy.mlops.dev/promotion-generation"
RESUME_ANNOTATION = "deploy.mlops.dev/resume"

_COUNT = "seldon_api_executor_server_requests_seconds_count"
_CANARY = 'namespace="{{namespace}}",deployment_name="{{target}}",predictor_name="{{canary}}"'
# The share of the canary's requests that did not answer 2xx. A predictor that never
# failed has no non-2xx series at all, so the numerator falls back to 0 (`or
# vector(0)`) instead of giving no data, which would be inconclusive.
ERROR_RATE_QUERY = (
    f'(sum(rate({_COUNT}{{{_CANARY},code!~"2.."}}[{{{{interval}}}}])) or vector(0))'
    f" / sum(rate({_COUNT}{{{_CANARY}}}[{{{{interval}}}}]))"
)


# --- the spec -------------------------------------------------------------------


def set_weight(weight: int) -> dict[str, Any]:
    """A canary step sending ``weight`` percent of the target's traffic to the canary."""
    return {"setWeight": weight}


def analysis(*templates: str) -> dict[str, Any]:
    """A canary step measuring ``templates``."""
    return {"analysis": {"templates": list(templates)}}


def pause(duration: str | None = None) -> dict[str, Any]:
    """A canary step waiting ``duration``, or for a person without one."""
    return {"pause": {"duration": duration} if duration else {}}


def error_rate(
    *, interval: str = "3s", count: int = 2, maximum: float = 0.05, failure_limit: int = 0
) -> dict[str, Any]:
    """The ``error-rate`` analysis template: at most ``maximum`` of the canary's
    requests may fail, measured ``count`` times, every ``interval``."""
    return {
        "name": "error-rate",
        "query": ERROR_RATE_QUERY,
        "max": maximum,
        "interval": interval,
        "count": count,
        "failureLimit": failure_limit,
    }


def canary_spec(
    model: str,
    steps: Sequence[Mapping[str, Any]],
    *,
    templates: Sequence[Mapping[str, Any]] = (),
    timeout: str = "30s",
    **extra: Any,
) -> dict[str, Any]:
    """A Canary ModelPromotion of ``staging/model`` onto ``production/model``."""
    spec: dict[str, Any] = {
        "source": {"namespace": "staging", "name": model},
        "target": {"namespace": NS},
        "strategy": "Canary",
        "canary": {"steps": [dict(s) for s in steps]},
        "verification": {"timeout": timeout},
        **extra,
    }
    if templates:
        spec["analysis"] = {"templates": [dict(t) for t in templates]}
    return spec


# The canary of the issue, short: 10 %, measured, 50 %, measured, promoted.
TEN_THEN_FIFTY = (set_weight(10), analysis("error-rate"), set_weight(50), analysis("error-rate"))


# --- the stack ------------------------------------------------------------------


def operator_with_prometheus(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    """The operator, measuring analyses on the stack's Prometheus. Prometheus is
    running again afterwards, whatever the test did to it."""
    yield operator_factory(prometheus=prometheus)
    if not prometheus.process.running():
        prometheus.start_server()


@pytest.fixture
def canary_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    """See :func:`operator_with_prometheus`."""
    yield from operator_with_prometheus(operator_factory, prometheus)


def seed_model(simulator: Simulator, *, with_target: bool = True) -> str:
    """A fresh model: ``staging/<model>`` (the newer image) and ``production/<model>``
    (the older one, Available and serving its traffic); the request log emptied."""
    control = simulator.control
    model = f"iris-{uuid.uuid4().hex[:6]}"
    control.seed_deployment("staging", deployment_body(model, image=PROMOTED_IMAGE))
    if with_target:
        control.seed_deployment(NS, deployment_body(model, image=STABLE_IMAGE))
    control.set_request_rate(REQUESTS_PER_SECOND, namespace=NS, name=model)
    control.clear_requests_log()
    return model


def target(simulator: Simulator, model: str) -> dict[str, Any]:
    """The target as Seldon Deploy shows it now."""
    found = simulator.control.get_deployment(NS, model)
    assert found is not None, f"{NS}/{model} does not exist"
    return found


# --- what was written -------------------------------------------------------------


def target_puts(simulator: Simulator, model: str) -> list[dict[str, str]]:
    """The query (``action``, ``message``) of every successful PUT of the target."""
    path = f"/namespaces/{NS}/seldondeployments/{model}"
    return [
        dict(entry["query"])
        for entry in simulator.control.requests_log()
        if entry["method"] == "PUT"
        and entry["path"].endswith(path)
        and entry["status"] is not None
        and entry["status"] < 300
    ]


def target_writes(simulator: Simulator) -> list[tuple[str, str]]:
    """(method, path) of every successful write in the target namespace."""
    return [
        (entry["method"], entry["path"])
        for entry in simulator.control.requests_log()
        if entry["method"] in ("POST", "PUT", "DELETE")
        and f"/namespaces/{NS}/" in entry["path"]
        and entry["status"] is not None
        and entry["status"] < 300
    ]


@dataclass(frozen=True)
class Version:
    """One version of the target (one ``metadata.generation``)."""

    generation: int
    annotations: dict[str, str]
    spec: dict[str, Any]

    @property
    def step(self) -> str | None:
        """The canary step whose write this is (its annotation), if any."""
        return self.annotations.get(STEP_ANNOTATION)

    @property
    def traffic(self) -> dict[str, int | None]:
        """Each predictor's ``traffic``, by name."""
        return {p["name"]: p.get("traffic") for p in self.spec["predictors"]}

    def image(self, predictor: str) -> str:
        """The image of ``predictor``'s (first) container."""
        found = next(p for p in self.spec["predictors"] if p["name"] == predictor)
        return str(found["componentSpecs"][0]["spec"]["containers"][0]["image"])


class TargetHistory:
    """Every version the target goes through, read every ``interval`` seconds in a
    thread of its own (with its own control client) while the block runs."""

    def __init__(self, simulator: Simulator, model: str, interval: float = 0.1) -> None:
        self._control = SimulatorControl(
            simulator.url, verify=str(simulator.ca_file) if simulator.ca_file else True
        )
        self._model = model
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._failure: BaseException | None = None
        self.versions: list[Version] = []

    def __enter__(self) -> TargetHistory:
        self._record()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._record()
        self._control.close()
        if self._failure is not None:
            raise AssertionError(f"reading the target failed: {self._failure!r}")

    def _watch(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                self._record()
        except BaseException as exc:  # reported when the block ends
            self._failure = exc

    def _record(self) -> None:
        found = self._control.get_deployment(NS, self._model)
        if found is None:
            return
        generation = int(found["metadata"]["generation"])
        if self.versions and self.versions[-1].generation == generation:
            return
        annotations = dict(found["metadata"].get("annotations") or {})
        self.versions.append(Version(generation, annotations, found["spec"]))

    def written(self) -> list[Version]:
        """The versions after the one the block started with."""
        return self.versions[1:]


# --- following a run ----------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """What ``kubectl get mp`` showed at one time: a new phase, step, weight or reason."""

    at: float  # time.time() when first seen
    phase: str
    step: int | None
    weight: int | None
    reason: str
    last_error: str | None

    def key(self) -> tuple[str, int | None, int | None, str, str | None]:
        return (self.phase, self.step, self.weight, self.reason, self.last_error)


@dataclass
class Timeline:
    """The run's changes as polled, oldest first."""

    moments: list[Moment] = field(default_factory=list)

    def phases_and_steps(self) -> list[tuple[str, int | None]]:
        """(phase, step) in order, consecutive repeats dropped."""
        out: list[tuple[str, int | None]] = []
        for moment in self.moments:
            if not out or out[-1] != (moment.phase, moment.step):
                out.append((moment.phase, moment.step))
        return out

    def first(self, predicate: Callable[[Moment], bool]) -> Moment:
        """The first moment matching ``predicate``."""
        found = next((m for m in self.moments if predicate(m)), None)
        assert found is not None, f"no such moment in {self.describe()}"
        return found

    def describe(self) -> str:
        """The timeline for a failure message."""
        start = self.moments[0].at if self.moments else 0.0
        return "\n".join(
            f"+{m.at - start:5.1f}s {m.phase} step={m.step} weight={m.weight} "
            f"reason={m.reason} lastError={m.last_error}"
            for m in self.moments
        )


def _moment(body: Mapping[str, Any]) -> Moment | None:
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"]["generation"]:
        return None
    canary = status.get("canary") or {}
    conditions = status.get("conditions") or []
    condition: dict[str, Any] = next((c for c in conditions if c["type"] == "Ready"), {})
    return Moment(
        time.time(),
        str(status.get("phase") or ""),
        canary.get("step"),
        canary.get("weight"),
        str(condition.get("reason") or ""),
        (status.get("lastError") or {}).get("reason"),
    )


def follow(
    promotions: Promotions,
    name: str,
    until: Callable[[dict[str, Any]], bool],
    *,
    timeline: Timeline | None = None,
    on_change: Callable[[Moment], None] | None = None,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Poll the ModelPromotion until ``until(status)``; record every change of phase,
    step, weight, Ready reason or lastError in ``timeline`` and call ``on_change``."""
    timeline = timeline if timeline is not None else Timeline()

    def check(body: dict[str, Any]) -> bool:
        moment = _moment(body)
        if moment is None:
            return False
        if not timeline.moments or timeline.moments[-1].key() != moment.key():
            timeline.moments.append(moment)
            if on_change is not None:
                on_change(moment)
        return until(dict(body.get("status") or {}))

    try:
        body = promotions.wait_for(name, check, "the awaited state", timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ntimeline:\n{timeline.describe()}") from None
    return dict(body["status"])


def kill_on_arrival(
    operator: OperatorProcess, phases: Sequence[str], killed: list[tuple[str, int | None]]
) -> Callable[[Moment], None]:
    """An ``on_change`` for :func:`follow`: SIGKILL and restart ``operator`` once per
    phase (of ``phases``) and step, as soon as it shows; ``killed`` records where."""

    def kill(moment: Moment) -> None:
        if moment.phase in phases and (moment.phase, moment.step) not in killed:
            killed.append((moment.phase, moment.step))
            operator.kill()
            operator.restart()

    return kill


def finished(status: Mapping[str, Any]) -> bool:
    """A predicate for :func:`follow`: the run ended."""
    return status.get("phase") in FINISHED_PHASES


def in_phase(*phases: str) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate for :func:`follow`: the run is in one of ``phases`` (or ended)."""
    return lambda status: status.get("phase") in phases or finished(status)


def ready(status: Mapping[str, Any]) -> dict[str, Any]:
    """The Ready condition of ``status``."""
    conditions = status.get("conditions") or []
    return dict(next((c for c in conditions if c["type"] == "Ready"), {}))


def is_subsequence(wanted: Sequence[object], seen: Sequence[object]) -> bool:
    """Whether ``wanted`` appears in ``seen`` in order (other items between allowed)."""
    remaining = iter(seen)
    return all(item in remaining for item in wanted)


# --- the tests ------------------------------------------------------------------------


def test_canary_that_passes_writes_weights_10_and_50_then_the_promoted_spec(
    seldon: Simulator, canary_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None
    timeline = Timeline()

    with TargetHistory(seldon, model) as history:
        promotions.apply("iris", canary_spec(model, TEN_THEN_FIFTY, templates=[error_rate()]))
        status = follow(promotions, "iris", finished, timeline=timeline)

    assert status["phase"] == "Succeeded", timeline.describe()
    assert ready(status)["reason"] == "Succeeded"
    # Every step in order, each write verified before the next step.
    assert is_subsequence(
        [
            ("Verifying", 0),
            ("Analyzing", 1),
            ("Verifying", 2),
            ("Analyzing", 3),
            ("Verifying", 4),
            ("Succeeded", 4),
        ],
        timeline.phases_and_steps(),
    ), timeline.describe()
    reasons = {m.phase: m.reason for m in timeline.moments if m.last_error is None}
    assert reasons["Verifying"] == "WaitingForAvailable"
    assert reasons["Analyzing"] == "Analyzing"
    # Three writes, all PUTs of the target: 10 %, 50 %, the promoted spec.
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote"] * 3
    assert [m for m, _ in target_writes(seldon)] == ["PUT"] * 3
    uid = promotions.get("iris")["metadata"]["uid"]
    ten, fifty, promoted = history.written()
    assert (ten.step, ten.traffic) == ("0", {"default": 90, "canary": 10})
    assert (ten.image("default"), ten.image("canary")) == (STABLE_IMAGE, PROMOTED_IMAGE)
    assert (fifty.step, fifty.traffic) == ("2", {"default": 50, "canary": 50})
    assert promoted.step == "4"
    for version in (ten, fifty, promoted):
        assert version.annotations[UID_ANNOTATION] == uid
        assert version.annotations[GENERATION_ANNOTATION] == "1"
    # The final target: one predictor, exactly the promoted (source's) spec, Available.
    final = target(seldon, model)
    assert final["spec"] == source["spec"]
    assert final["status"]["state"] == "Available"
    canary = status["canary"]
    assert (canary["step"], canary["weight"]) == (4, 100)
    assert (canary["canaryPredictor"], canary["stablePredictor"]) == ("canary", "default")
    results = [(m["template"], m["result"]) for m in canary["measurements"]]
    assert results == [("error-rate", "Passed")] * 4
    assert all(m["value"] == 0.0 and m["max"] == 0.05 for m in canary["measurements"])


def test_canary_with_a_20_percent_error_rate_is_rolled_back_after_its_first_analysis(
    seldon: Simulator, canary_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    seldon.control.set_predictor_behaviour(NS, model, "canary", error_rate=0.2)
    before = target(seldon, model)

    with TargetHistory(seldon, model) as history:
        promotions.apply("iris", canary_spec(model, TEN_THEN_FIFTY, templates=[error_rate()]))
        status = follow(promotions, "iris", finished)

    assert status["phase"] == "RolledBack"
    assert ready(status)["reason"] == "RolledBack"
    # Measured once, failed, rolled back: the 50 % step never came.
    canary = status["canary"]
    [measured] = canary["measurements"]
    assert (measured["template"], measured["result"]) == ("error-rate", "Failed")
    assert abs(measured["value"] - 0.2) <= 0.05, measured
    assert measured["max"] == 0.05
    assert (canary["step"], canary["weight"]) == (1, 0)
    outcome = status["outcome"]
    assert outcome["reason"] == "AnalysisFailed"
    for part in ("error-rate", f"{measured['value']:g}", "0.05"):
        assert part in outcome["message"], (part, outcome["message"])
    # The canary write, then the restoring write (not waited for: a rollback writes the
    # spec that was Available before); the stable predictor has it all again.
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Rollback"]
    ten, restored = history.written()
    assert ten.traffic == {"default": 90, "canary": 10}
    assert restored.traffic == {"default": None}
    assert target(seldon, model)["spec"] == before["spec"]


def test_manual_pause_waits_for_kubectl_annotate_and_the_annotation_is_removed(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
) -> None:
    model = seed_model(seldon)
    promotions.apply("iris", canary_spec(model, [set_weight(10), pause()]))

    status = follow(promotions, "iris", in_phase("Paused"))
    assert status["phase"] == "Paused"
    assert (status["canary"]["step"], status["canary"]["weight"]) == (1, 10)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["reason"] == "AwaitingResume"
    assert conditions["Progressing"]["status"] == "False"
    listed = control_plane.kubectl("get", "mp", "iris", "-n", promotions.namespace).stdout
    assert "Paused" in listed and "AwaitingResume" in listed, listed
    time.sleep(3)  # several of the operator's polls (at most 1 s apart here)
    assert promotions.status("iris")["phase"] == "Paused"
    assert len(target_puts(seldon, model)) == 1

    control_plane.kubectl(
        "annotate", "mp", "iris", "-n", promotions.namespace, f"{RESUME_ANNOTATION}=true"
    )

    status = follow(promotions, "iris", finished)
    assert status["phase"] == "Succeeded"
    assert len(target_puts(seldon, model)) == 2
    annotations = promotions.get("iris")["metadata"].get("annotations") or {}
    assert RESUME_ANNOTATION not in annotations


def test_dry_run_of_a_canary_plans_every_step_and_writes_nothing(
    seldon: Simulator, canary_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    before = target(seldon, model)
    steps = [*TEN_THEN_FIFTY, pause(), pause("5s")]
    promotions.apply("iris", canary_spec(model, steps, templates=[error_rate()], dryRun=True))

    status = follow(promotions, "iris", finished)

    assert status["phase"] == "Succeeded"
    assert ready(status)["reason"] == "DryRun"
    planned = status["plan"]["steps"]
    assert len(planned) == len(steps) + 1, json.dumps(planned, indent=1)
    expected = [
        ("10%", "canary"),
        ("error-rate",),
        ("50%", "canary"),
        ("error-rate",),
        ("pause", "resume"),
        ("pause", "5s"),
        ("100%",),
    ]
    for line, parts in zip(planned, expected, strict=True):
        for part in parts:
            assert part in line, (part, line)
    assert target_writes(seldon) == []
    assert target(seldon, model) == before


def test_canary_without_an_existing_target_fails_as_invalid(
    seldon: Simulator, canary_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon, with_target=False)

    promotions.apply("iris", canary_spec(model, TEN_THEN_FIFTY, templates=[error_rate()]))
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == "Invalid"
    assert "does not exist" in status["outcome"]["message"]
    assert target_writes(seldon) == []


def test_target_changed_by_someone_else_mid_canary_fails_without_rollback(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    keycloak: Keycloak,
) -> None:
    model = seed_model(seldon)
    steps = [set_weight(10), analysis("error-rate")]
    promotions.apply(
        "iris", canary_spec(model, steps, templates=[error_rate(interval="2s", count=3)])
    )
    follow(promotions, "iris", in_phase("Analyzing"))

    # A person replaces the target with a manifest of their own (the operator's
    # annotations gone), through the API.
    theirs = deployment_body(model, image="seldonio/sklearn-iris:1.3-hotfix")
    token = keycloak.password_grant(DATA_SCIENTIST)["id_token"]
    answer = ApiCaller(seldon.url, token).update(NS, model, theirs)
    assert answer.status_code == 200, answer.text
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == "TargetChanged"
    # The operator's canary write and the person's; no rollback over theirs.
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", None]
    left = target(seldon, model)
    assert Version(0, {}, left["spec"]).image("default") == "seldonio/sklearn-iris:1.3-hotfix"
    assert [p["name"] for p in left["spec"]["predictors"]] == ["default"]


def test_canary_in_a_gitops_namespace_verifies_each_step_once_its_generation_is_synced(
    seldon: Simulator, canary_operator: OperatorProcess, promotions: Promotions
) -> None:
    sync_seconds = 3.0
    seldon.control.add_namespace(NS, gitops=True, groups=WRITERS)
    seldon.control.set_delays(rollout_seconds=1.0, gitops_sync_seconds=sync_seconds)
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None
    timeline = Timeline()
    steps = [set_weight(10), analysis("error-rate"), set_weight(50)]

    promotions.apply("iris", canary_spec(model, steps, templates=[error_rate()]))
    status = follow(promotions, "iris", finished, timeline=timeline)

    assert status["phase"] == "Succeeded", timeline.describe()
    # One commit per step's write, by the operator's identity, in order.
    commits = [c for c in seldon.control.commits(NS, model) if c["action"] != "Seed"]
    assert [c["author"] for c in commits] == [DATA_SCIENTIST.username] * 3
    specs = [c["spec"] or {} for c in commits]
    traffic = [{p["name"]: p.get("traffic") for p in spec["predictors"]} for spec in specs]
    assert traffic[:2] == [{"default": 90, "canary": 10}, {"default": 50, "canary": 50}]
    assert specs[2] == source["spec"]
    # Each step went on only after the sync: Seldon Deploy showed the written spec at
    # once, with the status of the generation before it for `sync_seconds`.
    after_write = [
        timeline.first(lambda m: m.step == 1),  # analysis, after the 10 % write
        timeline.first(lambda m: m.step == 3),  # the final write, after the 50 % write
        timeline.first(lambda m: m.phase == "Succeeded"),
    ]
    for commit, moment in zip(commits, after_write, strict=True):
        written_at = _epoch(commit["timestamp"])
        assert moment.at - written_at >= sync_seconds, (commit["timestamp"], moment)
    final = target(seldon, model)
    assert final["status"]["observedGeneration"] == final["metadata"]["generation"]
    assert final["status"]["observedGeneration"] == status["appliedGeneration"]


def _epoch(timestamp: str) -> float:
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
