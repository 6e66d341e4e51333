"""Fixtures for the operator's end-to-end tests: a namespace, the CRD, the operator."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from seldon_deploy_sdk import ApiClient, Configuration, SeldonDeploymentsApi

from tests.harness.argocd import ArgoCD, start_argocd
from tests.harness.controlplane import ControlPlane
from tests.harness.keycloak import DATA_SCIENTIST, Keycloak
from tests.harness.mlflow import MlflowServer, launch_mlflow
from tests.harness.operator_process import (
    OperatorProcess,
    install_crds,
    password_credentials,
    start_operator,
)
from tests.harness.promotions import Promotions
from tests.harness.rbac import install_cluster_wide
from tests.harness.secrets import assert_no_secrets
from tests.harness.simulator import Simulator
from tests.harness.stack import Stack
from tests.harness.toxiproxy import StackProxies, proxy_stack, start_toxiproxy
from tests.simulator.testing import deployment_body

# Groups of the realm, with the rights the tests give them in Seldon Deploy.
WRITERS = {"data-scientists": ["read", "write"], "promotion-operators": ["read", "write"]}

StartOperator = Callable[..., OperatorProcess]


@pytest.fixture(scope="session")
def crds(stack: Stack) -> None:
    """The ModelPromotion CRD, installed once."""
    install_crds(stack.control_plane)


@pytest.fixture(scope="session")
def argocd(stack: Stack, crds: None) -> Iterator[ArgoCD]:
    """A real Argo CD (repo server, application controller, Redis) and the git server it
    syncs from, started once, only when an Argo CD test is selected."""
    running = start_argocd(stack.control_plane)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def mlflow_launched() -> Iterator[MlflowServer]:
    """A real MLflow tracking server with its Model Registry, launched once, only when a
    registry test is selected. Test modules that use it name it in ``usefixtures``, so
    it is launched before the stack and starts while Keycloak does."""
    server = launch_mlflow()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow(mlflow_launched: MlflowServer, stack: Stack) -> MlflowServer:
    """The MLflow server of :func:`mlflow_launched`, once it answers."""
    mlflow_launched.wait_ready()
    return mlflow_launched


@pytest.fixture(scope="session")
def mlflow_basic_auth_launched() -> Iterator[MlflowServer]:
    """A second MLflow server, running MLflow's basic-auth app (it checks every call's
    user name and password), launched once, only when a registry sign-in test is
    selected; named in ``usefixtures`` like :func:`mlflow_launched`."""
    server = launch_mlflow(auth="basic")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_basic_auth(mlflow_basic_auth_launched: MlflowServer, stack: Stack) -> MlflowServer:
    """The basic-auth MLflow server, once it answers and has the operator's user."""
    mlflow_basic_auth_launched.wait_ready()
    return mlflow_basic_auth_launched


@pytest.fixture(scope="session")
def mlflow_bearer_token_launched() -> Iterator[MlflowServer]:
    """A third MLflow server: MLflow's authentication app whose configured
    ``authorization_function`` takes bearer tokens only (the harness's, in
    ``tests/harness/mlflow_plugin/``), launched once, only when a registry test is
    selected; named in ``usefixtures`` like :func:`mlflow_launched`."""
    server = launch_mlflow(auth="bearer")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_bearer_token(mlflow_bearer_token_launched: MlflowServer, stack: Stack) -> MlflowServer:
    """The bearer-token MLflow server, once it answers and has the operator's user."""
    mlflow_bearer_token_launched.wait_ready()
    return mlflow_bearer_token_launched


@pytest.fixture(scope="session")
def fault_proxies(stack: Stack) -> Iterator[StackProxies]:
    """Toxiproxy with one proxy in front of each server, started once, only when a
    network-fault test is selected."""
    toxiproxy = start_toxiproxy()
    try:
        yield proxy_stack(toxiproxy, stack)
    finally:
        toxiproxy.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane, crds: None) -> Iterator[str]:
    """A fresh Kubernetes namespace for this test's ModelPromotions."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def promotions(control_plane: ControlPlane, namespace: str) -> Promotions:
    """ModelPromotions in this test's namespace."""
    return Promotions(control_plane, namespace)


