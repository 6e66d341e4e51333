"""Typed keys under which the aiohttp application keeps the simulator's state."""

from __future__ import annotations

from aiohttp import web

from tests.simulator.state import Simulator

SIMULATOR: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)
