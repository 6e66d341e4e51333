"""The operator's settings: which Seldon Deploy instances it talks to, validated once at start.

The ``default`` instance comes from the environment:

==================================  ================================================
``SELDON_DEPLOY_URL``               API base, e.g.
                                    ``https://host/seldon-deploy/api/v1alpha1``
``SELDON_DEPLOY_CREDENTIALS_DIR``   mounted Secret (default
                                    ``/var/run/secrets/seldon-deploy``)
``SELDON_DEPLOY_VERIFY_TLS``        ``true``/``false`` (also ``1``/``0``,
                                    ``yes``/``no``); default true
``SELDON_DEPLOY_CA_FILE``           CA bundle for Seldon Deploy's TLS
``SELDON_DEPLOY_TOKEN``             ``id_token`` (default) or ``access_token``
``SELDON_DEPLOY_TIMEOUT``           seconds per HTTP call (default 10)
==================================  ================================================

More instances (for promotions across clusters) come from the YAML file named by
``PROMOTION_OPERATOR_SETTINGS_FILE``::

    instances:
      - name: prod                  # what a ModelPromotion's `instance` names
        url: https://prod.example.com/seldon-deploy/api/v1alpha1
        credentialsDir: /var/run/secrets/seldon-deploy-prod
        verifyTLS: true             # optional
        caFile: /etc/prod-ca/ca.crt # optional; relative paths are relative to the file
        token: id_token             # optional
        timeout: 10                 # optional

The file may define ``default`` only when ``SELDON_DEPLOY_URL`` is not set.

The Prometheus server that the Canary strategy's analysis steps query (one for
the operator, whichever Seldon Deploy instance a promotion uses):

=================================  =================================================
``PROMETHEUS_URL``                 server base URL, e.g.
                                   ``http://prometheus.monitoring:9090`` (the
                                   client adds ``/api/v1/query``); optional:
                                   without it a run with analysis steps fails
``PROMETHEUS_BEARER_TOKEN_FILE``   file holding a bearer token, read on every
                                   query (a rotated mounted Secret is picked up)
``PROMETHEUS_CA_FILE``             CA bundle for Prometheus' TLS
``PROMETHEUS_VERIFY_TLS``          ``true``/``false``; default true
``PROMETHEUS_TIMEOUT``             seconds per query (default 10)
=================================  =================================================

The MLflow Model Registry that registry sources (``spec.source.registry``) read, and
that the outcomes are written back to (one for the operator):

=================================  =================================================
``MLFLOW_TRACKING_URI``            the tracking server's base URL, e.g.
                                   ``https://mlflow.example.com`` (the client adds
                                   ``/api/2.0/mlflow/...``); optional: without it a
                                   run with a registry source fails
``MLFLOW_TOKEN_FILE``              file holding a bearer token (or)
``MLFLOW_USERNAME_FILE``,          files holding a user name and a password for
``MLFLOW_PASSWORD_FILE``           HTTP basic auth (both, and not with a token)
``MLFLOW_CA_FILE``                 CA bundle for the server's TLS
``MLFLOW_VERIFY_TLS``              ``true``/``false``; default true
``MLFLOW_TIMEOUT``                 seconds per call (default 10)
=================================  =================================================

The credential files are read on every call, so a rotated Secret is picked up.

Notifications on promotion events (see :mod:`promotion_operator.clients.notifications`) go to
webhook sinks, at most one of each kind. Their URLs carry tokens, so they come from
files in a mounted Secret, never from the environment itself:

=================================  =================================================
``NOTIFY_SLACK_URL_FILE``          file holding a Slack-compatible incoming-webhook
                                   URL (sink ``slack``)
``NOTIFY_CLOUDEVENTS_URL_FILE``    file holding the URL that CloudEvents 1.0 are
                                   POSTed to (sink ``cloudevents``)
=================================  =================================================

Each file holds one http(s) URL (query strings and ``user:password@`` are allowed:
the whole URL is a secret). It is checked at start-up and read again on every
delivery, so a rotated Secret is picked up without a restart.

:func:`load_settings` reports every problem at once, one line each, saying what to
fix; nothing read from a credentials, token or URL file ever appears in a message.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import yaml

from promotion_operator.config.credentials import ca_file_problem, read_credentials, url_problem
from promotion_operator.errors import SettingsError

logger = logging.getLogger(__name__)

TokenKind = Literal["id_token", "access_token"]
#: What a notification sink speaks: a Slack-compatible incoming webhook, or
#: CloudEvents 1.0 over HTTP (structured mode, JSON).
SinkKind = Literal["slack", "cloudevents"]

DEFAULT_INSTANCE = "default"
DEFAULT_CREDENTIALS_DIR = Path("/var/run/secrets/seldon-deploy")
DEFAULT_TIMEOUT = 10.0

ENV_URL = "SELDON_DEPLOY_URL"
ENV_CREDENTIALS_DIR = "SELDON_DEPLOY_CREDENTIALS_DIR"
ENV_VERIFY_TLS = "SELDON_DEPLOY_VERIFY_TLS"
ENV_CA_FILE = "SELDON_DEPLOY_CA_FILE"
ENV_TOKEN = "SELDON_DEPLOY_TOKEN"
ENV_TIMEOUT = "SELDON_DEPLOY_TIMEOUT"
ENV_SETTINGS_FILE = "PROMOTION_OPERATOR_SETTINGS_FILE"
ENV_PROMETHEUS_URL = "PROMETHEUS_URL"
ENV_PROMETHEUS_TOKEN_FILE = "PROMETHEUS_BEARER_TOKEN_FILE"
ENV_PROMETHEUS_CA_FILE = "PROMETHEUS_CA_FILE"
ENV_PROMETHEUS_VERIFY_TLS = "PROMETHEUS_VERIFY_TLS"
ENV_PROMETHEUS_TIMEOUT = "PROMETHEUS_TIMEOUT"
ENV_MLFLOW_URL = "MLFLOW_TRACKING_URI"
ENV_MLFLOW_TOKEN_FILE = "MLFLOW_TOKEN_FILE"
ENV_MLFLOW_USERNAME_FILE = "MLFLOW_USERNAME_FILE"
ENV_MLFLOW_PASSWORD_FILE = "MLFLOW_PASSWORD_FILE"
ENV_MLFLOW_CA_FILE = "MLFLOW_CA_FILE"
ENV_MLFLOW_VERIFY_TLS = "MLFLOW_VERIFY_TLS"
ENV_MLFLOW_TIMEOUT = "MLFLOW_TIMEOUT"
ENV_NOTIFY_SLACK_URL_FILE = "NOTIFY_SLACK_URL_FILE"
ENV_NOTIFY_CLOUDEVENTS_URL_FILE = "NOTIFY_CLOUDEVENTS_URL_FILE"

# Instance names are what a ModelPromotion's `instance` field holds: a DNS-1123 label.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_FILE_KEYS = frozenset({"name", "url", "credentialsDir", "verifyTLS", "caFile", "token", "timeout"})
# A Prometheus URL that already names the API (the client adds /api/v1/query itself).
_API_PATH = re.compile(r"/api/v1(/.*)?$")
# A bearer token is visible ASCII (JWTs and opaque tokens both are).
_TOKEN = re.compile(r"[\x21-\x7e]+")
# The sinks configurable from the environment, in delivery order: (name, kind, variable).
_NOTIFY_ENV: tuple[tuple[str, SinkKind, str], ...] = (
    ("slack", "slack", ENV_NOTIFY_SLACK_URL_FILE),
    ("cloudevents", "cloudevents", ENV_NOTIFY_CLOUDEVENTS_URL_FILE),
)


@dataclass(frozen=True)
class InstanceSettings:
    """One Seldon Deploy installation and the credentials profile used to call it."""

    name: str
    url: str
    credentials_dir: Path
    verify_tls: bool = True
    ca_file: Path | None = None
    token_kind: TokenKind = "id_token"
    request_timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class PrometheusSettings:
    """The Prometheus server the analysis steps query.

    Holds the token file's path only: the token itself is read on every query and
    never kept here, so no ``repr`` or log line of the settings can show it.
    """

    url: str
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    verify_tls: bool = True
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class MlflowSettings:
    """The MLflow tracking server whose Model Registry registry sources read.

    Holds the credential files' paths only: their content is read on every call and
    never kept here, so no ``repr`` or log line of the settings can show it.
    """

    url: str
    token_file: Path | None = None
    username_file: Path | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    verify_tls: bool = True
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class NotificationSink:
    """One webhook that notifications are POSTed to.

    ``name`` is what logs and metric labels call it; the URL is never held here
    (it carries a token): it is read from ``url_file`` on every delivery.
    """

    name: str
    kind: SinkKind
    url_file: Path


@dataclass(frozen=True)
class Settings:
    """Every configured instance, by name, the Prometheus server if there is one, and the
    notification sinks (in delivery order; none by default)."""

    instances: Mapping[str, InstanceSettings]
    prometheus: PrometheusSettings | None = None
    notification_sinks: tuple[NotificationSink, ...] = ()
    mlflow: MlflowSettings | None = None

    def require_mlflow(self) -> MlflowSettings:
        """The MLflow settings; SettingsError saying what to set when there are none."""
        if self.mlflow is None:
            raise SettingsError(
                [
                    "the source is a model registry, but no MLflow is configured: set "
                    f"{ENV_MLFLOW_URL} (and, if it needs them, {ENV_MLFLOW_TOKEN_FILE}, or "
                    f"{ENV_MLFLOW_USERNAME_FILE} and {ENV_MLFLOW_PASSWORD_FILE}) in the "
                    "operator's environment"
                ]
            )
        return self.mlflow

    def require_prometheus(self) -> PrometheusSettings:
        """The Prometheus settings; SettingsError saying what to set when there are none."""
        if self.prometheus is None:
            raise SettingsError(
                [
                    "analysis steps query Prometheus, but no Prometheus is configured: "
                    f"set {ENV_PROMETHEUS_URL} (and, if it needs them, "
                    f"{ENV_PROMETHEUS_TOKEN_FILE} and {ENV_PROMETHEUS_CA_FILE}) "
                    "in the operator's environment"
                ]
            )
        return self.prometheus

    def instance(self, name: str | None) -> InstanceSettings:
        """The instance called ``name`` (``None`` means ``default``); SettingsError if unknown."""
        key = DEFAULT_INSTANCE if name is None else name
        try:
            return self.instances[key]
        except KeyError:
            configured = ", ".join(sorted(self.instances)) or "none"
            if name is None:
                raise SettingsError(
                    [
                        "no instance named in the resource and no default instance configured "
                        f"(set {ENV_URL}, or name one of: {configured})"
                    ]
                ) from None
            raise SettingsError(
                [
                    f"unknown Seldon Deploy instance {name!r} (configured: {configured}); "
                    f"add it to the file named by {ENV_SETTINGS_FILE}"
                ]
            ) from None


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build and validate the settings from ``env`` (usually ``os.environ``).

    Raises SettingsError listing every problem found, one line each.
    """
    problems: list[str] = []
    instances: dict[str, InstanceSettings] = {}

    env_sets_default = bool(env.get(ENV_URL, "").strip())
    from_env = _instance_from_env(env, problems)
    if from_env is not None:
        instances[from_env.name] = from_env

    settings_file = env.get(ENV_SETTINGS_FILE, "").strip()
    if settings_file:
        for instance in _instances_from_file(Path(settings_file), env_sets_default, problems):
            instances[instance.name] = instance

    if not instances and not problems:
        problems.append(
            f"no Seldon Deploy instance configured: set {ENV_URL} (and "
            f"{ENV_CREDENTIALS_DIR}), or list instances in the file named by {ENV_SETTINGS_FILE}"
        )

    # Checked after the instances, so their problems (and "no instance") come first.
    prometheus = _prometheus_from_env(env, problems)
    sinks = _notification_sinks_from_env(env, problems)
    mlflow = _mlflow_from_env(env, problems)

    if problems:
        raise SettingsError(problems)
    for instance in instances.values():
        _warn_insecure(instance)
    if prometheus is not None:
        _warn_insecure_prometheus(prometheus)
    for sink in sinks:
        _warn_insecure_sink(sink)
    credentials = mlflow is not None and (mlflow.token_file or mlflow.password_file)
    if mlflow is not None and credentials and mlflow.url.startswith("http://"):
        logger.warning("MLflow: credentials are sent over plain HTTP to %s", mlflow.url)
    return Settings(
        instances=MappingProxyType(instances),
        prometheus=prometheus,
        notification_sinks=sinks,
        mlflow=mlflow,
    )


