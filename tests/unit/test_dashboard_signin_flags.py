"""Sign-in mode refuses bad settings at start, as a usage error (exit 5), saying
what to fix, before it reads any credential or reaches any server."""

from __future__ import annotations

from pathlib import Path

import pytest

from promotion_operator.kubectl_plugin import cli
from promotion_operator.kubectl_plugin.resource import ExitCode

ISSUER = "https://idp.example/realms/r"


def _run(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    code = cli.main(["dashboard", "--no-browser", *flags])
    return code, capsys.readouterr().err


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text("s3cret-value\n")
    return path


def test_an_http_issuer_off_loopback_is_refused(
    capsys: pytest.CaptureFixture[str], secret: Path
) -> None:
    code, err = _run(
        capsys, "--oidc-issuer", "http://idp.example/realms/r", "--oidc-client-id", "d",
        "--oidc-client-secret-file", str(secret), "--public-url", "https://p.example",
    )  # fmt: skip
    assert code == ExitCode.NOT_FOUND
    assert "--oidc-issuer must be https://" in err


def test_a_missing_client_secret_file_is_refused_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = _run(
        capsys, "--oidc-issuer", ISSUER, "--oidc-client-id", "d",
        "--oidc-client-secret-file", str(tmp_path / "absent"), "--public-url", "https://p.example",
    )  # fmt: skip
    assert code == ExitCode.NOT_FOUND
    assert "cannot read --oidc-client-secret-file" in err and "Traceback" not in err


def test_an_empty_client_secret_file_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    code, err = _run(
        capsys, "--oidc-issuer", ISSUER, "--oidc-client-id", "d",
        "--oidc-client-secret-file", str(empty), "--public-url", "https://p.example",
    )  # fmt: skip
    assert code == ExitCode.NOT_FOUND
    assert "is empty" in err


def test_impersonation_flags_do_not_go_with_sign_in(
    capsys: pytest.CaptureFixture[str], secret: Path
) -> None:
    code, err = _run(
        capsys, "--oidc-issuer", ISSUER, "--oidc-client-id", "d", "--as", "alice",
        "--oidc-client-secret-file", str(secret), "--public-url", "https://p.example",
    )  # fmt: skip
    assert code == ExitCode.NOT_FOUND
    assert "--as and --as-group do not go with --oidc-issuer" in err


def test_a_public_url_in_the_clear_is_refused(
    capsys: pytest.CaptureFixture[str], secret: Path
) -> None:
    code, err = _run(
        capsys, "--oidc-issuer", ISSUER, "--oidc-client-id", "d",
        "--oidc-client-secret-file", str(secret), "--public-url", "http://p.example",
    )  # fmt: skip
    assert code == ExitCode.NOT_FOUND
    assert "--public-url must be https://" in err
    assert "s3cret-value" not in err


def test_no_client_id_is_refused(capsys: pytest.CaptureFixture[str], secret: Path) -> None:
    code, err = _run(capsys, "--oidc-issuer", ISSUER, "--oidc-client-secret-file", str(secret))
    assert code == ExitCode.NOT_FOUND
    assert "--oidc-client-id is needed" in err
