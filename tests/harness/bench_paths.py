"""The path figure of ``make bench``: N PromotionPaths of three stages, and what each
stage run costs Seldon Deploy and the apiserver, with the operator's memory.

On the bench's stack, with a fresh operator watching a namespace of its own: N
source SeldonDeployments in the simulator, one per path, and N PromotionPaths created
at once, each moving its source through ``dev``, ``staging`` and ``production``
(policy auto, no soak, the simulator's rollout 0 s, the default ``pollInterval``: the
figure is the operator's work, not waiting). The wall time runs from the first create
to the last path seen on a watch with its last stage ``Succeeded``. Seldon Deploy calls
come from the simulator's request log; ModelPromotion writes (the stage runs' creates
by the operator included), PromotionPath writes (the benchmark's creates left out) and
Events from the kube-apiserver's ``apiserver_request_total``; memory from ``/proc``.
``python -m tests.harness bench-paths --paths N`` runs this part alone.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.bench import (
    ACCESS,
    DEFAULT_DELAYS,
    Finishes,
    SeldonCalls,
    kopf_log_summary,
    seldon_calls,
    wait_idle,
)
from tests.harness.bench_figures import (
    MODELPROMOTIONS,
    PROMOTIONPATHS,
    events_created,
    mib,
    render_table,
    request_totals,
    resource_writes,
    spread,
    usage,
)
from tests.harness.kube_api import PROMOTIONPATH, KubeApi, in_parallel
from tests.harness.operator_process import client_credentials, install_crds, start_operator
from tests.harness.processes import make_temp_dir, remove_temp_dir
from tests.harness.progress import say
from tests.harness.rbac import install_cluster_wide
from tests.harness.stack import Stack, start_stack
from tests.simulator.testing import deployment_body

PATHS_NAMESPACE = "bench-paths"  # the PromotionPaths and their stage runs
PATH_SOURCES = "paths-build"  # in the simulator: one source per path
STAGES = ("dev", "staging", "production")


def stage_namespace(stage: str) -> str:
    """The simulator namespace a stage promotes into (each path's target has the
    source's name there)."""
    return f"paths-{stage}"


def path_name(index: int) -> str:
    """A path, and the name of its source deployment."""
    return f"path-{index:04d}"


def path_spec(source: str) -> dict[str, Any]:
    """Three auto stages without soak, from ``PATH_SOURCES/<source>``."""
    return {
        "source": {"namespace": PATH_SOURCES, "name": source},
        "stages": [
            {"name": stage, "target": {"namespace": stage_namespace(stage)}} for stage in STAGES
        ],
    }


def path_outcome(body: Mapping[str, Any]) -> str | None:
    """How a path of the current generation ended: ``"Succeeded"`` once its last stage
    is, what failed once a stage is ``Failed``; None while it goes on."""
    status = body.get("status") or {}
    if status.get("observedGeneration") != (body.get("metadata") or {}).get("generation"):
        return None
    stages: list[dict[str, Any]] = status.get("stages") or []
    for stage in stages:
        if stage.get("phase") == "Failed":
            return (
                f"stage {stage.get('name')} Failed ({stage.get('reason')}): {stage.get('message')}"
            )
    if stages and stages[-1].get("phase") == "Succeeded":
        return "Succeeded"
    return None


@dataclass
class PathBatch:
    """What the path batch measured."""

    paths: int
    stages: int
    wall: float  # first create sent -> last path seen with its last stage Succeeded
    to_end: list[float]  # per path: create sent -> its last stage Succeeded seen
    runs_found: int  # ModelPromotions in the namespace afterwards
    seldon: SeldonCalls
    run_writes: Counter[str]  # ModelPromotion writes, the operator's creates (POST) included
    path_writes: Counter[str]  # PromotionPath writes, the benchmark's creates left out
    refused: Counter[str]  # writes on either the apiserver did not accept
    events: int
    peak_rss: int
    rss: int
    cpu: float  # operator CPU seconds, first create -> idle after the last path
    not_succeeded: dict[str, str] = field(default_factory=dict)
    log: str = ""

    @property
    def stage_runs(self) -> int:
        """The stage runs the batch must create: one per stage of each path."""
        return self.paths * self.stages

    @property
    def runs_created(self) -> int:
        """The creates of ModelPromotions the apiserver accepted (the operator's)."""
        return self.run_writes["POST"]


def _follow_paths(api: KubeApi) -> Finishes:
    return Finishes(api, PATHS_NAMESPACE, lambda body: path_outcome(body) is not None)


def run_path_batch(stack: Stack, api: KubeApi, identity: Path, paths: int) -> PathBatch:
    """Create ``paths`` PromotionPaths at once and follow them to their last stage."""
    control = stack.simulator.control
    plane = stack.control_plane
    plane.kubectl("create", "namespace", PATHS_NAMESPACE)
    for namespace in (PATH_SOURCES, *(stage_namespace(stage) for stage in STAGES)):
        control.add_namespace(namespace, groups=ACCESS)
    names = [path_name(i) for i in range(paths)]
    say(f"the path batch: seeding {paths} sources in {PATH_SOURCES}")
    for name in names:
        control.seed_deployment(PATH_SOURCES, deployment_body(name, image=f"models/{name}:2"))
    control.set_delays(rollout_seconds=0.0)
    path_api = KubeApi(plane, PROMOTIONPATH)
    operator = start_operator(
        plane,
        stack.simulator,
        client_credentials(stack.keycloak),
        kubeconfig=identity,
        namespaces=(PATHS_NAMESPACE,),
        extra_args=DEFAULT_DELAYS,
    )
    created: dict[str, float] = {}
    try:
        wait_idle(operator.process.pid, api)
        control.clear_requests_log()
        before_api = request_totals(api.metrics())
        before_use = usage(operator.process.pid)
        finishes = _follow_paths(path_api)

        def create(name: str) -> None:
            sent = time.time()
            path_api.create(PATHS_NAMESPACE, name, path_spec(name))
            created[name] = sent

        say(f"the path batch: creating {paths} PromotionPaths of {len(STAGES)} stages at once")
        first = time.time()
        in_parallel(names, create, "created")
        missing = finishes.wait(names, max(600.0, paths * 6.0), "the path batch")
        finishes.stop()
        say("the path batch has ended; waiting for the operator to go idle")
        wait_idle(operator.process.pid, api)
        after_use = usage(operator.process.pid)
        after_api = request_totals(api.metrics())
        runs, _ = api.list_all(PATHS_NAMESPACE)
        log = kopf_log_summary(operator.log())
    finally:
        operator.stop()

    not_succeeded = {name: "did not finish in time" for name in missing}
    to_end: list[float] = []
    for name in names:
        if name in finishes.seen:
            seen_at, body = finishes.seen[name]
            outcome = path_outcome(body) or ""
            if outcome == "Succeeded":
                to_end.append(seen_at - created[name])
            else:
                not_succeeded[name] = outcome
    last = max((seen for seen, _ in finishes.seen.values()), default=first)
    refused = Counter(
        {
            f"{resource[1]} {kind}": count
            for resource in (MODELPROMOTIONS, PROMOTIONPATHS)
            for kind, count in resource_writes(
                resource, before_api, after_api, own_posts=False, refused=True
            ).items()
        }
    )
    return PathBatch(
        paths=paths,
        stages=len(STAGES),
        wall=last - first,
        to_end=to_end,
        runs_found=len(runs),
        seldon=seldon_calls(stack),
        run_writes=resource_writes(MODELPROMOTIONS, before_api, after_api, own_posts=False),
        path_writes=resource_writes(PROMOTIONPATHS, before_api, after_api),
        refused=refused,
        events=events_created(before_api, after_api),
        peak_rss=after_use.peak_rss,
        rss=after_use.rss,
        cpu=after_use.cpu - before_use.cpu,
        not_succeeded=not_succeeded,
        log=log,
    )


def paths_table(batch: PathBatch) -> str:
    """Per stage run: Seldon Deploy calls by method, writes by kind, Events; the
    operator's memory and CPU for the batch."""
    runs = batch.stage_runs

    def per_run(count: float) -> str:
        return f"{count / runs:.2f}" if runs else "-"

    def by_kind(counts: Counter[str]) -> list[tuple[str, str]]:
        return [(f"  {kind}", per_run(count)) for kind, count in sorted(counts.items())]

    succeeded = batch.paths - len(batch.not_succeeded)
    refused = ", ".join(f"{kind} {count}" for kind, count in sorted(batch.refused.items()))
    rows = [
        (
            "paths",
            f"{batch.paths} at once, {batch.stages} stages each (auto, no soak),"
            f" {succeeded} to the last stage Succeeded",
        ),
        ("wall time, first create -> last path's last stage Succeeded", f"{batch.wall:.1f} s"),
        ("per path: create -> last stage Succeeded p50 / p95 / max", spread(batch.to_end)),
        (
            "stage runs created",
            f"{batch.runs_created} of {runs} (ModelPromotions found after: {batch.runs_found})",
        ),
        ("Seldon Deploy calls per stage run", per_run(batch.seldon.total)),
        *by_kind(batch.seldon.by_method),
        ("ModelPromotion writes per stage run", per_run(sum(batch.run_writes.values()))),
        *by_kind(batch.run_writes),
        ("PromotionPath writes per stage run", per_run(sum(batch.path_writes.values()))),
        *by_kind(batch.path_writes),
        (
            "writes refused by the apiserver, in all",
            f"{sum(batch.refused.values())}" + (f" ({refused})" if refused else ""),
        ),
        ("Events created per stage run", per_run(batch.events)),
        ("operator peak RSS (VmHWM)", f"{mib(batch.peak_rss)} (VmRSS {mib(batch.rss)} once idle)"),
        ("operator CPU seconds (user + system)", f"{batch.cpu:.1f} s"),
    ]
    return render_table(("figure", "operator"), rows)


PATHS_NOTES = (
    "  Per stage run: divided by paths x stages. Seldon Deploy calls: the simulator's"
    " request log from the first create until the operator was idle after the last path"
    " (the paths' reads of their source and targets, each run's reads and writes)."
    " Writes and Events: the kube-apiserver's apiserver_request_total, read before the"
    " creates and once the operator was idle; ModelPromotion POSTs are the operator's"
    " creates of the stage runs, the benchmark's creates of the paths are left out."
    " RSS from /proc/PID/status over the operator's life (a fresh one, started for this"
    " batch); CPU from the first create until idle."
)


def print_paths(batch: PathBatch) -> None:
    """The table and where its figures come from."""
    print(f"\npaths: {batch.paths} PromotionPaths of {batch.stages} stages, created at once")
    print(paths_table(batch))
    print(PATHS_NOTES)
    print(f"  the operator logged: {batch.log}.")


def paths_problems(batch: PathBatch) -> dict[str, str]:
    """The paths that did not end Succeeded, by namespace/name, and a wrong count of
    stage runs."""
    problems = {f"{PATHS_NAMESPACE}/{name}": what for name, what in batch.not_succeeded.items()}
    if batch.runs_created != batch.stage_runs or batch.runs_found != batch.stage_runs:
        problems[f"{PATHS_NAMESPACE} stage runs"] = (
            f"{batch.runs_created} created, {batch.runs_found} found, {batch.stage_runs} expected"
        )
    return problems


def run_paths_bench(paths: int) -> int:
    """``python -m tests.harness bench-paths``: the stack and this part alone; prints
    the table; 0 when every path's last stage Succeeded with one run per stage."""
    stack: Stack | None = None
    workdir = make_temp_dir("bench-paths")
    try:
        stack = start_stack()
        install_crds(stack.control_plane)
        identity = install_cluster_wide(stack.control_plane, workdir / "operator.kubeconfig")
        batch = run_path_batch(stack, KubeApi(stack.control_plane), identity, paths)
    finally:
        if stack is not None:
            stack.stop()
        remove_temp_dir(workdir)
    print_paths(batch)
    problems = paths_problems(batch)
    for name, what in sorted(problems.items()):
        print(f"not Succeeded: {name}: {what}")
    return 0 if not problems else 1
