"""The operator's image, built from the repository's Dockerfile with podman.

By default on the base made from Debian's packages (``container_base``), since
registry images cannot be pulled here; ``base`` names another (the Dockerfile's
pinned official image, where it can be pulled). Podman's layer cache makes a
rebuild of unchanged sources take seconds.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.container_base import ensure_base
from tests.harness.podman import HOST_NETWORK, Podman
from tests.harness.processes import HarnessError
from tests.harness.progress import say

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/seldon-promotion-operator:dev"
_BUILD_TIMEOUT = 1800
# podman build's lines worth showing: each step ("[1/2] STEP 3/8: ..." in a
# multi-stage build), a step taken from the layer cache, and the commit.
_PROGRESS = re.compile(r"^(\[\d+/\d+\] )?(STEP \d|COMMIT|--> Using cache)")


@dataclass(frozen=True)
class BuiltImage:
    """An image in podman's local storage, and what building it took."""

    reference: str
    base: str
    size_bytes: int
    build_seconds: float


def build_image(podman: Podman, base: str | None = None, reference: str = IMAGE) -> BuiltImage:
    """``podman build`` of the Dockerfile on ``base`` (default: the Debian base)."""
    base = base or ensure_base(podman)
    say(f"building the operator image {reference} on {base} (podman build; its steps follow)")
    started = time.monotonic()
    command = podman.command(
        "build",
        HOST_NETWORK,
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--tag",
        reference,
        "--file",
        str(ROOT / "Dockerfile"),
        str(ROOT),
    )
    process = subprocess.Popen(
        command,
        env=podman.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        if _PROGRESS.match(line):
            say(f"  ({time.monotonic() - started:.0f}s) {line.strip()[:150]}")
    code = process.wait(timeout=_BUILD_TIMEOUT)
    seconds = time.monotonic() - started
    if code != 0:
        raise HarnessError(f"podman build exited {code}:\n{''.join(output)[-4000:]}")
    size = podman.image_size(reference)
    say(f"built {reference} in {seconds:.0f}s: {size / 1e6:.0f} MB")
    return BuiltImage(reference, base, size, seconds)
