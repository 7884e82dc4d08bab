"""The overview's chart of events per type over time, as stacked bars laid out for an inline SVG: pure
geometry, no I/O (the template draws it, and a table beside it gives screen readers the same numbers)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.events.model import ALL_TYPES

WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 48, 24, 8
"""The plot area's margins: room for the count axis on the left and the time labels below."""
# One colour per type, dark enough for a 3:1 contrast against the white page (WCAG 1.4.11), told apart
# also by the legend's order and the data table.
PALETTE = ("#0b5cad", "#b23a00", "#1b7a3a", "#7a3fb0", "#a8326e", "#006d77", "#8a6200", "#c0392b",
           "#3d5a80", "#5b6b00", "#6d4c41", "#37474f")
COLOURS = dict(zip(ALL_TYPES, PALETTE, strict=True))


@dataclass(frozen=True)
class Bar:
    """One type's part of one bucket's bar."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Tick:
    """A label on an axis, at ``x`` (time) or ``y`` (count)."""

    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    """Everything the template needs to draw one span."""

    bars: list[Bar]
    time_ticks: list[Tick]
    count_ticks: list[Tick]
    legend: list[tuple[str, str, int]]  # type, colour, events in the span
    total: int
    width: int = WIDTH
    height: int = HEIGHT


def _nice_top(peak: int) -> int:
    """The count at the top of the axis: the peak rounded up to 1, 2 or 5 times a power of ten."""
    power = 1
    while True:
        for factor in (1, 2, 5):
            if factor * power >= peak:
                return factor * power
        power *= 10


def layout(series: dict[str, list[int]], start: datetime, step: timedelta, buckets: int) -> Chart:
    """Stacked bars for ``series`` (per type, one count for each of ``buckets`` buckets from ``start``,
    ``step`` apart)."""
    totals = [sum(counts[i] for counts in series.values()) for i in range(buckets)]
    top = _nice_top(max(totals, default=0))
    plot_width, plot_height = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    slot = plot_width / buckets
    bars: list[Bar] = []
    for i in range(buckets):
        base = float(TOP + plot_height)
        label = _label(start + step * i, step)
        for etype, counts in series.items():
            if not counts[i]:
                continue
            height = counts[i] / top * plot_height
            base -= height
            bars.append(Bar(round(LEFT + i * slot + slot * 0.1, 1), round(base, 1), round(slot * 0.8, 1),
                            round(height, 1), COLOURS[etype], f"{label}: {counts[i]} {etype}"))
    every = max(1, buckets // 8)
    time_ticks = [Tick(round(LEFT + (i + 0.5) * slot, 1), HEIGHT - 6, _label(start + step * i, step))
                  for i in range(0, buckets, every)]
    count_ticks = [Tick(LEFT - 6, round(TOP + plot_height * (1 - share), 1), f"{int(top * share):,}")
                   for share in ((0, 0.5, 1) if top > 1 else (0, 1))]
    legend = [(etype, COLOURS[etype], sum(counts)) for etype, counts in series.items()]
    return Chart(bars, time_ticks, count_ticks, legend, sum(totals))


def _label(moment: datetime, step: timedelta) -> str:
    """A bucket's label: its day for daily buckets, its hour for hourly ones (UTC)."""
    return moment.strftime("%b %d" if step >= timedelta(days=1) else "%H:00")
