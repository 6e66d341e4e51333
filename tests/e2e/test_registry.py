"""A ModelPromotion whose new version comes from a real MLflow Model Registry: by
version number or by alias, written into the existing target; the outcome written
back to the version; a registry failure ends the run with its reason and writes
nothing to the target. The sign-in is checked against MLflow's own basic-auth app:
the right user name and password read and write back, wrong credentials end the run
``AuthenticationFailed``, and no password is ever shown. The bearer token is checked
against that app configured with an ``authorization_function`` that takes tokens
(MLflow's extension point, run by the real server): the right token reads and writes
back, a wrong one (or a password) ends the run ``AuthenticationFailed``, and no token
is ever shown."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StartOperator
from tests.harness.controlplane import ControlPlane
from tests.harness.mlflow import OPERATOR_USER, BasicAuthUsers, BearerTokens, MlflowServer
from tests.harness.operator_process import OperatorProcess, write_credentials
from tests.harness.ports import free_port
from tests.harness.promotions import Promotions, explain, refusal
from tests.harness.secrets import SECRETS, assert_no_secrets
from tests.harness.seldon_log import writes
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

# The MLflow servers are launched first, so they start while the stack's Keycloak does.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.late_build("mlflow"),
    pytest.mark.usefixtures(
        "mlflow_launched", "mlflow_basic_auth_launched", "mlflow_bearer_token_launched"
    ),
]

ENDED = {"Succeeded", "Failed", "RolledBack"}
TOKEN = f"mlflow-token-{uuid.uuid4().hex}"
WRONG_PASSWORD = f"wrong-password-{uuid.uuid4().hex}"
WRONG_TOKEN = f"wrong-token-{uuid.uuid4().hex}"
#: Long enough for several polls of a followed alias at pollInterval 1s.
POLLS_SECONDS = 5.0


def registry_spec(model: str, **registry: Any) -> dict[str, Any]:
    return {
        "source": {"registry": {"model": model, **registry}},
        "target": {"namespace": "production", "name": "iris"},
        "verification": {"timeout": "1m"},
    }


def uri(model: str, version: int) -> str:
    return f"s3://models/{model}/{version}"


@pytest.fixture
def target(seldon: Simulator) -> Simulator:
    """The existing target, production/iris, whose model the registry version replaces."""
    seldon.control.seed_deployment("production", deployment_body("iris"))
    seldon.control.clear_requests_log()
    return seldon


@pytest.fixture
def model(mlflow: MlflowServer) -> str:
    """A registered model of this test's own, with versions 1 and 2."""
    name = f"iris-{uuid.uuid4().hex[:8]}"
    for version in (1, 2):
        mlflow.register(name, uri(name, version), run_id=None)
    return name


@pytest.fixture
def registry_operator(
    mlflow: MlflowServer, operator_factory: StartOperator, tmp_path: Path
) -> OperatorProcess:
    """An operator reading the registry with a bearer token from a file (the plain
    MLflow server accepts any; the token must still never be shown)."""
    token_file = tmp_path / "mlflow-token"
    token_file.write_text(TOKEN)
    return operator_factory(
        extra_env={"MLFLOW_TRACKING_URI": mlflow.url, "MLFLOW_TOKEN_FILE": str(token_file)}
    )


def model_uri(seldon: Simulator) -> Any:
    deployment = seldon.control.get_deployment("production", "iris")
    assert deployment is not None
    return deployment["spec"]["predictors"][0]["graph"].get("modelUri")


def test_a_version_number_is_promoted_into_the_target(
    target: Simulator, mlflow: MlflowServer, model: str, registry_operator: OperatorProcess,
    promotions: Promotions,
) -> None:  # fmt: skip
    promotions.apply("iris", registry_spec(model, version="2"))

    status = promotions.wait_for_phase("iris", ENDED)

    assert status["phase"] == "Succeeded"
    assert model_uri(target) == uri(model, 2)
    assert status["modelVersion"] == {
        "registeredModel": model,
        "version": "2",
        "storageUri": uri(model, 2),
    }
    assert status["history"][0]["modelVersion"]["version"] == "2"
    assert status["source"] == f"MLflow model {model}/2"


def test_an_alias_is_promoted_and_the_production_alias_set(
    target: Simulator, mlflow: MlflowServer, model: str, registry_operator: OperatorProcess,
    promotions: Promotions,
) -> None:  # fmt: skip
    mlflow.set_alias(model, "champion", "1")
    promotions.apply(
        "iris", registry_spec(model, alias="champion", writeBack={"alias": "production"})
    )

    status = promotions.wait_for_phase("iris", ENDED)

    assert status["phase"] == "Succeeded"
    assert model_uri(target) == uri(model, 1)
    assert status["modelVersion"]["alias"] == "champion"
    assert str(mlflow.aliases(model)["production"]) == "1"


