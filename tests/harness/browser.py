"""A real Chromium for the dashboard's browser tests: Debian's ``chromium`` driven by
Debian's ``chromium-driver`` through Selenium, headless, nothing downloaded by
Selenium itself. Installs the two packages (as root, with apt-get's own progress)
when they are missing, as ``make browser-tools`` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from tests.harness.progress import say

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Screenshots of the browser tests, kept after the run (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
DESKTOP = (1280, 900)
PHONE = (390, 844)


def ensure_chromium() -> None:
    """Debian's chromium and chromium-driver, installed if either is missing."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(
            "the browser tests need Debian's chromium and chromium-driver: "
            "run `make browser-tools` as root (or apt-get install chromium chromium-driver)"
        )
    say("installing Debian's chromium and chromium-driver (the dashboard's browser tests)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
        check=True,
        env=env,
    )
    say("chromium installed")


def chromium(size: tuple[int, int] = DESKTOP) -> webdriver.Chrome:
    """A headless Chromium of ``size`` (width, height in CSS pixels)."""
    ensure_chromium()
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        # Root in a container has no user namespace for Chromium's sandbox.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(argument)
    # The driver is given: Selenium Manager must not look for (or fetch) another one.
    os.environ["SE_OFFLINE"] = "true"
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save what the browser shows as ``test-artifacts/dashboard/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
