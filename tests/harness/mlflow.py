"""A real MLflow tracking server (with its Model Registry) on loopback.

MLflow is a test dependency only, and a heavy one (pandas, scikit-learn, SQLAlchemy,
...): it lives in a virtual environment of its own in the harness cache
(``mlflow-<version>/``), made once with pip from the package index, like the other
servers' cached builds. The project's own venv stays small, so ``make lint`` and
``make unit`` never wait for it, and the operator never sees it.

The server runs on a free port of 127.0.0.1 with a SQLite backend store and a local
artifact root in a temporary directory (swept like the others). Tests register
models, versions, aliases and tags through MLflow's own client, run in that venv
(:meth:`MlflowServer.client`), and read back the tags the operator writes.
It can be stopped and started again on the same port and data (a registry that is down).

:func:`launch_mlflow` with ``basic_auth=True`` starts MLflow's own authentication app
instead (``mlflow server --app-name basic-auth``), which checks every call's user name
and password against its user store: an admin, whose credentials the harness's client
calls carry, and a user the operator signs in as. That app needs the ``mlflow[auth]``
extra (Flask-WTF), kept beside the venv (:func:`mlflow_auth_packages`).

With ``auth="bearer"`` it starts that same app with another way of signing in,
through MLflow's own extension point: the config's ``authorization_function`` names
the function of ``mlflow_plugin/mlflow_token_auth.py``, which takes a bearer token
(fresh random ones, one for the admin and one for the operator's user, in a file of
the server's temporary directory) and answers 401 to anything else. The app's user
store and its permission checks stay MLflow's own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import requests

from tests.harness.build_lock import build_lock
from tests.harness.cache import cache_root
from tests.harness.ports import free_port
from tests.harness.processes import HarnessError, ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say

#: The MLflow pinned for the tests (its server and its client).
MLFLOW_VERSION = "3.17.2"
#: The ``mlflow[auth]`` extra that the basic-auth app imports (Flask-WTF, for the CSRF
#: check of its sign-up page), pinned with its one dependency that MLflow lacks; its
#: others (Flask, itsdangerous, MarkupSafe) are MLflow's own.
AUTH_REQUIREMENTS = ("Flask-WTF==1.3.0", "WTForms==3.3.2")
#: The user the operator signs in as on the basic-auth server.
OPERATOR_USER = "promotion-operator"
_ADMIN = "admin"
#: How a server signs its callers in: not at all, with MLflow's basic-auth app, or with
#: that app and the bearer-token function of ``mlflow_plugin/``.
Authentication = Literal["none", "basic", "bearer"]
#: The directory put on a bearer-token server's ``PYTHONPATH``: the function only (a
#: directory of the harness's modules there would shadow the standard library's
#: ``secrets`` with the harness's own).
_PLUGIN_DIRECTORY = Path(__file__).with_name("mlflow_plugin")
_BEARER_TOKEN_FUNCTION = "mlflow_token_auth:authenticate_request_bearer_token"
#: The variable the function reads the tokens file's path from (mlflow_token_auth.py).
_TOKENS_FILE_VARIABLE = "SPO_MLFLOW_BEARER_TOKENS_FILE"
_START_TIMEOUT = 180.0
_INSTALL_TIMEOUT = 1800.0

# Run in the MLflow venv: one call of MLflow's client, named in argv, on the server in
# MLFLOW_TRACKING_URI; prints the answer as JSON.
_CLIENT_SCRIPT = """
import json, sys
from mlflow import MlflowClient
call, args = sys.argv[1], json.loads(sys.argv[2])
client = MlflowClient()
if call == "register":
    try:
        client.create_registered_model(args["name"])
    except Exception as error:
        if "RESOURCE_ALREADY_EXISTS" not in str(error):
            raise
    found = client.create_model_version(args["name"], args["source"], run_id=args.get("run_id"))
    print(json.dumps({"version": found.version}))
