"""``make bench``: how the operator performs at scale, next to a hand-written script.

On the local stack (real kube-apiserver and etcd, Keycloak, the Seldon Deploy
simulator, Prometheus) with the operator as its own process, default settings
(only ``--metrics-port`` added), as the ServiceAccount of ``manifests/``,
watching one namespace:

1. the batch: N ModelPromotions (Replace, new targets) created at once, with
   the simulator's rollout taking R seconds; wait until every run has ended;
2. the same promotions, a sample of them, by ``seed_style.py`` (token, read,
   read, write, poll every second, one promotion after another), extrapolated
   to N;
3. one run at a time with a 0 s rollout;
4. scale: 2,000 ModelPromotions created at once, a fresh operator: every run
   must end Succeeded; its peak memory and the kube-apiserver's 429 answers;
5. the registry: N ModelPromotions whose source is an MLflow registry alias, each into
   an existing target; MLflow calls per run counted in the MLflow server's access log,
   next to Seldon Deploy calls and writes (``bench_registry.py``);
6. paths: N PromotionPaths of three stages created at once, a fresh operator: the
   Seldon Deploy calls and writes per stage run, its peak memory (``bench_paths.py``);
7. at rest: 1,000 then 5,000 ModelPromotions whose status records a finished
   run, a fresh operator: memory once it is idle, and the CPU a round of watch
   events costs (a label added to every object); with ``--profile``, where the
   memory goes (tracemalloc snapshots over an empty namespace and at each count,
   see ``heap_profile.py``).

It prints one table (operator, script, ratio), the single-run line, the scale,
registry, path and at-rest tables, each figure with where it comes from. Exit 1 if a
run did not end Succeeded (named) or the script failed. Nothing here asserts a
time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import requests

from promotion_operator.core.pass_io import RetryPolicy
from tests.harness.bench_figures import (
    APF_REJECTED,
    RequestKey,
    Row,
    counter_total,
    events_created,
    labelled_delta,
    mib,
    modelpromotion_writes,
    percentile,
    ratio,
    render_table,
    request_totals,
    spread,
    throttled,
    usage,
)
from tests.harness.heap_profile import SNAPSHOT_ENV, compare
from tests.harness.keycloak import DATA_SCIENTIST, PUBLIC_CLIENT_ID
from tests.harness.kube_api import KubeApi, in_parallel
from tests.harness.mlflow import launch_mlflow
from tests.harness.operator_process import (
    OperatorProcess,
    client_credentials,
    install_crds,
    start_operator,
)
from tests.harness.processes import make_temp_dir, remove_temp_dir
from tests.harness.progress import say
from tests.harness.promotions import FINISHED_PHASES
from tests.harness.rbac import install_cluster_wide
from tests.harness.stack import Stack, start_stack
from tests.simulator.testing import deployment_body

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "bench"  # the ModelPromotions of the batch and of the single runs
AT_REST_NAMESPACE = "bench-at-rest"
SCALE_NAMESPACE = "bench-scale"
SOURCES = "staging"
TARGETS = "production"  # the operator's batch
SCRIPT_TARGETS = "production-script"  # the script's sample: new targets too
SINGLE_TARGETS = "production-single"
SCALE_TARGETS = "production-scale"
# The operator's client-credentials identity and the script's user (the seed's).
ACCESS = {"promotion-operators": ["read", "write"], "data-scientists": ["read", "write"]}
# start_operator() caps the retry and poll delays for the tests' sake; the
# benchmark measures the defaults a user gets (a later flag wins in argparse).
DEFAULT_DELAYS = (
    f"--max-retry-delay={RetryPolicy.max_delay:g}",
    f"--max-poll-delay={RetryPolicy.max_poll:g}",
)
_SCRIPT_LINE = re.compile(r"^(?P<name>\S+): Available after (?P<seconds>[\d.]+) s")
# Kopf's log lines (kopf 1.45.2, "full" format, "[time] logger [LEVEL   ] message"):
# "<Cause> is processed: ..." once per handling of an object.
_PROCESSED = re.compile(r"\b(\w+) is processed: ")
_ERROR_LINE = re.compile(r"\[ERROR\s*\] ")
_OBJECT = re.compile(r"\[[\w.-]+/[\w.-]+\]")
_URL = re.compile(r"https?://\S+")
_IDLE_CPU = 0.03  # CPU seconds per second below which the operator counts as idle
SETTLED_QUIET = 25.0


@dataclass
class BenchArgs:
    """What to measure (the command line of ``python -m tests.harness bench``)."""

    runs: int = 500
    rollout: float = 5.0
    script_sample: int = 20
    single: int = 10
    at_rest: tuple[int, ...] = (1000, 5000)
    profile: bool = False
    scale: int = 2000
    registry: int = 100
    paths: int = 100
    baseline_python: tuple[str, ...] = ()


def promotion_spec(source: str, target_namespace: str) -> dict[str, Any]:
    """A Replace promotion of ``staging/<source>`` to a new target."""
    return {
        "source": {"namespace": SOURCES, "name": source},
        "target": {"namespace": target_namespace},
        "strategy": "Replace",
    }


def source_name(index: int) -> str:
    """The seeded source deployments (and the batch's ModelPromotions)."""
    return f"model-{index:04d}"


def run_finished(body: Mapping[str, Any]) -> bool:
    """A ModelPromotion's run of its current generation has ended."""
    status = body.get("status") or {}
    return bool(
        status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("phase") in FINISHED_PHASES
    )


class Finishes:
    """When each object of a namespace (a ModelPromotion, or the kind of ``api``) was
    first seen ``finished`` (by default: with a finished run of its generation), by a
    list and then a watch on a thread (``time.time()``)."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        finished: Callable[[Mapping[str, Any]], bool] = run_finished,
    ) -> None:
        self._api, self._namespace, self._finished = api, namespace, finished
        self._changed = threading.Condition()
        self.seen: dict[str, tuple[float, dict[str, Any]]] = {}
        self._stopped = threading.Event()
        threading.Thread(target=self._follow, name="bench-watch", daemon=True).start()

    def _see(self, body: dict[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        if name not in self.seen and self._finished(body):
            with self._changed:
                self.seen[name] = (time.time(), body)
                self._changed.notify_all()

    def _follow(self) -> None:
        while not self._stopped.is_set():
            try:
                items, version = self._api.list_all(self._namespace)
                for body in items:
                    self._see(body)
                while not self._stopped.is_set():
                    for kind, body in self._api.watch(self._namespace, version):
                        if kind == "ERROR":  # 410 Gone: list again
                            raise RuntimeError(str(body.get("message")))
                        version = str(body["metadata"]["resourceVersion"])
                        if kind in ("ADDED", "MODIFIED"):
                            self._see(body)
            except (requests.RequestException, RuntimeError, ValueError):
                if not self._stopped.is_set():
                    time.sleep(0.5)

    def wait(self, names: Collection[str], timeout: float, what: str) -> list[str]:
        """Wait until every name was seen finished; the names that were not in time."""
        deadline = time.monotonic() + timeout
        last_said = 0.0
        with self._changed:
            while True:
                done = sum(1 for name in names if name in self.seen)
                now = time.monotonic()
                if done == len(names) or now > deadline:
                    break
                if len(names) > 1 and now - last_said >= 5:
                    last_said = now
                    say(f"{what}: {done}/{len(names)} finished")
                self._changed.wait(timeout=1.0)
        return [name for name in names if name not in self.seen]

    def stop(self) -> None:
        """Stop following (the thread ends with its current watch)."""
        self._stopped.set()


def _modelpromotion_write_total(api: KubeApi) -> int:
    totals, none = request_totals(api.metrics()), Counter[RequestKey]()
    accepted = modelpromotion_writes(none, totals)
    return sum(accepted.values()) + sum(modelpromotion_writes(none, totals, refused=True).values())


def wait_idle(pid: int, api: KubeApi, *, quiet: float = 5.0, timeout: float = 900.0) -> float:
    """Wait until the process has used under 3 % of a core, and the apiserver has
    counted no write on a ModelPromotion, for ``quiet`` seconds in a row; the seconds
    from the call to the start of that quiet time."""
    started = time.monotonic()
    cpu, writes = usage(pid).cpu, _modelpromotion_write_total(api)
    calm_since: float | None = None
    last_said = started
    while time.monotonic() - started < timeout:
        before = time.monotonic()
        time.sleep(1.0)
        now_cpu, now_writes = usage(pid).cpu, _modelpromotion_write_total(api)
        now = time.monotonic()
        if (now_cpu - cpu) / (now - before) < _IDLE_CPU and now_writes == writes:
            calm_since = before if calm_since is None else calm_since
            if now - calm_since >= quiet:
                return calm_since - started
        else:
            calm_since = None
        if now - last_said >= 5:
            last_said = now
            say(f"  waiting for the operator to go idle: {now_cpu:.1f} CPU s so far")
        cpu, writes = now_cpu, now_writes
    raise RuntimeError(f"the operator did not go idle within {timeout:.0f} s")


def _operator_tokens(operator: OperatorProcess) -> float:
    return counter_total(operator.metrics_text(), "oidc_token_requests_total")


@dataclass
class Batch:
    """What the operator's batch measured."""

    runs: int
    wall: float  # first create sent -> last finished run seen on the watch
    to_ready: list[float]  # per run: create sent -> finished seen on the watch
    to_ready_api: list[float]  # per run: creationTimestamp -> Ready lastTransitionTime
    run_time: list[float]  # per run: status.startedAt -> status.finishedAt
    seldon: SeldonCalls
    writes: Counter[str]  # ModelPromotion writes by verb and subresource
    refused: Counter[str]  # writes the apiserver did not accept, by verb, subresource, code
    events: int
    event_reasons: Counter[str]  # of the Events on the batch's ModelPromotions
    tokens: float
    cpu: float  # operator CPU seconds, first create -> idle after the last run
    idle_after: float  # seconds from the last run to idle
    peak_rss: int
    rss: int
    stack_cpu: dict[str, float]
    not_succeeded: dict[str, str]
    kopf_log: str = ""
    template_status: dict[str, Any] = field(default_factory=dict)


@dataclass
class Script:
    """What the seed-style script's sample measured."""

    sample: int
    wall: float  # the process, start to exit
    per_promotion: list[float]  # token -> Available, as the script reports it
    seldon: SeldonCalls
    tokens: int
    cpu: float
    peak_rss: int
    failure: str | None


def _stack_cpu(stack: Stack) -> dict[str, float]:
    processes = {
        "kube-apiserver": stack.control_plane.apiserver.pid,
        "etcd": stack.control_plane.etcd.pid,
        "simulator": stack.simulator.process.pid,
        "prometheus": stack.prometheus.process.pid,
    }
    return {name: usage(pid).cpu for name, pid in processes.items()}


@dataclass(frozen=True)
class SeldonCalls:
    """Calls in the simulator's request log: by method, and GETs of sources."""

    by_method: Counter[str]
    source_reads: int

    @property
    def total(self) -> int:
        return sum(self.by_method.values())


def seldon_calls(stack: Stack) -> SeldonCalls:
    log = stack.simulator.control.requests_log()
    return SeldonCalls(
        Counter(entry["method"] for entry in log),
        sum(
            1
            for entry in log
            if entry["method"] == "GET" and f"/namespaces/{SOURCES}/" in entry["path"]
        ),
    )


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _ready_time(status: dict[str, Any]) -> str | None:
    return _ready(status).get("lastTransitionTime") or status.get("finishedAt")


def run_operator_batch(stack: Stack, api: KubeApi, operator: OperatorProcess, runs: int) -> Batch:
    """Create ``runs`` ModelPromotions at once and follow them to their end."""
    control = stack.simulator.control
    names = [source_name(i) for i in range(runs)]
    control.clear_requests_log()
    finishes = Finishes(api, NAMESPACE)
    before_api = request_totals(api.metrics())
    before_tokens = _operator_tokens(operator)
    before_use = usage(operator.process.pid)
    before_stack = _stack_cpu(stack)
    created: dict[str, float] = {}

    def create(name: str) -> None:
        sent = time.time()
        api.create(NAMESPACE, name, promotion_spec(name, TARGETS))
        created[name] = sent

    say(f"the batch: creating {runs} ModelPromotions at once (16 threads)")
    first = time.time()
    in_parallel(names, create, "created")
    missing = finishes.wait(names, max(600.0, runs * 2.0), "the batch")
    finishes.stop()
    last = max((finishes.seen[name][0] for name in names if name in finishes.seen), default=first)
    say("the batch has ended; waiting for the operator to go idle")
    idle_after = wait_idle(operator.process.pid, api)
    after_use = usage(operator.process.pid)
    after_api = request_totals(api.metrics())
    after_stack = _stack_cpu(stack)

    not_succeeded = {name: "did not finish in time" for name in missing}
    to_ready, to_ready_api, run_time = [], [], []
    template: dict[str, Any] = {}
    for name in names:
        if name not in finishes.seen:
            continue
        seen_at, body = finishes.seen[name]
        status = body["status"]
        if status["phase"] != "Succeeded":
            reason = _ready_reason(status)
            not_succeeded[name] = f"{status['phase']} ({reason})"
            continue
        template = template or status
        to_ready.append(seen_at - created[name])
        ready_at = _ready_time(status)
        if ready_at:
            to_ready_api.append(_seconds_between(body["metadata"]["creationTimestamp"], ready_at))
        if status.get("startedAt") and status.get("finishedAt"):
            run_time.append(_seconds_between(status["startedAt"], status["finishedAt"]))
    return Batch(
        runs=runs,
        wall=last - first,
        to_ready=to_ready,
        to_ready_api=to_ready_api,
        run_time=run_time,
        seldon=seldon_calls(stack),
        writes=modelpromotion_writes(before_api, after_api),
        refused=modelpromotion_writes(before_api, after_api, refused=True),
        events=events_created(before_api, after_api),
        event_reasons=Counter(
            str(event.get("reason"))
            for event in api.events(NAMESPACE)
            if (event.get("involvedObject") or {}).get("name") in created
        ),
        tokens=_operator_tokens(operator) - before_tokens,
        cpu=after_use.cpu - before_use.cpu,
        idle_after=idle_after,
        peak_rss=after_use.peak_rss,
        rss=after_use.rss,
        stack_cpu={name: after_stack[name] - before_stack[name] for name in after_stack},
        not_succeeded=not_succeeded,
        kopf_log=kopf_log_summary(operator.log()),
        template_status=template,
    )


def _ready_reason(status: dict[str, Any]) -> str:
    return str(_ready(status).get("reason") or "no Ready condition")


def run_script_sample(stack: Stack, sample: int, workdir: Path) -> Script:
    """Run ``seed_style.py`` on the first ``sample`` sources, as its own process."""
    control = stack.simulator.control
    control.clear_requests_log()
    promotions = [promotion_spec(source_name(i), SCRIPT_TARGETS) for i in range(sample)]
    listing = workdir / "promotions.json"
    listing.write_text(json.dumps(promotions))
    argv = [
        sys.executable, "-P", "-m", "tests.harness.seed_style",
        "--seldon-url", stack.simulator.api_url,
        "--oidc-server", stack.keycloak.issuer,
        "--client-id", PUBLIC_CLIENT_ID,
        "--username", DATA_SCIENTIST.username,
        "--promotions", str(listing),
    ]  # fmt: skip
    env = dict(os.environ, SD_PASSWORD=DATA_SCIENTIST.password, PYTHONSAFEPATH="1")
    say(f"the seed-style script: {sample} promotions, one after another")
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=workdir)
    assert process.stdout is not None
    per_promotion: list[float] = []
    failure: str | None = None
    peak_rss = 0
    for line in process.stdout:
        line = line.rstrip()
        # Its peak so far, read while it lives: wait4's ru_maxrss would also count the
        # pages it shared with this process between fork and exec.
        with contextlib.suppress(OSError, IndexError):
            peak_rss = max(peak_rss, usage(process.pid).peak_rss)
        match = _SCRIPT_LINE.match(line)
        if match:
            per_promotion.append(float(match["seconds"]))
            say(f"  script {len(per_promotion)}/{sample}: {line}")
        else:
            failure = line
            say(f"  script: {line}")
    # wait4, not wait: the CPU time of exactly this child.
    _, code, rusage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(code)
    wall = time.monotonic() - started
    if process.returncode != 0:
        failure = failure or f"exit code {process.returncode}"
    elif len(per_promotion) != sample:
        failure = f"reported {len(per_promotion)} of {sample} promotions"
    return Script(
        sample=sample,
        wall=wall,
        per_promotion=per_promotion,
        seldon=seldon_calls(stack),
        tokens=len(per_promotion),  # one password grant per promotion, by its design
        cpu=rusage.ru_utime + rusage.ru_stime,
        peak_rss=peak_rss,
        failure=None if process.returncode == 0 and failure is None else failure,
    )


