"""The dashboard in sign-in mode, as it runs in the cluster, in a real Chromium:
people sign in on the harness Keycloak's own login page, and the dashboard acts for
each of them through impersonation, with the token of the component's ServiceAccount
(``manifests/components/dashboard/``), which may impersonate and do nothing else.

There is no kubelet in the harness: the dashboard runs as a process with a token of
that ServiceAccount (the TokenRequest API), so the API server's RBAC and admission
are the real ones. Users and groups reach the API server as the dashboard names
them: ``oidc:`` and the ID token's email, ``oidc:`` and each of its groups.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.e2e.conftest import REPORTS
from tests.e2e.test_web_dashboard import cell, click, wait
from tests.harness.browser import chromium, screenshot
from tests.harness.controlplane import ControlPlane
from tests.harness.dashboard import DashboardProcess, dashboard
from tests.harness.keycloak import (
    DASHBOARD_CLIENT_ID,
    DASHBOARD_CLIENT_SECRET,
    DATA_SCIENTIST,
    DATA_VIEWER,
    Keycloak,
    RealmUser,
)
from tests.harness.operating import APPROVE, ENDED, annotations_of
from tests.harness.operating import SPEC as OPERATED
from tests.harness.operator_process import OperatorProcess
from tests.harness.ports import free_port
from tests.harness.promotions import Promotions
from tests.harness.secrets import assert_no_secrets
from tests.harness.simulator import Simulator

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
COMPONENT = MANIFESTS / "components" / "dashboard"
DASHBOARD_NAMESPACE = "promotion-operator"
DASHBOARD_ACCOUNT = "promotion-dashboard"
SESSION_COOKIE = "promotion_dashboard_session"
# How the dashboard names the realm's people to the API server.
SCIENTIST = f"oidc:{DATA_SCIENTIST.username}"
VIEWER = f"oidc:{DATA_VIEWER.username}"
SCIENTISTS = "oidc:data-scientists"


@pytest.fixture(scope="module")
def dashboard_kubeconfig(
    control_plane: ControlPlane, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The component's ServiceAccount and ClusterRole, as the manifests say, and a
    kubeconfig with a token of that ServiceAccount (what the Pod would mount)."""
    control_plane.kubectl("create", "namespace", DASHBOARD_NAMESPACE, check=False)
    control_plane.kubectl(
        "apply", "-f", str(COMPONENT / "serviceaccount.yaml"),
        "-f", str(COMPONENT / "clusterrole.yaml"),
    )  # fmt: skip
    # Roles for people and the approval policy, as manifests/ installs them.
    control_plane.kubectl("apply", "-k", str(MANIFESTS / "policies"))
    control_plane.kubectl("apply", "-k", str(MANIFESTS / "roles"))
    path = tmp_path_factory.mktemp("dashboard") / "dashboard.kubeconfig"
    return control_plane.service_account_kubeconfig(DASHBOARD_NAMESPACE, DASHBOARD_ACCOUNT, path)


@pytest.fixture
def other_namespace(control_plane: ControlPlane, crds: None) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    """A headless Chromium; when the test failed, its last screen is saved and the
    page's HTML printed."""
    driver = chromium()
    try:
        yield driver
        call = request.node.stash.get(REPORTS, {}).get("call")
        if call is not None and call.failed and sys.__stderr__ is not None:
            screenshot(driver, f"failed-{request.node.name}")
            sys.__stderr__.write(f"\n--- the page ({driver.current_url})\n")
            sys.__stderr__.write(f"{driver.page_source[:6000]}\n---\n")
    finally:
        driver.quit()


@contextmanager
def signed_in_dashboard(
    kubeconfig: Path, keycloak: Keycloak, tmp_path: Path, namespaces: list[str], *flags: str
) -> Iterator[DashboardProcess]:
    """``kubectl promotion dashboard`` in sign-in mode, with the ServiceAccount's token."""
    secret = tmp_path / "client-secret"
    secret.write_text(DASHBOARD_CLIENT_SECRET)
    port = free_port()
    with dashboard(
        kubeconfig, None,
        "--oidc-issuer", keycloak.issuer,
        "--oidc-client-id", DASHBOARD_CLIENT_ID,
        "--oidc-client-secret-file", str(secret),
        "--public-url", f"http://127.0.0.1:{port}",
        "--listen", f"127.0.0.1:{port}",
        "--user-namespaces", ",".join(namespaces),
        *flags,
    ) as served:  # fmt: skip
        yield served


