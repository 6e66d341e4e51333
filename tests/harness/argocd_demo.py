"""``make argocd-demo``: a promotion kept in git, synced by a real Argo CD.

Brings the stack up with Argo CD (repo server, application controller, Redis)
and the loopback git server, starts the operator as its own process, commits
``examples/promote-iris.yaml`` to the repository, creates an Application for
that path (automated sync, pruning) and prints, as they happen, the
Application's sync status and the health Argo CD gives the ModelPromotion (with
the health check's message) next to the run's phase, until Argo CD shows it
Healthy. Exit code 0 when it did, after Progressing.
"""

from __future__ import annotations

import time
from typing import Any

from tests.harness.argocd import ArgoCD, resource_health, start_argocd, sync_status
from tests.harness.demo import EXAMPLES, prepare_seldon
from tests.harness.keycloak import DATA_SCIENTIST
from tests.harness.operator_process import (
    OperatorProcess,
    install_crds,
    password_credentials,
    start_operator,
)
from tests.harness.stack import Stack, start_stack

NAMESPACE = "promotions"
APPLICATION = "promotions"
EXAMPLE = EXAMPLES / "promote-iris.yaml"
PROMOTION = "iris-to-production"
_TIMEOUT = 300.0


def _phase(stack: Stack) -> str:
    result = stack.control_plane.kubectl(
        "get", "mp", PROMOTION, "-n", NAMESPACE, "-o", "jsonpath={.status.phase}", check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "(not in the cluster yet)"


def _follow(stack: Stack, argocd: ArgoCD) -> bool:
    """Print each change of sync status, health and phase until Healthy; True if it got
    there through Progressing."""
    started = time.monotonic()
    last: tuple[str, ...] = ()
    seen: list[str] = []
    while time.monotonic() - started < _TIMEOUT:
        app: dict[str, Any] = argocd.application(APPLICATION)
        health = resource_health(app, "ModelPromotion", PROMOTION)
        now = (
            sync_status(app) or "-",
            str(health.get("status", "-")),
            str(health.get("message", "")),
            _phase(stack),
        )
        if now != last:
            last = now
            if health:
                seen.append(now[1])
            print(
                f"  +{time.monotonic() - started:5.1f}s sync {now[0]:<9} health {now[1]:<11} "
                f"(phase {now[3]}) {now[2]}",
                flush=True,
            )
        if now[1] == "Healthy":
            return "Progressing" in seen
        if now[1] in ("Degraded", "Suspended"):
            return False
        time.sleep(0.3)
    print(f"timed out after {_TIMEOUT:.0f}s")
    return False


def run_argocd_demo() -> int:
    """Run the demo; 0 when Argo CD showed the promotion Progressing, then Healthy."""
    stack = start_stack()
    argocd: ArgoCD | None = None
    operator: OperatorProcess | None = None
    try:
        install_crds(stack.control_plane)
        argocd = start_argocd(stack.control_plane)
        # A rollout of a few seconds, so that Progressing can be seen.
        prepare_seldon(stack, rollout_seconds=5.0)
        stack.control_plane.kubectl("create", "namespace", NAMESPACE)
        operator = start_operator(
            stack.control_plane,
            stack.simulator,
            password_credentials(stack.keycloak),
            namespaces=(NAMESPACE,),
        )
        print(f"operator running, watching namespace {NAMESPACE}, as {DATA_SCIENTIST.username}")
        revision = argocd.git.commit(
            {f"{NAMESPACE}/{EXAMPLE.name}": EXAMPLE.read_text()}, "Promote iris to production"
        )
        print(f"committed {NAMESPACE}/{EXAMPLE.name} as {revision[:12]} to {argocd.git.repo_url}")
        argocd.create_application(APPLICATION, NAMESPACE, NAMESPACE)
        print(
            f"Application {APPLICATION}: path {NAMESPACE}/ into namespace {NAMESPACE}, "
            "automated sync with pruning; health from manifests/argocd/health.lua\n"
        )
        ok = _follow(stack, argocd)
        print()
        print(stack.control_plane.kubectl("get", "mp", "-n", NAMESPACE).stdout)
        for commit in stack.simulator.control.commits("production"):
            print(
                f"GitOps commit in production: {commit['action']} by {commit['author']}: "
                f"{commit['message']}"
            )
        if not ok:
            for process in (argocd.controller, argocd.repo_server):
                print(f"last lines of {process.name}'s log:\n{process.log_tail(15)}")
        print(
            "argocd demo succeeded" if ok else "argocd demo FAILED: not Progressing, then Healthy"
        )
        return 0 if ok else 1
    finally:
        if operator is not None:
            operator.stop()
        if argocd is not None:
            argocd.stop()
        stack.stop()
