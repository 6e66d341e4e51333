"""Where the operator's memory at rest goes: two tracemalloc snapshots compared.

``make bench``'s ``--profile`` takes a snapshot of an operator over an empty
namespace and one over N finished ModelPromotions (``profiled_operator.py``)
and prints what grew, by owner (Kopf, the kubernetes client, our code, the
JSON parsing, the interpreter and standard library) and by allocation site.
The attribution is pure (frames in, owners out), so it is unit-tested.
"""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.harness.bench_figures import render_table

#: Where ``profiled_operator.py`` writes its snapshot on SIGUSR2.
SNAPSHOT_ENV = "SPO_HEAP_SNAPSHOT"
JSON_PARSING = "JSON parsing"
STDLIB = "interpreter and standard library"
IMPORTS = "imports (modules, code)"
# Path fragments of a frame's file -> owner; the first that matches wins.
PACKAGES: tuple[tuple[str, str], ...] = (
    ("/kopf/", "Kopf"),
    ("/kubernetes/", "kubernetes client"),
    ("/promotion_operator/", "our code"),
    ("/operator/", "our code"),  # the editable install maps the package to operator/
    ("/aiohttp/", "aiohttp (Kopf's HTTP)"),
    ("/yarl/", "aiohttp (Kopf's HTTP)"),
    ("/multidict/", "aiohttp (Kopf's HTTP)"),
    ("/urllib3/", "urllib3 (the kubernetes client's HTTP)"),
    ("/requests/", "requests (Seldon Deploy, identity provider)"),
    ("/prometheus_client/", "prometheus_client"),
)

Frame = tuple[str, int]  # (file, line)


def package_of(filename: str) -> str | None:
    """The owner a file belongs to, or None for the standard library and the rest."""
    for fragment, owner in PACKAGES:
        if fragment in filename:
            return owner
    return None


@dataclass(frozen=True)
class Attribution:
    """Who an allocation is charged to, and the line charged."""

    owner: str
    site: Frame


def attribute(frames: Sequence[Frame]) -> Attribution:
    """Charge an allocation (its frames, oldest first) to an owner and a site.

    The site is the innermost frame of a known package (the line of ours, Kopf's
    or a client that asked for the memory), else the innermost frame. A block
    allocated inside ``json`` is JSON parsing, charged at the package line that
    parsed; one allocated while importing is an import.
    """
    innermost = frames[-1]
    owned = [(frame, owner) for frame in reversed(frames) if (owner := package_of(frame[0]))]
    site = owned[0][0] if owned else innermost
    if "/json/" in innermost[0]:
        return Attribution(JSON_PARSING, site)
    if owned:
        return Attribution(owned[0][1], site)
    if any("importlib" in file or file.startswith("<frozen") for file, _ in frames):
        return Attribution(IMPORTS, innermost)
    return Attribution(STDLIB, innermost)


@dataclass(frozen=True)
class Growth:
    """Bytes and blocks that grew between two snapshots, by owner and by site."""

    by_owner: Counter[str]
    blocks_by_owner: Counter[str]
    by_site: Counter[tuple[str, Frame]]


def growth(diffs: Iterable[tuple[int, int, Sequence[Frame]]]) -> Growth:
    """Sum ``(size_diff, count_diff, frames)`` by owner and site."""
    by_owner: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    by_site: Counter[tuple[str, Frame]] = Counter()
    for size, count, frames in diffs:
        if not frames:
            continue
        charged = attribute(frames)
        by_owner[charged.owner] += size
        blocks[charged.owner] += count
        by_site[(charged.owner, charged.site)] += size
    return Growth(by_owner, blocks, by_site)


def mib(size: int) -> str:
    """Bytes as MiB to a tenth (the growths here are often below one)."""
    return f"{size / 1024 / 1024:.1f} MiB"


def _short(filename: str) -> str:
    if "/promotion_operator/" in filename:
        return filename[filename.index("/promotion_operator/") + 1 :]
    for marker in ("site-packages/", "/lib/python3", "/operator/"):
        index = filename.find(marker)
        if index >= 0:
            return filename[index + len(marker) :].lstrip("/").removeprefix(".11/")
    return filename


def render(growth: Growth, objects: int, facts: tuple[dict[str, int], dict[str, int]]) -> str:
    """The owners' table, the top sites, and RSS against what tracemalloc saw."""
    before, after = facts
    per = max(objects, 1)
    rows = [
        (owner, mib(size), f"{size / per / 1024:.1f} KiB", f"{growth.blocks_by_owner[owner]:+d}")
        for owner, size in growth.by_owner.most_common()
    ]
    traced = after["traced"] - before["traced"]
    rss = after["rss"] - before["rss"]
    overhead = after["tracemalloc_overhead"] - before["tracemalloc_overhead"]
    rows.append(("all traced", mib(traced), f"{traced / per / 1024:.1f} KiB", ""))
    rows.append(
        (
            "RSS not traced (allocator, freed arenas, tracemalloc)",
            mib(rss - traced),
            f"{(rss - traced) / per / 1024:.1f} KiB",
            "",
        )
    )
    lines = [
        f"heap growth from 0 to {objects} objects at rest: RSS {mib(before['rss'])} ->"
        f" {mib(after['rss'])} (tracemalloc's own {mib(overhead)} of it),"
        f" traced {mib(before['traced'])} -> {mib(after['traced'])}",
        render_table(("owner", "grew", "per object", "blocks"), rows),
        "",
        "top allocation sites (the innermost line of a known package):",
        render_table(
            ("grew", "owner", "site"),
            [
                (mib(size), owner, f"{_short(site[0])}:{site[1]}")
                for (owner, site), size in growth.by_site.most_common(15)
            ],
        ),
    ]
    return "\n".join(lines)


def compare(before: Path, after: Path, objects: int) -> str:
    """Load two snapshots written by ``profiled_operator.py`` and render what grew."""
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    diffs = (
        (stat.size_diff, stat.count_diff, [(f.filename, f.lineno) for f in stat.traceback])
        for stat in new.compare_to(old, "traceback")
    )
    facts = (
        json.loads(before.with_suffix(".json").read_text()),
        json.loads(after.with_suffix(".json").read_text()),
    )
    return render(growth(diffs), objects, facts)
