"""Bar charts as server-side SVG geometry (the template draws the rectangles):
no charting library, no script, readable without JavaScript."""
from __future__ import annotations

from dataclasses import dataclass

BAR_HEIGHT, GAP, LABEL_WIDTH, VALUE_WIDTH = 22, 8, 160, 48


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    y: int
    width: float


def bars(rows: list[tuple[str, float]], width: int = 520) -> tuple[list[Bar], int]:
    """Horizontal bars scaled to the largest value; returns (bars, chart height)."""
    span = width - LABEL_WIDTH - VALUE_WIDTH
    top = max((value for _, value in rows), default=0) or 1
    out = [Bar(label, value, i * (BAR_HEIGHT + GAP), span * value / top)
           for i, (label, value) in enumerate(rows)]
    return out, max(len(rows) * (BAR_HEIGHT + GAP) - GAP, BAR_HEIGHT)


@dataclass(frozen=True)
class Column:
    minute: int  # minutes before now (0: the current one)
    value: int
    x: float
    height: float


def columns(counts: list[int], width: int = 600, height: int = 120) -> tuple[list[Column], int]:
    """Counts per minute (oldest first) as vertical bars scaled to the busiest
    minute; returns (columns, the busiest minute's count)."""
    step = width / max(len(counts), 1)
    top = max(counts, default=0)
    return [Column(len(counts) - 1 - i, value, i * step, height * value / (top or 1))
            for i, value in enumerate(counts)], top
