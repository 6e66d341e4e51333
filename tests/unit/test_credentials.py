"""Reading an instance's OIDC credentials from a mounted Secret directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from promotion_operator.config.credentials import DEFAULT_SCOPE, Credentials, read_credentials
from promotion_operator.errors import SettingsError
from tests.oidcstub import write_secret

PASSWORD = "hunter2-Pa55w0rd"
CLIENT_SECRET = "s3cr3t-client-value"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        read_credentials(directory)
    return caught.value.problems


def test_reads_password_grant_with_oidc_server(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {
            "oidc-server": "https://idp.example/realms/deploy-realm",
            "client-id": "sd-api",
            "username": "alice",
            "password": PASSWORD,
        },
    )

    credentials = read_credentials(tmp_path)

    assert credentials == Credentials(
        token_url=None,
        oidc_server="https://idp.example/realms/deploy-realm",
        client_id="sd-api",
        client_secret=None,
        username="alice",
        password=PASSWORD,
        grant_type="password",
        scope=DEFAULT_SCOPE,
        ca_file=None,
    )


def test_reads_client_credentials_with_token_url(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {
            "token-url": "https://idp.example/token",
            "client-id": "promoter",
            "client-secret": CLIENT_SECRET,
            "grant-type": "client_credentials",
        },
    )

    credentials = read_credentials(tmp_path)

    assert credentials.token_url == "https://idp.example/token"
    assert credentials.oidc_server is None
    assert credentials.grant_type == "client_credentials"
    assert credentials.client_secret == CLIENT_SECRET


def test_grant_defaults_to_password_when_username_is_present(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {
            "token-url": "https://idp/t",
            "client-id": "c",
            "client-secret": CLIENT_SECRET,
            "username": "alice",
            "password": PASSWORD,
        },
    )

    assert read_credentials(tmp_path).grant_type == "password"


def test_grant_defaults_to_client_credentials_without_username(tmp_path: Path) -> None:
    write_secret(
        tmp_path, {"token-url": "https://idp/t", "client-id": "c", "client-secret": CLIENT_SECRET}
    )

    assert read_credentials(tmp_path).grant_type == "client_credentials"


def test_trailing_whitespace_and_newlines_are_stripped(tmp_path: Path) -> None:
    (tmp_path / "token-url").write_text("https://idp/t/  \n\n")
    (tmp_path / "client-id").write_text("sd-api\r\n")
    (tmp_path / "username").write_text("alice \t\n")
    (tmp_path / "password").write_text(PASSWORD + "\n")

    credentials = read_credentials(tmp_path)

    assert (credentials.client_id, credentials.username) == ("sd-api", "alice")
    assert credentials.password == PASSWORD


def test_oidc_server_loses_trailing_slash(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {"oidc-server": "https://idp/realms/r/", "client-id": "c", "client-secret": CLIENT_SECRET},
    )

    assert read_credentials(tmp_path).oidc_server == "https://idp/realms/r"


def test_scope_defaults_to_the_sdk_scope(tmp_path: Path) -> None:
    write_secret(tmp_path, {"token-url": "https://idp/t", "client-id": "c", "client-secret": "x"})

    assert read_credentials(tmp_path).scope == "openid profile email groups"


def test_scope_can_be_set(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {"token-url": "https://idp/t", "client-id": "c", "client-secret": "x", "scope": "openid"},
    )

    assert read_credentials(tmp_path).scope == "openid"


def test_ca_crt_is_used_for_the_identity_provider(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {"token-url": "https://idp/t", "client-id": "c", "client-secret": "x", "ca.crt": PEM},
    )

    assert read_credentials(tmp_path).ca_file == tmp_path / "ca.crt"


def test_ca_crt_without_a_certificate_is_a_problem(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {"token-url": "https://idp/t", "client-id": "c", "client-secret": "x", "ca.crt": "junk"},
    )

    assert problems_of(tmp_path) == [
        f"CA bundle {tmp_path / 'ca.crt'} contains no PEM certificate (-----BEGIN CERTIFICATE-----)"
    ]


def test_empty_file_counts_as_absent(tmp_path: Path) -> None:
    write_secret(tmp_path, {"token-url": "https://idp/t", "client-id": "c", "client-secret": ""})

    [problem] = problems_of(tmp_path)
    assert "client_credentials grant needs client-secret" in problem


def test_missing_client_id_is_a_problem_listing_present_keys(tmp_path: Path) -> None:
    write_secret(tmp_path, {"token-url": "https://idp/t", "clientid": "c", "client-secret": "x"})

    [problem] = problems_of(tmp_path)
    assert "client-id is missing or empty" in problem
    assert "keys present: client-secret, clientid, token-url" in problem


def test_neither_oidc_server_nor_token_url_is_a_problem(tmp_path: Path) -> None:
    write_secret(tmp_path, {"client-id": "c", "client-secret": "x"})

    [problem] = problems_of(tmp_path)
    assert "set exactly one of oidc-server" in problem
    assert "neither is present" in problem


def test_both_oidc_server_and_token_url_is_a_problem(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {
            "oidc-server": "https://idp/r",
            "token-url": "https://idp/t",
            "client-id": "c",
            "client-secret": "x",
        },
    )

    [problem] = problems_of(tmp_path)
    assert "both are present" in problem


def test_password_grant_without_password_is_a_problem(tmp_path: Path) -> None:
    write_secret(tmp_path, {"token-url": "https://idp/t", "client-id": "c", "username": "alice"})

    [problem] = problems_of(tmp_path)
    assert "the password grant needs password" in problem


def test_explicit_password_grant_without_username_and_password_is_a_problem(
    tmp_path: Path,
) -> None:
    write_secret(
        tmp_path, {"token-url": "https://idp/t", "client-id": "c", "grant-type": "password"}
    )

    [problem] = problems_of(tmp_path)
    assert "the password grant needs username and password" in problem


def test_client_credentials_without_client_secret_is_a_problem(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {"token-url": "https://idp/t", "client-id": "c", "grant-type": "client_credentials"},
    )

    [problem] = problems_of(tmp_path)
    assert "the client_credentials grant needs client-secret" in problem


def test_unknown_grant_type_is_a_problem(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {
            "token-url": "https://idp/t",
            "client-id": "c",
            "client-secret": "x",
            "grant-type": "implicit",
        },
    )

    [problem] = problems_of(tmp_path)
    assert "unknown grant type; use password or client_credentials" in problem


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://idp/token", "must be an http:// or https:// URL"),
        ("idp.example/token", "must be an http:// or https:// URL"),
        ("https:///token", "must name a host"),
        ("https://user:pw@idp/token", "must not embed a user name or password (user:pass@host)"),
        ("https://idp:99999/token", "is not a valid URL"),
        ("https://idp/token?x=1", "must not have a query string or fragment"),
    ],
)
def test_non_http_token_url_is_a_problem(tmp_path: Path, url: str, expected: str) -> None:
    write_secret(tmp_path, {"token-url": url, "client-id": "c", "client-secret": "x"})

    [problem] = problems_of(tmp_path)
    assert problem == f"{tmp_path / 'token-url'} {expected}"


def test_non_http_oidc_server_is_a_problem(tmp_path: Path) -> None:
    write_secret(tmp_path, {"oidc-server": "file:///etc", "client-id": "c", "client-secret": "x"})

    assert problems_of(tmp_path) == [
        f"{tmp_path / 'oidc-server'} must be an http:// or https:// URL"
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write_secret(tmp_path, {"token-url": "ftp://x", "grant-type": "magic", "ca.crt": "junk"})

    problems = problems_of(tmp_path)

    assert len(problems) == 5
    assert any("token-url" in p and "http" in p for p in problems)
    assert any("client-id is missing" in p for p in problems)
    assert any("unknown grant type" in p for p in problems)
    assert any("client_credentials grant needs client-secret" in p for p in problems)
    assert any("ca.crt" in p for p in problems)


def test_missing_directory_is_a_problem(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope") == [
        f"credentials directory {tmp_path / 'nope'} does not exist"
    ]


def test_file_instead_of_directory_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")

    assert problems_of(tmp_path / "f") == [f"credentials path {tmp_path / 'f'} is not a directory"]


def test_kubernetes_secret_volume_layout_is_read(tmp_path: Path) -> None:
    # The kubelet writes keys into a timestamped directory and links them through ..data.
    payload = write_secret(
        tmp_path / "..2026_01_01_00_00_00.1",
        {"token-url": "https://idp/t", "client-id": "c", "client-secret": CLIENT_SECRET},
    )
    os.symlink(payload.name, tmp_path / "..data")
    for key in ("token-url", "client-id", "client-secret"):
        os.symlink(f"..data/{key}", tmp_path / key)

    credentials = read_credentials(tmp_path)

    assert (credentials.client_id, credentials.client_secret) == ("c", CLIENT_SECRET)


def test_repr_and_str_hide_password_and_client_secret(tmp_path: Path) -> None:
    write_secret(
        tmp_path,
        {
            "token-url": "https://idp/t",
            "client-id": "c",
            "client-secret": CLIENT_SECRET,
            "username": "alice",
            "password": PASSWORD,
        },
    )

    credentials = read_credentials(tmp_path)

    for text in (repr(credentials), str(credentials)):
        assert PASSWORD not in text
        assert CLIENT_SECRET not in text
        assert "alice" in text


def test_problems_never_quote_file_contents(tmp_path: Path) -> None:
    # Secret-looking values in every file that has a problem.
    write_secret(
        tmp_path,
        {
            "token-url": f"ftp://{PASSWORD}",
            "oidc-server": f"https://u:{CLIENT_SECRET}@idp",
            "grant-type": f"{PASSWORD}-grant",
            "password": PASSWORD,
            "client-secret": CLIENT_SECRET,
            "ca.crt": PASSWORD,
        },
    )

    with pytest.raises(SettingsError) as caught:
        read_credentials(tmp_path)

    for text in (str(caught.value), repr(caught.value), *caught.value.problems):
        assert PASSWORD not in text
        assert CLIENT_SECRET not in text
