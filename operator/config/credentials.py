"""The OIDC credentials of one Seldon Deploy instance, read from a mounted Secret.

A Kubernetes Secret mounted as a volume is a directory with one file per key. The
keys this module reads:

==================  ========================================================
``oidc-server``     issuer URL; the token endpoint is discovered through
                    ``{oidc-server}/.well-known/openid-configuration``
``token-url``       the token endpoint itself (exactly one of the two above)
``client-id``       required
``client-secret``   for confidential clients: the ``client_credentials`` grant
                    needs this or ``client-assertion``
``client-assertion`` a signed JWT that authenticates the client instead of a
                    secret (RFC 7523, ``client_assertion_type`` jwt-bearer):
                    the projected Kubernetes ServiceAccount token, whose
                    audience is the realm's issuer; the kubelet rotates it and
                    it is read again on every token request
``username``        for the password grant
``password``        for the password grant
``grant-type``      ``password`` or ``client_credentials``; when absent, the
                    grant is ``password`` if ``username`` is present, else
                    ``client_credentials``
``scope``           default ``openid profile email groups`` (the SDK's default)
``ca.crt``          CA bundle (PEM) to verify the identity provider's TLS
==================  ========================================================

``client-secret`` and ``client-assertion`` exclude each other; ``client-assertion``
goes only with the ``client_credentials`` grant. A directory for the assertion is
usually a projected volume: a ConfigMap with ``oidc-server``, ``client-id`` and
``grant-type`` plus a ``serviceAccountToken`` source at path ``client-assertion``,
so no Secret is needed at all.

Values lose trailing whitespace (``echo`` and editors add a newline); a key whose
file is empty counts as absent. Other files are ignored (Kubernetes adds ``..data``
and friends). The directory is read again on every token refresh, so a rotated
Secret is picked up without a restart.

No message built here contains a value read from the directory: only key names,
the directory's path and what to fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from promotion_operator.errors import SettingsError

GrantType = Literal["password", "client_credentials"]

#: RFC 7523 section 2.2: the client authenticates with a JWT it presents.
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_KEY = "client-assertion"
# A compact JWS: three base64url parts (the signature may not be empty here).
_COMPACT_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")

DEFAULT_SCOPE = "openid profile email groups"

KEYS = (
    "oidc-server",
    "token-url",
    "client-id",
    "client-secret",
    ASSERTION_KEY,
    "username",
    "password",
    "grant-type",
    "scope",
    "ca.crt",
)


@dataclass(frozen=True)
class Credentials:
    """What the token provider needs to ask the identity provider for a token.

    ``client_secret``, ``password`` and ``client_assertion`` are left out of
    ``repr()`` (and so of ``str()``), so logging a ``Credentials`` never shows them.
    ``client_assertion_file`` is where the assertion was read (for messages).
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
    client_assertion: str | None = field(default=None, repr=False)
    client_assertion_file: Path | None = None

    @property
    def secrets(self) -> list[str]:
        """Every credential value held, for redacting text that might quote one."""
        return [s for s in (self.password, self.client_secret, self.client_assertion) if s]


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
    assertion = values[ASSERTION_KEY]
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
    elif client_secret is None and assertion is None:
        problems.append(
            f"{directory}: the client_credentials grant needs client-secret or "
            f"{ASSERTION_KEY} (the projected ServiceAccount token); both are missing or empty"
        )
    if assertion is not None:
        if client_secret is not None:
            problems.append(
                f"{directory}: set one of client-secret or {ASSERTION_KEY}, not both (a "
                "client authenticates with a secret or with a signed token)"
            )
        if grant != "client_credentials":
            problems.append(
                f"{directory}: {ASSERTION_KEY} authenticates a client with the "
                "client_credentials grant; remove it or set grant-type client_credentials"
            )
        if not _COMPACT_JWT.match(assertion):
            problems.append(
                f"{directory / ASSERTION_KEY} is not a signed JWT (header.payload.signature); "
                "it must be a projected ServiceAccount token"
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
        client_assertion=assertion,
        client_assertion_file=directory / ASSERTION_KEY if assertion is not None else None,
    )


def _listing(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []
