"""Where built binaries and downloaded distributions are kept between runs."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SPO_CACHE_DIR"


def cache_root() -> Path:
    """The cache directory: ``$SPO_CACHE_DIR`` or ``~/.cache/seldon-promotion-operator``."""
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured) if configured else Path.home() / ".cache" / "seldon-promotion-operator"
    root.mkdir(parents=True, exist_ok=True)
    return root
