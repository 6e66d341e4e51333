"""A real Prometheus on loopback, scraping the simulator's executor metrics.

Started the way etcd is: the pinned binary from the cache (built from the Go
module by ``binaries``), a free port on 127.0.0.1, a temporary directory (swept
like the others) holding the generated configuration and the TSDB, a
supervised process that dies with the harness, and a readiness wait on
``/-/ready``. Scrapes and rule evaluation run every second so that tests see
``rate(...[5s])`` move within seconds; the data lives an hour at most.

It can be stopped and started again on the same port with the same data
directory (``stop_server``/``start_server``/``restart``), as a canary analysis
must survive its metrics source going away.

Alerting rules: the configuration names one rules file (``rules.yml``, next to
it), which starts with :func:`default_alert_rules` (the alert
``PredictorErrorRateHigh`` per namespace, deployment and predictor), so alerts
fire for real: Prometheus evaluates them every second and writes
``ALERTS{alertname, alertstate, ...}``; no Alertmanager is configured, as
nothing needs notifications yet. ``Prometheus.set_alert_rules`` rewrites the
file and reloads Prometheus through ``POST /-/reload`` (it runs with
``--web.enable-lifecycle``); the reload answers once the new rules are in
place, or with Prometheus' error, in which case the previous file is put back.
``reset_alert_rules`` returns to the default group; ``alerts`` and
``firing_alerts`` read ``/api/v1/alerts``.

More pages can be scraped while it runs (``add_scrape_job``: e.g. the operator's
own metrics, for the dashboard's test), through the same reload.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from tests.harness.binaries import ensure_binaries
from tests.harness.ports import free_port
from tests.harness.processes import HarnessError, ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say

SCRAPE_JOB = "seldon-executor"
METRICS_PATH = "/metrics"
DEFAULT_SCRAPE_INTERVAL = 1.0
RETENTION = "1h"
_START_TIMEOUT = 60.0

RULES_FILE = "rules.yml"
# The rule group tests get out of the box, and its alert.
DEFAULT_RULE_GROUP = "seldon-predictors"
ERROR_RATE_ALERT = "PredictorErrorRateHigh"
# A predictor's share of 5xx answers over ERROR_RATE_WINDOW above which it fires.
ERROR_RATE_THRESHOLD = 0.1
ERROR_RATE_WINDOW = "5s"
# The labels the alert carries, naming the predictor (as the executor's series do).
ALERT_LABELS = ("namespace", "deployment_name", "predictor_name")

# What `set_alert_rules` takes: a rules file's YAML text, a list of rule groups,
# or a rules file's content (`{"groups": [...]}`).
AlertRules = str | Sequence[Mapping[str, Any]] | Mapping[str, Any]


@dataclass(frozen=True)
class ScrapeTarget:
    """One page Prometheus scrapes: a base URL (http or https) and the CA to trust."""

    url: str
    ca_file: Path | None = None
    metrics_path: str = METRICS_PATH


def prometheus_duration(seconds: float) -> str:
    """A Prometheus duration for a number of seconds: ``1s``, ``500ms``, ``2m``."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError("a Prometheus duration must be positive")
    millis = round(seconds * 1000)
    if millis < 1:
        raise ValueError("a Prometheus duration has millisecond resolution")
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def prometheus_config(
    targets: Sequence[ScrapeTarget],
    *,
    interval: float = DEFAULT_SCRAPE_INTERVAL,
    rule_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """The configuration: one job per scheme and CA, all scraped every ``interval``,
    rules (in ``rule_files``) evaluated as often, samples kept for ``RETENTION`` (set
    in the file: the flag is deprecated).

    ``honor_labels`` keeps the page's own ``namespace`` (the label a real
    Prometheus gets from Kubernetes service discovery) should a target label
    ever clash with it.
    """
    if not targets:
        raise ValueError("at least one scrape target is needed")
    step = prometheus_duration(interval)
    groups: dict[tuple[str, str | None, str], list[str]] = {}
    for target in targets:
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"scrape target {target.url!r} is not an http(s) URL")
        ca = str(target.ca_file) if target.ca_file is not None else None
        groups.setdefault((parts.scheme, ca, target.metrics_path), []).append(parts.netloc)
    jobs: list[dict[str, Any]] = []
    for index, ((scheme, ca, path), addresses) in enumerate(sorted(groups.items(), key=str)):
        job: dict[str, Any] = {
            "job_name": SCRAPE_JOB if index == 0 else f"{SCRAPE_JOB}-{index}",
            "scheme": scheme,
            "metrics_path": path,
            "honor_labels": True,
            "static_configs": [{"targets": addresses}],
        }
        if ca is not None:
            job["tls_config"] = {"ca_file": ca}
        jobs.append(job)
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": step,
            "scrape_timeout": step,
            "evaluation_interval": step,
        },
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    config["scrape_configs"] = jobs
    config["storage"] = {"tsdb": {"retention": {"time": RETENTION}}}
    return config


