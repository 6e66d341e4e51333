"""Run a function as an unprivileged user, so permission checks hold when tests run as root.

Root reads every file whatever its mode, and CI runs as root. ``call_unprivileged``
runs a function in a child Python (this virtualenv's) that, when we are root,
``setpriv`` (util-linux) starts as ``nobody`` (UID/GID 65534, no supplementary
groups); when we are not root the child runs as us, which the modes already deny.
The function and its arguments travel by pickle, so the function must be
importable by name (defined at module level) and return picklable data.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, TypeVarTuple

NOBODY = 65534

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_CHILD = """\
import pickle, sys
fn, args = pickle.load(sys.stdin.buffer)
sys.stdout.buffer.write(pickle.dumps(fn(*args)))
"""


def unprivileged_argv(argv: list[str]) -> list[str]:
    """``argv`` as the unprivileged user: through setpriv when root, unchanged otherwise."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root: setpriv (util-linux) is needed to drop privileges")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def call_unprivileged(fn: Callable[[*Ts], T], *args: *Ts) -> T:
    """``fn(*args)`` in a child Python as the unprivileged user; its result comes back."""
    env = {
        **os.environ,
        # As the Makefile sets it: `operator/` must not shadow the standard library.
        "PYTHONSAFEPATH": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    child = subprocess.run(
        unprivileged_argv([sys.executable, "-c", _CHILD]),
        input=pickle.dumps((fn, args)),
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(
            f"unprivileged {fn.__qualname__} exited {child.returncode}:\n"
            + child.stderr.decode(errors="replace")
        )
    result: T = pickle.loads(child.stdout)
    return result


@contextmanager
def reachable_tempdir() -> Iterator[Path]:
    """A temporary directory the unprivileged user can traverse (pytest's ``tmp_path``
    is private to the user running the tests). Removed afterwards, whatever modes the
    test left inside (``TemporaryDirectory`` resets them)."""
    with tempfile.TemporaryDirectory(prefix="spo-unprivileged-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path