def _instance_from_env(env: Mapping[str, str], problems: list[str]) -> InstanceSettings | None:
    variables = _ServiceEnv(env, problems)
    if variables.unset(
        ENV_URL,
        others=(ENV_CREDENTIALS_DIR, ENV_VERIFY_TLS, ENV_CA_FILE, ENV_TOKEN, ENV_TIMEOUT),
        fix=f"set {ENV_URL} for the default instance, or unset them",
    ):
        return None
    url = _check_url(variables.value(ENV_URL), ENV_URL, problems)
    raw_dir = variables.value(ENV_CREDENTIALS_DIR)
    credentials_dir = Path(raw_dir) if raw_dir else DEFAULT_CREDENTIALS_DIR
    _check_credentials_dir(credentials_dir, f"instance 'default' ({ENV_CREDENTIALS_DIR})", problems)
    verify_tls = variables.flag(ENV_VERIFY_TLS)
    ca_file = variables.file(ENV_CA_FILE, ca_file_problem)
    token_kind = _check_token_kind(variables.value(ENV_TOKEN) or None, ENV_TOKEN, problems)
    timeout = variables.seconds(ENV_TIMEOUT)
    if not variables.all_good:
        return None
    return InstanceSettings(
        name=DEFAULT_INSTANCE,
        url=url,
        credentials_dir=credentials_dir,
        verify_tls=verify_tls,
        ca_file=ca_file,
        token_kind=token_kind,
        request_timeout=timeout,
    )


