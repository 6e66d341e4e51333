"""``make resilience``: a large batch of promotions with faults on and operator kills.

Seldon Deploy answers with injected latency, 5xx, 429 + Retry-After and dropped
connections throughout; a share of targets is marked to fail (those runs must
end RolledBack); the operator, running as the ServiceAccount of ``manifests/``,
is SIGKILLed and restarted at random moments. Between the kills the control
plane fails too: kube-apiserver restarts, etcd restarts, and every watch
expires (the apiserver restarted, etcd compacted: the operator's re-watch is
410 Gone). The moment each fault clears a probe run is applied, and the
seconds until it has its first status are the operator's recovery. At the end
one summary is printed: runs, outcomes, duplicate creates, lost updates,
secrets found, retries per run, recovery per fault and wall time. Exit 0 when
every promise held.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.controlplane import ControlPlane
from tests.harness.operator_process import (
    OperatorProcess,
    client_credentials,
    install_crds,
    start_operator,
)
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.rbac import install_cluster_wide
from tests.harness.recovery import probe_spec, seconds_to_first_status
from tests.harness.secrets import secrets_in
from tests.harness.stack import Stack, start_stack
from tests.simulator.testing import deployment_body

NAMESPACE = "resilience"
WRITERS = {"promotion-operators": ["read", "write"]}
#: How long kube-apiserver and etcd stay down when they are restarted.
DOWN_SECONDS = 3.0
#: The control-plane faults of the batch, in order; each returns when it cleared.
CONTROL_PLANE_FAULTS: dict[str, Callable[[ControlPlane], float]] = {
    "kube-apiserver restart": lambda plane: plane.restart_apiserver(down_seconds=DOWN_SECONDS),
    "etcd restart": lambda plane: plane.restart_etcd(down_seconds=DOWN_SECONDS),
    "expired watch (410 Gone)": ControlPlane.expire_watches,
}


def _prepare(stack: Stack, runs: int, failing_share: float, rng: random.Random) -> set[str]:
    control = stack.simulator.control
    control.add_namespace("staging", groups=WRITERS)
    control.add_namespace("production", groups=WRITERS)
    control.add_namespace("production-gitops", gitops=True, groups=WRITERS)
    control.set_delays(rollout_seconds=2.0, gitops_sync_seconds=2.0)
    failing: set[str] = set()
    for i in range(runs):
        name = f"model-{i:03d}"
        control.seed_deployment("staging", deployment_body(name, image=f"models/{name}:2"))
        if rng.random() < failing_share:
            failing.add(name)
            control.mark_failing(_target_namespace(name), name, description="OOMKilled")
    return failing


def _target_namespace(name: str) -> str:
    return "production-gitops" if int(name.rsplit("-", 1)[1]) % 4 == 0 else "production"


def _faults_on(stack: Stack, seed: int) -> None:
    control = stack.simulator.control
    control.add_latency(150)
    control.error_rate(0.08, (503, 500, 502), seed=seed)
    control.inject_fault("rate_limit", probability=0.03, retry_after_seconds=2, seed=seed + 1)
    control.inject_fault("drop", probability=0.02, seed=seed + 2)


def _spec(name: str) -> dict[str, Any]:
    return {
        "source": {"namespace": "staging", "name": name},
        "target": {"namespace": _target_namespace(name)},
        "overrides": {"replicas": 2},
        "verification": {"timeout": "5m"},
        "gitops": {"message": f"Promote {name}"},
    }


def _ending(status: dict[str, Any]) -> str:
    """The phase and Ready reason a run ended with, and its last error's message."""
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c["type"] == "Ready"), {}
    )
    error = (status.get("lastError") or {}).get("message") or ready.get("message", "")
    return f"{status.get('phase')} ({ready.get('reason')}): {str(error)[:160]}"


def _probe_name(fault: str) -> str:
    return f"probe-{list(CONTROL_PLANE_FAULTS).index(fault)}"


