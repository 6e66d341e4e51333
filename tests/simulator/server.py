"""The application factory and the process entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Sequence

from aiohttp import web

from tests.simulator import api, api_core_v2, control_api
from tests.simulator.app_keys import SIMULATOR
from tests.simulator.auth import TokenVerifier
from tests.simulator.config import MAX_LEEWAY_SECONDS, SimulatorConfig
from tests.simulator.middleware import api_middleware
from tests.simulator.state import Simulator

READY_PREFIX = "SIMULATOR READY"
METRICS_PATH = "/metrics"
# The text format Seldon Core's executor serves (promhttp without OpenMetrics).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def create_app(config: SimulatorConfig) -> web.Application:
    """Build the simulator as an aiohttp application (for in-process tests or `run`)."""
    app = web.Application(middlewares=[control_api.control_errors, api_middleware])
    verifier = TokenVerifier(config)
    app[SIMULATOR] = Simulator(config=config, verifier=verifier)
    api.add_routes(app)
    api_core_v2.add_routes(app)
    control_api.add_routes(app)
    app.router.add_get(METRICS_PATH, metrics)

    async def close_verifier(_: web.Application) -> None:
        await verifier.close()

    app.on_cleanup.append(close_verifier)
    return app


async def metrics(request: web.Request) -> web.Response:
    """The executor metrics of the synthetic traffic (see `traffic`), for Prometheus.

    Outside the API base: no token, no faults, not in the request log.
    """
    simulator = request.app[SIMULATOR]
    simulator.traffic.advance(simulator.store, simulator.clock())
    return web.Response(
        body=simulator.traffic.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE}
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the package docstring for what each flag means."""
    parser = argparse.ArgumentParser(prog="python -m tests.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--issuer", required=True, help="expected `iss` of tokens")
    parser.add_argument("--jwks-url", help="default: {issuer}/protocol/openid-connect/certs")
    parser.add_argument("--jwks-ca-file", help="CA bundle for an https JWKS endpoint")
    parser.add_argument(
        "--audience-check",
        default="off",
        help="'off' (default) or the audience a token's `aud` must contain",
    )
    parser.add_argument("--leeway", type=float, default=2.0, help=f"at most {MAX_LEEWAY_SECONDS}")
    parser.add_argument("--rollout-seconds", type=float, default=1.0)
    parser.add_argument("--gitops-sync-seconds", type=float, default=2.0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Turn parsed flags into a config."""
    audience = None if args.audience_check in ("off", "") else args.audience_check
    return SimulatorConfig(
        issuer=args.issuer,
        jwks_url=args.jwks_url,
        audience=audience,
        leeway_seconds=args.leeway,
        rollout_seconds=args.rollout_seconds,
        gitops_sync_seconds=args.gitops_sync_seconds,
        jwks_ca_file=args.jwks_ca_file,
    )


async def serve(args: argparse.Namespace) -> None:
    """Listen until SIGTERM/SIGINT; print the ready line once the socket is bound."""
    app = create_app(config_from_args(args))
    ssl_context: ssl.SSLContext | None = None
    if args.tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    # The harness waits for exactly this line; nothing else goes to stdout.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Ready only once a stop signal ends it cleanly (a SIGTERM right after this line).
    print(f"{READY_PREFIX} {scheme}://{args.host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _not_a_scrape(record: logging.LogRecord) -> bool:
    # Prometheus scrapes every second; their access-log lines would bury the rest.
    return f'"GET {METRICS_PATH} ' not in record.getMessage()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m tests.simulator` and `tests/simulator/run.py`."""
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").addFilter(_not_a_scrape)
    asyncio.run(serve(args))
