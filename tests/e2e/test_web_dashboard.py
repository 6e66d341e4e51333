"""``kubectl promotion dashboard`` in a real Chromium (Debian's, through Selenium),
against the real stack with the operator running: the installed console script
serves the pages on 127.0.0.1 with a harness kubeconfig, and the browser looks and
clicks as a person would.

People are impersonated as in the approval tests: the harness admin may
impersonate, and the dashboard's ``--as``/``--as-group`` make it act as alice
(release-managers) or bob (data-scientists). Screenshots are saved under
``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import REPORTS, WRITERS, StartOperator
from tests.e2e.test_canary import (
    TEN_THEN_FIFTY,
    analysis,
    canary_spec,
    error_rate,
    operator_with_prometheus,
    pause,
    seed_model,
    set_weight,
)
from tests.e2e.test_shadow import SHADOW, latency
from tests.harness.browser import PHONE, chromium, screenshot
from tests.harness.controlplane import ControlPlane
from tests.harness.dashboard import dashboard
from tests.harness.kubectl_plugin import user_kubeconfig as account_kubeconfig
from tests.harness.operating import APPROVE, ENDED, annotations_of
from tests.harness.operating import SPEC as OPERATED
from tests.harness.operator_process import OperatorProcess
from tests.harness.prometheus import Prometheus
from tests.harness.promotion_paths import Paths, stage
from tests.harness.promotions import Promotions
from tests.harness.simulator import Simulator
from tests.simulator.testing import deployment_body

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
T = TypeVar("T")


@pytest.fixture
def canary_operator(
    operator_factory: StartOperator, prometheus: Prometheus
) -> Iterator[OperatorProcess]:
    yield from operator_with_prometheus(operator_factory, prometheus)


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[webdriver.Chrome]:
    """A headless Chromium at 1280 px; when the test failed, its last screen is saved
    (``failed-<test>.png``) and the page's HTML printed."""
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


def wait(
    driver: webdriver.Chrome, until: Callable[[webdriver.Chrome], T], timeout: float = 90
) -> T:
    """``until``'s first true answer. A live page replaces its parts on every push, so
    an element ``until`` found may be gone before it reads it: it is asked again."""
    stale = (StaleElementReferenceException,)
    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=stale).until(until)


def cell(driver: webdriver.Chrome, row: str, css: str = "") -> str:
    """The text of a list row (or of one of its cells), read in one script call: the
    live part is replaced on every push, so an element found first may be gone (stale)
    by the time its text is asked for."""
    text = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        f'tr[data-promotion="{row}"] {css}'.strip(),
    )
    return str(text or "")


def test_the_list_shows_a_running_canary_and_its_weight_changes_without_a_reload(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
    browser: webdriver.Chrome,
) -> None:
    model = seed_model(seldon)
    ns = promotions.namespace
    with dashboard(control_plane.kubeconfig, ns) as served:
        browser.get(served.url)
        # A mark on this document: gone if the page were loaded again.
        browser.execute_script("window.notReloaded = true;")
        promotions.apply("iris", canary_spec(model, TEN_THEN_FIFTY, templates=[error_rate()]))

        wait(browser, lambda d: cell(d, f"{ns}/iris", "td.weight") == "10%")
        row = cell(browser, f"{ns}/iris")
        assert "Canary" in row and f"staging/{model}" in row
        screenshot(browser, "list-canary-at-10")
        wait(browser, lambda d: cell(d, f"{ns}/iris", "td.weight") == "50%")
        screenshot(browser, "list-canary-at-50")

        assert browser.execute_script("return window.notReloaded === true;")
        assert (
            int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0) >= 2
        )


