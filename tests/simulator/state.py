"""Everything one simulator instance holds, in one object the handlers share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.simulator.auth import TokenVerifier
from tests.simulator.config import SimulatorConfig
from tests.simulator.faults import FaultInjector
from tests.simulator.gitops import GitLog
from tests.simulator.records import RequestLogEntry
from tests.simulator.store import Delays, Store
from tests.simulator.traffic import TrafficModel

# A long e2e run must not grow the log without bound; tests read recent requests.
MAX_LOGGED_REQUESTS = 10_000


def _store_for(config: SimulatorConfig) -> Store:
    return Store(
        default_delays=Delays(
            rollout_seconds=config.rollout_seconds,
            gitops_sync_seconds=config.gitops_sync_seconds,
        )
    )


@dataclass
class Simulator:
    """The shared state; handlers run on one event loop and never await mid-update."""

    config: SimulatorConfig
    verifier: TokenVerifier
    clock: Callable[[], float] = time.time
    store: Store = field(init=False)
    gitlog: GitLog = field(default_factory=GitLog)
    faults: FaultInjector = field(default_factory=FaultInjector)
    requests: list[RequestLogEntry] = field(default_factory=list)
    traffic: TrafficModel = field(default_factory=TrafficModel)

    def __post_init__(self) -> None:
        self.store = _store_for(self.config)

    def log_request(self, entry: RequestLogEntry) -> None:
        """Keep an API request in the log, dropping the oldest beyond the cap."""
        self.requests.append(entry)
        if len(self.requests) > MAX_LOGGED_REQUESTS:
            del self.requests[: len(self.requests) - MAX_LOGGED_REQUESTS]

    def reset(self) -> None:
        """Forget namespaces, deployments, commits, faults, marks, delays, traffic and the log.

        Cached signing keys survive: they belong to the identity provider, not to a test.
        """
        self.store = _store_for(self.config)
        self.gitlog = GitLog()
        self.faults.clear()
        self.faults.reseed(None)
        self.requests.clear()
        self.traffic.reset()