def _prometheus_from_env(env: Mapping[str, str], problems: list[str]) -> PrometheusSettings | None:
    variables = _ServiceEnv(env, problems)
    if variables.unset(
        ENV_PROMETHEUS_URL,
        others=(
            ENV_PROMETHEUS_TOKEN_FILE,
            ENV_PROMETHEUS_CA_FILE,
            ENV_PROMETHEUS_VERIFY_TLS,
            ENV_PROMETHEUS_TIMEOUT,
        ),
        fix=f"set {ENV_PROMETHEUS_URL} to the Prometheus server the analysis steps query, "
        "or unset them",
    ):
        return None
    url = variables.value(ENV_PROMETHEUS_URL)
    problem = url_problem(url)
    if problem is None and _API_PATH.search(url.rstrip("/")):
        problem = "must be the server's base URL, without /api/v1"
    if problem is not None:
        problems.append(f"{ENV_PROMETHEUS_URL} {problem} (e.g. http://prometheus.monitoring:9090)")
    token_file = variables.file(ENV_PROMETHEUS_TOKEN_FILE, token_file_problem)
    ca_file = variables.file(ENV_PROMETHEUS_CA_FILE, ca_file_problem)
    verify_tls = variables.flag(ENV_PROMETHEUS_VERIFY_TLS)
    timeout = variables.seconds(ENV_PROMETHEUS_TIMEOUT)
    if not variables.all_good:
        return None
    return PrometheusSettings(
        url=url.rstrip("/"),
        bearer_token_file=token_file,
        ca_file=ca_file,
        verify_tls=verify_tls,
        timeout=timeout,
    )