def test_the_plot_has_a_point_per_measurement_and_the_band(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
    browser: webdriver.Chrome,
) -> None:
    model = seed_model(seldon)
    promotions.apply("iris", canary_spec(model, TEN_THEN_FIFTY, templates=[error_rate()]))
    status = promotions.wait_for_phase("iris", ENDED, timeout=120)
    every = [
        *((status.get("canary") or {}).get("measurements") or []),
        *((status.get("bake") or {}).get("measurements") or []),
    ]
    recorded = [m for m in every if m["template"] == "error-rate"]
    assert recorded, status

    with dashboard(control_plane.kubeconfig, promotions.namespace) as served:
        browser.get(f"{served.url}promotions/{promotions.namespace}/iris")
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'svg[data-template="error-rate"]'))
        # Read in one script call: a push may replace the plot between two reads.
        points, bands, height, bounds, failures = browser.execute_script(
            "const plot = document.querySelector('svg[data-template=\"error-rate\"]');"
            "const band = plot.querySelector('rect.band');"
            "return [plot.querySelectorAll('g.point').length,"
            " plot.querySelectorAll('rect.band').length,"
            " band ? parseFloat(band.getAttribute('height') || '0') : 0,"
            " plot.querySelectorAll('line.bound.max').length,"
            " plot.querySelectorAll('g.point.failed').length];"
        )
        assert points == len(recorded)
        assert bands == 1 and height > 0
        assert bounds > 0
        assert failures == sum(1 for m in recorded if m["result"] == "Failed")
        screenshot(browser, "promotion-plot-desktop")
        browser.set_window_size(*PHONE)
        screenshot(browser, "promotion-plot-phone")
        # Nothing wider than the phone's screen but the tables' own scroll boxes.
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;"
        )


