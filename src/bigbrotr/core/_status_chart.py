"""The status page's chart of recent cycles, and how it writes durations and times.

Private to ``bigbrotr.core.status``: an inline SVG bar per cycle, with a
duration scale beside it, drawn from numbers the page's stylesheet shares.
"""

from __future__ import annotations

import time
from html import escape

from bigbrotr.core.history import HISTORY, CycleRecord

__all__ = ["CHART_HEIGHT", "chart", "scale_y", "seconds", "utc"]


def seconds(value: float) -> str:
    """A duration for people: ``0.42 ms``, ``850 ms``, ``12.5 s``, ``3 min 20 s``, ``2 h 5 min``...

    Under 10 ms two significant digits are kept, so a fast service's chart
    scale reads ``0.84 ms`` and ``0.42 ms``, not ``1 ms`` and ``0 ms``.
    """
    if value < 0.01:
        return f"{value * 1000:.2g} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


_CHART_WIDTH, CHART_HEIGHT, _BAR_GAP = 600, 120, 2
#: Room above the scale's top line, so it is not clipped (viewBox units, which
#: are CSS pixels: the chart is CHART_HEIGHT px tall).
_CHART_TOP = 4


def scale_y(duration: float, longest: float) -> float:
    """Where ``duration`` sits on the scale from 0 (bottom) to ``longest`` (top line)."""
    return CHART_HEIGHT - duration / longest * (CHART_HEIGHT - _CHART_TOP)


def chart(recent: tuple[CycleRecord, ...]) -> str:
    """An inline SVG bar per recent cycle: height is duration, failures in their own colour.

    The scale (0, half, the longest duration) is HTML beside the SVG, not SVG
    text: the SVG stretches to the page's width, which would stretch text too.
    Its labels sit at fixed heights the stylesheet gives (inline ``style``
    attributes would need the CSP to allow them), matching ``scale_y``.
    """
    recent = recent[-HISTORY:]
    if not recent:
        return '<p class="muted">No cycle has finished yet.</p>'
    longest = max(c.duration for c in recent) or 1.0
    step = _CHART_WIDTH / HISTORY
    grid = "".join(
        f'<line class="grid" x1="0" x2="{_CHART_WIDTH}" y1="{y:.1f}" y2="{y:.1f}"></line>'
        for y in (scale_y(longest, longest), scale_y(longest / 2, longest))
    )
    bars = []
    first = HISTORY - len(recent)  # the newest cycle is at the right edge
    for i, cycle in enumerate(recent, first):
        top = min(scale_y(cycle.duration, longest), CHART_HEIGHT - 2.0)
        outcome = "ok" if cycle.ok else f"failed: {cycle.error}"
        label = escape(f"{utc(cycle.ended_at)}: {seconds(cycle.duration)}, {outcome}")
        bars.append(
            f'<rect class="{"ok" if cycle.ok else "fail"}" x="{i * step:.1f}"'
            f' y="{top:.1f}" width="{step - _BAR_GAP:.1f}"'
            f' height="{CHART_HEIGHT - top:.1f}"><title>{label}</title></rect>'
        )
    failed = sum(not c.ok for c in recent)
    scale = (
        '<div class="scale" aria-hidden="true" data-field="scale">'
        f'<span class="top">{seconds(longest)}</span>'
        f'<span class="half">{seconds(longest / 2)}</span><span class="zero">0</span></div>'
    )
    return (
        f'<div class="plot">{scale}'
        f'<svg class="chart" viewBox="0 0 {_CHART_WIDTH} {CHART_HEIGHT}"'
        ' preserveAspectRatio="none" role="img"'
        f' aria-label="Durations of the last {len(recent)} cycles, {failed} failed,'
        f' the longest {seconds(longest)}">'
        + grid
        + "".join(bars)
        + f'</svg></div><p class="muted">Last {len(recent)} cycles, tallest {seconds(longest)}.'
        ' <span class="key ok"></span> succeeded <span class="key fail"></span> failed</p>'
    )