def run_single(stack: Stack, api: KubeApi, count: int) -> tuple[list[float], dict[str, str]]:
    """``count`` runs one at a time with a 0 s rollout: create sent -> finished seen."""
    stack.simulator.control.set_delays(rollout_seconds=0.0)
    finishes = Finishes(api, NAMESPACE)
    durations: list[float] = []
    failed: dict[str, str] = {}
    say(f"single runs: {count}, one at a time, rollout 0 s")
    for i in range(count):
        name = f"single-{i:03d}"
        sent = time.time()
        api.create(NAMESPACE, name, promotion_spec(source_name(i), SINGLE_TARGETS))
        if finishes.wait([name], 120.0, "single run"):
            failed[name] = "did not finish in 120 s"
            continue
        seen_at, body = finishes.seen[name]
        if body["status"]["phase"] != "Succeeded":
            failed[name] = f"{body['status']['phase']} ({_ready_reason(body['status'])})"
        durations.append(seen_at - sent)
    finishes.stop()
    return durations, failed


@dataclass
class Scale:
    """A fresh operator over ``runs`` ModelPromotions created at once."""

    runs: int
    wall: float  # first create sent -> last finished status seen
    to_ready: list[float]
    peak_rss: int
    rss: int
    cpu: float  # from the first create until idle
    writes: Counter[str]
    refused: Counter[str]
    throttled: Counter[str]  # the apiserver's 429 answers, by "VERB resource"
    apf_rejected: Counter[str]  # by priority level
    seldon: SeldonCalls
    not_succeeded: dict[str, str]
    log: str