def render_config(
    targets: Sequence[ScrapeTarget],
    *,
    interval: float = DEFAULT_SCRAPE_INTERVAL,
    rule_files: Sequence[Path] = (),
) -> str:
    """:func:`prometheus_config` as the YAML file Prometheus reads."""
    config = prometheus_config(targets, interval=interval, rule_files=rule_files)
    return yaml.safe_dump(config, sort_keys=False)


def error_rate_expr(
    threshold: float = ERROR_RATE_THRESHOLD, window: str = ERROR_RATE_WINDOW
) -> str:
    """PromQL: each predictor's share of 5xx answers over ``window``, where above
    ``threshold`` (a predictor that never failed has no 5xx series, so no sample)."""
    by = ", ".join(ALERT_LABELS)
    count = "seldon_api_executor_server_requests_seconds_count"
    return (
        f'sum by ({by}) (rate({count}{{code=~"5.."}}[{window}]))'
        f" / sum by ({by}) (rate({count}[{window}]))"
        f" > {threshold:g}"
    )


def default_alert_rules() -> list[dict[str, Any]]:
    """The rule groups Prometheus starts with: ``PredictorErrorRateHigh``, firing at
    once (``for: 0s``) for any predictor whose error rate is above the threshold."""
    return [
        {
            "name": DEFAULT_RULE_GROUP,
            "rules": [
                {
                    "alert": ERROR_RATE_ALERT,
                    "expr": error_rate_expr(),
                    "for": "0s",
                    "labels": {"severity": "critical"},
                    "annotations": {
                        "summary": (
                            "{{ $labels.namespace }}/{{ $labels.deployment_name }}"
                            " predictor {{ $labels.predictor_name }} answers"
                            " {{ $value | humanizePercentage }} of its requests with 5xx"
                        ),
                    },
                }
            ],
        }
    ]


def rule_groups(rules: AlertRules) -> list[dict[str, Any]]:
    """The rule groups of ``rules`` (YAML text, a list of groups or ``{"groups": [...]}``).

    Checks the shape Prometheus needs before it sees the file (groups with
    unique non-empty names, each rule an ``alert`` or a ``record`` with an
    ``expr``) and raises ``ValueError`` otherwise; Prometheus checks the rest
    (the PromQL, the durations) when it loads them.
    """
    loaded: Any = yaml.safe_load(rules) if isinstance(rules, str) else rules
    if isinstance(loaded, Mapping):
        if set(loaded) != {"groups"}:
            raise ValueError("alert rules must be a list of groups or {groups: [...]}")
        loaded = loaded["groups"]
    if loaded is None:
        loaded = []
    if isinstance(loaded, str | bytes) or not isinstance(loaded, Sequence):
        raise ValueError("alert rules must be a list of groups or {groups: [...]}")
    groups: list[dict[str, Any]] = []
    names: set[str] = set()
    for group in loaded:
        if not isinstance(group, Mapping):
            raise ValueError(f"a rule group must be a mapping, not {group!r}")
        name = group.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("every rule group needs a name")
        if name in names:
            raise ValueError(f"rule group {name!r} appears twice")
        names.add(name)
        group_rules = group.get("rules")
        if not isinstance(group_rules, Sequence) or isinstance(group_rules, str | bytes):
            raise ValueError(f"rule group {name!r} needs a list of rules")
        for rule in group_rules:
            if not isinstance(rule, Mapping) or ("alert" in rule) == ("record" in rule):
                raise ValueError(f"each rule of {name!r} needs an alert or a record name")
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                raise ValueError(f"each rule of {name!r} needs an expr")
        groups.append(_plain(group))
    return groups


