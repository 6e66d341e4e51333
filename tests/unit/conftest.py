"""Fixtures shared by the unit tests of the Seldon Deploy simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simulator.control import SimulatorControl
from tests.simulator.testing import RunningSimulator


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    """A simulator (and its local identity provider) per test module, in-process."""
    with RunningSimulator() as running:
        yield running


@pytest.fixture
def fresh_control(sim: RunningSimulator) -> Iterator[SimulatorControl]:
    """The simulator's control client, after a reset."""
    control = sim.control()
    control.reset()
    yield control
    control.close()