def test_the_versions_tags_show_the_outcome(
    target: Simulator, mlflow: MlflowServer, model: str, registry_operator: OperatorProcess,
    promotions: Promotions,
) -> None:  # fmt: skip
    promotions.apply("iris", registry_spec(model, version="1"))
    promotions.wait_for_phase("iris", {"Succeeded"})

    tags = wait_for_tags(mlflow, model, "1")

    tag = json.loads(tags["deploy.mlops.dev/production/iris"])
    assert tag["outcome"] == "Succeeded"
    assert tag["promotion"] == f"{promotions.namespace}/iris run 1"
    assert tag["at"]


def test_a_rolled_back_version_is_tagged_rolled_back(
    target: Simulator, mlflow: MlflowServer, model: str, registry_operator: OperatorProcess,
    promotions: Promotions,
) -> None:  # fmt: skip
    target.control.mark_failing("production", "iris", spec_contains=uri(model, 2))
    promotions.apply("iris", registry_spec(model, version="2"))

    status = promotions.wait_for_phase("iris", ENDED)

    assert status["phase"] == "RolledBack"
    tags = wait_for_tags(mlflow, model, "2")
    assert json.loads(tags["deploy.mlops.dev/production/iris"])["outcome"] == "RolledBack"
    assert model_uri(target) is None  # the target's model as it was before


def test_a_followed_alias_that_moves_starts_exactly_one_new_run(
    target: Simulator, mlflow: MlflowServer, model: str, registry_operator: OperatorProcess,
    promotions: Promotions,
) -> None:  # fmt: skip
    mlflow.set_alias(model, "champion", "1")
    promotions.apply("iris", registry_spec(model, alias="champion", follow=True, pollInterval="1s"))
    promotions.wait_for_phase("iris", {"Succeeded"})
    assert model_uri(target) == uri(model, 1)

    mlflow.set_alias(model, "champion", "2")
    moved = promotions.wait_for(
        "iris",
        lambda body: (
            (body.get("status") or {}).get("phase") == "Succeeded"
            and body["status"]["modelVersion"]["version"] == "2"
        ),
        "the run of version 2 succeeded",
    )
    time.sleep(POLLS_SECONDS)  # several more polls of the alias, which stays on 2

    status = promotions.status("iris")
    assert model_uri(target) == uri(model, 2)
    assert moved["status"]["retry"] == status["retry"] == 1
    assert [e["modelVersion"]["version"] for e in status["history"]] == ["2", "1"]


def test_a_rolled_back_version_is_not_promoted_again_by_the_next_poll(
    target: Simulator, mlflow: MlflowServer, model: str, registry_operator: OperatorProcess,
    promotions: Promotions,
) -> None:  # fmt: skip
    target.control.mark_failing("production", "iris", spec_contains=uri(model, 2))
    mlflow.set_alias(model, "champion", "2")
    promotions.apply("iris", registry_spec(model, alias="champion", follow=True, pollInterval="1s"))
    promotions.wait_for_phase("iris", {"RolledBack"})
    writes_after_run = writes(target, "production")

    time.sleep(POLLS_SECONDS)  # several polls find the alias still on the rolled-back version

    status = promotions.status("iris")
    assert status["phase"] == "RolledBack"
    assert status["retry"] == 0
    assert len(status["history"]) == 1
    assert writes(target, "production") == writes_after_run


@pytest.mark.parametrize(
    ("registry", "reason"),
    [
        pytest.param({"alias": "no-such-alias"}, "ModelVersionNotFound", id="unknown-alias"),
        pytest.param({"version": "2"}, "ModelVersionNotFound", id="deleted-version"),
    ],
)
def test_a_version_the_registry_lacks_ends_the_run_and_writes_nothing(
    target: Simulator, mlflow: MlflowServer, model: str, registry_operator: OperatorProcess,
    promotions: Promotions, registry: dict[str, str], reason: str,
) -> None:  # fmt: skip
    mlflow.delete_version(model, "2")
    promotions.apply("iris", registry_spec(model, **registry))

    status = promotions.wait_for_phase("iris", ENDED)

    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == reason
    assert model in status["outcome"]["message"]
    assert writes(target, "production") == []


