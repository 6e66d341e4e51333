"""The harness leaves nothing behind: no process, no listening port, no temp dir.

Each test runs ``python -m tests.harness up`` as its own process (as a person
would), interrupts it the way a test run gets interrupted, and looks for
leftovers of that run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.harness.__main__ import READY_BANNER
from tests.harness.processes import sweep_stale_temp_dirs

pytestmark = pytest.mark.e2e

_READY_TIMEOUT = 300.0
_GONE_TIMEOUT = 60.0


def _start_stack(state_file: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    progress = state_file.with_name("harness.log")
    with progress.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "tests.harness", "up", "--state-file", str(state_file)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    assert process.stdout is not None
    deadline = time.monotonic() + _READY_TIMEOUT
    for line in process.stdout:
        if line.strip() == READY_BANNER:
            break
        assert time.monotonic() < deadline, "the stack did not come up in time"
    else:
        tail = "\n".join(progress.read_text(errors="replace").splitlines()[-30:])
        pytest.fail(
            f"`tests.harness up` exited with {process.wait()} before it was ready; "
            f"its last lines:\n{tail}"
        )
    return process, json.loads(state_file.read_text())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


def _wait_until_gone(facts: dict[str, Any]) -> tuple[list[str], list[str]]:
    deadline = time.monotonic() + _GONE_TIMEOUT
    while True:
        live = [name for name, pid in facts["pids"].items() if _alive(pid)]
        ports = [url for url in facts["urls"] if _listening(url)]
        if not (live or ports) or time.monotonic() > deadline:
            return live, ports
        time.sleep(0.5)


def test_ctrl_c_stops_every_process_port_and_temp_dir(tmp_path: Path) -> None:
    process, facts = _start_stack(tmp_path / "state.json")
    assert all(_listening(url) for url in facts["urls"])

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=_GONE_TIMEOUT) == 0

    assert _wait_until_gone(facts) == ([], [])
    assert [d for d in facts["workdirs"] if Path(d).exists()] == []


def test_a_killed_harness_takes_its_servers_with_it(tmp_path: Path) -> None:
    process, facts = _start_stack(tmp_path / "state.json")

    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=_GONE_TIMEOUT)

    # PR_SET_PDEATHSIG kills the servers with their parent ...
    assert _wait_until_gone(facts) == ([], [])
    # ... and the next run sweeps the temporary directories it could not remove.
    sweep_stale_temp_dirs()
    assert [d for d in facts["workdirs"] if Path(d).exists()] == []
