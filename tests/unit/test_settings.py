"""Settings from the environment and the instances file, validated once at start-up."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from promotion_operator.config.settings import (
    InstanceSettings,
    NotificationSink,
    PrometheusSettings,
    Settings,
    load_settings,
    read_notification_url,
)
from promotion_operator.errors import SettingsError
from tests.harness.unprivileged import call_unprivileged, reachable_tempdir
from tests.oidcstub import write_secret

URL = "https://deploy.example/seldon-deploy/api/v1alpha1"
PASSWORD = "hunter2-Pa55w0rd"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    return write_secret(
        tmp_path / "secret",
        {
            "oidc-server": "https://idp.example/realms/deploy-realm",
            "client-id": "sd-api",
            "username": "alice",
            "password": PASSWORD,
        },
    )


def env_for(secret: Path, **extra: str) -> dict[str, str]:
    return {"SELDON_DEPLOY_URL": URL, "SELDON_DEPLOY_CREDENTIALS_DIR": str(secret), **extra}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    return caught.value.problems


def write_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "instances.yaml"
    path.write_text(text)
    return str(path)


def test_env_configures_the_default_instance(secret: Path) -> None:
    settings = load_settings(env_for(secret))

    assert dict(settings.instances) == {
        "default": InstanceSettings(name="default", url=URL, credentials_dir=secret)
    }


def test_defaults_are_tls_on_id_token_and_ten_seconds(secret: Path) -> None:
    instance = load_settings(env_for(secret)).instance(None)

    assert (instance.verify_tls, instance.ca_file, instance.token_kind) == (True, None, "id_token")
    assert instance.request_timeout == 10.0


def test_url_loses_its_trailing_slash(secret: Path) -> None:
    settings = load_settings(env_for(secret, SELDON_DEPLOY_URL=URL + "/"))

    assert settings.instance(None).url == URL


def test_credentials_dir_defaults_to_var_run_secrets(tmp_path: Path) -> None:
    [problem] = problems_of({"SELDON_DEPLOY_URL": URL})

    assert "/var/run/secrets/seldon-deploy" in problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True)]
    + [("false", False), ("False", False), ("0", False), ("no", False)],
)
def test_verify_tls_accepts_booleans(secret: Path, value: str, expected: bool) -> None:
    settings = load_settings(env_for(secret, SELDON_DEPLOY_VERIFY_TLS=value))

    assert settings.instance(None).verify_tls is expected


def test_verify_tls_rejects_other_values(secret: Path) -> None:
    assert problems_of(env_for(secret, SELDON_DEPLOY_VERIFY_TLS="maybe")) == [
        "SELDON_DEPLOY_VERIFY_TLS must be true or false (or 1/0, yes/no)"
    ]


def test_verify_tls_off_logs_a_warning(secret: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="promotion_operator.config.settings"):
        load_settings(env_for(secret, SELDON_DEPLOY_VERIFY_TLS="false"))

    assert "instance default: TLS verification is off" in caplog.text


def test_plain_http_url_is_allowed_with_a_warning(
    secret: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="promotion_operator.config.settings"):
        settings = load_settings(env_for(secret, SELDON_DEPLOY_URL="http://sd.local/api"))

    assert settings.instance(None).url == "http://sd.local/api"
    assert "uses plain http" in caplog.text


def test_https_url_logs_no_warning(secret: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="promotion_operator.config.settings"):
        load_settings(env_for(secret))

    assert caplog.records == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("deploy.example/api", "must be an http:// or https:// URL"),
        ("ftp://deploy.example/api", "must be an http:// or https:// URL"),
        ("https://", "must name a host"),
        ("https://user:pw@deploy.example/api", "must not embed a user name or password"),
    ],
)
def test_url_must_be_http_with_a_host(secret: Path, url: str, expected: str) -> None:
    [problem] = problems_of(env_for(secret, SELDON_DEPLOY_URL=url))

    assert problem.startswith(f"SELDON_DEPLOY_URL {expected}")
    assert "pw" not in problem


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf"])
def test_timeout_must_be_a_positive_number(secret: Path, value: str) -> None:
    assert problems_of(env_for(secret, SELDON_DEPLOY_TIMEOUT=value)) == [
        "SELDON_DEPLOY_TIMEOUT must be a positive number of seconds"
    ]


def test_timeout_accepts_fractions(secret: Path) -> None:
    settings = load_settings(env_for(secret, SELDON_DEPLOY_TIMEOUT="2.5"))

    assert settings.instance(None).request_timeout == 2.5


def test_token_kind_access_token(secret: Path) -> None:
    settings = load_settings(env_for(secret, SELDON_DEPLOY_TOKEN="access_token"))

    assert settings.instance(None).token_kind == "access_token"


def test_unknown_token_kind_is_a_problem(secret: Path) -> None:
    assert problems_of(env_for(secret, SELDON_DEPLOY_TOKEN="refresh_token")) == [
        "SELDON_DEPLOY_TOKEN must be id_token or access_token"
    ]


def test_ca_file_is_kept(secret: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)

    settings = load_settings(env_for(secret, SELDON_DEPLOY_CA_FILE=str(ca)))

    assert settings.instance(None).ca_file == ca


def test_missing_ca_file_is_a_problem(secret: Path, tmp_path: Path) -> None:
    assert problems_of(env_for(secret, SELDON_DEPLOY_CA_FILE=str(tmp_path / "nope.pem"))) == [
        f"SELDON_DEPLOY_CA_FILE: CA bundle {tmp_path / 'nope.pem'} does not exist"
    ]


def test_credentials_problems_name_the_instance(tmp_path: Path) -> None:
    secret = write_secret(tmp_path / "s", {"token-url": "https://idp/t"})

    problems = problems_of(env_for(secret))

    assert len(problems) == 2
    assert all(
        p.startswith("instance 'default' (SELDON_DEPLOY_CREDENTIALS_DIR): ") for p in problems
    )


@pytest.fixture
def reachable() -> Iterator[Path]:
    with reachable_tempdir() as path:
        yield path


def settings_problems(env: dict[str, str]) -> list[str]:
    """The problems ``load_settings`` reports (run by ``call_unprivileged``)."""
    try:
        load_settings(env)
    except SettingsError as error:
        return error.problems
    return []


def test_unreadable_credentials_dir_is_a_problem(reachable: Path) -> None:
    # Root reads every directory: the check runs as an unprivileged user.
    secret = write_secret(
        reachable / "secret", {"token-url": "https://idp/t", "client-id": "c", "client-secret": "x"}
    )
    secret.chmod(0)

    [problem] = call_unprivileged(settings_problems, env_for(secret))

    assert problem.endswith(f"credentials directory {secret} is not readable")


def test_every_problem_is_reported_in_one_error(tmp_path: Path) -> None:
    problems = problems_of(
        {
            "SELDON_DEPLOY_URL": "ftp://deploy",
            "SELDON_DEPLOY_CREDENTIALS_DIR": str(tmp_path / "missing"),
            "SELDON_DEPLOY_VERIFY_TLS": "sometimes",
            "SELDON_DEPLOY_CA_FILE": str(tmp_path / "missing.pem"),
            "SELDON_DEPLOY_TOKEN": "bearer",
            "SELDON_DEPLOY_TIMEOUT": "-3",
            "PROMOTION_OPERATOR_SETTINGS_FILE": str(tmp_path / "missing.yaml"),
        }
    )

    assert [p.split(" ")[0] for p in problems] == [
        "SELDON_DEPLOY_URL",
        "instance",
        "SELDON_DEPLOY_VERIFY_TLS",
        "SELDON_DEPLOY_CA_FILE:",
        "SELDON_DEPLOY_TOKEN",
        "SELDON_DEPLOY_TIMEOUT",
        "PROMOTION_OPERATOR_SETTINGS_FILE:",
    ]


def test_error_message_has_one_line_per_problem(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"SELDON_DEPLOY_URL": "ftp://x", "SELDON_DEPLOY_TOKEN": "x"})

    assert str(caught.value) == "; ".join(caught.value.problems)
    assert all("\n" not in p for p in caught.value.problems)


def test_nothing_configured_is_a_problem() -> None:
    [problem] = problems_of({})

    assert problem.startswith("no Seldon Deploy instance configured: set SELDON_DEPLOY_URL")


def test_settings_without_url_are_a_problem(secret: Path) -> None:
    problems = problems_of(
        {"SELDON_DEPLOY_CREDENTIALS_DIR": str(secret), "SELDON_DEPLOY_TOKEN": "id_token"}
    )

    assert problems[0] == (
        "SELDON_DEPLOY_CREDENTIALS_DIR, SELDON_DEPLOY_TOKEN are set but SELDON_DEPLOY_URL is not:"
        " set SELDON_DEPLOY_URL for the default instance, or unset them"
    )


def test_file_adds_instances(secret: Path, tmp_path: Path) -> None:
    ca = tmp_path / "prod-ca.pem"
    ca.write_text(PEM)
    path = write_file(
        tmp_path,
        f"""
