"""A git repository served on loopback, for Argo CD to sync from.

A bare repository behind ``git daemon`` (the ``git://`` protocol, read-only, on a
free port of 127.0.0.1), and a working clone next to it that tests commit
manifests into and push to the bare repository by its path. Argo CD's repo
server fetches ``git://127.0.0.1:PORT/promotions.git`` as it would any remote.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.harness.ports import free_port
from tests.harness.processes import ManagedProcess, make_temp_dir, remove_temp_dir
from tests.harness.progress import say

REPOSITORY = "promotions.git"
BRANCH = "main"
_AUTHOR = ("-c", "user.name=harness", "-c", "user.email=harness@example.com")
_START_TIMEOUT = 30.0


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *_AUTHOR, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        # No system or user configuration: the same behaviour on every machine.
        env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd), "PATH": "/usr/bin:/bin"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass(eq=False)
class GitServer:
    """The served bare repository, a working clone of it and ``git daemon``."""

    workdir: Path
    port: int
    worktree: Path
    process: ManagedProcess

    @property
    def repo_url(self) -> str:
        """The URL Argo CD fetches from."""
        return f"git://127.0.0.1:{self.port}/{REPOSITORY}"

    def ready(self) -> bool:
        """Whether the daemon accepts connections."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def commit(self, files: Mapping[str, str | None], message: str) -> str:
        """Write (text) or delete (None) files by path, commit, push; return the commit."""
        for name, content in files.items():
            path = self.worktree / name
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
        _git(self.worktree, "add", "--all")
        _git(self.worktree, "commit", "--allow-empty", "--quiet", "-m", message)
        _git(self.worktree, "push", "--quiet", "origin", f"HEAD:{BRANCH}")
        return self.head()

    def head(self) -> str:
        """The commit the branch points at."""
        return _git(self.worktree, "rev-parse", "HEAD")

    def stop(self) -> None:
        """Stop the daemon and remove both repositories."""
        self.process.stop()
        remove_temp_dir(self.workdir)


def start_git_server() -> GitServer:
    """Create the repository (one empty commit on ``main``) and serve it."""
    workdir = make_temp_dir("git")
    served = workdir / "served"
    served.mkdir()
    bare = served / REPOSITORY
    _git(workdir, "init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(bare))
    worktree = workdir / "worktree"
    _git(workdir, "clone", "--quiet", str(bare), str(worktree))
    _git(worktree, "checkout", "--quiet", "-B", BRANCH)
    port = free_port()
    say(f"starting git daemon on git://127.0.0.1:{port}/")
    process = ManagedProcess(
        "git-daemon",
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={served}",
            "--export-all",
            "--informative-errors",
            str(served),
        ],
        workdir / "git-daemon.log",
    )
    server = GitServer(workdir, port, worktree, process)
    server.commit({"README.md": "Promotions synced by Argo CD in the e2e tests.\n"}, "Start")
    process.wait_until(
        server.ready, _START_TIMEOUT, f"git://127.0.0.1:{port} accepted a connection"
    )
    return server
