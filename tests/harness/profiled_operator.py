"""The operator under tracemalloc, for ``make bench``'s ``--profile``.

``python -m tests.harness.profiled_operator ARGS`` runs ``promotion-operator
ARGS`` with tracemalloc on from just after the imports (tracing them would take
minutes; every snapshot holds them alike). On SIGUSR2 it collects garbage and
writes a heap snapshot to ``$SPO_HEAP_SNAPSHOT`` (with ``.json`` beside it: its
RSS, what tracemalloc traces and what tracemalloc itself uses), renamed into
place once complete. The operator's own code knows nothing of it.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

import promotion_operator.handlers  # noqa: F401  (imported before tracing starts)
from promotion_operator.__main__ import main
from tests.harness.bench_figures import usage
from tests.harness.heap_profile import SNAPSHOT_ENV

#: Frames kept per allocation: enough to reach the package line below the json module.
FRAMES = 16


def _dump(signum: int, frame: FrameType | None) -> None:
    target = Path(os.environ[SNAPSHOT_ENV])
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    traced, _ = tracemalloc.get_traced_memory()
    facts = {
        "rss": usage(os.getpid()).rss,
        "traced": traced,
        "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory(),
    }
    partial = target.with_name(target.name + ".partial")
    snapshot.dump(str(partial))
    target.with_suffix(".json").write_text(json.dumps(facts))
    partial.replace(target)


if __name__ == "__main__":
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR2, _dump)
    sys.exit(main(sys.argv[1:]))
