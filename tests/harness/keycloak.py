"""A real Keycloak with the ``deploy-realm`` of the Seldon Deploy reference.

The server distribution ``org.keycloak:keycloak-quarkus-dist`` is fetched with
``mvn`` (maven-dependency-plugin pinned, since Debian's Maven defaults to an old
2.x plugin) into the cache, unpacked into a fresh temporary directory per run
(so no run sees another's state) and started with ``kc.sh start-dev`` on free
loopback ports, an in-memory database and the realm file next to this module.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.harness.cache import cache_root
from tests.harness.ports import free_port
from tests.harness.processes import HarnessError, ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say

KEYCLOAK_VERSION = "26.7.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.11.0"
REALM = "deploy-realm"
# Keycloak imports only files named <realm>-realm.json.
REALM_FILE = Path(__file__).parent / "realm" / f"{REALM}-realm.json"
# A second realm, for the production Seldon Deploy of the cross-instance tests: its
# own issuer and keys, and an operator client of its own (client credentials).
PRODUCTION_REALM = "production-realm"
PRODUCTION_CLIENT_ID = "promotion-operator-production"
PRODUCTION_CLIENT_SECRET = "production-operator-test-secret-91d0e4"
PRODUCTION_SERVICE_ACCOUNT = "promotion-operator@production.example.com"
# Keycloak deprecates Java 17; use the newer JDK where the machine has one.
PREFERRED_JAVA_HOMES = ("/usr/lib/jvm/temurin-25-jdk-amd64",)
# Federated client authentication (RFC 7523 client assertions issued by another
# identity provider) and its Kubernetes identity provider. Both are "default"
# features in 26.7.3 (org.keycloak.common.Profile$Feature CLIENT_AUTH_FEDERATED and
# KUBERNETES_SERVICE_ACCOUNTS, keys lower-case with dashes); named here so that the
# harness does not depend on that default.
FEATURES = ("client-auth-federated", "kubernetes-service-accounts")
# The realm file's placeholder for the Kubernetes identity provider's issuer
# (Keycloak replaces ${VAR:default} from the environment when it imports a realm).
ISSUER_VARIABLE = "SPO_KUBERNETES_ISSUER"
# Its start (a Quarkus build, then the realm's import) took over 4 minutes on 2 cores
# shared with other stacks (load average above 20); a failed start costs the whole run.
_START_TIMEOUT = 600.0


@dataclass(frozen=True)
class RealmUser:
    """A user of the test realm."""

    username: str
    password: str
    groups: tuple[str, ...]


# The seed's user, with write rights on the managed namespaces in the tests.
DATA_SCIENTIST = RealmUser("data-scientist-1@example.com", "12341234", ("data-scientists",))
# A narrower user: read-only where the data scientist may write.
DATA_VIEWER = RealmUser("data-viewer-1@example.com", "viewer-pass-5678", ("data-viewers",))
PUBLIC_CLIENT_ID = "sd-api"
# A public client whose tokens live 5 s, so tests see real expired tokens quickly.
SHORT_LIVED_CLIENT_ID = "sd-api-short-lived"
OPERATOR_CLIENT_ID = "promotion-operator"
OPERATOR_CLIENT_SECRET = "promotion-operator-test-secret-7f3a2c"
# The web dashboard's client in sign-in mode: authorization code with PKCE (S256),
# sent back to any port of 127.0.0.1.
DASHBOARD_CLIENT_ID = "promotion-dashboard"
DASHBOARD_CLIENT_SECRET = "promotion-dashboard-test-secret-4b8e1d"
# What the Seldon Deploy SDK asks for by default.
SDK_SCOPE = "openid profile email groups"
# The identity Keycloak gives the operator client's service account.
OPERATOR_SERVICE_ACCOUNT = "promotion-operator@example.com"
# The client that authenticates with the operator's Kubernetes ServiceAccount token
# (client authenticator federated-jwt, identity provider `kubernetes`), and the
# identity Keycloak gives its service account.
FEDERATED_CLIENT_ID = "promotion-operator-k8s"
FEDERATED_IDENTITY_PROVIDER = "kubernetes"
FEDERATED_SUBJECT = "system:serviceaccount:promotion-operator:promotion-operator"
FEDERATED_SERVICE_ACCOUNT = "promotion-operator-k8s@example.com"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Keycloak:
    """A running Keycloak and how to reach its realm."""

    workdir: Path
    url: str
    admin_user: str
    admin_password: str
    process: ManagedProcess

    @property
    def issuer(self) -> str:
        """The realm's issuer URL, also the SDK's ``oidc_server``."""
        return f"{self.url}/realms/{REALM}"

    def realm_issuer(self, realm: str) -> str:
        """The issuer URL of ``realm`` (``issuer`` is the main realm's)."""
        return f"{self.url}/realms/{realm}"

    @property
    def token_url(self) -> str:
        """The realm's token endpoint."""
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def jwks_url(self) -> str:
        """The realm's signing keys."""
        return f"{self.issuer}/protocol/openid-connect/certs"

    def ready(self) -> bool:
        """Whether the realm's discovery document answers."""
        try:
            discovery = f"{self.issuer}/.well-known/openid-configuration"
            with urllib.request.urlopen(discovery, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def password_grant(self, user: RealmUser, client_id: str = PUBLIC_CLIENT_ID) -> dict[str, Any]:
        """A token response for ``user`` (scope as the SDK asks for it)."""
        return self._token(
            grant_type="password",
            client_id=client_id,
            username=user.username,
            password=user.password,
            scope=SDK_SCOPE,
        )

    def client_credentials_grant(self) -> dict[str, Any]:
        """A token response for the operator client's service account."""
        return self._token(
            grant_type="client_credentials",
            client_id=OPERATOR_CLIENT_ID,
            client_secret=OPERATOR_CLIENT_SECRET,
            scope=SDK_SCOPE,
        )

    def _token(self, **form: str) -> dict[str, Any]:
        response = requests.post(self.token_url, data=form, timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def wait_ready(self) -> None:
        """Block until the realm answers (Keycloak takes 20-60 s to start)."""
        self.process.wait_until(
            self.ready, _START_TIMEOUT, "the realm's discovery document answered"
        )
        say(f"Keycloak ready; issuer {self.issuer}")

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop Keycloak, stay down ``down_for`` seconds, start it again on the same port.

        Its in-memory database is re-imported from the realm file, so users and
        clients come back, with new signing keys (tokens issued before no longer
        verify), as after a real identity-provider rebuild.
        """
        self.process.stop(grace=20)
        time.sleep(down_for)
        self.process.restart()
        self.wait_ready()

    def stop(self) -> None:
        """Stop Keycloak and remove its unpacked copy."""
        self.process.stop(grace=20)
        remove_temp_dir(self.workdir)


def java_home() -> str | None:
    """The JDK to run Keycloak with: a preferred newer one if present, else the default."""
    for candidate in PREFERRED_JAVA_HOMES:
        if Path(candidate, "bin", "java").exists():
            return candidate
    return os.environ.get("JAVA_HOME")


def ensure_distribution() -> Path:
    """The cached Keycloak server tarball, fetched with Maven when missing."""
    downloads = cache_root() / "downloads"
    tarball = downloads / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.tar.gz"
    if tarball.exists():
        return tarball
    mvn = shutil.which("mvn")
    if mvn is None:
        raise HarnessError("Maven (`mvn`) is needed to fetch the Keycloak server distribution")
    say(f"fetching keycloak-quarkus-dist {KEYCLOAK_VERSION} with Maven (180 MB, first run only)")
    downloads.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            mvn,
            "--batch-mode",
            "--no-transfer-progress",
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:tar.gz",
            f"-DoutputDirectory={downloads}",
        ],
        capture_output=True,
        text=True,
        cwd=downloads,
    )
    if result.returncode != 0 or not tarball.exists():
        raise HarnessError(f"fetching Keycloak failed:\n{result.stdout[-4000:]}{result.stderr}")
    return tarball


def launch_keycloak(
    *, kubernetes_issuer: str | None = None, trusted_ca: Path | None = None
) -> Keycloak:
    """Unpack and start Keycloak with the test realm; call ``wait_ready`` before use.

    Launching without waiting lets the other servers start while the JVM boots.
    ``kubernetes_issuer`` is the ServiceAccount issuer the realm's Kubernetes
    identity provider trusts (the harness apiserver's URL), ``trusted_ca`` the CA
    Keycloak's JVM trusts when it reads that issuer's discovery and keys.
    """
    tarball = ensure_distribution()
    workdir = make_temp_dir("keycloak")
    with tarfile.open(tarball) as archive:
        archive.extractall(workdir, filter="tar")
    home = workdir / f"keycloak-{KEYCLOAK_VERSION}"
    import_dir = home / "data" / "import"
    import_dir.mkdir(parents=True)
    for realm_file in REALM_FILE.parent.glob("*-realm.json"):
        shutil.copy(realm_file, import_dir / realm_file.name)

    port, management_port = free_port(), free_port()
    admin_password = secrets.token_urlsafe(16)
    env = {
        "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
        "KC_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
        "JAVA_OPTS_KC_HEAP": "-Xms128m -Xmx768m",
    }
    jdk = java_home()
    if jdk:
        env["JAVA_HOME"] = jdk
    if kubernetes_issuer is not None:
        env[ISSUER_VARIABLE] = kubernetes_issuer
    trust = [f"--truststore-paths={trusted_ca}"] if trusted_ca is not None else []
    url = f"http://127.0.0.1:{port}"
    say(f"starting Keycloak {KEYCLOAK_VERSION} on {url} (takes 20-60 s)")
    process = ManagedProcess(
        "keycloak",
        [
            str(home / "bin" / "kc.sh"),
            "start-dev",
            "--import-realm",
            "--db=dev-mem",
            "--http-host=127.0.0.1",
            f"--http-port={port}",
            f"--http-management-port={management_port}",
            # The issuer is this URL whichever address a client used (a token
            # fetched through the fault proxy still carries the `iss` the simulator
            # trusts), while the back-channel endpoints in discovery (token, keys)
            # follow the address the client used, as for a client reaching Keycloak
            # over a private network: a client that discovered through the proxy
            # stays behind it.
            f"--hostname={url}",
            "--hostname-backchannel-dynamic=true",
            "--cache=local",
            f"--features={','.join(FEATURES)}",
            *trust,
        ],
        workdir / "keycloak.log",
        env=env,
        cwd=home,
    )
    return Keycloak(workdir, url, "admin", admin_password, process)