def _mlflow_from_env(env: Mapping[str, str], problems: list[str]) -> MlflowSettings | None:
    variables = _ServiceEnv(env, problems)
    if variables.unset(
        ENV_MLFLOW_URL,
        others=(
            ENV_MLFLOW_TOKEN_FILE,
            ENV_MLFLOW_USERNAME_FILE,
            ENV_MLFLOW_PASSWORD_FILE,
            ENV_MLFLOW_CA_FILE,
            ENV_MLFLOW_VERIFY_TLS,
            ENV_MLFLOW_TIMEOUT,
        ),
        fix=f"set {ENV_MLFLOW_URL} to the MLflow tracking server, or unset them",
    ):
        return None
    url = variables.value(ENV_MLFLOW_URL)
    problem = url_problem(url)
    if problem is not None:
        problems.append(f"{ENV_MLFLOW_URL} {problem} (e.g. https://mlflow.example.com)")
    token_file = variables.file(ENV_MLFLOW_TOKEN_FILE, token_file_problem)
    username_file = variables.file(ENV_MLFLOW_USERNAME_FILE, token_file_problem)
    password_file = variables.file(ENV_MLFLOW_PASSWORD_FILE, token_file_problem)
    if (username_file is None) != (password_file is None):
        problems.append(
            f"{ENV_MLFLOW_USERNAME_FILE} and {ENV_MLFLOW_PASSWORD_FILE} go together: set both"
        )
    if token_file is not None and password_file is not None:
        problems.append(
            f"{ENV_MLFLOW_TOKEN_FILE} and {ENV_MLFLOW_PASSWORD_FILE} are both set: "
            "MLflow takes a bearer token or basic auth, set one"
        )
    ca_file = variables.file(ENV_MLFLOW_CA_FILE, ca_file_problem)
    verify_tls = variables.flag(ENV_MLFLOW_VERIFY_TLS)
    timeout = variables.seconds(ENV_MLFLOW_TIMEOUT)
    if not variables.all_good:
        return None
    return MlflowSettings(
        url=url.rstrip("/"),
        token_file=token_file,
        username_file=username_file,
        password_file=password_file,
        ca_file=ca_file,
        verify_tls=verify_tls,
        timeout=timeout,
    )