def test_a_registry_that_is_down_is_retried_then_ends_the_run_and_writes_nothing(
    target: Simulator, operator_factory: StartOperator, promotions: Promotions
) -> None:
    # Nothing listens on this port: every call is refused, as by a registry that is down.
    operator_factory(extra_env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    spec = registry_spec("iris", version="1")
    spec["verification"] = {"timeout": "15s"}
    promotions.apply("iris", spec)

    retrying = promotions.wait_for(
        "iris",
        lambda body: (body.get("status") or {}).get("lastError") is not None,
        "a registry error being retried",
    )
    status = promotions.wait_for_phase("iris", ENDED)

    assert retrying["status"]["lastError"]["reason"] == "RegistryUnavailable"
    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == "RegistryUnavailable"
    assert writes(target, "production") == []


def test_the_mlflow_token_never_shows_in_logs_events_or_status(
    target: Simulator, mlflow: MlflowServer, model: str, registry_operator: OperatorProcess,
    promotions: Promotions, control_plane: ControlPlane,
) -> None:  # fmt: skip
    promotions.apply("iris", registry_spec(model, alias="no-such-alias"))
    promotions.wait_for_phase("iris", ENDED)
    promotions.apply("iris-2", registry_spec(model, version="1"))
    promotions.wait_for_phase("iris-2", ENDED)

    captured = {
        "operator output": registry_operator.log(),
        "events and status": control_plane.kubectl(
            "get", "events,modelpromotions", "-n", promotions.namespace, "-o", "json"
        ).stdout,
    }
    assert_no_secrets(captured, {"MLflow token": TOKEN})


# --- Signing in to a server that checks it: MLflow's basic-auth app


@pytest.fixture
def users(mlflow_basic_auth: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> BasicAuthUsers:
    """The basic-auth server's users. Every password (and the wrong one), alone and
    as the header's base64 pair, and the token are registered for the operator
    fixture's scan of logs, Events and status (requested before ``operator_factory``,
    so still registered when it scans)."""
    found = mlflow_basic_auth.users
    assert found is not None
    for name, password in [("the MLflow password", found.operator_password),
                           ("the MLflow admin's password", found.admin_password),
                           ("a wrong MLflow password", WRONG_PASSWORD)]:  # fmt: skip
        pair = base64.b64encode(f"{found.operator_user}:{password}".encode()).decode()
        monkeypatch.setitem(SECRETS, name, password)
        monkeypatch.setitem(SECRETS, f"{name} (basic auth header)", pair)
    monkeypatch.setitem(SECRETS, "the MLflow token", TOKEN)  # sent where it is refused
    return found


@pytest.fixture
def auth_model(mlflow_basic_auth: MlflowServer) -> str:
    """A registered model of this test's own on the basic-auth server, version 1."""
    name = f"iris-{uuid.uuid4().hex[:8]}"
    mlflow_basic_auth.register(name, uri(name, 1), run_id=None)
    return name


def signed_in_operator(
    operator_factory: StartOperator, server: MlflowServer, tmp_path: Path, **files: str
) -> OperatorProcess:
    """An operator reading ``server`` with credentials from files laid out like the
    mounted Secret of the chart (keys ``username`` and ``password``, or ``token``)."""
    directory = write_credentials(tmp_path / "mlflow-credentials", files)
    variables = {"username": "MLFLOW_USERNAME_FILE", "password": "MLFLOW_PASSWORD_FILE",
                 "token": "MLFLOW_TOKEN_FILE"}  # fmt: skip
    return operator_factory(
        extra_env={"MLFLOW_TRACKING_URI": server.url}
        | {variables[key]: str(directory / key) for key in files}
    )


def test_with_the_right_password_the_run_succeeds_and_writes_back(
    target: Simulator, mlflow_basic_auth: MlflowServer, users: BasicAuthUsers,
    auth_model: str, operator_factory: StartOperator, promotions: Promotions, tmp_path: Path,
) -> None:  # fmt: skip
    signed_in_operator(operator_factory, mlflow_basic_auth, tmp_path,
                       username=users.operator_user, password=users.operator_password)  # fmt: skip
    mlflow_basic_auth.set_alias(auth_model, "champion", "1")
    promotions.apply(
        "iris", registry_spec(auth_model, alias="champion", writeBack={"alias": "production"})
    )

    status = promotions.wait_for_phase("iris", ENDED)

    assert status["phase"] == "Succeeded"
    assert model_uri(target) == uri(auth_model, 1)
    tags = wait_for_tags(mlflow_basic_auth, auth_model, "1")
    assert json.loads(tags["deploy.mlops.dev/production/iris"])["outcome"] == "Succeeded"
    assert str(mlflow_basic_auth.aliases(auth_model)["production"]) == "1"


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"username": OPERATOR_USER, "password": WRONG_PASSWORD}, id="wrong-password"),
        # The basic-auth app takes a user name and a password only: a bearer token is
        # refused like a wrong password (docs/contract.md, 6.9).
        pytest.param({"token": TOKEN}, id="bearer-token"),
    ],
)
def test_refused_credentials_end_the_run_authentication_failed_and_write_nothing(
    target: Simulator, mlflow_basic_auth: MlflowServer, users: BasicAuthUsers,
    auth_model: str, operator_factory: StartOperator, promotions: Promotions, tmp_path: Path,
    credentials: dict[str, str],
) -> None:  # fmt: skip
    signed_in_operator(operator_factory, mlflow_basic_auth, tmp_path, **credentials)
    spec = registry_spec(auth_model, version="1")
    spec["verification"] = {"timeout": "15s"}  # a short deadline for the retries
    promotions.apply("iris", spec)

    status = promotions.wait_for_phase("iris", ENDED)

    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == "AuthenticationFailed"
    message = status["outcome"]["message"]
    assert "HTTP 401" in message and "model-versions/get" in message, message
    assert writes(target, "production") == []
    assert mlflow_basic_auth.tags(auth_model, "1") == {}


