"""An analysis template's measurements as an SVG plot: one point per measurement
over time, the template's passing band behind them, failures drawn as crosses.

Pure: a string from the measurements (``status.canary.measurements[]`` or
``status.bake.measurements[]``). Presentation attributes only (no ``style``), so
the page's Content-Security-Policy needs no inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from promotion_operator.kubectl_plugin.resource import parse_time

WIDTH = 640
HEIGHT = 220
# Room for the axis labels: left, right, top, bottom.
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 36
PASSED, FAILED, INCONCLUSIVE = "Passed", "Failed", "Inconclusive"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Band:
    """The template's passing values: ``low`` to ``high`` (None: unbounded)."""

    low: float | None
    high: float | None


def band_of(measurements: Sequence[Mapping[str, Any]]) -> Band | None:
    """The bounds the newest measurement recorded (the template's ``min``/``max``)."""
    for measurement in reversed(measurements):
        low, high = _number(measurement.get("min")), _number(measurement.get("max"))
        if low is not None or high is not None:
            return Band(low, high)
    return None


def by_template(
    measurements: Sequence[Mapping[str, Any]],
) -> dict[str, list[Mapping[str, Any]]]:
    """The measurements grouped by template, in the order the templates first appear."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for measurement in measurements:
        template = measurement.get("template")
        groups.setdefault(template if isinstance(template, str) else "?", []).append(measurement)
    return groups


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _span(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.1
    return low - pad, high + pad


def plot(template: str, measurements: Sequence[Mapping[str, Any]]) -> str:
    """The SVG of one template's measurements (oldest first)."""
    band = band_of(measurements)
    values = [v for m in measurements if (v := _number(m.get("value"))) is not None]
    bounds = [b for b in (band.low, band.high) if b is not None] if band else []
    low, high = _span(values + bounds or [0.0])
    times = [parse_time(m.get("at")) for m in measurements]
    stamps = [t.timestamp() for t in times if t is not None]
    # Without two distinct times (or with a time missing) the points are spaced evenly.
    by_time = len(stamps) == len(measurements) and len(set(stamps)) > 1
    first, last = (min(stamps), max(stamps)) if by_time else (0.0, max(len(measurements) - 1, 1))
    inner_w = WIDTH - _LEFT - _RIGHT
    inner_h = HEIGHT - _TOP - _BOTTOM

    def x(index: int) -> float:
        position = stamps[index] if by_time else float(index)
        if last == first:
            return _LEFT + inner_w / 2
        return _LEFT + (position - first) / (last - first) * inner_w

    def y(value: float) -> float:
        return _TOP + (high - value) / (high - low) * inner_h

    title_id = f"plot-{escape(template)}-title"
    passed = sum(1 for m in measurements if m.get("result") == PASSED)
    failed = sum(1 for m in measurements if m.get("result") == FAILED)
    summary = (
        f"{len(measurements)} measurements of {template}: {passed} passed, {failed} failed"
        + (f"; passing band {_band_text(band)}" if band else "")
    )
    parts = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{title_id}" data-template="{escape(template)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{title_id}">{escape(summary)}</title>',
        f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{inner_w}" height="{inner_h}" '
        f'fill="none" stroke="#57606a"/>',
    ]
    if band is not None:
        top = y(band.high) if band.high is not None else _TOP
        bottom = y(band.low) if band.low is not None else _TOP + inner_h
        parts.append(
            f'<rect class="band" x="{_LEFT}" y="{top:.1f}" width="{inner_w}" '
            f'height="{max(bottom - top, 1):.1f}" fill="#2da44e" fill-opacity="0.15">'
            f"<title>passing band {escape(_band_text(band))}</title></rect>"
        )
        for bound, name in ((band.low, "min"), (band.high, "max")):
            if bound is not None:
                parts.append(
                    f'<line class="bound {name}" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" '
                    f'y1="{y(bound):.1f}" y2="{y(bound):.1f}" stroke="#1a7f37" '
                    f'stroke-dasharray="4 3"/>'
                    f'<text x="{_LEFT - 6}" y="{y(bound) + 4:.1f}" text-anchor="end" '
                    f'font-size="11" fill="#24292f">{name} {_fmt(bound)}</text>'
                )
    line = [
        f"{x(i):.1f},{y(v):.1f}"
        for i, m in enumerate(measurements)
        if (v := _number(m.get("value"))) is not None
    ]
    if len(line) > 1:
        parts.append(
            f'<polyline class="trace" points="{" ".join(line)}" fill="none" stroke="#0969da"/>'
        )
    for index, measurement in enumerate(measurements):
        parts.append(_point(measurement, x(index), y, _TOP + inner_h))
    for label, value in (("", high), ("", low)):
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{label}{_fmt(value)}</text>'
        )
    for index in {0, len(measurements) - 1} if measurements else set():
        moment = times[index]
        if moment is not None:
            parts.append(
                f'<text x="{x(index):.1f}" y="{HEIGHT - 12}" text-anchor="middle" '
                f'font-size="11" fill="#57606a">{moment.strftime("%H:%M:%S")}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _band_text(band: Band | None) -> str:
    if band is None:
        return ""
    low = _fmt(band.low) if band.low is not None else "-inf"
    high = _fmt(band.high) if band.high is not None else "+inf"
    return f"[{low}, {high}]"


def _point(measurement: Mapping[str, Any], px: float, y: Any, baseline: float) -> str:
    """One measurement: a circle when it passed, a cross when it failed, a hollow
    diamond on the axis when it was inconclusive (no value). Shape, not colour
    alone, tells them apart."""
    result = measurement.get("result")
    value = _number(measurement.get("value"))
    at = measurement.get("at") if isinstance(measurement.get("at"), str) else ""
    words = f"{at} {result}: " + (
        _fmt(value) if value is not None else str(measurement.get("message") or "no value")
    )
    tip = f"<title>{escape(words)}</title>"
    kind = {PASSED: "passed", FAILED: "failed"}.get(str(result), "inconclusive")
    opening = f'<g class="point {kind}" data-at="{escape(str(at))}">'
    if value is None or kind == "inconclusive":
        py = baseline if value is None else y(value)
        d = f"M{px:.1f},{py - 5:.1f} l5,5 l-5,5 l-5,-5 z"
        return f'{opening}{tip}<path d="{d}" fill="#ffffff" stroke="#57606a"/></g>'
    py = y(value)
    if kind == "failed":
        d = f"M{px - 5:.1f},{py - 5:.1f} l10,10 m0,-10 l-10,10"
        return f'{opening}{tip}<path d="{d}" stroke="#cf222e" stroke-width="3"/></g>'
    return f'{opening}{tip}<circle cx="{px:.1f}" cy="{py:.1f}" r="4.5" fill="#1a7f37"/></g>'