def sign_in(browser: webdriver.Chrome, url: str, keycloak: Keycloak, user: RealmUser) -> None:
    """From the dashboard's sign-in page through Keycloak's own login form, back."""
    browser.get(url)
    wait(browser, lambda d: d.find_elements(By.ID, "signin"))
    browser.find_element(By.ID, "signin").click()
    wait(browser, lambda d: d.find_elements(By.ID, "kc-login"), timeout=60)
    assert browser.current_url.startswith(f"{keycloak.issuer}/protocol/openid-connect/auth")
    # With the provider's own session still open (the dashboard's sign-out does not
    # end it), prompt=login asks only for that person's password again.
    for field in browser.find_elements(By.ID, "username"):
        field.send_keys(user.username)
    browser.find_element(By.ID, "password").send_keys(user.password)
    browser.find_element(By.ID, "kc-login").click()
    wait(browser, lambda d: d.find_elements(By.ID, "signed-in-user"), timeout=60)


def sign_out(browser: webdriver.Chrome) -> None:
    browser.find_element(By.ID, "signout").click()
    wait(browser, lambda d: "session has ended" in d.find_element(By.ID, "signin-message").text)


def signed_in_user(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.ID, "signed-in-user").text)


def message(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.ID, "signin-message").text)


def test_people_sign_in_on_keycloaks_page_and_see_and_do_what_their_own_rbac_allows(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    other_namespace: str,
    control_plane: ControlPlane,
    keycloak: Keycloak,
    dashboard_kubeconfig: Path,
    browser: webdriver.Chrome,
    tmp_path: Path,
) -> None:
    ns, other = promotions.namespace, other_namespace
    # The scientists' group may approve here; the viewer may look here and there.
    control_plane.kubectl(
        "create", "rolebinding", "approvers", "-n", ns,
        "--clusterrole=modelpromotion-approver", f"--group={SCIENTISTS}",
    )  # fmt: skip
    for where in (ns, other):
        control_plane.kubectl(
            "create", "rolebinding", "viewers", "-n", where,
            "--clusterrole=modelpromotion-viewer", f"--user={VIEWER}",
        )  # fmt: skip
    spec: dict[str, Any] = {**OPERATED, "approval": {"required": True, "groups": [SCIENTISTS]}}
    promotions.apply("iris", spec)
    Promotions(control_plane, other).apply("elsewhere", OPERATED)
    promotions.wait_for_phase("iris", {"AwaitingApproval"}, timeout=60)
    seen: dict[str, str] = {}

    with signed_in_dashboard(dashboard_kubeconfig, keycloak, tmp_path, [ns, other]) as served:
        # The scientist sees this namespace's promotion, and not the other's.
        sign_in(browser, served.url, keycloak, DATA_SCIENTIST)
        assert signed_in_user(browser) == SCIENTIST
        wait(browser, lambda d: cell(d, f"{ns}/iris") != "")
        assert cell(browser, f"{other}/elsewhere") == ""
        screenshot(browser, "signin-scientist-list")
        seen["the scientist's list"] = browser.page_source
        seen["document.cookie"] = str(browser.execute_script("return document.cookie"))
        assert seen["document.cookie"] == ""  # HttpOnly: no script reads the session
        (session,) = [c for c in browser.get_cookies() if c["name"] == SESSION_COOKIE]
        assert session["httpOnly"] and session.get("sameSite") == "Lax"
        browser.get(f"{served.url}promotions/{other}/elsewhere")
        refused = browser.find_element(By.CSS_SELECTOR, "p.error").text
        assert "Forbidden" in refused and SCIENTIST in refused, refused

        # Sign-out ends the session on the server: the old cookie lets nobody in.
        browser.get(served.url)
        sign_out(browser)
        browser.get(served.url)
        assert browser.find_elements(By.ID, "signin") and not browser.find_elements(
            By.ID, "signed-in-user"
        )
        browser.add_cookie({"name": SESSION_COOKIE, "value": session["value"], "path": "/"})
        browser.get(served.url)
        assert "session has ended" in message(browser)
        assert cell(browser, f"{ns}/iris") == ""

        # The viewer, in a browser of their own, sees both namespaces, and the API
        # server refuses their approval.
        viewer = chromium()
        try:
            sign_in(viewer, served.url, keycloak, DATA_VIEWER)
            assert signed_in_user(viewer) == VIEWER
            wait(
                viewer,
                lambda d: cell(d, f"{ns}/iris") != "" and cell(d, f"{other}/elsewhere") != "",
            )
            seen["the viewer's list"] = viewer.page_source
            viewer.get(f"{served.url}promotions/{ns}/iris")
            refused = click(viewer, "approve")
            screenshot(viewer, "signin-viewer-refused")
            assert refused.startswith("Error from server (Forbidden): "), refused
            assert f'User "{VIEWER}" cannot patch' in refused, refused
            assert APPROVE not in annotations_of(promotions, "iris")
            sign_out(viewer)
        finally:
            viewer.quit()

        # The scientist approves as themselves: the policy sees their user and group.
        sign_in(browser, f"{served.url}promotions/{ns}/iris", keycloak, DATA_SCIENTIST)
        said = click(browser, "approve")
        assert "approve" in said.lower() and SCIENTIST in said, said
        seen["the approval"] = browser.page_source
        status = promotions.wait_for_phase("iris", ENDED, timeout=60)
        assert (status["phase"], status["approval"]["by"]) == ("Succeeded", SCIENTIST)
        output = served.output()

    assert f"signed in: {SCIENTIST} (groups: {SCIENTISTS})" in output
    assert f"signed out: {VIEWER}" in output
    # No ID, access or refresh token (nor the client secret, nor a password) in any
    # page, in what scripts may read of the cookies, or in the dashboard's output.
    assert_no_secrets({**seen, "the dashboard's output": output})


