"""The path figure of ``make bench``: when a path counts as ended, the per-stage-run
arithmetic of its table, and what it reports as a problem (no servers)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.harness.bench import SeldonCalls
from tests.harness.bench_paths import (
    PathBatch,
    path_outcome,
    path_spec,
    paths_problems,
    paths_table,
)


def path(generation: int, observed: int, *phases: str, reason: str = "") -> dict[str, Any]:
    stages = [
        {"name": name, "phase": phase, "reason": reason, "message": f"{name} says so"}
        for name, phase in zip(("dev", "staging", "production"), phases, strict=False)
    ]
    return {
        "metadata": {"name": "path-0000", "generation": generation},
        "status": {"observedGeneration": observed, "stages": stages},
    }


def batch(paths: int = 10, **changes: Any) -> PathBatch:
    fields: dict[str, Any] = {
        "paths": paths,
        "stages": 3,
        "wall": 12.34,
        "to_end": [1.0, 2.0, 3.0],
        "runs_found": 3 * paths,
        "seldon": SeldonCalls(Counter({"GET": 90, "POST": 30}), 0),
        "run_writes": Counter({"POST": 3 * paths, "PATCH status": 6 * paths}),
        "path_writes": Counter({"PATCH status": 4 * paths}),
        "refused": Counter(),
        "events": 2 * 3 * paths,
        "peak_rss": 96 * 1024 * 1024,
        "rss": 80 * 1024 * 1024,
        "cpu": 4.5,
    }
    return PathBatch(**{**fields, **changes})


def row(table: str, figure: str) -> str:
    """The value cell of the table's row whose figure is ``figure``."""
    line = next(line for line in table.splitlines() if line.startswith(figure + "  "))
    return line[len(figure) :].strip()


def test_a_path_has_ended_once_its_last_stage_succeeded() -> None:
    assert path_outcome(path(1, 1, "Succeeded", "Succeeded", "Succeeded")) == "Succeeded"


def test_a_path_goes_on_while_a_later_stage_has_not_succeeded() -> None:
    assert path_outcome(path(1, 1, "Succeeded", "Running", "Idle")) is None
    assert path_outcome(path(1, 1)) is None


def test_a_status_of_an_older_generation_does_not_end_a_path() -> None:
    assert path_outcome(path(2, 1, "Succeeded", "Succeeded", "Succeeded")) is None


def test_a_failed_stage_ends_the_path_naming_the_stage_and_its_reason() -> None:
    outcome = path_outcome(path(1, 1, "Succeeded", "Failed", "Idle", reason="RolledBack"))
    assert outcome is not None
    assert outcome.startswith("stage staging Failed (RolledBack)")


def test_each_path_has_three_auto_stages_without_soak_from_its_own_source() -> None:
    spec = path_spec("path-0007")
    assert spec["source"] == {"namespace": "paths-build", "name": "path-0007"}
    assert [stage["name"] for stage in spec["stages"]] == ["dev", "staging", "production"]
    assert not any("soak" in stage or "policy" in stage for stage in spec["stages"])
    assert len({stage["target"]["namespace"] for stage in spec["stages"]}) == 3


def test_the_table_divides_by_the_stage_runs_not_the_paths() -> None:
    table = paths_table(batch(paths=10))
    assert row(table, "Seldon Deploy calls per stage run") == "4.00"
    assert row(table, "  GET") == "3.00"
    assert row(table, "ModelPromotion writes per stage run") == "3.00"
    assert row(table, "PromotionPath writes per stage run") == "1.33"
    assert row(table, "Events created per stage run") == "2.00"
    assert row(table, "stage runs created").startswith("30 of 30")
    assert row(table, "operator peak RSS (VmHWM)") == "96 MiB (VmRSS 80 MiB once idle)"


def test_a_batch_with_one_run_per_stage_and_every_path_succeeded_has_no_problem() -> None:
    assert paths_problems(batch()) == {}


def test_too_few_stage_runs_is_a_problem_even_when_every_path_succeeded() -> None:
    problems = paths_problems(batch(paths=10, runs_found=29))
    assert problems == {"bench-paths stage runs": "30 created, 29 found, 30 expected"}


def test_a_path_that_did_not_succeed_is_named() -> None:
    problems = paths_problems(batch(not_succeeded={"path-0003": "did not finish in time"}))
    assert problems == {"bench-paths/path-0003": "did not finish in time"}
