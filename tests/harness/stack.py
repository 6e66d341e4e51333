"""The whole local stack: control plane, Keycloak, the simulator and Prometheus."""

from __future__ import annotations

from dataclasses import dataclass

from tests.harness.controlplane import ControlPlane, plan_control_plane, start_control_plane
from tests.harness.keycloak import Keycloak, launch_keycloak
from tests.harness.processes import stop_all, sweep_stale_temp_dirs
from tests.harness.prometheus import Prometheus, ScrapeTarget, start_prometheus
from tests.harness.simulator import Simulator, start_simulator


@dataclass
class Stack:
    """Every server the end-to-end tests and the demo need, running."""

    control_plane: ControlPlane
    keycloak: Keycloak
    simulator: Simulator
    # Scrapes the simulator's executor metrics every second (see `tests.simulator.traffic`).
    prometheus: Prometheus

    def stop(self) -> None:
        """Stop everything, newest first."""
        self.prometheus.stop()
        self.simulator.stop()
        self.keycloak.stop()
        self.control_plane.stop()


def start_stack() -> Stack:
    """Build what is missing, start all servers, and return once all are ready."""
    sweep_stale_temp_dirs()
    try:
        # Keycloak's JVM boots slowest, so the rest starts while it does. It trusts
        # the apiserver's ServiceAccount tokens, so the apiserver's URL and CA come first.
        plan = plan_control_plane()
        keycloak = launch_keycloak(kubernetes_issuer=plan.url, trusted_ca=plan.ca.cert_path)
        control_plane = start_control_plane(plan)
        simulator = start_simulator(keycloak.issuer)
        prometheus = start_prometheus([ScrapeTarget(simulator.url, simulator.ca_file)])
        keycloak.wait_ready()
    except BaseException:
        stop_all()
        raise
    return Stack(control_plane, keycloak, simulator, prometheus)
