"""Fixtures shared by the unit tests: the Seldon Deploy simulator, and a runtime served
by an in-memory Seldon Deploy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from promotion_operator.config.settings import InstanceSettings, Settings
from tests.simulator.control import SimulatorControl
from tests.simulator.testing import RunningSimulator
from tests.unit.fake_runtime import FakeClient, FakeRuntime


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


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient()


@pytest.fixture
def runtime(tmp_path: Path, fake: FakeClient) -> Iterator[FakeRuntime]:
    instance = InstanceSettings(
        name="default", url="https://sd.example/api", credentials_dir=tmp_path
    )
    runtime = FakeRuntime(Settings(instances={"default": instance}), fake)
    yield runtime
    runtime.close()