def run_scale(
    stack: Stack, api: KubeApi, identity: Path, runs: int, rollout: float, seeded: int
) -> Scale:
    """``runs`` ModelPromotions created at once in a namespace of their own, followed to
    their end by a fresh operator: its memory, and what the apiserver refused. Sources
    from ``seeded`` on are seeded first."""
    control = stack.simulator.control
    control.set_delays(rollout_seconds=rollout)
    names = [source_name(i) for i in range(runs)]
    # Prometheus scrapes the simulator every second, and its /metrics renders every
    # Available deployment: at thousands of them that starves the simulator. Nothing
    # here measures in Prometheus (the operator is started without it).
    stack.prometheus.stop_server()
    operator: OperatorProcess | None = None
    try:
        say(f"scale: seeding the sources up to {runs}")
        for i in range(seeded, runs):
            name = source_name(i)
            control.seed_deployment(SOURCES, deployment_body(name, image=f"models/{name}:2"))
        operator = _start(stack, identity, SCALE_NAMESPACE)
        wait_idle(operator.process.pid, api)
        control.clear_requests_log()
        finishes = Finishes(api, SCALE_NAMESPACE)
        before_text = api.metrics()
        before_api = request_totals(before_text)
        before_use = usage(operator.process.pid)
        created: dict[str, float] = {}

        def create(name: str) -> None:
            sent = time.time()
            api.create(SCALE_NAMESPACE, name, promotion_spec(name, SCALE_TARGETS))
            created[name] = sent

        say(f"scale: creating {runs} ModelPromotions at once (16 threads)")
        first = time.time()
        in_parallel(names, create, "created")
        missing = finishes.wait(names, max(900.0, runs * 1.0), "scale")
        finishes.stop()
        say("scale: the runs have ended; waiting for the operator to go idle")
        wait_idle(operator.process.pid, api)
        after_use = usage(operator.process.pid)
        after_text = api.metrics()
        log = kopf_log_summary(operator.log())
    finally:
        if operator is not None:
            operator.stop()
        stack.prometheus.start_server()
    after_api = request_totals(after_text)
    not_succeeded = {name: "did not finish in time" for name in missing}
    to_ready: list[float] = []
    for name in names:
        if name in finishes.seen:
            seen_at, body = finishes.seen[name]
            if body["status"]["phase"] == "Succeeded":
                to_ready.append(seen_at - created[name])
            else:
                status = body["status"]
                not_succeeded[name] = f"{status['phase']} ({_ready_reason(status)})"
    last = max((seen for seen, _ in finishes.seen.values()), default=first)
    return Scale(
        runs=runs,
        wall=last - first,
        to_ready=to_ready,
        peak_rss=after_use.peak_rss,
        rss=after_use.rss,
        cpu=after_use.cpu - before_use.cpu,
        writes=modelpromotion_writes(before_api, after_api),
        refused=modelpromotion_writes(before_api, after_api, refused=True),
        throttled=throttled(before_api, after_api),
        apf_rejected=labelled_delta(before_text, after_text, APF_REJECTED, "priority_level"),
        seldon=seldon_calls(stack),
        not_succeeded=not_succeeded,
        log=log,
    )


