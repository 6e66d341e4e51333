"""The monitoring manifests agree with each other and with the docs: the
PrometheusRule carries the rules file's groups, every alert has a runbook in
docs/operations.md and promtool cases that fire it and that do not, and the
Grafana dashboard's queries use only the variables its test substitutes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
RULES = MONITORING / "alerts.rules.yml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULE_TESTS = ROOT / "tests" / "monitoring" / "alerts_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
RUNBOOKS = "https://github.com/mlops/seldon-promotion-operator/blob/main/docs/operations.md#"
# What the dashboard's test puts in for Grafana's variables.
DASHBOARD_VARIABLES = {"$__rate_interval", "$job", "${datasource}"}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_prometheus_rule_carries_the_rules_files_groups() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())

    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text()), (
        "prometheusrule.yaml's spec must be alerts.rules.yml's content: copy the groups over"
    )


def test_the_alerts_are_the_documented_set() -> None:
    assert sorted(rule["alert"] for rule in alert_rules()) == [
        "IdentityProviderUnavailable",
        "ModelPromotionAnalysisInconclusive",
        "ModelPromotionFailed",
        "ModelPromotionNoLeader",
        "ModelPromotionNotificationsDropped",
        "ModelPromotionPastDeadline",
        "ModelPromotionRolledBack",
        "SeldonDeployUnavailable",
    ]


def test_every_alert_has_a_severity_summary_and_a_runbook_in_operations_md() -> None:
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url == RUNBOOKS + rule["alert"].lower(), (rule["alert"], url)
        assert rule["alert"].lower() in anchors, f"no heading {rule['alert']} in operations.md"


def test_every_alert_has_a_promtool_case_that_fires_it_and_one_that_does_not() -> None:
    cases = [
        check
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in test.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        own = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in own), f"nothing fires {rule['alert']}"
        assert any(not case["exp_alerts"] for case in own), f"no quiet case of {rule['alert']}"


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_dashboard_panel_but_rows_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_the_dashboard_queries_use_only_the_substituted_variables() -> None:
    used = {
        variable for _, expr in dashboard_queries() for variable in re.findall(r"\$\{?\w+\}?", expr)
    }
    assert used <= DASHBOARD_VARIABLES, used - DASHBOARD_VARIABLES


def test_the_dashboard_panels_have_unique_ids_and_the_documented_schema_version() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]

    assert len(ids) == len(set(ids))
    assert dashboard["schemaVersion"] == 39
    assert "schemaVersion 39" in (ROOT / "docs" / "operations.md").read_text()
