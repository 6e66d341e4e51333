"""The registry figure of ``make bench``: N runs whose source is an MLflow registry
version, and what each costs the registry, Seldon Deploy and the apiserver.

On the bench's stack, with a real MLflow server (``tests/harness/mlflow.py``) and a
fresh operator watching a namespace of its own: one registered model with a version
behind the alias ``champion``, N existing targets, and N ModelPromotions created at
once, each promoting ``champion`` into its own target (writing back the outcome tag).
The registry calls are counted on the MLflow server's side, from its access log (the
requests it answered, not a count the operator keeps); Seldon Deploy calls from the
simulator's request log; ModelPromotion writes and Events from the kube-apiserver's
``apiserver_request_total``. ``python -m tests.harness bench-registry --runs N`` runs
this part alone.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.bench import (
    ACCESS,
    DEFAULT_DELAYS,
    Finishes,
    SeldonCalls,
    seldon_calls,
    wait_idle,
)
from tests.harness.bench_figures import (
    events_created,
    mlflow_requests,
    modelpromotion_writes,
    render_table,
    request_totals,
)
from tests.harness.kube_api import KubeApi, in_parallel
from tests.harness.mlflow import MlflowServer, launch_mlflow
from tests.harness.operator_process import client_credentials, install_crds, start_operator
from tests.harness.processes import make_temp_dir, remove_temp_dir
from tests.harness.progress import say
from tests.harness.rbac import install_cluster_wide
from tests.harness.stack import Stack, start_stack
from tests.simulator.testing import deployment_body

REGISTRY_NAMESPACE = "bench-registry"  # the ModelPromotions
REGISTRY_TARGETS = "production-registry"
MODEL = "bench-iris"
ALIAS = "champion"
#: Where the promoted version's files are (never fetched: the simulator takes any URI).
STORAGE_URI = "s3://models/bench-iris/1"


@dataclass
class RegistryBatch:
    """What the registry batch measured."""

    runs: int
    wall: float  # first create sent -> last finished run seen on the watch
    mlflow: Counter[str]  # "METHOD path code" -> calls, from the server's access log
    seldon: SeldonCalls
    writes: Counter[str]
    events: int
    tags_written: int  # versions' outcome tags found in MLflow afterwards (one version)
    not_succeeded: dict[str, str]


def registry_spec(target: str) -> dict[str, Any]:
    """Promote the alias into the existing ``target``."""
    return {
        "source": {"registry": {"model": MODEL, "alias": ALIAS}},
        "target": {"namespace": REGISTRY_TARGETS, "name": target},
    }


def target_name(index: int) -> str:
    return f"registry-{index:04d}"


def run_registry_batch(
    stack: Stack, api: KubeApi, identity: Path, mlflow: MlflowServer, runs: int
) -> RegistryBatch:
    """Create ``runs`` registry ModelPromotions at once and follow them to their end."""
    control = stack.simulator.control
    stack.control_plane.kubectl("create", "namespace", REGISTRY_NAMESPACE)
    control.add_namespace(REGISTRY_TARGETS, groups=ACCESS)
    names = [target_name(i) for i in range(runs)]
    say(f"the registry batch: seeding {runs} targets, registering {MODEL}@{ALIAS}")
    for name in names:
        control.seed_deployment(REGISTRY_TARGETS, deployment_body(name))
    mlflow.set_alias(MODEL, ALIAS, mlflow.register(MODEL, STORAGE_URI))
    operator = start_operator(
        stack.control_plane,
        stack.simulator,
        client_credentials(stack.keycloak),
        kubeconfig=identity,
        namespaces=(REGISTRY_NAMESPACE,),
        extra_args=DEFAULT_DELAYS,
        extra_env={"MLFLOW_TRACKING_URI": mlflow.url},
    )
    try:
        wait_idle(operator.process.pid, api)
        control.clear_requests_log()
        log_start = mlflow.process.log_path.stat().st_size
        before_api = request_totals(api.metrics())
        finishes = Finishes(api, REGISTRY_NAMESPACE)
        say(f"the registry batch: creating {runs} ModelPromotions at once")
        first = time.time()
        in_parallel(
            names,
            lambda name: api.create(REGISTRY_NAMESPACE, name, registry_spec(name)),
            "created",
        )
        missing = finishes.wait(names, max(600.0, runs * 2.0), "the registry batch")
        finishes.stop()
        seen = [finishes.seen[name][0] for name in names if name in finishes.seen]
        last = max(seen, default=first)
        wait_idle(operator.process.pid, api)  # the tags are written in the ending pass
        after_api = request_totals(api.metrics())
        with mlflow.process.log_path.open("rb") as log:
            log.seek(log_start)
            calls = mlflow_requests(log.read().decode(errors="replace"))
    finally:
        operator.stop()

    not_succeeded = {name: "did not finish in time" for name in missing}
    for name in names:
        if name in finishes.seen:
            status = finishes.seen[name][1]["status"]
            if status["phase"] != "Succeeded":
                not_succeeded[name] = str(status["phase"])
    tags = mlflow.tags(MODEL, "1")
    return RegistryBatch(
        runs=runs,
        wall=last - first,
        mlflow=calls,
        seldon=seldon_calls(stack),
        writes=modelpromotion_writes(before_api, after_api),
        events=events_created(before_api, after_api),
        tags_written=sum(1 for key in tags if key.startswith("deploy.mlops.dev/")),
        not_succeeded=not_succeeded,
    )


def registry_table(batch: RegistryBatch) -> str:
    """Per run: MLflow calls by kind, Seldon Deploy calls by method, writes, Events."""
    n = batch.runs

    def per_run(count: float) -> str:
        return f"{count / n:.2f}" if n else "-"

    rows = [
        ("runs", f"{n} at once, one target each"),
        ("wall time, first create -> last finished", f"{batch.wall:.1f} s"),
        ("MLflow calls per run (the server's access log)", per_run(sum(batch.mlflow.values()))),
        *((f"  {call}", per_run(count)) for call, count in sorted(batch.mlflow.items())),
        ("Seldon Deploy calls per run", per_run(batch.seldon.total)),
        *(
            (f"  {method}", per_run(count))
            for method, count in sorted(batch.seldon.by_method.items())
        ),
        ("ModelPromotion writes per run", per_run(sum(batch.writes.values()))),
        *((f"  {kind}", per_run(count)) for kind, count in sorted(batch.writes.items())),
        ("Events created per run", per_run(batch.events)),
        ("outcome tags on the version afterwards", f"{batch.tags_written} of {n} targets"),
    ]
    return render_table(("figure", "operator"), rows)


REGISTRY_NOTES = (
    "  MLflow calls: the lines of the MLflow server's access log from the first create to"
    " the operator's idle after the last run (the harness's own registration before is left"
    " out). Seldon Deploy calls: the simulator's request log. Writes and Events: the"
    " kube-apiserver's apiserver_request_total, read before the creates and once the"
    " operator was idle (the benchmark's creates left out)."
)


def run_registry_bench(runs: int) -> int:
    """``python -m tests.harness bench-registry``: the stack, MLflow and this part
    alone; prints the table; 0 when every run ended Succeeded."""
    mlflow = launch_mlflow()  # its start-up (migrations) overlaps the stack's
    stack: Stack | None = None
    workdir = make_temp_dir("bench-registry")
    try:
        stack = start_stack()
        install_crds(stack.control_plane)
        identity = install_cluster_wide(stack.control_plane, workdir / "operator.kubeconfig")
        mlflow.wait_ready()
        batch = run_registry_batch(stack, KubeApi(stack.control_plane), identity, mlflow, runs)
    finally:
        mlflow.stop()
        if stack is not None:
            stack.stop()
        remove_temp_dir(workdir)
    print_registry(batch)
    for name, what in sorted(registry_problems(batch).items()):
        print(f"not Succeeded: {name}: {what}")
    return 0 if not batch.not_succeeded else 1


def print_registry(batch: RegistryBatch) -> None:
    """The table and where its figures come from."""
    print(f"\nregistry: {batch.runs} ModelPromotions from an MLflow registry alias")
    print(registry_table(batch))
    print(REGISTRY_NOTES)


def registry_problems(batch: RegistryBatch) -> dict[str, str]:
    """The runs that did not end Succeeded, by namespace/name."""
    return {f"{REGISTRY_NAMESPACE}/{name}": what for name, what in batch.not_succeeded.items()}