def scale_table(scale: Scale) -> str:
    """The scale part's figures, one per line."""
    n = scale.runs
    succeeded = n - len(scale.not_succeeded)
    throttled = ", ".join(f"{kind} {count}" for kind, count in scale.throttled.most_common())
    rejected = ", ".join(f"{level} {count}" for level, count in scale.apf_rejected.most_common())
    rows = [
        ("promotions", f"{n} at once, {succeeded} Succeeded"),
        ("wall time, first create -> last finished", f"{scale.wall:.1f} s"),
        ("create -> Ready p50 / p95 / max", spread(scale.to_ready)),
        (
            "peak RSS (VmHWM)",
            f"{mib(scale.peak_rss)} (VmRSS {mib(scale.rss)} once idle after the runs)",
        ),
        ("CPU seconds (user + system)", f"{scale.cpu:.1f} s"),
        ("Seldon Deploy calls per run", _per_run(scale.seldon.total, n)),
        ("ModelPromotion writes per run", _writes_detail(scale.writes, n)),
        ("  refused, in all", _writes_detail(scale.refused, 1, 0)),
        (
            "429 answers of the kube-apiserver",
            f"{sum(scale.throttled.values())}" + (f" ({throttled})" if throttled else ""),
        ),
        (
            "  rejected by its flow control (APF)",
            f"{sum(scale.apf_rejected.values())}" + (f" ({rejected})" if rejected else ""),
        ),
    ]
    return render_table(("figure", "operator"), rows)