def _plain(value: Any) -> Any:
    # Mappings and sequences as dicts and lists, so that safe_dump writes them.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def render_rules(rules: AlertRules) -> str:
    """The rules file for ``rules`` (see :func:`rule_groups`)."""
    return yaml.safe_dump({"groups": rule_groups(rules)}, sort_keys=False, width=1000)


class PrometheusQueryError(RuntimeError):
    """Prometheus answered a query with an error; the message is Prometheus' own."""


@dataclass(eq=False)
class Prometheus:
    """A running Prometheus: its URL, configuration, data and process."""

    url: str
    binary: Path
    workdir: Path
    config_path: Path
    process: ManagedProcess
    rules_path: Path

    def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200 (the TSDB is open and it serves queries)."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self) -> None:
        """Block until ``/-/ready`` answers."""
        self.process.wait_until(self.ready, _START_TIMEOUT, f"{self.url}/-/ready answered 200")

    def query(self, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query through ``/api/v1/query``: the vector's samples.

        Raises :class:`PrometheusQueryError` with Prometheus' message for a bad
        query, ``requests.ConnectionError`` when Prometheus is down.
        """
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body: dict[str, Any] = response.json()
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{body.get('errorType')}: {body.get('error')}")
        data: dict[str, Any] = body["data"]
        if data["resultType"] != "vector":
            raise PrometheusQueryError(f"expected a vector, got {data['resultType']}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str) -> float | None:
        """The single number a query returns now, or None when it returns nothing."""
        samples = self.query(promql)
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusQueryError(f"expected one series, got {len(samples)}")
        return float(samples[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        response = requests.get(f"{self.url}/api/v1/targets", timeout=10)
        response.raise_for_status()
        active: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
        return active

    def wait_for(self, promql: str, *, timeout: float = 30.0, interval: float = 0.5) -> float:
        """Poll a query until it returns a number (not NaN); return that number."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            try:
                last = self.query_value(promql)
            except requests.ConnectionError:
                last = None
            if last is not None and not math.isnan(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql!r} returned no number within {timeout} s: {last}")
            time.sleep(interval)

    def set_alert_rules(self, rules: AlertRules) -> None:
        """Replace every alerting (and recording) rule with ``rules`` and reload.

        ``rules`` is a rules file's YAML text, a list of rule groups, or
        ``{"groups": [...]}``. Returns once Prometheus has loaded them (the next
        evaluation, within a second, uses them). A shape error raises
        ``ValueError`` before anything changes; a rule Prometheus refuses raises
        :class:`PrometheusQueryError` with its message, and the rules in force
        before stay (the file is put back).
        """
        text = render_rules(rules)
        previous = self.rules_path.read_text()
        self.rules_path.write_text(text)
        try:
            self.reload()
        except PrometheusQueryError:
            self.rules_path.write_text(previous)
            self.reload()
            raise

    def reset_alert_rules(self) -> None:
        """Put the default rule group (:func:`default_alert_rules`) back."""
        self.set_alert_rules(default_alert_rules())

    def reload(self) -> None:
        """Have Prometheus read its configuration and rules again (``POST /-/reload``).

        The answer comes once the reload is done; a configuration or rules file
        it cannot load raises :class:`PrometheusQueryError` with its message.
        """
        response = requests.post(f"{self.url}/-/reload", timeout=30)
        if response.status_code != 200:
            # The answer says that the reload failed; the log says why.
            raise PrometheusQueryError(
                f"reload failed: {response.text.strip()}\n"
                f"last lines of {self.process.log_path}:\n{self.process.log_tail(5)}"
            )

    def add_scrape_job(self, job: str, target: ScrapeTarget) -> None:
        """Scrape ``target`` too, as job ``job`` (at the global interval, labels honoured
        as for the others), and reload; e.g. the operator's ``--metrics-port``."""
        config = yaml.safe_load(self.config_path.read_text())
        jobs: list[dict[str, Any]] = config["scrape_configs"]
        if any(existing["job_name"] == job for existing in jobs):
            raise ValueError(f"Prometheus already has a scrape job {job!r}")
        parts = urlsplit(target.url)
        added: dict[str, Any] = {
            "job_name": job,
            "scheme": parts.scheme,
            "metrics_path": target.metrics_path,
            "honor_labels": True,
            "static_configs": [{"targets": [parts.netloc]}],
        }
        if target.ca_file is not None:
            added["tls_config"] = {"ca_file": str(target.ca_file)}
        jobs.append(added)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.reload()

    def remove_scrape_job(self, job: str) -> None:
        """Stop scraping the job ``job`` (added by :meth:`add_scrape_job`); reload."""
        config = yaml.safe_load(self.config_path.read_text())
        config["scrape_configs"] = [
            existing for existing in config["scrape_configs"] if existing["job_name"] != job
        ]
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.reload()

    def rule_groups(self) -> list[dict[str, Any]]:
        """The loaded rule groups as ``/api/v1/rules`` reports them (with health, state)."""
        response = requests.get(f"{self.url}/api/v1/rules", timeout=10)
        response.raise_for_status()
        groups: list[dict[str, Any]] = response.json()["data"]["groups"]
        return groups

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending and firing alert (``/api/v1/alerts``): labels, state, value."""
        response = requests.get(f"{self.url}/api/v1/alerts", timeout=10)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
        return alerts

    def firing_alerts(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """The firing alerts called ``name`` whose labels include ``labels``."""
        return [
            alert
            for alert in self.alerts()
            if alert["state"] == "firing"
            and alert["labels"].get("alertname") == name
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]

    def stop_server(self) -> None:
        """Stop the process and keep its data (SIGTERM: Prometheus flushes and exits)."""
        self.process.stop()

    def start_server(self) -> None:
        """Start a stopped Prometheus again on the same port and data; wait until ready."""
        if self.process.running():
            raise HarnessError("Prometheus is already running")
        self.process.restart()
        self.wait_ready()

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop Prometheus, stay down ``down_for`` seconds, start it again (same port, data)."""
        self.stop_server()
        time.sleep(down_for)
        self.start_server()

    def stop(self) -> None:
        """Stop Prometheus and remove its configuration and data."""
        self.process.stop()
        remove_temp_dir(self.workdir)


def start_prometheus(
    targets: Sequence[ScrapeTarget], *, interval: float = DEFAULT_SCRAPE_INTERVAL
) -> Prometheus:
    """Build (if needed) and start Prometheus scraping ``targets``; return once ready."""
    binary = ensure_binaries().prometheus
    workdir = make_temp_dir("prometheus")
    config_path = workdir / "prometheus.yml"
    rules_path = workdir / RULES_FILE
    rules_path.write_text(render_rules(default_alert_rules()))
    config_path.write_text(render_config(targets, interval=interval, rule_files=[rules_path]))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"starting Prometheus on {url}")
    process = ManagedProcess(
        "prometheus",
        [
            str(binary),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            "--no-storage.tsdb.wal-compression",
            f"--web.listen-address=127.0.0.1:{port}",
            # POST /-/reload, for set_alert_rules.
            "--web.enable-lifecycle",
        ],
        workdir / "prometheus.log",
        # Without built-in web assets Prometheus looks for them relative to its
        # working directory; the API does not need them.
        cwd=workdir,
    )
    prometheus = Prometheus(url, binary, workdir, config_path, process, rules_path)
    started = time.monotonic()
    prometheus.wait_ready()
    say(
        f"Prometheus ready in {time.monotonic() - started:.1f}s; scraping and evaluating"
        f" rules every {interval:g}s"
    )
    return prometheus