def test_no_mlflow_password_shows_in_logs_events_or_status(
    target: Simulator, mlflow_basic_auth: MlflowServer, users: BasicAuthUsers,
    auth_model: str, operator_factory: StartOperator, promotions: Promotions,
    control_plane: ControlPlane, tmp_path: Path,
) -> None:  # fmt: skip
    operator = signed_in_operator(
        operator_factory, mlflow_basic_auth, tmp_path,
        username=users.operator_user, password=users.operator_password,
    )  # fmt: skip
    promotions.apply("iris", registry_spec(auth_model, alias="no-such-alias"))
    promotions.wait_for_phase("iris", ENDED)
    promotions.apply("iris-2", registry_spec(auth_model, version="1"))
    assert promotions.wait_for_phase("iris-2", ENDED)["phase"] == "Succeeded"

    captured = {
        "operator output": operator.log(),
        "events and status": control_plane.kubectl(
            "get", "events,modelpromotions", "-n", promotions.namespace, "-o", "json"
        ).stdout,
    }
    assert_no_secrets(captured)  # SECRETS holds the passwords (the users fixture)


# --- A bearer token, on a server that checks it: MLflow's authentication app with an
# authorization_function that takes tokens (tests/harness/mlflow_plugin/)


@pytest.fixture
def tokens(mlflow_bearer_token: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> BearerTokens:
    """The bearer-token server's tokens. Both, the wrong one, and the operator's user's
    password (sent where only a token is taken), alone and as its header's base64
    pair, are registered for the operator fixture's scan of logs, Events and status."""
    found, users = mlflow_bearer_token.tokens, mlflow_bearer_token.users
    assert found is not None and users is not None
    pair = base64.b64encode(f"{users.operator_user}:{users.operator_password}".encode()).decode()
    registered = {
        "the MLflow operator token": found.operator_token,
        "the MLflow admin token": found.admin_token,
        "a wrong MLflow token": WRONG_TOKEN,
        "the token server's operator password": users.operator_password,
        "the token server's operator password (basic auth header)": pair,
    }
    for name, secret in registered.items():
        monkeypatch.setitem(SECRETS, name, secret)
    return found


@pytest.fixture
def token_model(mlflow_bearer_token: MlflowServer) -> str:
    """A registered model of this test's own on the bearer-token server, version 1."""
    name = f"iris-{uuid.uuid4().hex[:8]}"
    mlflow_bearer_token.register(name, uri(name, 1), run_id=None)
    return name


def test_with_the_right_token_the_run_succeeds_and_writes_back(
    target: Simulator, mlflow_bearer_token: MlflowServer, tokens: BearerTokens,
    token_model: str, operator_factory: StartOperator, promotions: Promotions, tmp_path: Path,
) -> None:  # fmt: skip
    signed_in_operator(operator_factory, mlflow_bearer_token, tmp_path, token=tokens.operator_token)
    mlflow_bearer_token.set_alias(token_model, "champion", "1")
    promotions.apply(
        "iris", registry_spec(token_model, alias="champion", writeBack={"alias": "production"})
    )

    status = promotions.wait_for_phase("iris", ENDED)

    assert status["phase"] == "Succeeded"
    assert model_uri(target) == uri(token_model, 1)
    tags = wait_for_tags(mlflow_bearer_token, token_model, "1")
    assert json.loads(tags["deploy.mlops.dev/production/iris"])["outcome"] == "Succeeded"
    assert str(mlflow_bearer_token.aliases(token_model)["production"]) == "1"


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param(lambda users: {"token": WRONG_TOKEN}, id="wrong-token"),
        # The user's right password, but this server takes tokens only.
        pytest.param(
            lambda users: {"username": users.operator_user, "password": users.operator_password},
            id="password-instead-of-token",
        ),
    ],
)
def test_a_refused_token_ends_the_run_authentication_failed_and_writes_nothing(
    target: Simulator, mlflow_bearer_token: MlflowServer, tokens: BearerTokens,
    token_model: str, operator_factory: StartOperator, promotions: Promotions, tmp_path: Path,
    credentials: Callable[[BasicAuthUsers], dict[str, str]],
) -> None:  # fmt: skip
    assert mlflow_bearer_token.users is not None
    sent = credentials(mlflow_bearer_token.users)
    signed_in_operator(operator_factory, mlflow_bearer_token, tmp_path, **sent)
    spec = registry_spec(token_model, version="1", writeBack={"alias": "production"})
    spec["verification"] = {"timeout": "15s"}  # a short deadline for the retries
    promotions.apply("iris", spec)

    status = promotions.wait_for_phase("iris", ENDED)

    assert status["phase"] == "Failed"
    assert status["outcome"]["reason"] == "AuthenticationFailed"
    message = status["outcome"]["message"]
    assert "HTTP 401" in message and "model-versions/get" in message, message
    assert writes(target, "production") == []
    assert mlflow_bearer_token.tags(token_model, "1") == {}
    assert mlflow_bearer_token.aliases(token_model) == {}


