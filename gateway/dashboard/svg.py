"""Bar and line charts as inline SVG, drawn on the server: no script, no library, readable offline.

A chart is a string of SVG with a `<title>` and `<desc>` (announced by screen readers through
`role="img"`), a y axis with round tick values, thinned x labels, and a `<title>` on every bar and
point, which browsers show as a tooltip. Colours come from CSS classes (`series-0`, `series-1`)
so the page's stylesheet decides them, dark mode included; the second series is also dashed, so
the lines differ without colour. Each chart on the page sits next to a table of the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.dashboard.fmt import compact, esc

WIDTH, HEIGHT = 1000, 260
LEFT, RIGHT, TOP, BOTTOM = 96, 16, 44, 40
MAX_X_LABELS = 8
Format = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    tooltip: str


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float]
    tooltips: Sequence[str]


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 times a power of ten) up to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _frame(title: str, desc: str, ident: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-t {ident}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-t">{esc(title)}</title><desc id="{ident}-d">{esc(desc)}</desc>' + "".join(body) + "</svg>"
    )


def _axes(ticks: list[float], fmt: Format, labels: Sequence[str], slot: float) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    out = []
    for tick in ticks:
        y = TOP + plot_h * (1 - tick / ticks[-1])
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 8}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle">'
            f"{esc(fmt(tick))}</text>"
        )
    every = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    for i, label in enumerate(labels):
        if i % every == 0:
            x = LEFT + slot * (i + 0.5)
            out.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 30}" text-anchor="middle">{esc(label)}</text>'
            )
    base = HEIGHT - BOTTOM
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{base}"/>')
    return out


def _empty(title: str, desc: str, ident: str) -> str:
    note = f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">No data in this period</text>'
    return _frame(title, desc, ident, [note])


def bar_chart(bars: Sequence[Bar], *, title: str, desc: str, ident: str, fmt: Format = compact) -> str:
    if not bars or all(b.value == 0 for b in bars):
        return _empty(title, desc, ident)
    ticks = nice_ticks(max(b.value for b in bars))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(bars)
    width = max(1.0, slot * 0.7)
    body = _axes(ticks, fmt, [b.label for b in bars], slot)
    for i, bar in enumerate(bars):
        h = plot_h * bar.value / ticks[-1]
        x = LEFT + slot * i + (slot - width) / 2
        body.append(
            f'<rect class="bar series-0" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{width:.1f}" '
            f'height="{max(h, 0):.1f}"><title>{esc(bar.tooltip)}</title></rect>'
        )
    return _frame(title, desc, ident, body)


def line_chart(
    labels: Sequence[str], series: Sequence[Series], *, title: str, desc: str, ident: str, fmt: Format = compact
) -> str:
    if not labels or all(v == 0 for s in series for v in s.values):
        return _empty(title, desc, ident)
    ticks = nice_ticks(max(v for s in series for v in s.values))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(labels)
    body = _axes(ticks, fmt, labels, slot)
    for k, line in enumerate(series):
        points = [
            (LEFT + slot * (i + 0.5), TOP + plot_h * (1 - value / ticks[-1])) for i, value in enumerate(line.values)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline class="line series-{k}" points="{path}"/>')
        for (x, y), tip in zip(points, line.tooltips, strict=True):
            body.append(
                f'<circle class="dot series-{k}" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{esc(tip)}</title></circle>'
            )
    for k, line in enumerate(series):  # legend, top right
        x = LEFT + 230 * k
        body.append(f'<line class="line series-{k}" x1="{x}" x2="{x + 30}" y1="{TOP - 26}" y2="{TOP - 26}"/>')
        body.append(f'<text class="legend" x="{x + 38}" y="{TOP - 20}">{esc(line.name)}</text>')
    return _frame(title, desc, ident, body)