elif call == "set_alias":
    client.set_registered_model_alias(args["name"], args["alias"], args["version"])
    print("{}")
elif call == "delete_version":
    client.delete_model_version(args["name"], args["version"])
    print("{}")
elif call == "tags":
    found = client.get_model_version(args["name"], args["version"])
    print(json.dumps(dict(found.tags)))
elif call == "aliases":
    found = client.get_registered_model(args["name"])
    print(json.dumps(dict(found.aliases)))
else:
    raise SystemExit("unknown call " + call)
"""


def mlflow_venv() -> Path:
    """The venv holding MLflow, made once in the harness cache (pip, a few minutes)."""
    with build_lock("mlflow"):
        return _mlflow_venv()


def _mlflow_venv() -> Path:
    final = cache_root() / f"mlflow-{MLFLOW_VERSION}"
    python = final / "bin" / "python"
    if python.exists():
        return final
    building = final.with_name(final.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    say(f"installing MLflow {MLFLOW_VERSION} into {final} (once; a few minutes)")
    started = time.monotonic()
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, cwd="/", env=env)
    subprocess.run(
        [
            str(building / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"mlflow=={MLFLOW_VERSION}",
        ],
        check=True,
        cwd="/",
        env=env,
        timeout=_INSTALL_TIMEOUT,
    )
    building.rename(final)
    say(f"MLflow installed in {time.monotonic() - started:.0f}s")
    return final


def mlflow_auth_packages() -> Path:
    """The basic-auth app's extra packages, installed once with pip into a directory
    beside the venv (without dependencies: MLflow's venv holds them). Its name carries
    MLflow's version and a digest of :data:`AUTH_REQUIREMENTS`, so changing a pin
    installs anew. Only the basic-auth server has it on its ``PYTHONPATH``: the venv
    itself stays exactly MLflow's install, shared with the plain server."""
    digest = hashlib.sha256("\n".join(AUTH_REQUIREMENTS).encode()).hexdigest()[:12]
    final = cache_root() / f"mlflow-{MLFLOW_VERSION}-auth-{digest}"
    if final.is_dir():
        return final
    building = final.with_name(final.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    say(f"installing {', '.join(AUTH_REQUIREMENTS)} into {final} (once)")
    subprocess.run(
        [
            str(mlflow_venv() / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(building),
            *AUTH_REQUIREMENTS,
        ],
        check=True,
        cwd="/",
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        timeout=_INSTALL_TIMEOUT,
    )
    building.rename(final)
    return final


@dataclass(frozen=True)
class BasicAuthUsers:
    """The users of a basic-auth server: the admin, whom the harness's client calls
    sign in as (it registers models), and the user the operator signs in as."""

    admin_password: str
    operator_password: str
    operator_user: str = OPERATOR_USER
    admin: str = _ADMIN


@dataclass(frozen=True)
class BearerTokens:
    """The tokens of a bearer-token server, each standing for a user of its store: the
    admin's, which the harness's client calls send, and the operator's user's."""

    admin_token: str = field(repr=False)
    operator_token: str = field(repr=False)


@dataclass(frozen=True)
class AdminSignIn:
    """How the harness signs in as a server's admin: the environment of MLflow's client
    (a tracking user name and password, or a token) and the header of a direct call."""

    client_env: Mapping[str, str] = field(repr=False)
    authorization: str = field(repr=False)


@dataclass
class MlflowServer:
    """A running MLflow tracking server and how to reach it."""

    url: str
    venv: Path
    workdir: Path
    process: ManagedProcess
    launched: float = 0.0  # time.monotonic() when its process started
    #: The user store's users, on a server that signs callers in (basic or bearer).
    users: BasicAuthUsers | None = None
    #: Set on a bearer-token server (``launch_mlflow(auth="bearer")``).
    tokens: BearerTokens | None = None
    #: How the harness signs in as the admin; ``None`` on a server without sign-in.
    admin: AdminSignIn | None = None

    def wait_ready(self) -> None:
        """Return once the server answers ``/health``."""

        def ready() -> bool:
            try:
                return requests.get(f"{self.url}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        self.process.wait_until(ready, _START_TIMEOUT, "/health answered")
        say(f"MLflow ready {time.monotonic() - self.launched:.1f}s after its start")
        if self.users is not None and self.admin is not None:
            self._create_operator_user(self.users, self.admin)

    def _create_operator_user(self, users: BasicAuthUsers, admin: AdminSignIn) -> None:
        """The operator's user, made by the admin (once: the store outlives a restart)."""
        answer = requests.post(
            f"{self.url}/api/2.0/mlflow/users/create",
            json={"username": users.operator_user, "password": users.operator_password},
            headers={"Authorization": admin.authorization},
            timeout=30,
        )
        if answer.status_code != 200 and "RESOURCE_ALREADY_EXISTS" not in answer.text:
            raise HarnessError(
                f"MLflow: creating user {users.operator_user} answered HTTP "
                f"{answer.status_code}: {answer.text[:500]}"
            )

    def client(self, call: str, **args: Any) -> Any:
        """One call of MLflow's own client (``register``, ``set_alias``,
        ``delete_version``, ``tags``, ``aliases``), its answer as JSON."""
        env = {**os.environ, "PYTHONSAFEPATH": "1", "MLFLOW_TRACKING_URI": self.url}
        if self.admin is not None:  # MLflow's client signs in with these
            env.update(self.admin.client_env)
        done = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", _CLIENT_SCRIPT, call, json.dumps(args)],
            capture_output=True,
            text=True,
            cwd="/",
            env=env,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(f"MLflow client {call} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def register(self, model: str, source: str, run_id: str | None = None) -> str:
        """A new version of ``model`` (created if need be) with files at ``source``."""
        return str(self.client("register", name=model, source=source, run_id=run_id)["version"])

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self.client("set_alias", name=model, alias=alias, version=version)

    def delete_version(self, model: str, version: str) -> None:
        self.client("delete_version", name=model, version=version)

    def tags(self, model: str, version: str) -> dict[str, str]:
        return dict(self.client("tags", name=model, version=version))

    def aliases(self, model: str) -> dict[str, str]:
        return dict(self.client("aliases", name=model))

    def stop_server(self) -> None:
        """Stop the server and keep its data (a registry that is down)."""
        self.process.stop()

    def start_server(self) -> None:
        """Start a stopped server again on the same port and data; wait until ready."""
        self.process.restart()
        self.launched = time.monotonic()
        self.wait_ready()

    def stop(self) -> None:
        self.process.stop()
        remove_temp_dir(self.workdir)


def start_mlflow(*, auth: Authentication = "none") -> MlflowServer:
    """Install (once) and start an MLflow tracking server; return once it answers."""
    server = launch_mlflow(auth=auth)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@dataclass(frozen=True)
class _SignIn:
    """What a way of signing in adds to a server's launch."""

    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    app: tuple[str, ...] = ()
    users: BasicAuthUsers | None = None
    tokens: BearerTokens | None = None
    admin: AdminSignIn | None = None


def launch_mlflow(*, auth: Authentication = "none") -> MlflowServer:
    """Install (once) and start an MLflow tracking server without waiting for it (its
    start-up, mostly database migrations, then overlaps other servers'):
    :meth:`MlflowServer.wait_ready` waits. With ``auth="basic"``, MLflow's basic-auth
    app, with fresh random passwords (:attr:`MlflowServer.users`); with
    ``auth="bearer"``, that app taking fresh random bearer tokens only
    (:attr:`MlflowServer.tokens`)."""
    venv = mlflow_venv()
    workdir = make_temp_dir("mlflow" if auth == "none" else f"mlflow-{auth}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sign_in = _SIGN_INS[auth](workdir)
    say(f"starting MLflow {MLFLOW_VERSION} on {url}" + ("" if auth == "none" else f" ({auth})"))
    started = time.monotonic()
    process = ManagedProcess(
        "mlflow",
        [
            # Not bin/mlflow: its shebang names the venv's build directory.
            str(venv / "bin" / "python"),
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--default-artifact-root",
            str(workdir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            *sign_in.app,
        ],
        workdir / "mlflow.log",
        env={"PYTHONSAFEPATH": "1", **sign_in.env},
        cwd=workdir,
    )
    return MlflowServer(
        url, venv, workdir, process, started, sign_in.users, sign_in.tokens, sign_in.admin
    )


def _no_sign_in(workdir: Path) -> _SignIn:
    """The plain server: every call is anonymous."""
    return _SignIn()


def _basic_auth(workdir: Path) -> _SignIn:
    """MLflow's basic-auth app checking user names and passwords, its own function."""
    users = BasicAuthUsers(secrets.token_hex(16), secrets.token_hex(16))
    pair = base64.b64encode(f"{users.admin}:{users.admin_password}".encode()).decode()
    return _SignIn(
        env=_auth_app_env(workdir, users, "mlflow.server.auth:authenticate_request_basic_auth"),
        app=("--app-name", "basic-auth"),
        users=users,
        admin=AdminSignIn(
            {
                "MLFLOW_TRACKING_USERNAME": users.admin,
                "MLFLOW_TRACKING_PASSWORD": users.admin_password,
            },
            f"Basic {pair}",
        ),
    )


def _bearer_token(workdir: Path) -> _SignIn:
    """MLflow's basic-auth app whose ``authorization_function`` takes bearer tokens
    only (``mlflow_plugin/mlflow_token_auth.py``). The store's users still have
    passwords (the app makes its admin with one, and ``users/create`` wants one), which
    this server refuses: only their tokens sign in."""
    users = BasicAuthUsers(secrets.token_hex(16), secrets.token_hex(16))
    tokens = BearerTokens(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
    tokens_file = workdir / "bearer_tokens.json"
    tokens_file.touch(mode=0o600)
    tokens_file.write_text(
        json.dumps({tokens.admin_token: users.admin, tokens.operator_token: users.operator_user})
    )
    env = dict(_auth_app_env(workdir, users, _BEARER_TOKEN_FUNCTION))
    env["PYTHONPATH"] += os.pathsep + str(_PLUGIN_DIRECTORY)
    env[_TOKENS_FILE_VARIABLE] = str(tokens_file)
    return _SignIn(
        env=env,
        app=("--app-name", "basic-auth"),
        users=users,
        tokens=tokens,
        admin=AdminSignIn(
            {"MLFLOW_TRACKING_TOKEN": tokens.admin_token}, f"Bearer {tokens.admin_token}"
        ),
    )


_SIGN_INS: dict[Authentication, Callable[[Path], _SignIn]] = {
    "none": _no_sign_in,
    "basic": _basic_auth,
    "bearer": _bearer_token,
}


def _auth_app_env(
    workdir: Path, users: BasicAuthUsers, authorization_function: str
) -> dict[str, str]:
    """The environment of MLflow's authentication app: its config file (the user store
    in ``workdir``; the admin made at its first start; the function that signs each
    request in), the CSRF key it refuses to start without, and the auth extra on its
    path."""
    config = workdir / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        # Every signed-in user may read and tag every model: the operator's user needs
        # no grant per model (a real install grants it EDIT on the models it promotes).
        "default_permission = EDIT\n"
        f"database_uri = sqlite:///{workdir / 'basic_auth.db'}\n"
        f"admin_username = {users.admin}\n"
        f"admin_password = {users.admin_password}\n"
        f"authorization_function = {authorization_function}\n"
    )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "PYTHONPATH": str(mlflow_auth_packages()),
    }
