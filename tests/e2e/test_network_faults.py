"""Network faults between the operator and each server, through a real Toxiproxy.

One operator for the module reaches the kube-apiserver, Keycloak, Seldon Deploy
(the simulator) and Prometheus only through the proxies of
:mod:`tests.harness.toxiproxy`; the test itself talks to every server directly, so
what it reads is never faulted. A fault is put on one proxy at one phase of a run
(before the run starts: its Validating reads; in AwaitingApproval, then approved:
its Promoting write; in Verifying, while the target rolls out; in a canary's
analysis step for Prometheus), held :data:`FAULT_SECONDS`, then cleared. Every run
must end as it would without the fault, with exactly the writes it would have made
(the simulator's request log), by itself once the fault is gone. Printed (``-s``) for
each case, as polled from here: the seconds from clearing the fault until the run's
``lastError`` was gone (when the fault caused one) and until the run ended.

The operator signs in with the 5 s tokens of ``sd-api-short-lived``, refreshed at
half their life, so that it asks Keycloak (through its proxy) every 2.5 s. A failed
refresh leaves it the token it has until that expires, so a Keycloak fault is held
longer than a token lives (:data:`KEYCLOAK_FAULT_SECONDS`) and the target rolls out
for longer still: the token expires during the fault, before the run can end.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPORTS, _simulator_tail
from tests.e2e.test_canary import (
    analysis,
    canary_spec,
    error_rate,
    follow,
    seed_model,
    set_weight,
    target,
    target_puts,
)
from tests.harness.controlplane import ADMIN_USER, ControlPlane
from tests.harness.keycloak import SHORT_LIVED_CLIENT_ID
from tests.harness.operating import APPROVE, annotate
from tests.harness.operator_process import (
    OperatorProcess,
    password_credentials,
    start_operator,
)
from tests.harness.prometheus import Prometheus
from tests.harness.promotions import FINISHED_PHASES, Promotions
from tests.harness.secrets import assert_no_secrets
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator
from tests.harness.stack import Stack
from tests.harness.toxiproxy import (
    CUT,
    Fault,
    Proxy,
    StackProxies,
    bandwidth,
    kubeconfig_through,
    latency,
    limit_data,
    reset_peer,
    timeout,
)

pytestmark = pytest.mark.e2e

#: How long each fault is held.
FAULT_SECONDS = 4.0
#: The target's rollout while a fault is held in Verifying (shorter than the fault:
#: the target is Available before the operator can see it again).
VERIFY_ROLLOUT_SECONDS = 3.0
#: How long a Keycloak fault is held: longer than the 5 s a token lives.
KEYCLOAK_FAULT_SECONDS = 6.0
#: The rollout in the Keycloak cases: longer than the fault, so the run cannot end
#: before its token expired during the fault.
KEYCLOAK_ROLLOUT_SECONDS = KEYCLOAK_FAULT_SECONDS + 3.0
SOURCE_IMAGE = "seldonio/sklearn-iris:1.4"
REPLACE: dict[str, Any] = {
    "source": {"namespace": "staging", "name": "iris"},
    "target": {"namespace": "production"},
    "verification": {"timeout": "90s"},
}
#: Three measurements 2 s apart: a fault put on after the first falls on the others.
SLOW_ANALYSIS = [error_rate(interval="2s", count=3)]

# Each fault's strength: answers a second late; every answer lost after the request
# reached the server (a write may have happened); every request stalled 2 s, then
# dropped; answers at 1 KB/s; answers cut after 100 bytes; the proxy down.
LATENCY = latency(1000)
RESET = reset_peer()
TIMEOUT = timeout(2000)
BANDWIDTH = bandwidth(1)
LIMIT_DATA = limit_data(100)

#: One line per case, printed once the module is done.
REPORT: list[str] = []


@dataclass(frozen=True)
class Case:
    """``fault`` on the proxy of ``server`` while a Replace run is in ``phase``."""

    server: str
    fault: Fault
    phase: str

    @property
    def id(self) -> str:
        return f"{self.server}-{self.fault.label}-{self.phase}"

    @property
    def rollout_seconds(self) -> float:
        """How long the target rolls out in a Verifying case."""
        return KEYCLOAK_ROLLOUT_SECONDS if self.server == "keycloak" else VERIFY_ROLLOUT_SECONDS

    @property
    def fault_seconds(self) -> float:
        """How long the fault is held."""
        return KEYCLOAK_FAULT_SECONDS if self.server == "keycloak" else FAULT_SECONDS


REPLACE_CASES = [
    *(Case("seldon", f, p) for f in (LATENCY, RESET) for p in ("Validating", "Promoting")),
    *(Case("seldon", f, "Verifying") for f in (LATENCY, RESET, BANDWIDTH, CUT)),
    Case("seldon", TIMEOUT, "Promoting"),
    Case("seldon", LIMIT_DATA, "Promoting"),
    *(Case("kube", f, p) for f in (LATENCY, RESET) for p in ("Validating", "Verifying")),
    Case("kube", CUT, "Verifying"),
    Case("keycloak", RESET, "Validating"),
    *(Case("keycloak", f, "Verifying") for f in (LATENCY, RESET, CUT)),
]
PROMETHEUS_FAULTS = [LATENCY, RESET, TIMEOUT, CUT]


# --- the operator behind the proxies ----------------------------------------------


@pytest.fixture(scope="module")
def fault_namespace(control_plane: ControlPlane, crds: None) -> Iterator[str]:
    """The namespace of this module's ModelPromotions."""
    name = f"e2e-faults-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def proxied_operator(
    stack: Stack,
    fault_proxies: StackProxies,
    fault_namespace: str,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """One operator whose kubeconfig, Seldon Deploy URL, OIDC server and Prometheus
    URL are the proxies'. Its output, Events and statuses are scanned for secrets."""
    kubeconfig = kubeconfig_through(
        fault_proxies.kube_apiserver,
        operator_kubeconfig,
        tmp_path_factory.mktemp("proxied") / "operator.kubeconfig",
    )
    keycloak = stack.keycloak
    credentials = {
        **password_credentials(keycloak),
        "client-id": SHORT_LIVED_CLIENT_ID,
        # Discovery through the proxy names the token endpoint behind it (Keycloak's
        # back channel follows the address used); the issuer stays Keycloak's own.
        "oidc-server": fault_proxies.keycloak.url_for(keycloak.issuer),
    }
    operator = start_operator(
        stack.control_plane,
        stack.simulator,
        credentials,
        kubeconfig=kubeconfig,
        namespaces=(fault_namespace,),
        extra_env={
            "SELDON_DEPLOY_URL": fault_proxies.seldon_deploy.url_for(stack.simulator.api_url),
            "PROMETHEUS_URL": fault_proxies.prometheus.url_for(stack.prometheus.url),
        },
    )
    yield operator
    logs = operator.log()
    operator.stop()
    print("\nafter each fault cleared: seconds until lastError was gone / until the run ended")
    print("\n".join(REPORT))
    assert_no_secrets(
        {
            "operator output": logs,
            "events and status": stack.control_plane.kubectl(
                "get", "events,modelpromotions", "-n", fault_namespace, "-o", "json"
            ).stdout,
        }
    )