class _ServiceEnv:
    """One service's variables in the environment. A bad value adds one line to
    ``problems`` (naming the variable, never quoting a secret) and reads as the default."""

    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self._env = env
        self._problems = problems
        self._before = len(problems)

    @property
    def all_good(self) -> bool:
        """Whether no variable read so far was bad."""
        return len(self._problems) == self._before

    def value(self, name: str) -> str:
        """The variable, stripped; empty when unset."""
        return self._env.get(name, "").strip()

    def unset(self, url: str, *, others: Sequence[str], fix: str) -> bool:
        """Whether the service's ``url`` variable is unset (the service is not configured);
        then any of its ``others`` set anyway is a problem, and ``fix`` says what to do."""
        if self.value(url):
            return False
        stray = [name for name in others if self.value(name)]
        if stray:
            self._problems.append(
                f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} set but {url} "
                f"is not: {fix}"
            )
        return True

    def flag(self, name: str) -> bool:
        """A true/false variable; true when unset."""
        raw = self.value(name)
        if not raw:
            return True
        parsed = _parse_bool(raw)
        if parsed is None:
            self._problems.append(f"{name} must be true or false (or 1/0, yes/no)")
            return True
        return parsed

    def file(self, name: str, problem: Callable[[Path], str | None]) -> Path | None:
        """The path the variable names, if set and ``problem`` finds nothing wrong with it."""
        raw = self.value(name)
        if not raw:
            return None
        path = Path(raw)
        if (found := problem(path)) is not None:
            self._problems.append(f"{name}: {found}")
            return None
        return path

    def seconds(self, name: str) -> float:
        """A positive number of seconds; :data:`DEFAULT_TIMEOUT` when unset."""
        raw = self.value(name)
        if not raw:
            return DEFAULT_TIMEOUT
        try:
            return _check_timeout(float(raw), name, self._problems)
        except ValueError:
            self._problems.append(f"{name} must be a positive number of seconds")
            return DEFAULT_TIMEOUT


def read_token_file(path: Path) -> str:
    """The bearer token in ``path``, without surrounding whitespace.

    Raises SettingsError with one line that names the path, never a byte of its content.
    """
    return _read_one_secret(path, "token file", "a bearer token")


def _read_one_secret(path: Path, what: str, holding: str) -> str:
    """One printable-ASCII value (a token, a URL with a token) from ``path``.

    Problems name the path only: the content is a secret.
    """
    try:
        if not path.exists():
            raise SettingsError([f"{what} {path} does not exist"])
        if not path.is_file():
            raise SettingsError([f"{what} {path} is not a file"])
        content = path.read_bytes()
    except OSError as exc:
        raise SettingsError(
            [f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}"]
        ) from None
    try:
        value = content.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SettingsError([f"{what} {path} is not ASCII text ({holding} is)"]) from None
    if not value:
        raise SettingsError([f"{what} {path} is empty"])
    if not _TOKEN.fullmatch(value):
        raise SettingsError(
            [f"{what} {path} has whitespace or control characters inside {holding}"]
        )
    return value


def token_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable file holding one bearer token, if it isn't."""
    try:
        read_token_file(path)
    except SettingsError as exc:
        return exc.problems[0]
    return None


