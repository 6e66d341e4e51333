"""The base image the tests build the operator's image on, made from Debian's packages.

No registry image can be pulled here, so the Dockerfile's ``BASE_IMAGE`` (the
official ``python`` image) is replaced by one made with ``debootstrap``: Debian
bookworm, whose Python is 3.11, the minor version of the official base, with
``python`` (python-is-python3), ``venv`` and ``pip`` as the official image has
them. It trusts this machine's CA bundle, so that the build stage's pip reaches
the package index the way this machine does. The packages come from the mirror
this machine's apt sources name, read at run time (else debootstrap's default).

The root filesystem is made once and cached as a tarball
(``~/.cache/seldon-promotion-operator/container-base/``); ``podman import`` turns
it into the image whenever podman's storage lacks it, in seconds.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from tests.harness.build_lock import build_lock
from tests.harness.cache import cache_root
from tests.harness.podman import Podman
from tests.harness.processes import HarnessError
from tests.harness.progress import say

SUITE = "bookworm"  # Python 3.11
PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_APT_SOURCES = Path("/etc/apt")
# What the official image sets, so the Dockerfile's steps see the same environment.
_IMAGE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
_DEBOOTSTRAP_TIMEOUT = 1800


def _key() -> str:
    return hashlib.sha256(" ".join((SUITE, *PACKAGES, *_IMAGE_ENV)).encode()).hexdigest()[:12]


def base_reference() -> str:
    """The base image's name in podman's local storage (it changes with its recipe)."""
    return f"localhost/spo-debian-base:{SUITE}-{_key()}"


def ensure_base(podman: Podman) -> str:
    """The base image's reference, made (debootstrap, import) where it is missing."""
    with build_lock("container-base"):
        return _ensure_base(podman)


def _ensure_base(podman: Podman) -> str:
    reference = base_reference()
    if podman.image_exists(reference):
        return reference
    tarball = cache_root() / "container-base" / f"debian-{SUITE}-{_key()}.tar"
    if not tarball.exists():
        _debootstrap(tarball)
    say(f"importing the base image {reference} from {tarball}")
    podman.run(
        "import",
        *[f"--change=ENV {setting}" for setting in _IMAGE_ENV],
        '--change=CMD ["python3"]',
        str(tarball),
        reference,
        timeout=600,
    )
    return reference


def configured_mirror(apt_dir: Path = _APT_SOURCES) -> str | None:
    """The first ``deb`` source of this machine's apt configuration that serves
    ``SUITE``'s ``main`` component (one-line ``.list`` and deb822 ``.sources``)."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        entries = _deb822(text) if path.suffix == ".sources" else _one_line(text)
        for uris, suites, components in entries:
            if SUITE in suites and "main" in components and uris:
                return uris[0]
    return None


Entry = tuple[list[str], list[str], list[str]]


def _one_line(text: str) -> list[Entry]:
    entries = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        if words[1].startswith("["):  # options: [arch=amd64 signed-by=...]
            end = next(n for n, word in enumerate(words) if word.endswith("]"))
            words = [words[0], *words[end + 1 :]]
        entries.append(([words[1]], [words[2]], words[3:]))
    return entries


def _deb822(text: str) -> list[Entry]:
    entries = []
    for stanza in text.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            entries.append((fields.get("uris", []), fields.get("suites", []),
                            fields.get("components", [])))  # fmt: skip
    return entries


def _debootstrap(tarball: Path) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise HarnessError(
            "debootstrap is not installed: `make prepare` installs Debian's debootstrap "
            "with apt-get (as root)"
        )
    mirror = configured_mirror()
    say(
        f"making the container base: Debian {SUITE} with {', '.join(PACKAGES)}, from "
        + ("this machine's apt mirror" if mirror else "debootstrap's default mirror")
        + " (first run only; several minutes)"
    )
    tarball.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="spo-base-", dir=tarball.parent) as work:
        rootfs = Path(work) / "rootfs"
        command = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            *([mirror] if mirror else []),
        ]
        _run_with_progress(command, Path(work) / "debootstrap.log")
        _trim(rootfs)
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / HOST_CA_BUNDLE.relative_to("/"))
        partial = Path(work) / tarball.name
        with tarfile.open(partial, "w") as archive:
            for entry in sorted(rootfs.iterdir()):
                archive.add(entry, arcname=entry.name)
        partial.rename(tarball)
    say(f"made the container base in {time.monotonic() - started:.0f}s: {tarball}")


def _run_with_progress(command: list[str], log: Path) -> None:
    """Run debootstrap, saying each new phase of its ``I:`` lines (Retrieving,
    Extracting, Installing, ...); lines naming the mirror are never shown."""
    started = time.monotonic()
    shown = ""
    with log.open("w") as output:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            output.write(line)
            phase = " ".join(line.split()[:2])
            if line.startswith("I: ") and "://" not in line and phase != shown:
                say(f"  debootstrap ({time.monotonic() - started:.0f}s): {line[3:].strip()}")
                shown = phase
        code = process.wait(timeout=_DEBOOTSTRAP_TIMEOUT)
    if code != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if "://" not in line]
        raise HarnessError(f"debootstrap exited {code}:\n" + "\n".join(lines[-30:]))


def _trim(rootfs: Path) -> None:
    """Drop what the image never uses: downloaded packages, apt lists, docs."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*",
                    "usr/share/man/*", "usr/share/locale/*"):  # fmt: skip
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
