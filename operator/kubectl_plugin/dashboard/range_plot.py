"""A template's query over the run's window, as Prometheus answered the range query
(:mod:`.range_queries`), drawn as an SVG under the template's measurements.

One line per series, each named in a legend and told apart by its dashes as well
as its colour: the challenger solid and blue, the champion dashed and purple as in
:mod:`.comparison_plot`; a query by label gives one line per label value. Pure.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from html import escape

from promotion_operator.kubectl_plugin.dashboard.plot import (
    INNER_WIDTH,
    LEFT,
    MUTED,
    TOP,
    WIDTH,
    Panel,
    svg_open,
    trace,
)
from promotion_operator.kubectl_plugin.dashboard.range_queries import (
    CHALLENGER,
    CHAMPION,
    Series,
    Window,
)

_COLOURS = {CHALLENGER: "#0969da", CHAMPION: "#8250df"}
_DASHES = ("", "6 3", "2 2", "8 3 2 3", "1 3", "12 4")
_PER_ROW = 3
_ROW = 18
_PANEL_HEIGHT = 130
_BOTTOM = 30


def _name(series: Series, varying: Sequence[str]) -> str:
    """The series' side (unless it is the only one) and the labels that tell it apart."""
    labels = ", ".join(f"{k}={series.labels.get(k, '')}" for k in varying)
    side = series.side if series.side in _COLOURS else ""
    return " ".join(part for part in (side, labels) if part) or "the query"


def range_plot(template: str, window: Window, series: Sequence[Series]) -> str:
    """The SVG of the template's query over ``window``, one line per series."""
    keys = sorted({k for s in series for k in s.labels})
    varying = [k for k in keys if len({s.labels.get(k) for s in series}) > 1]
    rows = max(1, -(-len(series) // _PER_ROW))
    top = TOP + rows * _ROW
    height = top + _PANEL_HEIGHT + _BOTTOM
    values = [v for s in series for _, v in s.points]
    panel = Panel.spanning(top, _PANEL_HEIGHT, values)
    first, last = window.start.timestamp(), window.end.timestamp()

    def x(moment: float) -> float:
        return LEFT + (moment - first) / (last - first) * INNER_WIDTH

    summary = (
        f"The query of {template} from Prometheus over the run, "
        f"{window.start:%H:%M:%S} to {window.end:%H:%M:%S} UTC: "
        + (", ".join(_name(s, varying) for s in series) or "no series")
    )
    parts = [svg_open(f"{template}-range", height, summary, "range"), panel.frame("range")]
    if not values:
        parts.append(
            f'<text x="{WIDTH / 2:.0f}" y="{top + _PANEL_HEIGHT / 2:.0f}" text-anchor="middle" '
            f'font-size="12" fill="{MUTED}">Prometheus has no data for this query '
            "over the run</text>"
        )
    legend = []
    same_side: dict[str, int] = {}
    for index, one in enumerate(series):
        nth = same_side[one.side] = same_side.get(one.side, -1) + 1
        colour = _COLOURS.get(one.side, "#0969da")
        # The champion dashed, as in the comparison plot; more series of a side vary it.
        dashes = _DASHES[(nth + (1 if one.side == CHAMPION else 0)) % len(_DASHES)]
        line = [(x(moment), panel.y(value)) for moment, value in one.points]
        name = _name(one, varying)
        parts.append(
            f'<g class="series {escape(one.side)}" data-points="{len(one.points)}">'
            f"<title>{escape(name)}</title>"
            + (
                trace("line", line, colour, dashes)
                if len(line) > 1
                else "".join(
                    f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>'
                    for px, py in line
                )
            )
            + "</g>"
        )
        lx = LEFT + (index % _PER_ROW) * 190
        ly = TOP + (index // _PER_ROW) * _ROW
        key = trace("key", [(lx, ly + 2), (lx + 24, ly + 2)], colour, dashes)
        legend.append(
            f'<g class="legend-entry">{key}<text x="{lx + 30}" y="{ly + 6}" font-size="12" '
            f'fill="#24292f">{escape(name)}</text></g>'
        )
    parts.append(f'<g class="legend">{"".join(legend)}</g>')
    for moment, anchor in ((window.start, "start"), (window.end, "end")):
        parts.append(
            f'<text x="{x(moment.timestamp()):.1f}" y="{height - 10}" text-anchor="{anchor}" '
            f'font-size="11" fill="{MUTED}">{moment.astimezone(datetime.UTC):%H:%M:%S}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
