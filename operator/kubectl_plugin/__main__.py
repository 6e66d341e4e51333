"""``kubectl-promotion``, which kubectl runs as ``kubectl promotion``.

Also ``python -m promotion_operator.kubectl_plugin``.
"""

from __future__ import annotations

import sys

from promotion_operator.kubectl_plugin.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