@dataclass
class AtRest:
    """A fresh operator over ``objects`` finished ModelPromotions."""

    objects: int
    python: str  # the interpreter (and so the checkout) that ran the operator
    to_idle: float  # operator started (live) -> idle
    rss: int
    peak_rss: int
    start_cpu: float  # from the process's start to idle
    start_writes: Counter[str]
    start_seldon: int
    label_cpu: float
    label_writes: Counter[str]  # the benchmark's own label patches left out
    label_to_idle: float  # the last label patch -> idle
    settler_log: str  # what Kopf logged it did, summed up
    fresh_log: str
    profile: str | None = None  # the heap growth from an empty namespace (--profile)


def heap_snapshot(
    stack: Stack, api: KubeApi, identity: Path, path: Path, *, python: str = sys.executable
) -> Path:
    """Start an operator under tracemalloc over the at-rest namespace; once it is idle,
    have it write a heap snapshot to ``path``; stop it."""
    operator = _start(
        stack,
        identity,
        AT_REST_NAMESPACE,
        entry=("-m", "tests.harness.profiled_operator"),
        extra_env={SNAPSHOT_ENV: str(path)},
        python=python,
    )
    try:
        wait_idle(operator.process.pid, api)
        os.kill(operator.process.pid, signal.SIGUSR2)
        operator.process.wait_until(path.exists, 300.0, f"it wrote {path.name}")
    finally:
        operator.stop()
    return path


def run_at_rest(
    stack: Stack,
    api: KubeApi,
    identity: Path,
    counts: Sequence[int],
    status: dict[str, Any],
    profile_dir: Path | None = None,
    pythons: Sequence[str] = (sys.executable,),
) -> list[AtRest]:
    """Fill a namespace with finished ModelPromotions, count by count, and measure a
    fresh operator over each, run by each of ``pythons`` in turn (another checkout's
    interpreter: a before/after on one stack). With ``profile_dir``, an operator
    under tracemalloc also takes a heap snapshot over the empty namespace and after
    each count."""
    results: list[AtRest] = []
    baselines: dict[str, Path] = {}
    if profile_dir is not None:
        for index, python in enumerate(pythons):
            say(f"at rest: a heap snapshot of an operator ({python}) over the empty namespace")
            path = profile_dir / f"heap-{index}-0.snapshot"
            baselines[python] = heap_snapshot(stack, api, identity, path, python=python)
    names: list[str] = []
    spec = promotion_spec(source_name(0), TARGETS)  # the run whose status is the template
    for count in counts:
        new = [f"rest-{i:05d}" for i in range(len(names), count)]

        def create_finished(name: str) -> None:
            body = api.create(AT_REST_NAMESPACE, name, spec)
            generation = body["metadata"]["generation"]
            api.patch(
                AT_REST_NAMESPACE,
                name,
                {"status": {**status, "observedGeneration": generation}},
                status=True,
            )

        say(f"at rest: creating {len(new)} finished ModelPromotions (to {count})")
        in_parallel(new, create_finished, "created with a finished status")
        names += new
        # A first operator leaves whatever bookkeeping it keeps on objects it has
        # seen; the measured operator then finds them exactly as after a restart.
        say("at rest: a first operator settles them (its bookkeeping), then stops")
        settler = _start(stack, identity, AT_REST_NAMESPACE)
        # Refused patches (429) are retried by Kopf after up to 21 s (its default
        # networking.error_backoffs): quiet for longer than that before stopping it.
        wait_idle(settler.process.pid, api, quiet=SETTLED_QUIET)
        settler_log = kopf_log_summary(settler.log())
        say(f"at rest: the first operator logged {settler_log}")
        settler.stop()
        for index, python in enumerate(pythons):
            result = _fresh_at_rest(stack, api, identity, names, len(results) + 1, python)
            result.settler_log = settler_log
            if python in baselines and profile_dir is not None:
                say(f"at rest: a heap snapshot of an operator ({python}) over {count} objects")
                path = profile_dir / f"heap-{index}-{count}.snapshot"
                snapshot = heap_snapshot(stack, api, identity, path, python=python)
                result.profile = compare(baselines[python], snapshot, count)
            results.append(result)
    return results


def _fresh_at_rest(
    stack: Stack, api: KubeApi, identity: Path, names: Sequence[str], round: int, python: str
) -> AtRest:
    count = len(names)
    stack.simulator.control.clear_requests_log()
    before_api = request_totals(api.metrics())
    say(f"at rest: a fresh operator ({python}) over {count} finished ModelPromotions")
    operator = _start(stack, identity, AT_REST_NAMESPACE, python=python)
    try:
        to_idle = wait_idle(operator.process.pid, api)
        idle = usage(operator.process.pid)
        after_api = request_totals(api.metrics())
        seldon = len(stack.simulator.control.requests_log())
        say(f"at rest: a label on each of the {count} objects (a round of watch events)")
        labels = {"metadata": {"labels": {"bench-round": str(round)}}}
        in_parallel(names, partial(api.patch, AT_REST_NAMESPACE, patch=labels), "labelled")
        label_to_idle = wait_idle(operator.process.pid, api)
        labelled = usage(operator.process.pid)
        label_api = request_totals(api.metrics())
        fresh_log = kopf_log_summary(operator.log())
    finally:
        operator.stop()
    label_writes = modelpromotion_writes(after_api, label_api)
    label_writes["PATCH"] -= count  # the benchmark's own label patches
    return AtRest(
        objects=count,
        python=python,
        to_idle=to_idle,
        rss=idle.rss,
        peak_rss=idle.peak_rss,
        start_cpu=idle.cpu,
        start_writes=modelpromotion_writes(before_api, after_api),
        start_seldon=seldon,
        label_cpu=labelled.cpu - idle.cpu,
        label_writes=+label_writes,
        label_to_idle=label_to_idle,
        settler_log="",
        fresh_log=fresh_log,
    )


