"""Bakes end to end: a promotion written, verified, then watched on the stack's real
Prometheus (its measurements and its alerting rules) before the run succeeds, or
rolled back when an alert about the target fires.

The promotions are Replace runs onto an existing target (``seed_model`` of the canary
tests: a fresh model name per test, so Prometheus' earlier series stay apart, and
synthetic traffic). The alert is the harness's default rule ``PredictorErrorRateHigh``
(a predictor answering more than 10 % of its requests with 5xx over 5 s), made to
fire through the simulator's per-predictor error rate (``/_control``) once the run
is baking.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.e2e.test_canary import (
    NS,
    Timeline,
    finished,
    follow,
    in_phase,
    is_subsequence,
    operator_with_prometheus,
    ready,
    seed_model,
    target,
    target_puts,
)
from tests.harness.operating import ABORT, annotate, wait_until_removed
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import ERROR_RATE_ALERT, Prometheus
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

_COUNT = "seldon_api_executor_server_requests_seconds_count"
_TARGET = 'namespace="{{namespace}}",deployment_name="{{target}}"'
# The share of all the target's requests that did not answer 2xx (after the promotion
# the target serves nothing but the promoted spec).
TARGET_ERROR_RATE = (
    f'(sum(rate({_COUNT}{{{_TARGET},code!~"2.."}}[{{{{interval}}}}])) or vector(0))'
    f" / sum(rate({_COUNT}{{{_TARGET}}}[{{{{interval}}}}]))"
)
# How long the simulator takes to apply a traffic-only write in the warm-rollback test.
SWITCH_SECONDS = 0.5
WATCHED = {"namespace": "{{namespace}}", "deployment_name": "{{target}}"}


def bake_spec(
    model: str, duration: str, *, templates: bool = True, warm: bool = True
) -> dict[str, Any]:
    """A Replace of ``staging/model`` onto ``production/model`` baked ``duration``: the
    target's error rate measured twice every 3 s (``templates``), its alerts watched,
    the previous version kept warm (``warm``, the default) or not."""
    bake: dict[str, Any] = {
        "duration": duration,
        "alerts": {"matchLabels": dict(WATCHED)},
        "warm": warm,
    }
    spec: dict[str, Any] = {
        "source": {"namespace": "staging", "name": model},
        "target": {"namespace": NS},
        "verification": {"timeout": "30s"},
        "bake": bake,
    }
    if templates:
        bake["templates"] = ["error-rate"]
        spec["analysis"] = {
            "templates": [
                {
                    "name": "error-rate",
                    "query": TARGET_ERROR_RATE,
                    "max": 0.05,
                    "interval": "3s",
                    "count": 2,
                }
            ]
        }
    return spec


@dataclass(frozen=True)
class Version:
    """One version of the target the test saw: when first, its generation, state and
    traffic split by predictor."""

    at: float
    generation: int
    state: str
    traffic: dict[str, int | None]


@dataclass
class TargetHistory:
    """The target's versions as the test saw them (every 0.1 s), and when the error-rate
    alert about it was active from (Prometheus' ``activeAt``, first seen firing).

    The simulator keeps no history of a deployment outside a GitOps namespace, so the
    test samples it while the run goes on."""

    seldon: Simulator
    prometheus: Prometheus
    model: str
    versions: list[Version] = field(default_factory=list)
    alert_active_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TargetHistory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._record()  # the run may end between two samples: the last version too

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._record()
            if self.alert_active_at is None:
                firing = self.prometheus.firing_alerts(ERROR_RATE_ALERT, deployment_name=self.model)
                if firing:
                    self.alert_active_at = _rfc3339(str(firing[0]["activeAt"]))
            self._stop.wait(0.1)

    def _record(self) -> None:
        found = self.seldon.control.get_deployment(NS, self.model)
        if found is None:
            return
        version = Version(
            time.time(),
            int(found["metadata"]["generation"]),
            str((found.get("status") or {}).get("state")),
            {p["name"]: p.get("traffic") for p in found["spec"]["predictors"]},
        )
        last = self.versions[-1] if self.versions else None
        if last is None or (last.generation, last.state, last.traffic) != (
            version.generation,
            version.state,
            version.traffic,
        ):
            self.versions.append(version)

    def first(self, serving: dict[str, int | None], *, since: int = 0) -> Version:
        """The first version from generation ``since`` on seen Available with the
        traffic split ``serving``."""
        found = [
            v
            for v in self.versions
            if v.generation >= since and v.traffic == serving and v.state == "Available"
        ]
        assert found, f"no version from generation {since} with {serving}: {self.versions}"
        return found[0]

    def until_available(self, timeout: float = 15.0) -> None:
        """Go on sampling until the target's latest generation is seen Available: a
        rollback ends once its restore is written; the champion serves once it has
        rolled out."""
        found = self.seldon.control.get_deployment(NS, self.model)
        assert found is not None
        generation = int(found["metadata"]["generation"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(v.generation >= generation and v.state == "Available" for v in self.versions):
                return
            time.sleep(0.05)
        raise AssertionError(f"generation {generation} was not seen Available: {self.versions}")


def _rfc3339(text: str) -> float:
    """Prometheus' time (nanoseconds, ``Z``) as POSIX seconds."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(trimmed).timestamp()


def _report(history: TargetHistory, champion_at: float, *, warm: bool) -> None:
    """One line for the report: from the alert to the champion serving 100 %."""
    assert history.alert_active_at is not None, "the alert was never seen firing"
    seconds = champion_at - history.alert_active_at
    print(f"bake rollback warm={str(warm).lower()}: champion at 100% {seconds:.2f}s after activeAt")


@pytest.fixture
def bake_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    """The operator with the stack's Prometheus; its alerting rules the default ones,
    before and after the test."""
    prometheus.reset_alert_rules()
    yield from operator_with_prometheus(operator_factory, prometheus)
    prometheus.reset_alert_rules()


def test_a_bake_that_passes_succeeds_after_its_duration(
    seldon: Simulator, bake_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    timeline = Timeline()

    promotions.apply("iris", bake_spec(model, "8s"))
    status = follow(promotions, "iris", finished, timeline=timeline)

    assert status["phase"] == "Succeeded", timeline.describe()
    assert is_subsequence(["Verifying", "Baking", "Succeeded"], [m.phase for m in timeline.moments])
    assert "bake of 8s passed" in ready(status)["message"]
    bake = status["bake"]
    assert [p["taken"] for p in bake["analysis"]] == [2]
    assert [m["result"] for m in bake["measurements"]] == ["Passed", "Passed"]
    assert "alerts" not in bake or not bake["alerts"]
    # The promotion with the previous version warm, then the warm copy removed.
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Promote"]
    assert bake["warmPredictor"] == "default-warm" and bake["passedAt"]


def test_a_firing_alert_rolls_the_promotion_back(
    seldon: Simulator,
    bake_operator: OperatorProcess,
    promotions: Promotions,
    prometheus: Prometheus,
) -> None:
    """Without a warm copy (``warm: false``): the previous spec written again (cold)."""
    model = seed_model(seldon)
    before = target(seldon, model)

    with TargetHistory(seldon, prometheus, model) as history:
        promotions.apply("iris", bake_spec(model, "60s", templates=False, warm=False))
        follow(promotions, "iris", in_phase("Baking"))
        # The promoted predictor (the source's `default`) starts failing half its requests.
        seldon.control.set_predictor_behaviour(NS, model, "default", error_rate=0.5)
        status = follow(promotions, "iris", finished, timeout=60.0)
        history.until_available()

    assert status["phase"] == "RolledBack"
    outcome = status["outcome"]
    assert outcome["reason"] == "AlertFiring"
    assert outcome["message"].startswith(f'alert {ERROR_RATE_ALERT}{{predictor_name="default"')
    assert outcome["message"].endswith(f"fired during the bake of {NS}/{model}")
    assert [a["alertname"] for a in status["bake"]["alerts"]] == [ERROR_RATE_ALERT]
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Rollback"]
    assert target(seldon, model)["spec"] == before["spec"]
    # The restore's generation (the versions before it have the same split).
    generation = int(target(seldon, model)["metadata"]["generation"])
    restored = history.first({"default": None}, since=generation)
    _report(history, restored.at, warm=False)


def test_a_firing_alert_switches_to_the_warm_copy_before_the_restore(
    seldon: Simulator,
    bake_operator: OperatorProcess,
    promotions: Promotions,
    prometheus: Prometheus,
) -> None:
    """With the warm copy (the default): the champion takes all the traffic back with one
    traffic-only write, Available at once, before the previous spec is restored."""
    model = seed_model(seldon)
    before = target(seldon, model)
    # A traffic switch takes 0.5 s here (no new pods; 0 by default), so that the
    # switched version lives long enough to be seen between two samples, and the
    # wait for it to be Available shows in the request log.
    seldon.control.set_delays(traffic_seconds=SWITCH_SECONDS, namespace=NS, name=model)

    with TargetHistory(seldon, prometheus, model) as history:
        promotions.apply("iris", bake_spec(model, "60s", templates=False))
        status = follow(promotions, "iris", in_phase("Baking"))
        assert status["bake"]["warmPredictor"] == "default-warm"
        assert traffic_of(target(seldon, model)) == {"default": 100, "default-warm": 0}
        seldon.control.set_predictor_behaviour(NS, model, "default", error_rate=0.5)
        status = follow(promotions, "iris", finished, timeout=60.0)
        history.until_available()

    assert status["phase"] == "RolledBack"
    assert status["outcome"]["reason"] == "AlertFiring"
    # The switch (a rollback's write too), then the restore, once the switch was
    # Available. Its Available moment is not sampled: the operator writes the restore
    # within milliseconds of it, between two samples.
    puts = timed_target_puts(seldon, model)
    assert [action for action, _ in puts] == ["Promote", "Rollback", "Rollback"]
    (_, switch_at), (_, restore_at) = puts[1], puts[2]
    assert restore_at - switch_at >= SWITCH_SECONDS - 0.001  # the log's times are to the ms
    assert target(seldon, model)["spec"] == before["spec"]
    splits = [v.traffic for v in history.versions]
    assert is_subsequence(
        [
            {"default": 100, "default-warm": 0},
            {"default": 0, "default-warm": 100},
            {"default": None},
        ],
        [split for i, split in enumerate(splits) if i == 0 or split != splits[i - 1]],
    ), history.versions
    _report(history, switch_at + SWITCH_SECONDS, warm=True)


def timed_target_puts(simulator: Simulator, model: str) -> list[tuple[str, float]]:
    """(``action``, POSIX time the body arrived) of every successful PUT of the target."""
    path = f"/namespaces/{NS}/seldondeployments/{model}"
    return [
        (
            entry["query"].get("action", ""),
            datetime.datetime.fromisoformat(entry["time"]).timestamp(),
        )
        for entry in simulator.control.requests_log()
        if entry["method"] == "PUT"
        and entry["path"].endswith(path)
        and entry["status"] is not None
        and entry["status"] < 300
    ]


def traffic_of(deployment: dict[str, Any]) -> dict[str, int | None]:
    return {p["name"]: p.get("traffic") for p in deployment["spec"]["predictors"]}


def test_a_passing_bake_removes_the_warm_copy(
    seldon: Simulator, bake_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None

    promotions.apply("iris", bake_spec(model, "8s", templates=False))
    follow(promotions, "iris", in_phase("Baking"))
    assert traffic_of(target(seldon, model)) == {"default": 100, "default-warm": 0}
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "Succeeded", status
    assert "removed the warm predictor 'default-warm'" in ready(status)["message"]
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Promote"]
    after = target(seldon, model)
    assert traffic_of(after) == {"default": 100}
    assert "deploy.mlops.dev/warm-predictor" not in after["metadata"].get("annotations", {})
    assert status["appliedGeneration"] == after["metadata"]["generation"]


def test_an_abort_during_the_bake_rolls_the_promotion_back(
    seldon: Simulator, bake_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    before = target(seldon, model)

    promotions.apply("iris", bake_spec(model, "60s", templates=False))
    follow(promotions, "iris", in_phase("Baking"))
    annotate(promotions, "iris", ABORT, "requested")
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "RolledBack"
    assert status["outcome"]["reason"] == "Aborted"
    # The switch to the warm copy, then the restore.
    actions = [q.get("action") for q in target_puts(seldon, model)]
    assert actions == ["Promote", "Rollback", "Rollback"]
    assert target(seldon, model)["spec"] == before["spec"]
    wait_until_removed(promotions, "iris", ABORT)


def test_sigkill_during_the_bake_resumes_it_without_writing_again(
    seldon: Simulator, bake_operator: OperatorProcess, promotions: Promotions
) -> None:
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None

    promotions.apply("iris", bake_spec(model, "8s"))
    follow(promotions, "iris", in_phase("Baking"))
    bake_operator.kill()
    bake_operator.restart()
    status = follow(promotions, "iris", finished)

    assert status["phase"] == "Succeeded", status
    assert [p["taken"] for p in status["bake"]["analysis"]] == [2]
    # The promotion was written once (then its warm copy removed once); the restarted
    # operator went on baking it.
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Promote"]
    # The source's spec, its one predictor at 100 % (as the warm copy's write left it).
    promoted = source["spec"]["predictors"][0]
    assert target(seldon, model)["spec"]["predictors"] == [{**promoted, "traffic": 100}]