def test_a_shadows_plot_draws_the_challenger_the_champion_and_the_score_against_its_band(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    prometheus: Prometheus,
    promotions: Promotions,
    control_plane: ControlPlane,
    browser: webdriver.Chrome,
) -> None:
    model = seed_model(seldon)
    ns = promotions.namespace
    spec = canary_spec(model, (SHADOW, analysis("latency")), templates=[latency(count=3)])
    promotions.apply("iris", spec)
    with dashboard(control_plane.kubeconfig, ns, "--prometheus-url", prometheus.url) as served:
        browser.get(f"{served.url}promotions/{ns}/iris")
        browser.execute_script("window.notReloaded = true;")
        # The page follows the shadow to its end by itself, its measurements with it.
        wait(
            browser,
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".overview").get_attribute("data-phase") in ENDED
            ),
            timeout=120,
        )
        assert browser.execute_script("return window.notReloaded === true;")
        # The checks below read elements one by one: on a page loaded after the end,
        # which no push replaces under them.
        browser.get(f"{served.url}promotions/{ns}/iris")
        status = promotions.status("iris")
        recorded = [
            m
            for m in (status.get("canary") or {}).get("measurements") or []
            if m["template"] == "latency"
        ]
        assert status["phase"] == "Succeeded" and recorded, status
        plot = wait(
            browser,
            lambda d: d.find_element(By.CSS_SELECTOR, 'svg.comparison[data-template="latency"]'),
        )
        legend = [e.text for e in plot.find_elements(By.CSS_SELECTOR, "g.legend text")]
        assert legend == ["challenger", "champion"]
        for series, key in (("challenger", "value"), ("champion", "champion")):
            drawn = plot.find_elements(By.CSS_SELECTOR, f"g.sample.{series}")
            assert len(drawn) == sum(1 for m in recorded if key in m), series
        assert len(plot.find_elements(By.CSS_SELECTOR, "g.point")) == len(recorded)
        passed = sum(1 for m in recorded if m["result"] == "Passed")
        assert len(plot.find_elements(By.CSS_SELECTOR, "g.point.passed")) == passed > 0
        assert plot.find_elements(By.CSS_SELECTOR, "rect.band")
        assert plot.find_elements(By.CSS_SELECTOR, "line.bound.max")
        # The table beside it: both values, the ratio and the verdict of each.
        figure = browser.find_element(By.CSS_SELECTOR, 'figure[data-template="latency"]')
        heads = [h.text for h in figure.find_elements(By.CSS_SELECTOR, "thead th")]
        assert heads[:5] == ["At (UTC)", "Verdict", "Challenger", "Champion", "Ratio"]
        rows = [
            [td.text for td in row.find_elements(By.TAG_NAME, "td")][1:5]
            for row in figure.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        assert rows == [
            [m["result"], *(_four(m.get(k)) for k in ("value", "champion", "score"))]
            for m in recorded
        ]
        browser.execute_script("arguments[0].scrollIntoView();", figure)
        screenshot(browser, "promotion-shadow-comparison")

        # --prometheus-url: the latency query over the whole run, both predictors' series.
        ranged = wait(
            browser, lambda d: d.find_element(By.CSS_SELECTOR, 'div.range[data-template="latency"]')
        )
        for side in ("champion", "challenger"):
            drawn = ranged.find_elements(By.CSS_SELECTOR, f"svg.range g.series.{side}")
            assert len(drawn) == 1, (side, (ranged.get_attribute("innerHTML") or "")[:2000])
            assert int(drawn[0].get_attribute("data-points") or 0) > 1, side
        browser.execute_script("arguments[0].scrollIntoView();", ranged)
        screenshot(browser, "promotion-shadow-range")


def _four(value: float | None) -> str:
    """A number as the page shows it: four significant digits."""
    return "-" if value is None else f"{value:.4g}"


# --- promotion paths ---------------------------------------------------------------------


def _stage_state(driver: webdriver.Chrome, name: str) -> tuple[str, str, str]:
    """A stage card's phase, the soak time left it shows, and its run's link, read in
    one script call (the live part is replaced on every push)."""
    state = driver.execute_script(
        'const e = document.querySelector(`li.stage[data-stage="${arguments[0]}"]`);'
        "if (!e) { return ['', '', '']; }"
        "const left = e.querySelector('.countdown'), run = e.querySelector('a');"
        "return [e.dataset.phase, left ? left.textContent : '', run ? run.href : ''];",
        name,
    )
    return str(state[0]), str(state[1]), str(state[2])


def test_a_paths_page_shows_its_second_stage_soak_and_start_without_a_reload(
    seldon: Simulator,
    operator: OperatorProcess,
    control_plane: ControlPlane,
    namespace: str,
    browser: webdriver.Chrome,
) -> None:
    seldon.control.add_namespace("build", groups=WRITERS)
    seldon.control.add_namespace("dev", groups=WRITERS)
    seldon.control.seed_deployment(
        "build", deployment_body("iris", image="seldonio/sklearn-iris:2.0")
    )
    paths = Paths(control_plane, namespace)
    paths.apply("iris", stage("dev", soak="1s"), stage("staging", soak="8s"))

    with dashboard(control_plane.kubeconfig, namespace) as served:
        browser.get(f"{served.url}paths/{namespace}/iris")
        browser.execute_script("window.notReloaded = true;")
        seen: list[tuple[str, str, str]] = []
        soaking_shot: Path | None = None
        deadline = time.monotonic() + 150
        while not seen or seen[-1][0] != "Succeeded":
            assert time.monotonic() < deadline, f"staging never succeeded: {seen}"
            state = _stage_state(browser, "staging")
            if not seen or state != seen[-1]:
                seen.append(state)
                if state[0] == "Soaking" and state[1] and not soaking_shot:
                    soaking_shot = screenshot(browser, "path-staging-soaking")
            time.sleep(0.2)
        screenshot(browser, "path-staging-succeeded")

        phases = [phase for phase, _, _ in seen]
        # The page saw staging soak (a time left counted down), then start and end.
        assert any(phase == "Soaking" and left.endswith("s") for phase, left, _ in seen), seen
        assert phases.index("Soaking") < phases.index("Running") < phases.index("Succeeded")
        assert seen[-1][2].endswith(
            f"/promotions/{namespace}/" + paths.stage("iris", "staging")["run"]
        )
        assert browser.execute_script("return window.notReloaded === true;")
        assert (
            int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0) >= 3
        )

        # The list of paths shows both stages, and the run's link opens its promotion page.
        browser.get(f"{served.url}paths")
        stages = wait(
            browser,
            lambda d: d.execute_script(
                "return Array.from(document.querySelectorAll("
                '`tr[data-path="${arguments[0]}"] li`), e => e.dataset.stage);',
                f"{namespace}/iris",
            ),
        )
        assert stages == ["dev", "staging"]
        screenshot(browser, "paths-list")
        browser.get(seen[-1][2])
        wait(
            browser,
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".overview").get_attribute("data-phase")
                == "Succeeded"
            ),
        )