def test_a_session_past_its_ttl_goes_back_to_sign_in(
    promotions: Promotions,
    control_plane: ControlPlane,
    keycloak: Keycloak,
    dashboard_kubeconfig: Path,
    browser: webdriver.Chrome,
    tmp_path: Path,
) -> None:
    ns = promotions.namespace
    control_plane.kubectl(
        "create", "rolebinding", "viewers", "-n", ns,
        "--clusterrole=modelpromotion-viewer", f"--user={VIEWER}",
    )  # fmt: skip
    promotions.apply("iris", OPERATED)
    ttl = 20.0
    with signed_in_dashboard(
        dashboard_kubeconfig, keycloak, tmp_path, [ns], "--session-ttl", f"{ttl:.0f}s"
    ) as served:
        sign_in(browser, served.url, keycloak, DATA_VIEWER)
        signed_in = time.monotonic()
        wait(browser, lambda d: cell(d, f"{ns}/iris") != "")
        time.sleep(max(0.0, ttl + 1 - (time.monotonic() - signed_in)))
        browser.get(served.url)
        screenshot(browser, "signin-session-ended")
        assert "session has ended" in message(browser)
        assert cell(browser, f"{ns}/iris") == ""
        assert not browser.find_elements(By.ID, "signed-in-user")


def _can(kubeconfig: Path, control_plane: ControlPlane, *question: str) -> str:
    done = subprocess.run(
        [str(control_plane.binaries.kubectl), "--kubeconfig", str(kubeconfig), "auth", "can-i",
         *question],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout.strip()


def test_the_dashboards_service_account_may_impersonate_and_nothing_else(
    dashboard_kubeconfig: Path, control_plane: ControlPlane, namespace: str
) -> None:
    def can(*question: str) -> str:
        return _can(dashboard_kubeconfig, control_plane, *question)

    assert can("impersonate", "users") == "yes"
    assert can("impersonate", "groups") == "yes"
    assert can("list", "modelpromotions.deploy.mlops.dev", "--all-namespaces") == "no"
    assert can("get", "modelpromotions.deploy.mlops.dev", "-n", namespace) == "no"
    assert can("patch", "modelpromotions.deploy.mlops.dev", "-n", namespace) == "no"
    assert can("get", "secrets", "-n", DASHBOARD_NAMESPACE) == "no"
    assert can("impersonate", "serviceaccounts") == "no"


def test_the_component_installs_on_the_api_server(control_plane: ControlPlane) -> None:
    rendered = control_plane.kubectl("kustomize", str(MANIFESTS / "overlays" / "dashboard")).stdout
    control_plane.kubectl("create", "namespace", DASHBOARD_NAMESPACE, check=False)
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input_text=rendered, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "deployment.apps/promotion-dashboard created (server dry run)" in done.stdout