def kopf_log_summary(log: str) -> str:
    """What an operator's log says Kopf did: handlings by cause, throttles, errors."""
    causes = Counter(match[1] for match in _PROCESSED.finditer(log))
    parts = [f"{count} {cause.lower()}" for cause, count in sorted(causes.items())]
    parts.append(f"{log.count('Throttling for')} throttled")
    parts.append(f"{log.count(' failed; escalating: ')} requests given up")
    errors = Counter(
        _URL.sub("<url>", _OBJECT.sub("[...]", line.split("] ", 2)[-1]))[:160]
        for line in log.splitlines()
        if _ERROR_LINE.search(line)
    )
    parts.append(f"{sum(errors.values())} ERROR lines")
    parts += [f'{count} x "{message}"' for message, count in errors.most_common(2)]
    return ", ".join(parts)


def _start(stack: Stack, identity: Path, namespace: str, **options: Any) -> OperatorProcess:
    return start_operator(
        stack.control_plane,
        stack.simulator,
        client_credentials(stack.keycloak),
        kubeconfig=identity,
        namespaces=(namespace,),
        extra_args=DEFAULT_DELAYS,
        **options,
    )


def _per_run(count: float, runs: int) -> str:
    return f"{count / runs:.1f}" if runs else "-"


def _writes_detail(writes: Counter[str], runs: int, digits: int = 1) -> str:
    """``"total (VERB n, VERB status n)"`` per run (or in all, with ``runs=1``)."""
    parts = ", ".join(f"{kind} {count / runs:.{digits}f}" for kind, count in sorted(writes.items()))
    return f"{sum(writes.values()) / runs:.{digits}f} ({parts})" if parts else "0"


def _calls_rows(batch: Batch, script: Script) -> list[Row]:
    n, k = batch.runs, script.sample
    op, sc = batch.seldon, script.seldon
    rows = [
        Row(
            "Seldon Deploy calls per run",
            _per_run(op.total, n),
            _per_run(sc.total, k),
            ratio(sc.total / k if k else None, op.total / n),
        )
    ]
    for method in sorted(set(op.by_method) | set(sc.by_method) | {"GET", "POST", "PUT"}):
        mine, theirs = op.by_method[method], sc.by_method[method]
        operator_cell, script_cell = _per_run(mine, n), _per_run(theirs, k)
        if method == "GET":
            operator_cell += f" ({_per_run(op.source_reads, n)} of the source)"
            script_cell += f" ({_per_run(sc.source_reads, k)} of the source)"
        rows.append(
            Row(
                f"  {method}",
                operator_cell,
                script_cell,
                ratio(theirs / k if k else None, mine / n),
            )
        )
    return rows


def batch_table(batch: Batch, script: Script) -> str:
    """The side-by-side table: the operator's batch, and the script's sample
    extrapolated to the batch's size where marked ``~``."""
    n, k = batch.runs, script.sample
    mean = statistics.fmean(script.per_promotion) if script.per_promotion else 0.0
    # Queued one after another, promotion i (1-based) is Available after i mean times.
    queued = [mean * i for i in range(1, n + 1)] if mean else []
    op_p50 = percentile(batch.to_ready, 50) if batch.to_ready else None
    rows = [
        Row("promotions", f"{n} at once", f"{k}, one after another (~: extrapolated to {n})"),
        Row(
            "wall time, first create -> last Ready",
            f"{batch.wall:.1f} s",
            f"~{mean * n:.0f} s" if mean else "-",
            ratio(mean * n, batch.wall),
        ),
        Row(
            "create -> Ready p50 / p95 / max",
            spread(batch.to_ready),
            "~" + spread(queued, 0) if queued else "-",
            ratio(percentile(queued, 50) if queued else None, op_p50),
        ),
        Row("  the same from the API's timestamps", spread(batch.to_ready_api, 0), "-"),
        Row(
            "one run alone: start -> Ready p50/p95/max",
            spread(batch.run_time, 0),
            spread(script.per_promotion),
        ),
        *_calls_rows(batch, script),
        Row(
            "ModelPromotion writes per run", _writes_detail(batch.writes, n), "0 (keeps no status)"
        ),
        Row("  refused by the apiserver, per run", _writes_detail(batch.refused, n), "-"),
        Row("Events created per run", _per_run(batch.events, n), "0"),
        *(
            Row(f"  {reason}", _per_run(count, n), "-")
            for reason, count in sorted(batch.event_reasons.items(), key=lambda item: -item[1])
        ),
        Row(
            "token requests for the batch",
            f"{batch.tokens:.0f}",
            f"~{script.tokens * n / k:.0f} (1 per promotion)" if k else "-",
            ratio(script.tokens * n / k if k else None, batch.tokens),
        ),
        Row(
            "peak RSS (VmHWM)",
            f"{mib(batch.peak_rss)} (VmRSS {mib(batch.rss)} at the end)",
            mib(script.peak_rss),
            ratio(script.peak_rss, batch.peak_rss),
        ),
        Row(
            "CPU seconds (user + system)",
            f"{batch.cpu:.1f} s",
            f"~{script.cpu * n / k:.0f} s ({script.cpu:.1f} s for {k})" if k else "-",
            ratio(script.cpu * n / k if k else None, batch.cpu),
        ),
    ]
    return render_table(Row("figure", "operator", "seed-style script", "script/operator"), rows)


def _paragraphs(*paragraphs: str) -> str:
    return "\n".join(
        textwrap.fill(text, 92, initial_indent="  ", subsequent_indent="    ")
        for text in paragraphs
    )


