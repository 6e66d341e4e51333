"""Start the simulator as a script: `python tests/simulator/run.py --issuer URL ...`.

`python -m tests.simulator` cannot start with the repository root as the working
directory: the root holds a directory named `operator`, which shadows the
standard-library module that the interpreter imports before any code of ours
runs. Run as a script, Python puts only this file's directory on `sys.path`;
the repository root is then *appended*, after the standard library.
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# This directory must not be importable as top level: `tests.simulator.*` only.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.append(str(_HERE.parent.parent))

from tests.simulator.server import main  # noqa: E402

if __name__ == "__main__":
    main()
