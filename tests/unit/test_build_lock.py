"""The lock that keeps two processes from building one cached artifact at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.build_lock import build_lock
from tests.harness.cache import CACHE_ENV

# Holds the lock, says so, and makes the artifact only after a while.
_HOLDER = """
import sys, time
from pathlib import Path
from tests.harness.build_lock import build_lock
with build_lock("thing"):
    print("holding", flush=True)
    time.sleep(1.0)
    Path(sys.argv[1]).write_text("built")
"""


def test_a_second_builder_waits_for_the_first_and_finds_its_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    artifact = tmp_path / "artifact"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(artifact)],
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    with build_lock("thing"):
        assert artifact.read_text() == "built"
    assert holder.wait(timeout=30) == 0


def test_locks_of_different_artifacts_do_not_wait_for_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with build_lock("one"), build_lock("two"):
        assert (tmp_path / "cache" / "locks" / "two.lock").exists()