def batch_notes(batch: Batch, script: Script) -> str:
    """Where each figure of the table comes from."""
    stack_cpu = ", ".join(f"{name} {cpu:.1f} s" for name, cpu in batch.stack_cpu.items())
    return "where the figures come from:\n" + _paragraphs(
        "create -> Ready: from sending the create to seeing the run's finished status on a"
        " watch (this process's clock, ms). The API's own timestamps (creationTimestamp ->"
        " the Ready condition's lastTransitionTime) have 1 s resolution.",
        "one run alone: the operator's status.startedAt -> status.finishedAt (1 s); the"
        " script's token request -> Available, as it prints it.",
        "Seldon Deploy calls: the simulator's request log, divided by the runs.",
        "ModelPromotion writes and Events: the kube-apiserver's apiserver_request_total"
        " (PATCH/PUT/APPLY/DELETE on modelpromotions and modelpromotions/status; POST of"
        " events), read before the batch and once the operator was idle after it"
        f" ({batch.idle_after:.1f} s after the last run), divided by the runs; the"
        " benchmark's own creates are left out.",
        "token requests: the operator's oidc_token_requests_total; the script asks once per"
        " promotion.",
        "RSS and CPU: the operator process's /proc/PID/status (VmHWM, VmRSS) and"
        " /proc/PID/stat (utime + stime), CPU from the first create until idle; the"
        " script's VmHWM while it runs and its CPU from wait4() (interpreter start"
        " included).",
        f"~: the script's sample of {script.sample} ({script.wall:.0f} s in all) scaled to"
        f" {batch.runs}: promotion i is Available after i times its mean time.",
        f"the stack's CPU during the batch: {stack_cpu}.",
        f"the operator logged (start and batch): {batch.kopf_log}.",
    )


def _checkout(python: str) -> str:
    """The checkout an interpreter belongs to: this one, or the directory above its venv."""
    if python == sys.executable:
        return "this checkout"
    return str(Path(python).parent.parent.parent)


def at_rest_table(results: Sequence[AtRest]) -> str:
    """One line per count of finished ModelPromotions."""
    header = (
        "objects", "operator", "start -> idle", "RSS idle", "peak RSS", "CPU to idle",
        "writes at start", "Seldon calls", "label round: CPU", "writes per object", "-> idle",
    )  # fmt: skip
    rows = [
        (
            f"{r.objects}",
            _checkout(r.python),
            f"{r.to_idle:.1f} s",
            mib(r.rss),
            mib(r.peak_rss),
            f"{r.start_cpu:.1f} s",
            _writes_detail(r.start_writes, 1, 0),
            f"{r.start_seldon}",
            f"{r.label_cpu:.1f} s",
            _writes_detail(r.label_writes, r.objects),
            f"{r.label_to_idle:.1f} s",
        )
        for r in results
    ]
    return render_table(header, rows)


SCALE_NOTES = _paragraphs(
    "create -> Ready as in the batch; peak RSS and CPU from /proc (CPU from the first"
    " create until idle); writes, refusals and 429 answers from the kube-apiserver's"
    " apiserver_request_total (the benchmark's own creates, as the cluster admin, are"
    " exempt from flow control), flow control's rejections from"
    " apiserver_flowcontrol_rejected_requests_total, both read before the creates and"
    " once the operator was idle after the runs.",
)

AT_REST_NOTES = _paragraphs(
    "A namespace of ModelPromotions created through the API, each with its status patched"
    " to the batch's first Succeeded run (observedGeneration its own), seen once by a first"
    " operator (so whatever it keeps on objects is there), then a fresh operator. start ->"
    " idle: from its liveness answering to the start of 5 s under 3 % of a core with no"
    " ModelPromotion write. RSS at idle (VmRSS) and since its start (VmHWM); CPU, writes"
    " (apiserver_request_total, in all) and Seldon Deploy calls from its start to idle. The"
    " label round: one label added to every object; CPU and writes (the benchmark's own"
    " label patches left out) until idle again.",
)


def _header(args: BenchArgs) -> str:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() or "unknown"  # fmt: skip
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "operator"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    where = (
        f"uncommitted changes in {', '.join(line[3:] for line in dirty.splitlines())}"
        if dirty
        else "operator/ as committed"
    )
    return "\n".join(
        [
            f"make bench on commit {commit} ({where}),"
            + time.strftime(" %Y-%m-%d %H:%M UTC", time.gmtime()),
            f"  {os.cpu_count()} CPUs, load average {load} at the start",
            f"  {args.runs} ModelPromotions (Replace, new targets) in one namespace,"
            f" simulator rollout {args.rollout:g} s",
            "  the operator as its own process with its default settings and --metrics-port",
            f"  ({' '.join(DEFAULT_DELAYS)}), client-credentials grant, as the ServiceAccount"
            " of manifests/",
        ]
    )


def _prepare(stack: Stack, sources: int, rollout: float) -> None:
    control = stack.simulator.control
    for namespace in (SOURCES, TARGETS, SCRIPT_TARGETS, SINGLE_TARGETS, SCALE_TARGETS):
        control.add_namespace(namespace, groups=ACCESS)
    say(f"seeding {sources} source deployments in {SOURCES}")
    for i in range(sources):
        name = source_name(i)
        control.seed_deployment(SOURCES, deployment_body(name, image=f"models/{name}:2"))
    control.set_delays(rollout_seconds=rollout)