def test_a_manual_stage_is_promoted_from_its_paths_page(
    seldon: Simulator,
    operator: OperatorProcess,
    control_plane: ControlPlane,
    namespace: str,
    browser: webdriver.Chrome,
) -> None:
    seldon.control.add_namespace("build", groups=WRITERS)
    seldon.control.add_namespace("dev", groups=WRITERS)
    seldon.control.seed_deployment("build", deployment_body("iris"))
    paths = Paths(control_plane, namespace)
    paths.apply("iris", stage("dev"), stage("production", policy="manual", soak="1s"))
    paths.wait_for(
        "iris",
        lambda body: paths_stage(body, "production").get("phase") == "WaitingForPromotion",
        "production waiting for a person",
    )

    with dashboard(control_plane.kubeconfig, namespace) as served:
        browser.get(f"{served.url}paths/{namespace}/iris")
        offered = browser.execute_script(
            "return Array.from(document.querySelectorAll('.stage-actions button.promote'),"
            " b => b.closest('li').dataset.stage);"
        )
        assert offered == ["production"]  # dev promotes by itself
        browser.find_element(By.CSS_SELECTOR, "button.promote").click()
        notice = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "p.error, p.done"))
        assert notice.get_attribute("class") == "done", notice.text
        screenshot(browser, "path-production-promoted")
    body = paths.wait_for(
        "iris",
        lambda body: paths_stage(body, "production").get("phase") == "Succeeded",
        "production promoted",
    )
    assert paths_stage(body, "production")["promoted"] == paths_stage(body, "dev")["promoted"]


def paths_stage(body: dict[str, Any], name: str) -> dict[str, Any]:
    stages = (body.get("status") or {}).get("stages") or []
    return next((s for s in stages if s["name"] == name), {})


# --- approval, as people -------------------------------------------------------------


@pytest.fixture(scope="module")
def admission(control_plane: ControlPlane, crds: None) -> None:
    control_plane.kubectl("apply", "-k", str(MANIFESTS / "policies"))
    control_plane.kubectl("apply", "-k", str(MANIFESTS / "roles"))


@pytest.fixture
def approvers(control_plane: ControlPlane, namespace: str, admission: None) -> None:
    """alice and bob may both patch (the approver role): only the policy tells them apart."""
    control_plane.kubectl(
        "create", "rolebinding", "approvers", "-n", namespace,
        "--clusterrole=modelpromotion-approver", "--user=alice", "--user=bob",
    )  # fmt: skip


def click(browser: webdriver.Chrome, action: str) -> str:
    """Press a button and return the message the page shows for it."""
    browser.find_element(By.CSS_SELECTOR, f'button[value="{action}"]').click()
    notice = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "p.error, p.done"), timeout=30)
    return " ".join(notice.text.split())


def _enforced(control_plane: ControlPlane, namespace: str) -> None:
    """A policy just installed takes a moment to be enforced: try as bob (dry run)."""
    wait_until(
        lambda: "modelpromotion-approval"
        in control_plane.kubectl(
            "annotate", "mp", "iris", "-n", namespace, f"{APPROVE}=bob", "--as=bob",
            "--as-group=data-scientists", "--dry-run=server", check=False,
        ).stderr,
    )  # fmt: skip


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


APPROVAL_SPEC: dict[str, Any] = {
    **OPERATED,
    "approval": {"required": True, "groups": ["release-managers"]},
}


def test_a_non_member_sees_the_api_servers_refusal_and_a_member_approves(
    seldon: Simulator,
    operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
    approvers: None,
    browser: webdriver.Chrome,
) -> None:
    ns = promotions.namespace
    promotions.apply("iris", APPROVAL_SPEC)
    promotions.wait_for_phase("iris", {"AwaitingApproval"}, timeout=30)
    _enforced(control_plane, ns)
    page = f"promotions/{ns}/iris"

    as_bob = ("--as", "bob", "--as-group", "data-scientists")
    with dashboard(control_plane.kubeconfig, ns, *as_bob) as served:
        browser.get(served.url + page)
        refused = click(browser, "approve")
        screenshot(browser, "approve-refused")
    assert refused.startswith("Error from server (Forbidden): "), refused
    assert "modelpromotion-approval.deploy.mlops.dev" in refused
    assert f"bob may not approve ModelPromotion {ns}/iris" in refused
    assert APPROVE not in annotations_of(promotions, "iris")

    as_alice = ("--as", "alice", "--as-group", "release-managers")
    with dashboard(control_plane.kubeconfig, ns, *as_alice) as served:
        browser.get(served.url + page)
        said = click(browser, "approve")
        assert "approve" in said.lower() and "alice" in said, said
        status = promotions.wait_for_phase("iris", ENDED, timeout=60)
        assert (status["phase"], status["approval"]["by"]) == ("Succeeded", "alice")
        # The page follows the run to its end by itself.
        wait(
            browser,
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".overview").get_attribute("data-phase")
                == "Succeeded"
            ),
            timeout=30,
        )
        assert "approved by alice" in browser.find_element(By.CSS_SELECTOR, "p.approval").text
        screenshot(browser, "approved")