def prepare_seldon(simulator: Simulator) -> Simulator:
    """Give a reset simulator `staging` and `production` writable by the test
    identities and a fast rollout; the source `staging/iris` exists and is Available."""
    control = simulator.control
    control.add_namespace("staging", groups=WRITERS)
    control.add_namespace("production", groups=WRITERS)
    control.set_delays(rollout_seconds=1.0, gitops_sync_seconds=2.0)
    control.seed_deployment("staging", deployment_body("iris", image="seldonio/sklearn-iris:1.4"))
    control.clear_requests_log()
    return simulator


@pytest.fixture
def seldon(simulator: Simulator) -> Simulator:
    """The session simulator, reset and prepared (see :func:`prepare_seldon`)."""
    return prepare_seldon(simulator)


@pytest.fixture(scope="session")
def operator_kubeconfig(
    control_plane: ControlPlane, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The ServiceAccount of ``manifests/`` with exactly its ClusterRole: what the
    operator runs as in every end-to-end test, so a missing permission fails them."""
    path = tmp_path_factory.mktemp("identity") / "operator.kubeconfig"
    return install_cluster_wide(control_plane, path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test, so fixtures can tell whether it failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    item.stash.setdefault(REPORTS, {})[report.when] = report


REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
#: Lines of each operator's output shown when a test fails.
LOG_TAIL_LINES = 150
#: Entries of the simulator's request log shown when a test fails.
SIMULATOR_TAIL_REQUESTS = 60


@pytest.fixture
def operator_factory(
    request: pytest.FixtureRequest, stack: Stack, namespace: str, operator_kubeconfig: Path
) -> Iterator[StartOperator]:
    """Starts operators watching this test's namespace; stops them afterwards. When the
    test failed, the end of each operator's output and of the simulator's request log go
    to the terminal (the resource's status alone does not say why a run stood still)."""
    started: list[OperatorProcess] = []

    def start(credentials: Mapping[str, str] | None = None, **kwargs: Any) -> OperatorProcess:
        kwargs.setdefault("kubeconfig", operator_kubeconfig)
        kwargs.setdefault("namespaces", (namespace,))
        process = start_operator(
            stack.control_plane,
            stack.simulator,
            credentials or password_credentials(stack.keycloak),
            **kwargs,
        )
        started.append(process)
        return process

    yield start
    logs = "".join(process.log() for process in started)
    for process in started:
        process.stop()
    # Every run of every test is scanned: no secret or token in what the operator
    # printed, nor in the Events and statuses of this test's namespace.
    captured = {
        "operator output": logs,
        "events and status": stack.control_plane.kubectl(
            "get", "events,modelpromotions", "-n", namespace, "-o", "json"
        ).stdout,
    }
    assert_no_secrets(captured)
    call = request.node.stash.get(REPORTS, {}).get("call")
    if call is not None and call.failed and sys.__stderr__ is not None:
        tail = "\n".join(logs.splitlines()[-LOG_TAIL_LINES:])
        sys.__stderr__.write(f"\n--- the operator's output, last lines ({request.node.nodeid})\n")
        sys.__stderr__.write(f"{tail}\n---\n")
        sys.__stderr__.write(f"--- the simulator, last lines ({request.node.nodeid})\n")
        sys.__stderr__.write(f"{_simulator_tail(stack.simulator)}\n---\n")


def _simulator_tail(simulator: Simulator) -> str:
    """The end of the simulator's request log (what the operator called, and what it
    answered) and of its own output: with the operator's lines, why a run stood still."""
    try:
        entries = simulator.control.requests_log()[-SIMULATOR_TAIL_REQUESTS:]
    except Exception as error:  # a failing test may have stopped it; say so, go on
        requests_seen = f"(request log unreadable: {error})"
    else:
        requests_seen = "\n".join(
            f"{e['time']} {e['method']} {e['path']} -> {e['status']}"
            + (f" (fault {e['fault']})" if e["fault"] else "")
            + (f" as {e['user']}" if e["user"] else "")
            for e in entries
        )
    return f"{requests_seen}\n{simulator.process.log_tail(20)}"


@pytest.fixture
def operator(operator_factory: StartOperator) -> OperatorProcess:
    """One operator with the password grant, watching this test's namespace."""
    return operator_factory()


@pytest.fixture
def sdk(simulator: Simulator, keycloak: Keycloak) -> SeldonDeploymentsApi:
    """The official SDK, signed in as the data scientist (to read what the operator wrote)."""
    config = Configuration()
    config.host = simulator.api_url
    config.id_token = keycloak.password_grant(DATA_SCIENTIST)["id_token"]
    return SeldonDeploymentsApi(ApiClient(config))