def run_bench(args: BenchArgs) -> int:
    """Measure, print the tables; 0 when every run ended Succeeded."""
    # Imported here: bench_registry and bench_paths build on this module's batch helpers.
    from tests.harness.bench_paths import PathBatch, paths_problems, print_paths, run_path_batch
    from tests.harness.bench_registry import (
        RegistryBatch,
        print_registry,
        registry_problems,
        run_registry_batch,
    )

    header = _header(args)
    say("make bench: " + header.splitlines()[0])
    # Launched first, so its start-up (database migrations) overlaps the stack's.
    mlflow = launch_mlflow() if args.registry else None
    stack = start_stack()
    operator: OperatorProcess | None = None
    workdir = make_temp_dir("bench")
    registry: RegistryBatch | None = None
    paths: PathBatch | None = None
    try:
        plane = stack.control_plane
        install_crds(plane)
        for namespace in (NAMESPACE, AT_REST_NAMESPACE, SCALE_NAMESPACE):
            plane.kubectl("create", "namespace", namespace)
        identity = install_cluster_wide(plane, workdir / "operator.kubeconfig")
        seeded = max(args.runs, args.script_sample, args.single)
        _prepare(stack, seeded, args.rollout)
        api = KubeApi(plane)
        operator = _start(stack, identity, NAMESPACE)
        wait_idle(operator.process.pid, api)
        batch = run_operator_batch(stack, api, operator, args.runs)
        script = run_script_sample(stack, args.script_sample, workdir)
        single, single_failed = run_single(stack, api, args.single)
        operator.stop()
        operator = None
        scale = None
        if args.scale:
            scale = run_scale(stack, api, identity, args.scale, args.rollout, seeded)
        if mlflow is not None:
            mlflow.wait_ready()
            registry = run_registry_batch(stack, api, identity, mlflow, args.registry)
        if args.paths:
            paths = run_path_batch(stack, api, identity, args.paths)
        at_rest: list[AtRest] = []
        if args.at_rest and batch.template_status:
            profile_dir = workdir if args.profile else None
            pythons = (sys.executable, *args.baseline_python)
            at_rest = run_at_rest(
                stack, api, identity, args.at_rest, batch.template_status, profile_dir, pythons
            )
    finally:
        if operator is not None:
            operator.stop()
        if mlflow is not None:
            mlflow.stop()
        stack.stop()
        remove_temp_dir(workdir)

    print(f"\n{header}\n", flush=True)
    print(batch_table(batch, script))
    print(batch_notes(batch, script))
    if single:
        print(
            f"\nsingle run, one at a time, rollout 0 s: create -> Ready p50 "
            f"{percentile(single, 50):.2f} s (min {min(single):.2f}, max {max(single):.2f};"
            f" {len(single)} runs; create sent -> finished status seen on a watch)"
        )
    if scale is not None:
        print(
            f"\nscale: {scale.runs} ModelPromotions (Replace, new targets) created at once in"
            f" one namespace, rollout {args.rollout:g} s, a fresh operator"
        )
        print(scale_table(scale))
        print(SCALE_NOTES)
        print(f"  the operator logged: {scale.log}.")
    if registry is not None:
        print_registry(registry)
    if paths is not None:
        print_paths(paths)
    if at_rest:
        print("\nat rest: a fresh operator over finished ModelPromotions (one namespace)")
        print(at_rest_table(at_rest))
        print(AT_REST_NOTES)
        for result in at_rest:
            print(
                f"  {result.objects} ({_checkout(result.python)}): the first operator logged"
                f" {result.settler_log}; the fresh one (to the end of the label round)"
                f" {result.fresh_log}"
            )
        for result in at_rest:
            if result.profile is not None:
                print(f"\n{_checkout(result.python)}: {result.profile}")
    problems = {f"{NAMESPACE}/{name}": what for name, what in batch.not_succeeded.items()}
    problems.update({f"{NAMESPACE}/{name}": what for name, what in single_failed.items()})
    if scale is not None:
        problems.update(
            {f"{SCALE_NAMESPACE}/{name}": what for name, what in scale.not_succeeded.items()}
        )
    if registry is not None:
        problems.update(registry_problems(registry))
    if paths is not None:
        problems.update(paths_problems(paths))
    for name, what in sorted(problems.items()):
        print(f"not Succeeded: {name}: {what}")
    if script.failure:
        print(f"the seed-style script failed: {script.failure}")
    ok = not problems and not script.failure
    print("every run Succeeded" if ok else "SOME RUNS DID NOT SUCCEED", flush=True)
    return 0 if ok else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m tests.harness bench`` (``make bench BENCH_ARGS=...``)."""
    defaults = BenchArgs()
    parser.add_argument("--runs", type=int, default=defaults.runs, help="ModelPromotions at once")
    parser.add_argument(
        "--rollout", type=float, default=defaults.rollout, help="simulator rollout seconds"
    )
    parser.add_argument(
        "--script-sample",
        type=int,
        default=defaults.script_sample,
        help="promotions the seed-style script runs (extrapolated to --runs)",
    )
    parser.add_argument(
        "--single", type=int, default=defaults.single, help="runs one at a time, rollout 0 s"
    )
    parser.add_argument(
        "--at-rest",
        type=_counts,
        default=defaults.at_rest,
        help="finished ModelPromotions for the memory run, e.g. 1000,5000 ('' to skip)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile the at-rest memory with tracemalloc: what grew from an empty"
        " namespace to each count, by owner and allocation site",
    )
    parser.add_argument(
        "--baseline-python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="also measure the at-rest part with the operator of another checkout: its"
        " venv's python (a before/after on one stack; repeat for several)",
    )
    parser.add_argument(
        "--registry",
        type=int,
        default=defaults.registry,
        help="ModelPromotions from an MLflow registry alias, at once (0 to skip)",
    )
    parser.add_argument(
        "--paths",
        type=int,
        default=defaults.paths,
        help="PromotionPaths of three stages, at once (0 to skip)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=defaults.scale,
        help="ModelPromotions created at once for the scale figure (0 to skip)",
    )


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(",") if part.strip())
    if list(counts) != sorted(set(counts)):
        raise argparse.ArgumentTypeError("counts must grow, e.g. 1000,5000")
    return counts


def main(options: argparse.Namespace) -> int:
    """Run the benchmark with parsed options."""
    return run_bench(
        BenchArgs(
            runs=options.runs,
            rollout=options.rollout,
            script_sample=options.script_sample,
            single=options.single,
            at_rest=options.at_rest,
            profile=options.profile,
            scale=options.scale,
            registry=options.registry,
            paths=options.paths,
            baseline_python=tuple(options.baseline_python),
        )
    )
