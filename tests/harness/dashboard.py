"""``kubectl promotion dashboard`` as a user runs it: the installed console script as
a subprocess, its URL read from its first line, its output kept (to check that no
credential reaches it)."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.harness.kubectl_plugin import SCRIPT, plugin_env

_START_TIMEOUT = 60.0


class DashboardProcess:
    """A running dashboard: its URL, and everything it printed so far."""

    def __init__(self, process: subprocess.Popen[str], url: str, output: list[str]) -> None:
        self.process = process
        self.url = url
        self._output = output

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def output(self) -> str:
        """stdout and stderr so far."""
        return "".join(self._output)


@contextmanager
def dashboard(kubeconfig: Path, namespace: str | None, *flags: str) -> Iterator[DashboardProcess]:
    """The dashboard of ``namespace`` (None: every namespace the user may list) with
    ``kubeconfig`` and ``flags``, stopped after."""
    scope = ["-n", namespace] if namespace else []
    argv: Sequence[str] = [str(SCRIPT), "dashboard", "--no-browser", *scope, *flags]
    process = subprocess.Popen(
        argv,
        env=plugin_env(kubeconfig),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        url = ""
        while not url:
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                raise AssertionError(f"the dashboard did not start: {''.join(output)}")
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if "http://" in line:
                url = line[line.index("http://") :].split()[0]
        yield DashboardProcess(process, url, output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
