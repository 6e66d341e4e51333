"""A comparison template's measurements as an SVG plot: the challenger's and the
champion's values over time in the upper panel, and the score (ratio, difference,
p-value, PSI) against its band in the lower one, each measurement's verdict marked.

The two series differ in line (solid, dashed) and marker (filled circle, hollow
square) as well as colour, and a legend names them. A measurement records the
challenger's value as ``value`` and the champion's as ``champion`` (absent for a
distribution, which compares counts by label, and for an inconclusive one); the
band applies to ``score``. Pure, as :mod:`.plot`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any, NamedTuple

from promotion_operator.kubectl_plugin.dashboard.plot import (
    LEFT,
    MUTED,
    TOP,
    WIDTH,
    Panel,
    TimeAxis,
    band_of,
    number,
    svg_open,
    trace,
    verdict_counts,
    verdict_mark,
)

_LEGEND_HEIGHT = 22
_VALUES_HEIGHT = 120
_GAP = 26  # between the panels: room for the score panel's heading
_SCORE_HEIGHT = 110
_BOTTOM = 36
_VALUES_TOP = TOP + _LEGEND_HEIGHT
_SCORE_TOP = _VALUES_TOP + _VALUES_HEIGHT + _GAP
HEIGHT = _SCORE_TOP + _SCORE_HEIGHT + _BOTTOM


def _dot(x: float, y: float, colour: str) -> str:
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'


def _hollow_square(x: float, y: float, colour: str) -> str:
    return (
        f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="#ffffff" '
        f'stroke="{colour}" stroke-width="2"/>'
    )


class Series(NamedTuple):
    """One side of the comparison: the measurement's key for it and how it is drawn."""

    name: str  # also its CSS class and its legend's words
    key: str
    colour: str
    dashes: str
    shape: Callable[[float, float, str], str]

    def marker(self, x: float, y: float) -> str:
        return self.shape(x, y, self.colour)


CHALLENGER = Series("challenger", "value", "#0969da", "", _dot)
CHAMPION = Series("champion", "champion", "#8250df", "6 3", _hollow_square)
SERIES = (CHALLENGER, CHAMPION)


def is_comparison(measurements: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the measurements compare a challenger with a champion."""
    return any("champion" in m or "score" in m for m in measurements)


def comparison_plot(
    template: str, measurements: Sequence[Mapping[str, Any]], statistic: str = "score"
) -> str:
    """The SVG of one comparison template's measurements (oldest first); ``statistic``
    names the score (``ratio``, ``PSI``...)."""
    band = band_of(measurements)
    axis = TimeAxis(measurements)
    summary = (
        f"{len(measurements)} measurements of {template}, the challenger against the "
        f"champion: {verdict_counts(measurements)}"
        + (f"; {statistic} must lie in {band.text()}" if band else "")
    )
    parts = [svg_open(template, HEIGHT, summary, "comparison"), _legend()]
    parts.append(_values(measurements, axis))
    parts.append(_scores(measurements, axis, statistic))
    parts.append(axis.labels(HEIGHT - 12))
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    entries = []
    x = float(LEFT)
    for series in SERIES:
        line = trace("key", [(x, TOP + 6), (x + 24, TOP + 6)], series.colour, series.dashes)
        entries.append(
            f'<g class="legend-entry {series.name}">{line}{series.marker(x + 12, TOP + 6)}'
            f'<text x="{x + 30:.1f}" y="{TOP + 10}" font-size="12" fill="#24292f">'
            f"{series.name}</text></g>"
        )
        x += 130
    return f'<g class="legend">{"".join(entries)}</g>'


def _values(measurements: Sequence[Mapping[str, Any]], axis: TimeAxis) -> str:
    """The upper panel: one point per measurement per series that has its value."""
    every = [v for m in measurements for s in SERIES if (v := number(m.get(s.key))) is not None]
    panel = Panel.spanning(_VALUES_TOP, _VALUES_HEIGHT, every)
    parts = [panel.frame("values")]
    if not every:
        parts.append(
            f'<text x="{WIDTH / 2:.0f}" y="{panel.top + panel.height / 2:.0f}" '
            f'text-anchor="middle" font-size="12" fill="{MUTED}">no single values '
            "to draw: the score compares the two</text>"
        )
    for series in SERIES:
        located = [
            (measurement, value, axis.x(index), panel.y(value))
            for index, measurement in enumerate(measurements)
            if (value := number(measurement.get(series.key))) is not None
        ]
        line = [(x, y) for _, _, x, y in located]
        parts.append(trace(f"trace {series.name}", line, series.colour, series.dashes))
        for measurement, value, x, y in located:
            at = measurement.get("at") if isinstance(measurement.get("at"), str) else ""
            parts.append(
                f'<g class="sample {series.name}" data-at="{escape(str(at))}">'
                f"<title>{escape(f'{at} {series.name}: {value:g}')}</title>"
                f"{series.marker(x, y)}</g>"
            )
    return "".join(parts)


def _scores(measurements: Sequence[Mapping[str, Any]], axis: TimeAxis, statistic: str) -> str:
    """The lower panel: the score against its band, a verdict mark per measurement."""
    band = band_of(measurements)
    scores = [v for m in measurements if (v := number(m.get("score"))) is not None]
    bounds = [b for b in (band.low, band.high) if b is not None] if band else []
    panel = Panel.spanning(_SCORE_TOP, _SCORE_HEIGHT, scores + bounds)
    parts = [
        f'<text class="panel-title" x="{LEFT}" y="{_SCORE_TOP - 8}" font-size="12" '
        f'fill="#24292f">{escape(statistic)} (must lie in the band)</text>',
        panel.frame("scores"),
    ]
    if band is not None:
        parts.append(panel.band(band, f"passing band of the {statistic}"))
    line = [
        (axis.x(i), panel.y(v))
        for i, m in enumerate(measurements)
        if (v := number(m.get("score"))) is not None
    ]
    parts.append(trace("trace score", line, MUTED))
    parts += [
        verdict_mark(m, number(m.get("score")), axis.x(i), panel)
        for i, m in enumerate(measurements)
    ]
    return "".join(parts)