instances:
  - name: prod
    url: https://prod.example/seldon-deploy/api/v1alpha1/
    credentialsDir: {secret}
    verifyTLS: false
    caFile: {ca}
    token: access_token
    timeout: 3
  - name: staging
    url: https://staging.example/seldon-deploy/api/v1alpha1
    credentialsDir: {secret}
""",
    )

    settings = load_settings(env_for(secret, PROMOTION_OPERATOR_SETTINGS_FILE=path))

    assert sorted(settings.instances) == ["default", "prod", "staging"]
    assert settings.instance("prod") == InstanceSettings(
        name="prod",
        url="https://prod.example/seldon-deploy/api/v1alpha1",
        credentials_dir=secret,
        verify_tls=False,
        ca_file=ca,
        token_kind="access_token",
        request_timeout=3.0,
    )
    assert settings.instance("staging") == InstanceSettings(
        name="staging",
        url="https://staging.example/seldon-deploy/api/v1alpha1",
        credentials_dir=secret,
    )


def test_file_paths_are_relative_to_the_file(secret: Path, tmp_path: Path) -> None:
    path = write_file(
        tmp_path, f"instances: [{{name: prod, url: '{URL}', credentialsDir: {secret.name}}}]"
    )

    settings = load_settings({"PROMOTION_OPERATOR_SETTINGS_FILE": path})

    assert settings.instance("prod").credentials_dir == tmp_path / secret.name


def test_file_may_define_default_when_env_does_not(secret: Path, tmp_path: Path) -> None:
    path = write_file(
        tmp_path, f"instances: [{{name: default, url: '{URL}', credentialsDir: '{secret}'}}]"
    )

    settings = load_settings({"PROMOTION_OPERATOR_SETTINGS_FILE": path})

    assert settings.instance(None).name == "default"


def test_file_default_conflicts_with_env(secret: Path, tmp_path: Path) -> None:
    path = write_file(
        tmp_path, f"instances: [{{name: default, url: '{URL}', credentialsDir: '{secret}'}}]"
    )

    assert problems_of(env_for(secret, PROMOTION_OPERATOR_SETTINGS_FILE=path)) == [
        f"{path}: instance 'default' is already configured by SELDON_DEPLOY_URL; "
        "rename it or unset SELDON_DEPLOY_URL"
    ]


def test_duplicate_names_in_file_are_a_problem(secret: Path, tmp_path: Path) -> None:
    item = f"{{name: prod, url: '{URL}', credentialsDir: '{secret}'}}"
    path = write_file(tmp_path, f"instances: [{item}, {item}]")

    assert problems_of({"PROMOTION_OPERATOR_SETTINGS_FILE": path}) == [
        f"{path}: instance 'prod' is defined more than once"
    ]


def test_file_entry_problems_are_all_reported(secret: Path, tmp_path: Path) -> None:
    path = write_file(
        tmp_path,
        """