@pytest.fixture
def promotions(
    control_plane: ControlPlane, fault_namespace: str, fault_proxies: StackProxies
) -> Iterator[Promotions]:
    """ModelPromotions in the module's namespace; every proxy clean before and after."""
    fault_proxies.reset()
    yield Promotions(control_plane, fault_namespace)
    fault_proxies.reset()


@pytest.fixture(autouse=True)
def tail_on_failure(
    request: pytest.FixtureRequest, proxied_operator: OperatorProcess, stack: Stack
) -> Iterator[None]:
    """When a test failed, the end of the operator's output and the simulator's log."""
    before = len(proxied_operator.log())
    yield
    call = request.node.stash.get(REPORTS, {}).get("call")
    if call is not None and call.failed and sys.__stderr__ is not None:
        lines = proxied_operator.log()[before:].splitlines()[-150:]
        sys.__stderr__.write(f"\n--- the operator's output in {request.node.nodeid}\n")
        sys.__stderr__.write("\n".join(lines) + "\n---\n")
        sys.__stderr__.write(f"{_simulator_tail(stack.simulator)}\n---\n")


# --- holding a fault --------------------------------------------------------------


@dataclass
class Held:
    """What the run showed while the fault was on, and when the fault was cleared."""

    phases: list[str]
    errors: list[str]
    cleared_at: float


def hold(
    promotions: Promotions, name: str, fault: Fault, proxy: Proxy, seconds: float = FAULT_SECONDS
) -> Held:
    """Keep ``fault`` (already on ``proxy``) for ``seconds``, noting the run's phases
    and ``lastError`` reasons; then clear it."""
    phases: list[str] = []
    errors: list[str] = []
    until = time.monotonic() + seconds
    try:
        while time.monotonic() < until:
            status = promotions.status(name)
            phase = str(status.get("phase"))
            error = (status.get("lastError") or {}).get("reason")
            if not phases or phases[-1] != phase:
                phases.append(phase)
            if error and error not in errors:
                errors.append(str(error))
            time.sleep(0.3)
    finally:
        fault.clear(proxy)
    return Held(phases, errors, time.monotonic())


