"""What only a few e2e files need, built beside the other tests on a fresh machine.

On a fresh machine `make test` builds what every e2e session needs first (the control
plane, Prometheus, Toxiproxy, Keycloak: ``prepare --core-only``), then starts pytest.
pytest starts one background process (``prepare --late-only``, at low priority) that
builds these; the files that need them carry the ``late_build`` marker, run last, and
wait for their artifact (tests/harness/build_lock.py) if it is not done yet. Once
everything is cached, the background process finds it all in a second, and the
order of the tests is the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.harness.argocd_build import ensure_argocd
from tests.harness.binaries import ensure_promtool
from tests.harness.container_base import ensure_base
from tests.harness.helm import ensure_helm
from tests.harness.mlflow import mlflow_venv
from tests.harness.podman import ensure_podman
from tests.harness.progress import say


@dataclass(frozen=True)
class LateBuild:
    """An artifact only some e2e files need; ``name`` is their marker's argument."""

    name: str
    ensure: Callable[[], object]
    # Downloads and dpkg or pip, not the CPU: made beside the Go builds.
    waits_on_network: bool = False


def _base() -> str:
    return ensure_base(ensure_podman())


# In the order the marked files run (tests/conftest.py): the one needed first is
# built first, and the longest build goes last.
LATE_BUILDS = (
    LateBuild("promtool", ensure_promtool),
    LateBuild("container-base", _base, waits_on_network=True),
    LateBuild("mlflow", mlflow_venv, waits_on_network=True),
    LateBuild("helm", ensure_helm),
    LateBuild("argocd", ensure_argocd),
)
ORDER = {build.name: rank for rank, build in enumerate(LATE_BUILDS)}


def build_all(names: Collection[str], *, first: Callable[[], object] | None = None) -> bool:
    """Make the late artifacts ``names``, the network-bound ones in a thread beside the
    others, after ``first`` (the core builds, when ``prepare`` makes them too; a failure
    there stops everything); whether all were made. A late build's failure does not
    stop the others: the test that needs the failed one tries again and says why."""
    unknown = set(names) - set(ORDER)
    if unknown:
        raise ValueError(f"no late build named {', '.join(sorted(unknown))}; see LATE_BUILDS")
    builds = [build for build in LATE_BUILDS if build.name in names]
    with ThreadPoolExecutor(max_workers=1) as beside:
        waiting = [beside.submit(_attempt, b) for b in builds if b.waits_on_network]
        if first is not None:
            first()
        made = [_attempt(b) for b in builds if not b.waits_on_network]
        return all(made) and all(future.result() for future in waiting)


def _attempt(build: LateBuild) -> bool:
    try:
        build.ensure()
    except Exception as error:  # reported; the test that needs it tries again
        say(f"could not make {build.name}: {error}")
        return False
    return True


def start_in_background(names: Collection[str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m tests.harness prepare --late-only NAMES`` at low priority, its output
    in ``log``."""
    command = [sys.executable, "-m", "tests.harness", "prepare", "--late-only", *names]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        return subprocess.Popen(
            ["nice", "-n", "19", *command],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONSAFEPATH": "1"},
            start_new_session=True,
        )