instances:
  - name: Prod_1
    url: ftp://prod
    verifyTLS: perhaps
    caFile: missing.pem
    token: saml
    timeout: fast
    credentialDir: /typo
""",
    )

    problems = problems_of({"PROMOTION_OPERATOR_SETTINGS_FILE": path})

    where = f"{path}: instances[0]"
    assert problems == [
        f"{where}: name must be a lowercase DNS label (letters, digits, '-'; at most 63)",
        f"{where}: unknown key(s) credentialDir; expected caFile, credentialsDir, name, "
        "timeout, token, url, verifyTLS",
        f"{where}: url must be an http:// or https:// URL "
        "(e.g. https://HOST/seldon-deploy/api/v1alpha1)",
        f"{where}: credentialsDir is required (the mounted Secret's directory)",
        f"{where}: verifyTLS must be true or false",
        f"{where}: caFile: CA bundle {tmp_path / 'missing.pem'} does not exist",
        f"{where}: token must be id_token or access_token",
        f"{where}: timeout must be a positive number of seconds",
    ]


def test_file_entry_problems_name_the_instance(tmp_path: Path) -> None:
    path = write_file(tmp_path, "instances: [{name: prod, credentialsDir: /nonexistent}]")

    problems = problems_of({"PROMOTION_OPERATOR_SETTINGS_FILE": path})

    assert problems == [
        f"{path}: instance 'prod': url is required (the Seldon Deploy API base URL)",
        f"{path}: instance 'prod': credentials directory /nonexistent does not exist",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("instances: [", "not valid YAML at line 1, column 13"),
        ("- a\n- b\n", "expected a mapping with an 'instances' list"),
        ("instances: {}", "expected a mapping with an 'instances' list"),
    ],
)
def test_malformed_file_is_a_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write_file(tmp_path, text)

    assert problems_of({"PROMOTION_OPERATOR_SETTINGS_FILE": path}) == [f"{path}: {expected}"]


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    assert problems_of({"PROMOTION_OPERATOR_SETTINGS_FILE": str(path)}) == [
        f"PROMOTION_OPERATOR_SETTINGS_FILE: {path} does not exist"
    ]


def test_instance_none_means_default(secret: Path) -> None:
    settings = load_settings(env_for(secret))

    assert settings.instance(None) is settings.instance("default")


def test_unknown_instance_names_the_configured_ones(secret: Path) -> None:
    settings = load_settings(env_for(secret))

    with pytest.raises(SettingsError) as caught:
        settings.instance("prod")

    assert str(caught.value) == (
        "unknown Seldon Deploy instance 'prod' (configured: default); "
        "add it to the file named by PROMOTION_OPERATOR_SETTINGS_FILE"
    )


def test_missing_default_instance_says_what_to_do(secret: Path) -> None:
    settings = Settings(
        instances={"prod": InstanceSettings(name="prod", url=URL, credentials_dir=secret)}
    )

    with pytest.raises(SettingsError, match="no default instance configured"):
        settings.instance(None)


def test_instances_cannot_be_changed_after_loading(secret: Path) -> None:
    settings = load_settings(env_for(secret))

    with pytest.raises(TypeError):
        settings.instances["x"] = settings.instance(None)  # type: ignore[index]


def test_problems_never_quote_credential_files(tmp_path: Path) -> None:
    secret = write_secret(
        tmp_path / "s",
        {"token-url": f"ftp://{PASSWORD}", "grant-type": PASSWORD, "password": PASSWORD},
    )

    with pytest.raises(SettingsError) as caught:
        load_settings(env_for(secret))

    assert len(caught.value.problems) >= 3
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


# -- Prometheus (the Canary strategy's analysis) ---------------------------------------------

PROMETHEUS_URL = "https://prometheus.monitoring:9090"
PROMETHEUS_TOKEN = "prom-opaque-token-7f3b9c2d"


@pytest.fixture
def prometheus_token(tmp_path: Path) -> Path:
    path = tmp_path / "prometheus-token"
    path.write_text(PROMETHEUS_TOKEN + "\n")
    return path


def test_prometheus_is_optional(secret: Path) -> None:
    settings = load_settings(env_for(secret))

    assert settings.prometheus is None


def test_analysis_without_prometheus_says_what_to_set(secret: Path) -> None:
    settings = load_settings(env_for(secret))

    with pytest.raises(SettingsError) as caught:
        settings.require_prometheus()

    assert caught.value.reason == "InvalidSettings"
    assert caught.value.retryable is False
    assert str(caught.value).startswith(
        "analysis steps query Prometheus, but no Prometheus is configured: set PROMETHEUS_URL"
    )


def test_prometheus_url_alone_gives_the_defaults(secret: Path) -> None:
    settings = load_settings(env_for(secret, PROMETHEUS_URL=PROMETHEUS_URL + "/"))

    assert settings.prometheus == PrometheusSettings(
        url=PROMETHEUS_URL, bearer_token_file=None, ca_file=None, verify_tls=True, timeout=10.0
    )
    assert settings.require_prometheus() is settings.prometheus


def test_every_prometheus_variable_is_read(
    secret: Path, tmp_path: Path, prometheus_token: Path
) -> None:
    ca = tmp_path / "prometheus-ca.pem"
    ca.write_text(PEM)

    settings = load_settings(
        env_for(
            secret,
            PROMETHEUS_URL="https://metrics.example/prometheus",
            PROMETHEUS_BEARER_TOKEN_FILE=str(prometheus_token),
            PROMETHEUS_CA_FILE=str(ca),
            PROMETHEUS_VERIFY_TLS="yes",
            PROMETHEUS_TIMEOUT="2.5",
        )
    )

    assert settings.prometheus == PrometheusSettings(
        url="https://metrics.example/prometheus",
        bearer_token_file=prometheus_token,
        ca_file=ca,
        verify_tls=True,
        timeout=2.5,
    )


def test_prometheus_settings_hold_no_token(secret: Path, prometheus_token: Path) -> None:
    settings = load_settings(
        env_for(
            secret,
            PROMETHEUS_URL=PROMETHEUS_URL,
            PROMETHEUS_BEARER_TOKEN_FILE=str(prometheus_token),
        )
    )

    assert PROMETHEUS_TOKEN not in repr(settings)
    assert PROMETHEUS_TOKEN not in str(settings.prometheus)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("prometheus:9090", "must be an http:// or https:// URL"),
        ("http://", "must name a host"),
        ("http://admin:pw@prometheus:9090", "must not embed a user name or password"),
        ("http://prometheus:9090/?x=1", "must not have a query string or fragment"),
        ("http://prometheus:9090/api/v1", "must be the server's base URL, without /api/v1"),
        ("http://prometheus:9090/api/v1/query/", "must be the server's base URL, without /api/v1"),
    ],
)
def test_prometheus_url_must_be_a_server_base_url(secret: Path, url: str, expected: str) -> None:
    [problem] = problems_of(env_for(secret, PROMETHEUS_URL=url))

    assert problem.startswith(f"PROMETHEUS_URL {expected}")
    assert problem.endswith(" (e.g. http://prometheus.monitoring:9090)")
    assert "pw" not in problem


def test_prometheus_variables_without_url_are_a_problem(secret: Path) -> None:
    assert problems_of(
        env_for(secret, PROMETHEUS_BEARER_TOKEN_FILE="/t", PROMETHEUS_TIMEOUT="5")
    ) == [
        "PROMETHEUS_BEARER_TOKEN_FILE, PROMETHEUS_TIMEOUT are set but PROMETHEUS_URL is not: "
        "set PROMETHEUS_URL to the Prometheus server the analysis steps query, or unset them"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        (" \n", "is empty"),
        (f"{PROMETHEUS_TOKEN} {PROMETHEUS_TOKEN}", "has whitespace or control characters inside"),
        ("caf\u00e9-" + PROMETHEUS_TOKEN, "is not ASCII text (a bearer token is)"),
    ],
)
def test_prometheus_token_file_must_hold_one_token(
    secret: Path, tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "prometheus-token"
    if content is not None:
        path.write_text(content)

    [problem] = problems_of(
        env_for(secret, PROMETHEUS_URL=PROMETHEUS_URL, PROMETHEUS_BEARER_TOKEN_FILE=str(path))
    )

    assert problem.startswith(f"PROMETHEUS_BEARER_TOKEN_FILE: token file {path} {expected}")
    assert PROMETHEUS_TOKEN not in problem


def test_prometheus_token_file_that_is_a_directory_is_a_problem(
    secret: Path, tmp_path: Path
) -> None:
    assert problems_of(
        env_for(secret, PROMETHEUS_URL=PROMETHEUS_URL, PROMETHEUS_BEARER_TOKEN_FILE=str(tmp_path))
    ) == [f"PROMETHEUS_BEARER_TOKEN_FILE: token file {tmp_path} is not a file"]


def test_unreadable_prometheus_token_file_is_a_problem(secret: Path, reachable: Path) -> None:
    # Root reads every file: the check runs as an unprivileged user.
    token = reachable / "prometheus-token"
    token.write_text(PROMETHEUS_TOKEN)
    token.chmod(0)
    env = {"PROMETHEUS_URL": PROMETHEUS_URL, "PROMETHEUS_BEARER_TOKEN_FILE": str(token)}

    problems = call_unprivileged(settings_problems, env)

    assert f"PROMETHEUS_BEARER_TOKEN_FILE: cannot read token file {token}: Permission denied" in (
        problems
    )
    assert all(PROMETHEUS_TOKEN not in p for p in problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, "does not exist"), ("not a certificate", "contains no PEM certificate")],
)
def test_prometheus_ca_file_must_be_a_pem_bundle(
    secret: Path, tmp_path: Path, text: str | None, expected: str
) -> None:
    ca = tmp_path / "prometheus-ca.pem"
    if text is not None:
        ca.write_text(text)

    [problem] = problems_of(
        env_for(secret, PROMETHEUS_URL=PROMETHEUS_URL, PROMETHEUS_CA_FILE=str(ca))
    )

    assert problem.startswith(f"PROMETHEUS_CA_FILE: CA bundle {ca} {expected}")


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("TRUE", True)])
def test_prometheus_verify_tls_accepts_booleans(secret: Path, value: str, expected: bool) -> None:
    settings = load_settings(
        env_for(secret, PROMETHEUS_URL=PROMETHEUS_URL, PROMETHEUS_VERIFY_TLS=value)
    )

    assert settings.require_prometheus().verify_tls is expected


def test_prometheus_verify_tls_rejects_other_values(secret: Path) -> None:
    assert problems_of(
        env_for(secret, PROMETHEUS_URL=PROMETHEUS_URL, PROMETHEUS_VERIFY_TLS="maybe")
    ) == ["PROMETHEUS_VERIFY_TLS must be true or false (or 1/0, yes/no)"]


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf"])
def test_prometheus_timeout_must_be_a_positive_number(secret: Path, value: str) -> None:
    assert problems_of(
        env_for(secret, PROMETHEUS_URL=PROMETHEUS_URL, PROMETHEUS_TIMEOUT=value)
    ) == ["PROMETHEUS_TIMEOUT must be a positive number of seconds"]


def test_prometheus_verify_tls_off_logs_a_warning(
    secret: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = tmp_path / "prometheus-ca.pem"
    ca.write_text(PEM)
    env = env_for(
        secret,
        PROMETHEUS_URL=PROMETHEUS_URL,
        PROMETHEUS_VERIFY_TLS="false",
        PROMETHEUS_CA_FILE=str(ca),
    )
    with caplog.at_level(logging.WARNING, logger="promotion_operator.config.settings"):
        load_settings(env)

    assert [r.getMessage() for r in caplog.records] == [
        f"Prometheus: TLS verification is off for {PROMETHEUS_URL}",
        f"Prometheus: PROMETHEUS_CA_FILE {ca} is ignored because TLS verification is off",
    ]


def test_plain_http_prometheus_with_a_token_logs_a_warning(
    secret: Path, prometheus_token: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = env_for(
        secret,
        PROMETHEUS_URL="http://prometheus:9090",
        PROMETHEUS_BEARER_TOKEN_FILE=str(prometheus_token),
    )
    with caplog.at_level(logging.WARNING, logger="promotion_operator.config.settings"):
        load_settings(env)

    assert [r.getMessage() for r in caplog.records] == [
        "Prometheus URL http://prometheus:9090 uses plain http; "
        "its bearer token travels unencrypted"
    ]


def test_plain_http_prometheus_without_a_token_logs_nothing(
    secret: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="promotion_operator.config.settings"):
        load_settings(env_for(secret, PROMETHEUS_URL="http://prometheus:9090"))

    assert caplog.records == []


def test_every_prometheus_problem_is_reported_after_the_instances(tmp_path: Path) -> None:
    problems = problems_of(
        {
            "SELDON_DEPLOY_URL": "ftp://deploy",
            "SELDON_DEPLOY_CREDENTIALS_DIR": str(tmp_path / "missing"),
            "PROMETHEUS_URL": "prometheus:9090",
            "PROMETHEUS_BEARER_TOKEN_FILE": str(tmp_path / "missing-token"),
            "PROMETHEUS_CA_FILE": str(tmp_path / "missing.pem"),
            "PROMETHEUS_VERIFY_TLS": "sometimes",
            "PROMETHEUS_TIMEOUT": "-3",
        }
    )

    assert [p.split(" ")[0] for p in problems] == [
        "SELDON_DEPLOY_URL",
        "instance",
        "PROMETHEUS_URL",
        "PROMETHEUS_BEARER_TOKEN_FILE:",
        "PROMETHEUS_CA_FILE:",
        "PROMETHEUS_VERIFY_TLS",
        "PROMETHEUS_TIMEOUT",
    ]
    assert all("\n" not in p for p in problems)


def test_prometheus_problems_come_after_no_instance_configured() -> None:
    problems = problems_of({"PROMETHEUS_URL": "prometheus:9090"})

    assert [p.split(":")[0] for p in problems] == [
        "no Seldon Deploy instance configured",
        "PROMETHEUS_URL must be an http",
    ]


# -- notification sinks ----------------------------------------------------------------------

WEBHOOK_TOKEN = "T0AB12CD/B0EF34GH/z9Y8x7W6v5U4t3S2r1Q0hook"
WEBHOOK_URL = f"https://hooks.chat.example/services/{WEBHOOK_TOKEN}"


def url_file(tmp_path: Path, name: str, content: str | None = WEBHOOK_URL + "\n") -> Path:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    return path


def test_no_notification_sinks_by_default(secret: Path) -> None:
    assert load_settings(env_for(secret)).notification_sinks == ()


def test_notification_sinks_come_from_url_files(secret: Path, tmp_path: Path) -> None:
    slack = url_file(tmp_path, "slack-url")
    events = url_file(tmp_path, "events-url", "http://broker.knative-eventing/ns/default\n")

    settings = load_settings(
        env_for(
            secret,
            NOTIFY_CLOUDEVENTS_URL_FILE=str(events),
            NOTIFY_SLACK_URL_FILE=f" {slack} ",
        )
    )

    assert settings.notification_sinks == (
        NotificationSink(name="slack", kind="slack", url_file=slack),
        NotificationSink(name="cloudevents", kind="cloudevents", url_file=events),
    )


def test_one_notification_sink_alone(secret: Path, tmp_path: Path) -> None:
    events = url_file(tmp_path, "events-url")

    settings = load_settings(env_for(secret, NOTIFY_CLOUDEVENTS_URL_FILE=str(events)))

    assert [sink.name for sink in settings.notification_sinks] == ["cloudevents"]


def test_notification_settings_hold_no_url(secret: Path, tmp_path: Path) -> None:
    settings = load_settings(
        env_for(secret, NOTIFY_SLACK_URL_FILE=str(url_file(tmp_path, "slack-url")))
    )

    assert WEBHOOK_TOKEN not in repr(settings)
    assert "hooks.chat.example" not in repr(settings)


@pytest.mark.parametrize(
    "url",
    [
        "https://chat.example/v1/spaces/AAA/messages?key=k-123&token=t-456",
        "https://user:pa55@events.example/ingest",
        "http://127.0.0.1:8080/hook",
    ],
)
def test_webhook_urls_may_carry_their_token_anywhere(
    secret: Path, tmp_path: Path, url: str
) -> None:
    path = url_file(tmp_path, "slack-url", url)

    settings = load_settings(env_for(secret, NOTIFY_SLACK_URL_FILE=str(path)))

    assert read_notification_url(path) == url
    assert settings.notification_sinks[0].url_file == path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("\n  \n", "is empty"),
        (f"{WEBHOOK_URL}\n{WEBHOOK_URL}", "has whitespace or control characters inside"),
        (f"{WEBHOOK_URL}/caf\u00e9", "is not ASCII text"),
        (f"ftp://files.example/{WEBHOOK_TOKEN}", "does not hold a webhook URL: the URL must be an"),
        (f"hooks.chat.example/{WEBHOOK_TOKEN}", "does not hold a webhook URL: the URL must be an"),
        (f"https:///{WEBHOOK_TOKEN}", "does not hold a webhook URL: the URL must name a host"),
        (f"https://hooks.chat.example:99999/{WEBHOOK_TOKEN}", "the URL is not a valid URL"),
    ],
)
def test_notification_url_file_must_hold_one_http_url(
    secret: Path, tmp_path: Path, content: str | None, expected: str
) -> None:
    path = url_file(tmp_path, "slack-url", content)

    [problem] = problems_of(env_for(secret, NOTIFY_SLACK_URL_FILE=str(path)))

    assert problem.startswith(f"NOTIFY_SLACK_URL_FILE: URL file {path} ")
    assert expected in problem
    assert WEBHOOK_TOKEN.split("/")[-1] not in problem
    assert "hooks.chat.example" not in problem


def test_notification_url_file_must_be_utf8(secret: Path, tmp_path: Path) -> None:
    path = tmp_path / "events-url"
    path.write_bytes(b"https://events.example/\xff\xfe")

    assert problems_of(env_for(secret, NOTIFY_CLOUDEVENTS_URL_FILE=str(path))) == [
        f"NOTIFY_CLOUDEVENTS_URL_FILE: URL file {path} is not ASCII text "
        "(one percent-encoded URL is)"
    ]


def test_notification_url_file_that_is_a_directory_is_a_problem(
    secret: Path, tmp_path: Path
) -> None:
    assert problems_of(env_for(secret, NOTIFY_SLACK_URL_FILE=str(tmp_path))) == [
        f"NOTIFY_SLACK_URL_FILE: URL file {tmp_path} is not a file"
    ]


def test_unreadable_notification_url_file_is_a_problem(secret: Path, reachable: Path) -> None:
    # Root reads every file: the check runs as an unprivileged user.
    path = url_file(reachable, "slack-url")
    path.chmod(0)
    env = {"NOTIFY_SLACK_URL_FILE": str(path)}

    problems = call_unprivileged(settings_problems, env)

    assert f"NOTIFY_SLACK_URL_FILE: cannot read URL file {path}: Permission denied" in problems
    assert all(WEBHOOK_TOKEN not in p for p in problems)


def test_every_notification_problem_is_reported_after_prometheus(tmp_path: Path) -> None:
    problems = problems_of(
        {
            "PROMETHEUS_URL": "prometheus:9090",
            "NOTIFY_SLACK_URL_FILE": str(tmp_path / "missing"),
            "NOTIFY_CLOUDEVENTS_URL_FILE": str(url_file(tmp_path, "events-url", "mailto:x@y")),
        }
    )

    assert [p.split(" ")[0] for p in problems] == [
        "no",
        "PROMETHEUS_URL",
        "NOTIFY_SLACK_URL_FILE:",
        "NOTIFY_CLOUDEVENTS_URL_FILE:",
    ]
    assert all("\n" not in p for p in problems)


def test_plain_http_webhook_logs_a_warning_naming_the_file_only(
    secret: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = url_file(tmp_path, "slack-url", f"http://hooks.chat.example/{WEBHOOK_TOKEN}")
    with caplog.at_level(logging.WARNING, logger="promotion_operator.config.settings"):
        load_settings(env_for(secret, NOTIFY_SLACK_URL_FILE=str(path)))

    assert [r.getMessage() for r in caplog.records] == [
        f"notification sink slack: the URL in {path} uses plain http; its token travels unencrypted"
    ]


def test_https_webhook_logs_nothing(
    secret: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = url_file(tmp_path, "slack-url")
    with caplog.at_level(logging.WARNING, logger="promotion_operator.config.settings"):
        load_settings(env_for(secret, NOTIFY_SLACK_URL_FILE=str(path)))

    assert caplog.records == []


def test_the_url_file_is_read_again_each_time(tmp_path: Path) -> None:
    path = url_file(tmp_path, "slack-url")
    assert read_notification_url(path) == WEBHOOK_URL

    path.write_text("https://hooks.chat.example/rotated\n")

    assert read_notification_url(path) == "https://hooks.chat.example/rotated"