def test_abort_from_the_page_rolls_the_canary_back(
    seldon: Simulator,
    canary_operator: OperatorProcess,
    promotions: Promotions,
    control_plane: ControlPlane,
    browser: webdriver.Chrome,
) -> None:
    model = seed_model(seldon)
    ns = promotions.namespace
    promotions.apply("iris", canary_spec(model, (set_weight(10), pause())))
    promotions.wait_for_phase("iris", {"Paused"}, timeout=60)

    with dashboard(control_plane.kubeconfig, ns) as served:
        browser.get(f"{served.url}promotions/{ns}/iris")
        said = click(browser, "abort")
        assert "abort" in said.lower(), said
        wait(
            browser,
            lambda d: (
                d.find_element(By.CSS_SELECTOR, ".overview").get_attribute("data-phase")
                == "RolledBack"
            ),
        )
        screenshot(browser, "aborted-rolled-back")
    status = promotions.status("iris")
    assert (status["phase"], status["outcome"]["reason"]) == ("RolledBack", "Aborted")
    restored = seldon.control.get_deployment("production", model)
    assert restored is not None
    assert [p["name"] for p in restored["spec"]["predictors"]] == ["default"]


# --- security --------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(
    promotions: Promotions, control_plane: ControlPlane
) -> None:
    ns = promotions.namespace
    promotions.apply("iris", OPERATED)
    with dashboard(control_plane.kubeconfig, ns) as served:
        page = requests.get(f"{served.url}promotions/{ns}/iris", timeout=10)
        assert 'name="csrf"' in page.text
        forged = requests.post(f"{served.url}promotions/{ns}/iris/abort", data={}, timeout=10)
        cross_site = requests.post(
            f"{served.url}promotions/{ns}/iris/abort",
            data={"csrf": re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)},  # type: ignore[union-attr]
            headers={"Origin": "https://attacker.example"},
            timeout=10,
        )
    assert forged.status_code == 403 and "CSRF token" in forged.text
    assert cross_site.status_code == 403
    assert "deploy.mlops.dev/abort" not in annotations_of(promotions, "iris")


def test_no_bearer_token_reaches_the_page_its_script_or_the_output(
    promotions: Promotions,
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    browser: webdriver.Chrome,
) -> None:
    # A ServiceAccount that may get, list and watch ModelPromotions, with a bearer token.
    kubeconfig = account_kubeconfig(
        control_plane, namespace, "viewer", ["get", "list", "watch"], tmp_path / "viewer"
    )
    token = str(yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"])
    assert len(token) > 20
    promotions.apply("iris", OPERATED)

    with dashboard(kubeconfig, namespace, "--read-only") as served:
        seen = [
            requests.get(served.url + path, timeout=10).text
            for path in (
                "",
                f"promotions/{namespace}/iris",
                "paths",
                "static/live.js",
                "static/dashboard.css",
            )
        ]
        with requests.get(served.url + "stream", stream=True, timeout=10) as stream:
            seen.append(next(stream.iter_lines(decode_unicode=True, delimiter="\n\n")))
        browser.get(f"{served.url}promotions/{namespace}/iris")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".overview"))
        seen.append(browser.page_source)
        assert not browser.find_elements(By.TAG_NAME, "button")  # --read-only
        output = served.output()

    for text in [*seen, output]:
        assert token not in text
    assert "iris" in seen[0]


def test_it_listens_on_loopback_only(promotions: Promotions, control_plane: ControlPlane) -> None:
    with dashboard(control_plane.kubeconfig, promotions.namespace) as served:
        assert served.url.startswith("http://127.0.0.1:")
        # The kernel's own table of listening sockets on the dashboard's port: every
        # one is bound to 127.0.0.1, none to a wildcard or another address.
        assert _listening_addresses(served.port) == {"127.0.0.1"}


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port`` (IPv4 and IPv6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            if len(address) == 8:  # IPv4, little-endian
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
            else:
                found.add(f"ipv6:{address}")
    return found
