"""The alerting rules of ``manifests/monitoring/`` pass ``promtool check rules`` and
their unit tests (``tests/monitoring/alerts_test.yml``: every alert fires in one
case and stays quiet in another), run by the promtool built from the same
Prometheus module as the harness's server. A rule changed so that an alert no
longer behaves as its cases say makes ``promtool test rules`` fail.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness.binaries import ensure_promtool

pytestmark = [pytest.mark.e2e, pytest.mark.late_build("promtool")]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "manifests" / "monitoring" / "alerts.rules.yml"
RULE_TESTS = ROOT / "tests" / "monitoring" / "alerts_test.yml"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure_promtool()


def run(promtool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_promtool_check_rules_accepts_every_rule(promtool: Path) -> None:
    alerts = [
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]

    checked = run(promtool, "check", "rules", RULES)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in checked.stdout, checked.stdout


def test_promtool_unit_tests_of_every_alert_pass(promtool: Path) -> None:
    tested = run(promtool, "test", "rules", RULE_TESTS)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout, tested.stdout


def test_promtool_unit_tests_fail_when_a_threshold_moves(promtool: Path, tmp_path: Path) -> None:
    # The past-deadline alert waiting 20 minutes instead of 5: its firing case fails.
    rules = RULES.read_text().replace(
        "modelpromotion_run_deadline_timestamp_seconds > 300",
        "modelpromotion_run_deadline_timestamp_seconds > 1200",
    )
    assert rules != RULES.read_text()
    (tmp_path / "alerts.rules.yml").write_text(rules)
    cases = yaml.safe_load(RULE_TESTS.read_text())
    cases["rule_files"] = [str(tmp_path / "alerts.rules.yml")]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(cases, sort_keys=False))

    tested = run(promtool, "test", "rules", tmp_path / "alerts_test.yml")

    assert tested.returncode != 0
    assert "ModelPromotionPastDeadline" in tested.stdout + tested.stderr