def _faults_after_kills(kills: int, faults: list[str]) -> dict[int, list[str]]:
    """Which faults come after which kill (0: before the first), spread evenly."""
    schedule: dict[int, list[str]] = {}
    for j, fault in enumerate(faults):
        schedule.setdefault(kills * (j + 1) // (len(faults) + 1), []).append(fault)
    return schedule


def run_batch(runs: int, kills: int, seed: int, control_plane_faults: bool = True) -> int:
    """Run the batch and print the summary; 0 when every promise held."""
    rng = random.Random(seed)
    started = time.monotonic()
    stack = start_stack()
    operator: OperatorProcess | None = None
    try:
        plane = stack.control_plane
        install_crds(plane)
        plane.kubectl("create", "namespace", NAMESPACE)
        identity = install_cluster_wide(plane, Path(tempfile.mkdtemp()) / "operator.kubeconfig")
        failing = _prepare(stack, runs, 0.1, rng)
        faults = list(CONTROL_PLANE_FAULTS) if control_plane_faults else []
        for fault in faults:  # the probes' sources; their targets are new, never failing
            stack.simulator.control.seed_deployment(
                "staging", deployment_body(_probe_name(fault), image="models/probe:2")
            )
        operator = start_operator(
            plane,
            stack.simulator,
            client_credentials(stack.keycloak),
            kubeconfig=identity,
            namespaces=(NAMESPACE,),
        )
        _faults_on(stack, seed)
        promotions = Promotions(plane, NAMESPACE)
        print(f"applying {runs} promotions ({len(failing)} targets marked to fail)", flush=True)
        applied = time.monotonic()
        for i in range(runs):
            promotions.apply(f"model-{i:03d}", _spec(f"model-{i:03d}"))
        recovery: dict[str, float] = {}
        schedule = _faults_after_kills(kills, faults)
        for kill in range(kills + 1):
            for fault in schedule.get(kill, []):
                time.sleep(rng.uniform(1.0, 6.0))
                cleared = CONTROL_PLANE_FAULTS[fault](plane)
                probe = _probe_name(fault)
                spec = probe_spec(probe, "production", probe)
                recovery[fault] = seconds_to_first_status(promotions, probe, spec, cleared)
                print(f"  {fault}: the operator was back {recovery[fault]:.1f} s later", flush=True)
            if kill == kills:
                break
            time.sleep(rng.uniform(1.0, 6.0))
            operator.kill()
            operator.restart()
            print(f"  killed and restarted the operator ({kill + 1}/{kills})", flush=True)

        statuses: dict[str, dict[str, Any]] = {}
        for i in range(runs):
            name = f"model-{i:03d}"
            statuses[name] = promotions.wait_for_phase(name, FINISHED_PHASES, timeout=900)
        probes = {
            _probe_name(f): promotions.wait_for_phase(_probe_name(f), FINISHED_PHASES, timeout=900)
            for f in faults
        }
        finished = time.monotonic()
        stack.simulator.control.clear_faults()

        log = stack.simulator.control.requests_log()
        # Every target is new, so each run creates exactly once; the simulator refuses
        # a second create of a name with 409, so those count as duplicates too.
        posts = Counter(e["status"] for e in log if e["method"] == "POST")
        duplicate_creates = max(0, posts.get(200, 0) - runs - len(probes)) + posts.get(409, 0)
        # A create's path has no name; every other call names its deployment.
        faulted = [e for e in log if e["fault"] not in (None, "latency")]
        retried = Counter(e["path"].rsplit("/", 1)[-1] for e in faulted)
        per_run = [retried.get(f"model-{i:03d}", 0) for i in range(runs)]
        faulted_creates = sum(1 for e in faulted if e["method"] == "POST")

        outcomes = Counter(status["phase"] for status in statuses.values())
        lost, wrong = [], []
        for name, status in statuses.items():
            target = stack.simulator.control.get_deployment(_target_namespace(name), name)
            if name in failing:
                if status["phase"] != "RolledBack" or target is not None:
                    wrong.append(name)
            elif status["phase"] != "Succeeded":
                wrong.append(name)
            elif target is None or (target.get("status") or {}).get("state") != "Available":
                lost.append(name)  # claims success for a target that is not Available
            elif target["spec"]["predictors"][0]["replicas"] != 2:
                lost.append(name)  # claims success for a spec that is not the promoted one
        for name, status in probes.items():
            target = stack.simulator.control.get_deployment("production", name)
            if status["phase"] != "Succeeded":
                wrong.append(name)
            elif target is None or (target.get("status") or {}).get("state") != "Available":
                lost.append(name)
        secrets = secrets_in(
            {
                "operator output": operator.log(),
                "events": plane.kubectl("get", "events", "-n", NAMESPACE, "-o", "json").stdout,
                "status": json.dumps(statuses),
                "metrics": operator.metrics_text(),
            }
        )
        summary = {
            "runs": runs,
            "succeeded": outcomes.get("Succeeded", 0),
            "rolled back as expected": sum(
                1 for n in failing if statuses[n]["phase"] == "RolledBack"
            ),
            "wrong outcome": len(wrong),
            "operator kills": kills,
            "control-plane faults": ", ".join(faults) or "none",
            "duplicate creates": duplicate_creates,
            "lost updates": len(lost),
            "secrets found": len(secrets),
            "faulted (retried) calls per run (median / max)": (
                f"{statistics.median(per_run):g} / {max(per_run)}"
                f" (+{faulted_creates} faulted creates)"
            ),
            "Seldon Deploy calls in all": len(log),
            **{
                f"recovery after the {fault}": f"{seconds:.1f} s"
                for fault, seconds in recovery.items()
            },
            "time to settle all runs": f"{finished - applied:.0f} s",
            "wall time": f"{time.monotonic() - started:.0f} s",
        }
        print("\nresilience summary")
        for key, value in summary.items():
            print(f"  {key:<52} {value}")
        every = {**statuses, **probes}
        for problem in wrong + lost:
            print(f"  problem: {problem} ended {_ending(every[problem])}")
        for problem in secrets:
            print(f"  problem: {problem}")
        ok = not (wrong or lost or secrets or duplicate_creates)
        print("all promises held" if ok else "PROMISES BROKEN")
        return 0 if ok else 1
    finally:
        if operator is not None:
            operator.stop()
        stack.stop()
