"""``promotion-operator`` (or ``python -m promotion_operator``): run the operator.

Settings are read from the environment and validated before Kopf starts; an
invalid setting stops the operator with one line per problem and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf

from promotion_operator.config.replica import THIS_REPLICA
from promotion_operator.config.settings import load_settings
from promotion_operator.control.controller import Controller
from promotion_operator.control.kube_api import KubeApi, connect
from promotion_operator.control.leadership import LeaderElection
from promotion_operator.control.path_controller import PathController
from promotion_operator.control.runner import Runtime
from promotion_operator.core.pass_io import RetryPolicy
from promotion_operator.errors import SettingsError

EXIT_INVALID_SETTINGS = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promotion-operator",
        description=(
            "Promote Seldon Core SeldonDeployments, Models and Pipelines between "
            "environments through the Seldon Deploy API (Kopf operator)."
        ),
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch ModelPromotions in this namespace (repeat for several)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (default)"
    )
    parser.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve the liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on this port (all interfaces), e.g. 9090",
    )
    parser.add_argument(
        "--log-format", choices=["plain", "full", "json"], default="full", help="log line format"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--debug", action="store_true", help="log everything, Kopf's too")
    parser.add_argument(
        "--max-retry-delay",
        type=float,
        default=RetryPolicy.max_delay,
        metavar="SECONDS",
        help="longest wait between retries after an error (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=32,
        metavar="N",
        help="passes run at once, each in a thread of its own (default %(default)s)",
    )
    parser.add_argument(
        "--leader-election",
        action="store_true",
        help="run passes only while holding a Lease, so replicas can stand by",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        metavar="NAMESPACE",
        help="namespace of the Lease (default: $POD_NAMESPACE, else %(default)s)",
    )
    parser.add_argument(
        "--leader-election-name",
        default="promotion-operator",
        metavar="NAME",
        help="name of the Lease (default %(default)s)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long a silent leader keeps the Lease before a standby takes over "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-poll-delay",
        type=float,
        default=RetryPolicy.max_poll,
        metavar="SECONDS",
        help="longest wait between checks of a rolling-out target (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Validate the settings, then run Kopf until it is stopped."""
    args = _parser().parse_args(argv)
    # Logging first, so that warnings about the settings come out in the chosen format.
    kopf.configure(
        debug=args.debug,
        verbose=args.verbose,
        log_format=kopf.LogFormat[args.log_format.upper()],
    )
    try:
        settings = load_settings(os.environ)
    except SettingsError as error:
        for problem in error.problems:
            print(f"promotion-operator: invalid setting: {problem}", file=sys.stderr)
        return EXIT_INVALID_SETTINGS
    if min(args.max_retry_delay, args.max_poll_delay, args.lease_seconds) <= 0:
        print("promotion-operator: delays must be positive seconds", file=sys.stderr)
        return EXIT_INVALID_SETTINGS
    if args.workers < 1:
        print("promotion-operator: --workers must be at least 1", file=sys.stderr)
        return EXIT_INVALID_SETTINGS
    try:
        api = KubeApi(connect(), identity=THIS_REPLICA.name)
    except Exception as error:  # no ServiceAccount, no usable kubeconfig
        print(f"promotion-operator: cannot reach the Kubernetes API: {error}", file=sys.stderr)
        return EXIT_INVALID_SETTINGS

    # Importing the handlers registers them with Kopf (they start the watch).
    import promotion_operator.handlers  # noqa: F401

    logging.getLogger("promotion_operator").setLevel(logging.INFO)
    policy = RetryPolicy(max_delay=args.max_retry_delay, max_poll=args.max_poll_delay)
    election = None
    if args.leader_election:
        election = LeaderElection(
            api,
            args.leader_election_namespace,
            args.leader_election_name,
            api.identity,
            lease_seconds=args.lease_seconds,
            renew_deadline=args.lease_seconds * 2 / 3,
            retry_seconds=args.lease_seconds * 2 / 15,
        )
    runtime = Runtime(
        settings, policy=policy, fence=election.time_left if election is not None else None
    )
    controller = Controller(runtime, api, workers=args.workers, election=election)
    paths = PathController(runtime, api, leading=controller.leading)
    if args.metrics_port is not None:
        runtime.metrics.serve(args.metrics_port)
    try:
        kopf.run(
            standalone=True,  # replicas stand by through the Lease, not Kopf's peering
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(
                runtime=runtime,
                controller=controller,
                path_controller=paths,
                namespaces=tuple(args.namespace),
            ),
        )
    finally:
        runtime.close()
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
