"""The configuration the harness writes for Prometheus: durations, jobs, TLS, retention,
and the alerting rules file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.prometheus import (
    ALERT_LABELS,
    DEFAULT_RULE_GROUP,
    ERROR_RATE_ALERT,
    ERROR_RATE_THRESHOLD,
    METRICS_PATH,
    RETENTION,
    SCRAPE_JOB,
    ScrapeTarget,
    default_alert_rules,
    prometheus_config,
    prometheus_duration,
    render_config,
    render_rules,
    rule_groups,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (0.5, "500ms"),
        (1.25, "1250ms"),
        (5, "5s"),
        (60, "1m"),
        (90, "90s"),
        (3600, "1h"),
        (0.001, "1ms"),
    ],
)
def test_durations_are_written_as_prometheus_reads_them(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf, 0.0001])
def test_impossible_durations_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError):
        prometheus_duration(seconds)


def test_one_simulator_is_scraped_every_second() -> None:
    config = prometheus_config([ScrapeTarget("http://127.0.0.1:8123")])
    assert config["global"] == {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    assert config["scrape_configs"] == [
        {
            "job_name": SCRAPE_JOB,
            "scheme": "http",
            "metrics_path": METRICS_PATH,
            "honor_labels": True,
            "static_configs": [{"targets": ["127.0.0.1:8123"]}],
        }
    ]
    assert config["storage"] == {"tsdb": {"retention": {"time": RETENTION}}}


def test_the_interval_is_configurable() -> None:
    config = prometheus_config([ScrapeTarget("http://127.0.0.1:1")], interval=0.5)
    assert set(config["global"].values()) == {"500ms"}


def test_targets_with_the_same_scheme_share_a_job() -> None:
    config = prometheus_config(
        [ScrapeTarget("http://127.0.0.1:1"), ScrapeTarget("http://127.0.0.1:2/")]
    )
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]


def test_an_https_target_trusts_its_ca_in_a_job_of_its_own(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    config = prometheus_config(
        [ScrapeTarget("http://127.0.0.1:1"), ScrapeTarget("https://127.0.0.1:2", ca_file=ca)]
    )
    jobs = {job["scheme"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"http", "https"}
    assert jobs["https"]["tls_config"] == {"ca_file": str(ca)}
    assert "tls_config" not in jobs["http"]
    names = [job["job_name"] for job in config["scrape_configs"]]
    assert len(set(names)) == 2 and SCRAPE_JOB in names


@pytest.mark.parametrize("targets", [[], [ScrapeTarget("127.0.0.1:1")], [ScrapeTarget("ftp://h")]])
def test_missing_or_odd_targets_are_refused(targets: list[ScrapeTarget]) -> None:
    with pytest.raises(ValueError):
        prometheus_config(targets)


def test_the_file_is_the_config_in_yaml() -> None:
    targets = [ScrapeTarget("http://127.0.0.1:8123")]
    assert yaml.safe_load(render_config(targets)) == prometheus_config(targets)


def test_the_rules_file_is_named_in_the_configuration(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    targets = [ScrapeTarget("http://127.0.0.1:1")]
    config = prometheus_config(targets, rule_files=[rules])
    assert config["rule_files"] == [str(rules)]
    assert yaml.safe_load(render_config(targets, rule_files=[rules])) == config


def test_without_rules_files_the_configuration_names_none() -> None:
    assert "rule_files" not in prometheus_config([ScrapeTarget("http://127.0.0.1:1")])


def test_the_default_rule_fires_at_once_for_a_predictor_with_many_5xx() -> None:
    (group,) = default_alert_rules()
    (rule,) = group["rules"]
    assert (group["name"], rule["alert"], rule["for"]) == (
        DEFAULT_RULE_GROUP,
        ERROR_RATE_ALERT,
        "0s",
    )
    expr = rule["expr"]
    assert f"sum by ({', '.join(ALERT_LABELS)})" in expr
    assert ALERT_LABELS == ("namespace", "deployment_name", "predictor_name")
    assert 'seldon_api_executor_server_requests_seconds_count{code=~"5.."}' in expr
    assert expr.endswith(f"> {ERROR_RATE_THRESHOLD:g}")


GROUP: dict[str, Any] = {"name": "g", "rules": [{"alert": "A", "expr": "vector(1)", "for": "0s"}]}


@pytest.mark.parametrize(
    "rules",
    [
        [GROUP],
        {"groups": [GROUP]},
        "groups:\n  - name: g\n    rules:\n      - {alert: A, expr: vector(1), for: 0s}\n",
        "- name: g\n  rules:\n    - {alert: A, expr: vector(1), for: 0s}\n",
    ],
)
def test_rules_are_taken_as_yaml_a_list_of_groups_or_a_rules_file(rules: Any) -> None:
    assert rule_groups(rules) == [GROUP]


@pytest.mark.parametrize(
    "rules",
    [
        "just text",
        {"groups": [GROUP], "extra": 1},
        [{"rules": []}],
        [GROUP, GROUP],
        [{"name": "g", "rules": "A"}],
        [{"name": "g", "rules": [{"alert": "A"}]}],
        [{"name": "g", "rules": [{"alert": "A", "record": "r", "expr": "vector(1)"}]}],
        [{"name": "g", "rules": [{"expr": "vector(1)"}]}],
        ["g"],
    ],
)
def test_rules_of_the_wrong_shape_are_refused(rules: Any) -> None:
    with pytest.raises(ValueError):
        rule_groups(rules)


def test_the_rules_file_reads_back_as_the_groups() -> None:
    groups = default_alert_rules()
    assert yaml.safe_load(render_rules(groups)) == {"groups": groups}
