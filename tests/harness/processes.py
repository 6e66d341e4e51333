"""Child processes that never outlive the harness.

Every server the harness starts runs in its own process group, writes its output
to a log file, and is stopped (SIGTERM, then SIGKILL) when the harness stops,
when the Python process exits, and, through ``PR_SET_PDEATHSIG``, even when the
harness itself is killed with SIGKILL. Temporary directories carry the owner's
pid so that the next run removes any left behind by a killed one.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.harness.progress import say

_TEMP_PREFIX = "spo-harness-"
_OWNER_FILE = "owner.pid"
_PR_SET_PDEATHSIG = 1


class HarnessError(RuntimeError):
    """A part of the stack could not be built or started; the message says why."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    """One server process with its log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._argv = list(argv)
        self._env = dict(os.environ, **(env or {}))
        self._cwd = cwd
        self._spawn()

    def _spawn(self) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self._argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._env,
            cwd=self._cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _live.append(self)

    @property
    def argv(self) -> list[str]:
        """The command it runs (a copy)."""
        return list(self._argv)

    def restart(self, argv: Sequence[str] | None = None) -> None:
        """Stop the process and start it again, with the same command or ``argv``
        (which it keeps for later restarts) (fault tests)."""
        self.stop()
        if argv is not None:
            self._argv = list(argv)
        self._spawn()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the process wrote, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until it is true; fail with the log tail if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise HarnessError(
                    f"{self.name} exited with code {self.popen.returncode} before {what}; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise HarnessError(
            f"{self.name} did not become ready ({what}) within {timeout:.0f}s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the whole process group, politely first."""
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=grace)
        # Children that ignored SIGTERM (or a JVM's helpers) must not survive the leader.
        self._signal_group(signal.SIGKILL)
        self._log.close()
        if self in _live:
            _live.remove(self)

    def freeze(self) -> None:
        """SIGSTOP the process group: it does nothing until killed (or continued)."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the process group after :meth:`freeze`: it goes on where it stood."""
        self._signal_group(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the process group at once (crash tests)."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


_live: list[ManagedProcess] = []
_temp_dirs: list[Path] = []


def make_temp_dir(purpose: str) -> Path:
    """A fresh temporary directory, removed by :func:`stop_all`."""
    path = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{purpose}-"))
    (path / _OWNER_FILE).write_text(str(os.getpid()))
    _temp_dirs.append(path)
    return path


def remove_temp_dir(path: Path) -> None:
    """Remove one harness temporary directory."""
    shutil.rmtree(path, ignore_errors=True)
    if path in _temp_dirs:
        _temp_dirs.remove(path)


def sweep_stale_temp_dirs() -> None:
    """Remove temporary directories whose owning harness process no longer exists."""
    for path in Path(tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*"):
        try:
            owner = int((path / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and _pid_alive(owner):
            continue
        say(f"removing {path} left behind by an interrupted run")
        shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_all() -> None:
    """Stop every live process (newest first) and remove every temporary directory."""
    for process in reversed(list(_live)):
        process.stop()
    for path in list(_temp_dirs):
        remove_temp_dir(path)


atexit.register(stop_all)


def live_processes() -> list[ManagedProcess]:
    """The processes started and not yet stopped."""
    return list(_live)


def live_temp_dirs() -> list[Path]:
    """The temporary directories made and not yet removed."""
    return list(_temp_dirs)
