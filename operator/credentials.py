"""The OIDC credentials of one Seldon Deploy instance, read from a mounted Secret.

A Kubernetes Secret mounted as a volume is a directory with one file per key. The
keys this module reads:

==================  ========================================================
``oidc-server``     issuer URL; the token endpoint is discovered through
                    ``{oidc-server}/.well-known/openid-configuration``
``token-url``       the token endpoint itself (exactly one of the two above)
``client-id``       required
``client-secret``   for confidential clients; required by ``client_credentials``
``username``        for the password grant
``password``        for the password grant
``grant-type``      ``password`` or ``client_credentials``; when absent, the
                    grant is ``password`` if ``username`` is present, else
                    ``client_credentials``
``scope``           default ``openid profile email groups`` (the SDK's default)
``ca.crt``          CA bundle (PEM) to verify the identity provider's TLS
==================  ========================================================

Values lose trailing whitespace (``echo`` and editors add a newline); a key whose
file is empty counts as absent. Other files are ignored (Kubernetes adds ``..data``
and friends). The directory is read again on every token refresh, so a rotated
Secret is picked up without a restart.

No message built here contains a value read from the directory: only key names,
the directory's path and what to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from promotion_operator.errors import SettingsError

GrantType = Literal["password", "client_credentials"]

DEFAULT_SCOPE = "openid profile email groups"

KEYS = (
    "oidc-server",
    "token-url",
    "client-id",
    "client-secret",
    "username",
    "password",
    "grant-type",
    "scope",
    "ca.crt",
)


@dataclass(frozen=True)
class Credentials:
    """What the token provider needs to ask the identity provider for a token.

    ``client_secret`` and ``password`` are left out of ``repr()`` (and so of
    ``str()``), so logging a ``Credentials`` never shows them.
    """

    token_url: str | None
    oidc_server: str | None
    client_id: str
    client_secret: str | None = field(repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    grant_type: GrantType = "password"
    scope: str = DEFAULT_SCOPE
    ca_file: Path | None = None


def url_problem(value: str) -> str | None:
    """Why ``value`` is not an http(s) URL with a host and no embedded credentials, if it isn't.

    The answer never repeats ``value``.
    """
    try:
        parts = urlsplit(value)
        # Accessing .port validates it (raises ValueError when out of range or not a number).
        _ = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not embed a user name or password (user:pass@host)"
    if parts.query or parts.fragment:
        return "must not have a query string or fragment"
    return None


def _read_key(directory: Path, key: str, problems: list[str]) -> str | None:
    path = directory / key
    try:
        if not path.exists():
            return None
        if path.is_dir():
            problems.append(f"{path} is a directory, expected a file with the {key} value")
            return None
        value = path.read_text(encoding="utf-8").rstrip()
    except UnicodeDecodeError:
        problems.append(f"{path} is not UTF-8 text")
        return None
    except OSError as exc:
        problems.append(f"cannot read {path}: {exc.strerror or type(exc).__name__}")
        return None
    return value or None


def ca_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable PEM certificate bundle, if it isn't (names the path)."""
    try:
        if not path.exists():
            return f"CA bundle {path} does not exist"
        if not path.is_file():
            return f"CA bundle {path} is not a file"
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        return f"cannot read CA bundle {path}: {exc.strerror or type(exc).__name__}"
    if "-----BEGIN CERTIFICATE-----" not in text:
        return f"CA bundle {path} contains no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return None


def read_credentials(directory: Path) -> Credentials:
    """Read and validate the credentials in ``directory``.

    Raises :class:`SettingsError` listing every problem, one line each.
    """
    if not directory.exists():
        raise SettingsError([f"credentials directory {directory} does not exist"])
    if not directory.is_dir():
        raise SettingsError([f"credentials path {directory} is not a directory"])
    if not os.access(directory, os.R_OK | os.X_OK):
        raise SettingsError([f"credentials directory {directory} is not readable"])

    problems: list[str] = []
    values = {key: _read_key(directory, key, problems) for key in KEYS if key != "ca.crt"}

    oidc_server = values["oidc-server"]
    token_url = values["token-url"]
    if oidc_server is None and token_url is None:
        problems.append(
            f"{directory}: set exactly one of oidc-server (issuer URL, for discovery) "
            "or token-url (the token endpoint); neither is present"
        )
    elif oidc_server is not None and token_url is not None:
        problems.append(
            f"{directory}: set exactly one of oidc-server or token-url; both are present"
        )
    for key, url in (("oidc-server", oidc_server), ("token-url", token_url)):
        if url is not None and (problem := url_problem(url)) is not None:
            problems.append(f"{directory / key} {problem}")
    if oidc_server is not None:
        oidc_server = oidc_server.rstrip("/")

    client_id = values["client-id"]
    if client_id is None:
        present = sorted(p.name for p in _listing(directory) if not p.name.startswith(".."))
        problems.append(
            f"{directory}: client-id is missing or empty (keys present: "
            f"{', '.join(present) or 'none'})"
        )

    username = values["username"]
    password = values["password"]
    client_secret = values["client-secret"]
    raw_grant = values["grant-type"]
    grant: GrantType
    if raw_grant is None:
        grant = "password" if username is not None else "client_credentials"
    elif raw_grant in get_args(GrantType):
        grant = raw_grant  # type: ignore[assignment]
    else:
        problems.append(
            f"{directory / 'grant-type'}: unknown grant type; use password or client_credentials"
        )
        grant = "password" if username is not None else "client_credentials"

    if grant == "password":
        missing = [k for k, v in (("username", username), ("password", password)) if v is None]
        if missing:
            problems.append(
                f"{directory}: the password grant needs {' and '.join(missing)} (missing or empty)"
            )
    elif client_secret is None:
        problems.append(
            f"{directory}: the client_credentials grant needs client-secret (missing or empty)"
        )

    scope = values["scope"] or DEFAULT_SCOPE

    ca_file: Path | None = None
    ca_path = directory / "ca.crt"
    if ca_path.exists():
        if (problem := ca_file_problem(ca_path)) is not None:
            problems.append(problem)
        ca_file = ca_path

    if problems:
        raise SettingsError(problems)
    assert client_id is not None
    return Credentials(
        token_url=token_url,
        oidc_server=oidc_server,
        client_id=client_id,
        client_secret=client_secret,
        username=username,
        password=password,
        grant_type=grant,
        scope=scope,
        ca_file=ca_file,
    )


def _listing(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []
