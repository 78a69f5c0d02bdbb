"""Column charts over time for the analytics page, as server-side SVG geometry
(the template draws the rectangles), like ``web_svc.charts``: per period, one
column per series side by side, scaled to the largest value."""
from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, AXIS, TOP = 520, 180, 22, 16
COLOURS = ("#3559e0", "#1e9e6a", "#d9822b")


@dataclass(frozen=True)
class Column:
    series: str
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float
    colour: str


@dataclass(frozen=True)
class Tick:
    label: str
    x: float


def columns(labels: list[str], series: dict[str, list[float]], width: int = WIDTH,
            height: int = HEIGHT) -> tuple[list[Column], list[Tick], float]:
    """Grouped columns, one group per label; returns (columns, axis ticks, top value).
    Every ``series`` has one value per label. At most about 8 ticks are labelled."""
    names = list(series)
    top = max((v for values in series.values() for v in values), default=0) or 1
    group = width / max(len(labels), 1)
    bar = max(group * 0.8 / max(len(names), 1), 1.0)
    span = height - AXIS - TOP
    out = []
    for i, label in enumerate(labels):
        for j, name in enumerate(names):
            value = series[name][i]
            h = span * value / top
            out.append(Column(name, label, value, round(i * group + group * 0.1 + j * bar, 2),
                              round(TOP + span - h, 2), round(bar, 2), round(h, 2),
                              COLOURS[j % len(COLOURS)]))
    every = max(1, -(-len(labels) // 8))
    ticks = [Tick(label, round(i * group + group / 2, 2)) for i, label in enumerate(labels)
             if i % every == 0]
    return out, ticks, int(top) if float(top).is_integer() else top


def hours(seconds: float | None) -> float:
    return round((seconds or 0) / 3600, 1)