def recover(promotions: Promotions, name: str, held: Held, timeout: float = 90.0) -> str:
    """Poll the run until it ended; say how long after the fault cleared its
    ``lastError`` was gone and it ended."""
    error_gone: float | None = None
    deadline = time.monotonic() + timeout
    while True:
        status = promotions.status(name)
        since = time.monotonic() - held.cleared_at
        if error_gone is None and not status.get("lastError"):
            error_gone = since
        if status.get("phase") in FINISHED_PHASES:
            break
        assert time.monotonic() < deadline, f"{name} did not end in {timeout:.0f}s: {status}"
        time.sleep(0.2)
    if held.phases and held.phases[-1] in FINISHED_PHASES:
        return "ended during the fault"
    gone = f"{error_gone:4.1f} s" if held.errors and error_gone is not None else "   -  "
    return f"{gone} / {since:4.1f} s"


def report(case_id: str, recovery: str, held: Held, status: Mapping[str, Any], posts: int) -> None:
    """Print (and keep for the module's summary) one case's figures."""
    line = (
        f"  {case_id:32} {recovery:22} -> {status.get('phase')}; during the fault: "
        f"phases {'/'.join(held.phases)}, errors {', '.join(held.errors) or 'none'}; "
        f"POSTs received {posts}"
    )
    REPORT.append(line)
    print(line)


def posts_received(seldon: Simulator) -> int:
    """Every POST the simulator received, answered or not, whatever it answered."""
    return sum(1 for entry in seldon.control.requests_log() if entry["method"] == "POST")


# --- the matrix ---------------------------------------------------------------------


@pytest.mark.parametrize("case", REPLACE_CASES, ids=lambda c: c.id)
def test_a_replace_run_through_a_network_fault_succeeds_with_one_create(
    case: Case,
    fault_proxies: StackProxies,
    seldon: Simulator,
    promotions: Promotions,
    proxied_operator: OperatorProcess,
) -> None:
    proxy = fault_proxies.by_server()[case.server]
    name = f"replace-{uuid.uuid4().hex[:6]}"
    if case.phase == "Validating":
        case.fault.inject(proxy)
        promotions.apply(name, REPLACE)
    elif case.phase == "Promoting":
        promotions.apply(name, {**REPLACE, "approval": {"required": True}})
        promotions.wait_for_phase(name, {"AwaitingApproval"}, timeout=30)
        case.fault.inject(proxy)
        annotate(promotions, name, APPROVE, ADMIN_USER)
    else:
        seldon.control.set_delays(rollout_seconds=case.rollout_seconds)
        promotions.apply(name, REPLACE)
        promotions.wait_for_phase(name, {"Verifying"}, timeout=30)
        case.fault.inject(proxy)
    held = hold(promotions, name, case.fault, proxy, case.fault_seconds)

    recovery = recover(promotions, name, held)
    status = promotions.status(name)
    report(case.id, recovery, held, status, posts_received(seldon))

    assert status["phase"] == "Succeeded", status
    deployed = seldon.control.get_deployment("production", "iris")
    assert deployed is not None and deployed["status"]["state"] == "Available"
    container = deployed["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    assert container["image"] == SOURCE_IMAGE
    assert writes(seldon, "production") == [
        ("POST", "/seldon-deploy/api/v1alpha1/namespaces/production/seldondeployments")
    ], "exactly one create, nothing else written"
    promotions.kube.kubectl("delete", "mp", name, "-n", promotions.namespace)


@pytest.mark.parametrize("fault", PROMETHEUS_FAULTS, ids=lambda f: f.label)
def test_a_canary_with_a_prometheus_fault_mid_analysis_passes_writing_each_step_once(
    fault: Fault,
    fault_proxies: StackProxies,
    seldon: Simulator,
    prometheus: Prometheus,
    promotions: Promotions,
    proxied_operator: OperatorProcess,
) -> None:
    proxy = fault_proxies.prometheus
    model = seed_model(seldon)
    source = seldon.control.get_deployment("staging", model)
    assert source is not None
    name = f"canary-{uuid.uuid4().hex[:6]}"
    steps = [set_weight(10), analysis("error-rate")]
    promotions.apply(name, canary_spec(model, steps, templates=SLOW_ANALYSIS, timeout="30s"))
    follow(promotions, name, _measured_once)
    fault.inject(proxy)
    held = hold(promotions, name, fault, proxy)

    recovery = recover(promotions, name, held)
    status = promotions.status(name)
    report(f"prometheus-{fault.label}-Analyzing", recovery, held, status, posts_received(seldon))

    assert status["phase"] == "Succeeded", status
    measured = [m["result"] for m in status["canary"]["measurements"]]
    assert measured.count("Passed") == 3, measured
    assert [q.get("action") for q in target_puts(seldon, model)] == ["Promote", "Promote"]
    assert target(seldon, model)["spec"] == source["spec"]
    promotions.kube.kubectl("delete", "mp", name, "-n", promotions.namespace)


def _measured_once(status: Mapping[str, Any]) -> bool:
    progress = (status.get("canary") or {}).get("analysis") or []
    return status.get("phase") == "Analyzing" and any(p["taken"] >= 1 for p in progress)
