"""`python -m tests.simulator ...`; see the package docstring for flags."""

from tests.simulator.server import main

main()