def test_no_checked_mlflow_token_shows_in_logs_events_or_status(
    target: Simulator, mlflow_bearer_token: MlflowServer, tokens: BearerTokens,
    token_model: str, operator_factory: StartOperator, promotions: Promotions,
    control_plane: ControlPlane, tmp_path: Path,
) -> None:  # fmt: skip
    operator = signed_in_operator(
        operator_factory, mlflow_bearer_token, tmp_path, token=tokens.operator_token
    )
    promotions.apply("iris", registry_spec(token_model, alias="no-such-alias"))
    promotions.wait_for_phase("iris", ENDED)
    promotions.apply("iris-2", registry_spec(token_model, version="1"))
    assert promotions.wait_for_phase("iris-2", ENDED)["phase"] == "Succeeded"

    captured = {
        "operator output": operator.log(),
        "events and status": control_plane.kubectl(
            "get", "events,modelpromotions", "-n", promotions.namespace, "-o", "json"
        ).stdout,
    }
    assert_no_secrets(captured)  # SECRETS holds the tokens (the tokens fixture)


def test_admission_refuses_both_an_alias_and_a_version(control_plane: ControlPlane) -> None:
    refused = refusal(control_plane, registry_spec("iris", alias="champion", version="2"))
    assert "spec.source.registry needs exactly one of alias and version" in refused


def test_admission_refuses_a_source_deployment_and_a_registry(
    control_plane: ControlPlane,
) -> None:
    spec = registry_spec("iris", version="2")
    spec["source"].update(namespace="staging", name="iris")
    refused = refusal(control_plane, spec)
    assert "spec.source.registry: " in refused
    assert "set either spec.source.namespace and name" in refused


def test_admission_refuses_a_pinned_source_generation_with_a_registry(
    control_plane: ControlPlane,
) -> None:
    spec = registry_spec("iris", version="2")
    spec["source"]["generation"] = 3
    refused = refusal(control_plane, spec)
    assert "spec.source.generation: " in refused
    assert "a registry source has none" in refused


def test_kubectl_explain_covers_the_registry_fields(control_plane: ControlPlane) -> None:
    explained = explain(control_plane, "modelpromotions.spec.source.registry")
    for field in ("alias", "version", "follow", "pollInterval", "writeBack", "node"):
        assert field in explained


def wait_for_tags(mlflow: MlflowServer, model: str, version: str) -> dict[str, str]:
    """The version's tags once the operator wrote its outcome (right after the run ends)."""
    return wait(lambda: mlflow.tags(model, version), lambda tags: bool(tags))


def wait(
    read: Callable[[], dict[str, str]], done: Callable[[dict[str, str]], bool]
) -> dict[str, str]:
    for _ in range(60):
        value = read()
        if done(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"not reached: {value}")
