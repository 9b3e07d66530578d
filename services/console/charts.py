"""Inline SVG line charts: no chart library to ship, nothing to load from anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

WIDTH, HEIGHT, PAD = 640, 180, 36


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    value: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    points: list[Point]
    top: str  # the y axis' maximum, as text
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def _fmt(value: Decimal | int | float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{Decimal(value):,.3f}".rstrip("0").rstrip(".")


def line_chart(title: str, unit: str, series: list[tuple[str, Decimal | int | float]]) -> Chart:
    """One point per (label, value), scaled into the plot area; y starts at zero."""
    highest = max((v for _, v in series), default=0)
    top = float(highest) or 1.0  # an all-zero month draws a flat line at the bottom
    span_x = WIDTH - 2 * PAD
    step = span_x / max(1, len(series) - 1)
    points = [
        Point(
            x=PAD + i * step,
            y=HEIGHT - PAD - (float(v) / top) * (HEIGHT - 2 * PAD),
            label=label,
            value=_fmt(v),
        )
        for i, (label, v) in enumerate(series)
    ]
    return Chart(title=title, unit=unit, points=points, top=_fmt(highest))