def _notification_sinks_from_env(
    env: Mapping[str, str], problems: list[str]
) -> tuple[NotificationSink, ...]:
    variables = _ServiceEnv(env, problems)
    sinks: list[NotificationSink] = []
    for name, kind, variable in _NOTIFY_ENV:
        path = variables.file(variable, notification_url_problem)
        if path is not None:
            sinks.append(NotificationSink(name=name, kind=kind, url_file=path))
    return tuple(sinks)


def read_notification_url(path: Path) -> str:
    """The webhook URL in ``path``, without surrounding whitespace.

    Raises SettingsError with one line that names the path, never a byte of its content
    (the URL carries a token).
    """
    url = _read_one_secret(path, "URL file", "one percent-encoded URL")
    if (problem := _webhook_url_problem(url)) is not None:
        raise SettingsError([f"URL file {path} does not hold a webhook URL: the URL {problem}"])
    return url


def notification_url_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable file holding one http(s) URL, if it isn't."""
    try:
        read_notification_url(path)
    except SettingsError as exc:
        return exc.problems[0]
    return None


def _webhook_url_problem(url: str) -> str | None:
    """Like :func:`url_problem`, but a query string and user info are allowed: webhook
    URLs put their token there too. The answer never repeats ``url``."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # validates it
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    return None


def _instances_from_file(
    path: Path, env_sets_default: bool, problems: list[str]
) -> list[InstanceSettings]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{ENV_SETTINGS_FILE}: {path} does not exist")
        return []
    except OSError as exc:
        problems.append(f"{ENV_SETTINGS_FILE}: cannot read {path}: {exc.strerror or exc}")
        return []
    except UnicodeDecodeError:
        problems.append(f"{path}: not UTF-8 text")
        return []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problems.append(f"{path}: not valid YAML{at}")
        return []

    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        problems.append(f"{path}: expected a mapping with an 'instances' list")
        return []
    if extra := sorted(str(k) for k in document if k != "instances"):
        problems.append(f"{path}: unknown top-level key(s) {', '.join(extra)}; expected instances")

    result: list[InstanceSettings] = []
    seen: set[str] = set()
    for index, item in enumerate(document["instances"]):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            if name == DEFAULT_INSTANCE and env_sets_default:
                problems.append(
                    f"{path}: instance 'default' is already configured by {ENV_URL}; "
                    f"rename it or unset {ENV_URL}"
                )
                continue
            if name in seen:
                problems.append(f"{path}: instance {name!r} is defined more than once")
                continue
            seen.add(name)
        instance = _instance_from_item(path, index, item, problems)
        if instance is not None:
            result.append(instance)
    return result


def _instance_from_item(
    path: Path, index: int, item: Any, problems: list[str]
) -> InstanceSettings | None:
    where = f"{path}: instances[{index}]"
    if not isinstance(item, dict):
        problems.append(f"{where} must be a mapping with name, url and credentialsDir")
        return None
    before = len(problems)

    name = item.get("name")
    if isinstance(name, str) and _NAME.match(name):
        where = f"{path}: instance {name!r}"
    else:
        problems.append(
            f"{where}: name must be a lowercase DNS label (letters, digits, '-'; at most 63)"
        )
    if unknown := sorted(str(k) for k in item if k not in _FILE_KEYS):
        problems.append(
            f"{where}: unknown key(s) {', '.join(unknown)}; "
            f"expected {', '.join(sorted(_FILE_KEYS))}"
        )

    url = item.get("url")
    if not isinstance(url, str) or not url.strip():
        problems.append(f"{where}: url is required (the Seldon Deploy API base URL)")
        url = ""
    else:
        url = _check_url(url.strip(), f"{where}: url", problems)

    credentials_dir: Path | None = None
    raw_dir = item.get("credentialsDir")
    if not isinstance(raw_dir, str) or not raw_dir.strip():
        problems.append(f"{where}: credentialsDir is required (the mounted Secret's directory)")
    else:
        credentials_dir = _relative_to(path, raw_dir.strip())
        _check_credentials_dir(credentials_dir, where, problems)

    verify_tls = True
    raw_verify = item.get("verifyTLS")
    if raw_verify is not None:
        parsed = raw_verify if isinstance(raw_verify, bool) else _parse_bool(str(raw_verify))
        if parsed is None:
            problems.append(f"{where}: verifyTLS must be true or false")
        else:
            verify_tls = parsed

    ca_file: Path | None = None
    raw_ca = item.get("caFile")
    if raw_ca is not None:
        if not isinstance(raw_ca, str) or not raw_ca.strip():
            problems.append(f"{where}: caFile must be a path")
        else:
            ca_file = _relative_to(path, raw_ca.strip())
            if (problem := ca_file_problem(ca_file)) is not None:
                problems.append(f"{where}: caFile: {problem}")

    raw_token = item.get("token")
    token_kind = _check_token_kind(
        None if raw_token is None else str(raw_token), f"{where}: token", problems
    )

    timeout = DEFAULT_TIMEOUT
    raw_timeout = item.get("timeout")
    if raw_timeout is not None:
        if isinstance(raw_timeout, bool) or not isinstance(raw_timeout, int | float):
            problems.append(f"{where}: timeout must be a positive number of seconds")
        else:
            timeout = _check_timeout(float(raw_timeout), f"{where}: timeout", problems)

    if len(problems) > before:
        return None
    assert isinstance(name, str) and credentials_dir is not None
    return InstanceSettings(
        name=name,
        url=url,
        credentials_dir=credentials_dir,
        verify_tls=verify_tls,
        ca_file=ca_file,
        token_kind=token_kind,
        request_timeout=timeout,
    )


def _relative_to(settings_file: Path, value: str) -> Path:
    candidate = Path(value)
    return candidate if candidate.is_absolute() else settings_file.parent / candidate


def _check_url(url: str, where: str, problems: list[str]) -> str:
    problem = url_problem(url)
    if problem is not None:
        problems.append(f"{where} {problem} (e.g. https://HOST/seldon-deploy/api/v1alpha1)")
    return url.rstrip("/")


def _check_credentials_dir(directory: Path, where: str, problems: list[str]) -> None:
    try:
        read_credentials(directory)
    except SettingsError as exc:
        problems.extend(f"{where}: {line}" for line in exc.problems)


def _check_token_kind(value: str | None, where: str, problems: list[str]) -> TokenKind:
    if value is None:
        return "id_token"
    if value in get_args(TokenKind):
        return value  # type: ignore[return-value]
    problems.append(f"{where} must be id_token or access_token")
    return "id_token"


def _check_timeout(value: float, where: str, problems: list[str]) -> float:
    if not math.isfinite(value) or value <= 0:
        problems.append(f"{where} must be a positive number of seconds")
        return DEFAULT_TIMEOUT
    return value


def _parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _warn_insecure(instance: InstanceSettings) -> None:
    if instance.url.startswith("http://"):
        logger.warning(
            "instance %s: Seldon Deploy URL %s uses plain http; tokens travel unencrypted",
            instance.name,
            instance.url,
        )
    if not instance.verify_tls:
        logger.warning(
            "instance %s: TLS verification is off for Seldon Deploy and its identity provider",
            instance.name,
        )
        if instance.ca_file is not None:
            logger.warning(
                "instance %s: caFile %s is ignored because TLS verification is off",
                instance.name,
                instance.ca_file,
            )


def _warn_insecure_sink(sink: NotificationSink) -> None:
    # Checked once, at start-up; the file is read again on every delivery.
    try:
        url = read_notification_url(sink.url_file)
    except SettingsError:
        return
    if url.lower().startswith("http://"):
        logger.warning(
            "notification sink %s: the URL in %s uses plain http; its token travels unencrypted",
            sink.name,
            sink.url_file,
        )


def _warn_insecure_prometheus(prometheus: PrometheusSettings) -> None:
    if prometheus.url.startswith("http://") and prometheus.bearer_token_file is not None:
        logger.warning(
            "Prometheus URL %s uses plain http; its bearer token travels unencrypted",
            prometheus.url,
        )
    if not prometheus.verify_tls:
        logger.warning("Prometheus: TLS verification is off for %s", prometheus.url)
        if prometheus.ca_file is not None:
            logger.warning(
                "Prometheus: %s %s is ignored because TLS verification is off",
                ENV_PROMETHEUS_CA_FILE,
                prometheus.ca_file,
            )
