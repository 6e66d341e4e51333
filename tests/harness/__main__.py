"""``python -m tests.harness up``: bring the local stack up for a person.

Prints how to reach every part and keeps it up until Ctrl-C (or SIGTERM).
``--exit-when-ready`` stops it again at once (a smoke run); ``--state-file``
writes the same facts as JSON for scripts.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from tests.harness import bench
from tests.harness.binaries import ensure_binaries
from tests.harness.keycloak import (
    DATA_SCIENTIST,
    DATA_VIEWER,
    OPERATOR_CLIENT_ID,
    OPERATOR_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    ensure_distribution,
)
from tests.harness.late_builds import ORDER, build_all
from tests.harness.operator_image import build_image
from tests.harness.podman import ensure_podman
from tests.harness.progress import say
from tests.harness.stack import Stack, start_stack

READY_BANNER = "STACK READY"


def describe(stack: Stack) -> dict[str, Any]:
    """Everything a person or script needs to reach the running stack."""
    plane, keycloak, simulator = stack.control_plane, stack.keycloak, stack.simulator
    prometheus = stack.prometheus
    return {
        "kubeconfig": str(plane.kubeconfig),
        "kubectl": str(plane.binaries.kubectl),
        "apiserver": plane.url,
        "keycloak": {
            "url": keycloak.url,
            "issuer": keycloak.issuer,
            "admin": {"username": keycloak.admin_user, "password": keycloak.admin_password},
            "password_grant": {
                "client_id": PUBLIC_CLIENT_ID,
                "users": [
                    {"username": u.username, "password": u.password, "groups": list(u.groups)}
                    for u in (DATA_SCIENTIST, DATA_VIEWER)
                ],
            },
            "client_credentials": {
                "client_id": OPERATOR_CLIENT_ID,
                "client_secret": OPERATOR_CLIENT_SECRET,
            },
        },
        "seldon_deploy": {
            "api": simulator.api_url,
            "control": f"{simulator.url}/_control",
            "metrics": f"{simulator.url}/metrics",
        },
        "prometheus": prometheus.url,
        "pids": {
            "etcd": plane.etcd.pid,
            "kube-apiserver": plane.apiserver.pid,
            "keycloak": keycloak.process.pid,
            "simulator": simulator.process.pid,
            "prometheus": prometheus.process.pid,
        },
        "urls": [plane.etcd_url, plane.url, keycloak.url, simulator.url, prometheus.url],
        "workdirs": [
            str(plane.workdir),
            str(keycloak.workdir),
            str(simulator.workdir),
            str(prometheus.workdir),
        ],
    }


def _print_human(facts: dict[str, Any]) -> None:
    kc = facts["keycloak"]
    lines = [
        "",
        "Local stack is up (test credentials only; never use them elsewhere):",
        f"  Kubernetes API   {facts['apiserver']}",
        f"    export KUBECONFIG={facts['kubeconfig']}",
        f"    kubectl: {facts['kubectl']}",
        "    dashboard: .venv/bin/kubectl-promotion dashboard  (kubectl promotion dashboard)",
        f"  Keycloak         {kc['url']}  (admin console: {kc['admin']['username']} / "
        f"{kc['admin']['password']})",
        f"    issuer         {kc['issuer']}",
        f"    password grant client_id={kc['password_grant']['client_id']}",
    ]
    for user in kc["password_grant"]["users"]:
        lines.append(f"      user {user['username']} / {user['password']} groups={user['groups']}")
    cc = kc["client_credentials"]
    lines += [
        f"    client credentials client_id={cc['client_id']} secret={cc['client_secret']}",
        f"  Seldon Deploy    {facts['seldon_deploy']['api']}",
        f"    control API    {facts['seldon_deploy']['control']}",
        f"    metrics        {facts['seldon_deploy']['metrics']}  (synthetic executor traffic)",
        f"  Prometheus       {facts['prometheus']}  (scrapes the simulator and evaluates"
        " its alerting rules every second)",
        "",
    ]
    print("\n".join(lines), flush=True)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _core_builds() -> None:
    """What every e2e session needs: the control plane, Prometheus, Toxiproxy, Keycloak."""
    ensure_binaries()
    ensure_distribution()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tests.harness``."""
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack and keep it up until Ctrl-C")
    up.add_argument("--exit-when-ready", action="store_true", help="stop again once ready")
    up.add_argument("--state-file", type=Path, help="write the stack's facts as JSON here")
    prepare = sub.add_parser(
        "prepare",
        help="build the binaries (Prometheus, promtool, Argo CD) and fetch Keycloak, then exit",
    )
    prepare.add_argument(
        "--without-argocd",
        action="store_true",
        help="skip Argo CD, which only its e2e tests and `argocd-demo` use",
    )
    prepare.add_argument(
        "--with-chart-and-image",
        action="store_true",
        help="also build Helm and make the image's Debian base (their e2e tests; needs podman)",
    )
    only = prepare.add_mutually_exclusive_group()
    only.add_argument(
        "--core-only",
        action="store_true",
        help="only what every e2e session needs (the control plane, Prometheus, Toxiproxy, "
        "Keycloak); `make test` makes the rest beside the first tests",
    )
    only.add_argument(
        "--late-only",
        nargs="*",
        choices=list(ORDER),
        metavar="NAME",
        help=f"only what a few e2e files need: {', '.join(ORDER)} (all without names)",
    )
    image = sub.add_parser("image", help="build the operator's image with podman, then exit")
    image.add_argument(
        "--base", help="the base image (default: one made here from Debian's packages)"
    )
    demo = sub.add_parser("demo", help="run the example promotions on the stack, then stop")
    demo.add_argument(
        "--screenshot",
        type=Path,
        metavar="FILE",
        help="also save the dashboard's page of the canary, drawn by Chromium, as FILE (PNG)",
    )
    sub.add_parser(
        "argocd-demo", help="a promotion committed to git and synced by Argo CD, then stop"
    )
    resilience = sub.add_parser("resilience", help="a large batch with faults and kills")
    resilience.add_argument("--runs", type=int, default=200, help="promotions in the batch")
    resilience.add_argument("--kills", type=int, default=10, help="operator SIGKILLs")
    resilience.add_argument("--seed", type=int, default=20261128, help="for faults and timing")
    resilience.add_argument(
        "--without-control-plane-faults",
        action="store_true",
        help="no kube-apiserver or etcd restart, no expired watch",
    )
    bench.add_arguments(sub.add_parser("bench", help="the operator at scale, next to a script"))
    registry = sub.add_parser(
        "bench-registry", help="only the registry figure of bench: runs from an MLflow alias"
    )
    registry.add_argument("--runs", type=int, default=20, help="ModelPromotions at once")
    paths = sub.add_parser(
        "bench-paths", help="only the path figure of bench: PromotionPaths of three stages"
    )
    paths.add_argument("--paths", type=int, default=100, help="PromotionPaths at once")
    args = parser.parse_args(argv)

    if args.command == "bench-registry":
        from tests.harness.bench_registry import run_registry_bench

        signal.signal(signal.SIGTERM, _raise_exit)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return run_registry_bench(args.runs)

    if args.command == "bench-paths":
        from tests.harness.bench_paths import run_paths_bench

        signal.signal(signal.SIGTERM, _raise_exit)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return run_paths_bench(args.paths)

    if args.command == "bench":
        signal.signal(signal.SIGTERM, _raise_exit)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return bench.main(args)

    if args.command == "resilience":
        from tests.harness import resilience as batch

        signal.signal(signal.SIGTERM, _raise_exit)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return batch.run_batch(
            args.runs, args.kills, args.seed, not args.without_control_plane_faults
        )

    if args.command == "demo":
        from tests.harness.demo import run_demo

        signal.signal(signal.SIGTERM, _raise_exit)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return run_demo(screenshot=args.screenshot)

    if args.command == "argocd-demo":
        from tests.harness.argocd_demo import run_argocd_demo

        signal.signal(signal.SIGTERM, _raise_exit)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return run_argocd_demo()

    if args.command == "prepare":
        if args.late_only is not None:
            names: list[str] = list(args.late_only or ORDER)
            first: Callable[[], None] | None = None
        else:
            names = [] if args.core_only or args.without_argocd else ["promtool", "argocd"]
            if args.with_chart_and_image and not args.core_only:
                names += ["container-base", "helm"]
            first = _core_builds
        # debootstrap and pip mostly wait on downloads: they run beside the Go builds.
        if not build_all(names, first=first):
            say("some builds failed (above); the tests that need them will say why")
            return 1
        made = ([] if first is None else ["the binaries and Keycloak"]) + names
        say(f"in place: {', '.join(made)}")
        return 0

    if args.command == "image":
        built = build_image(ensure_podman(), args.base)
        print(f"{built.reference}: {built.size_bytes / 1e6:.0f} MB, built in "
              f"{built.build_seconds:.0f}s on {built.base}")  # fmt: skip
        return 0

    # SIGTERM (from a CI runner or `kill`) stops the stack as cleanly as Ctrl-C does;
    # a shell's `cmd &` starts us with SIGINT ignored, so claim it back explicitly.
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stack = start_stack()
    try:
        facts = describe(stack)
        if args.state_file:
            args.state_file.write_text(json.dumps(facts, indent=2))
        _print_human(facts)
        print(READY_BANNER, flush=True)
        if not args.exit_when_ready:
            print("Press Ctrl-C to stop.", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("stack stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
