"""Line charts as inline SVG: no library, no script, no network; they scale with the page.

The drawing area and the axis ranges are written on the <svg> (data-x0, data-x1, data-y0, data-y1
and data-box="left top width height"), so a reader (or a test) can turn each point of a
<polyline> back into the value it plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 520, 250
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 12, 46
MARKERS_UP_TO = 80  # points get a dot (and a hover title) when a series has at most this many


@dataclass(frozen=True)
class Series:
    name: str  # legend text
    key: str  # the metrics.jsonl key it plots
    points: list[tuple[float, float]]  # (step, value)
    color: str
    dashed: bool = False


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t < hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _label(v: float, percent: bool) -> str:
    if percent:
        return f"{v * 100:.0f}%"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def line_chart(series: list[Series], *, title: str, percent: bool = False,
               x_label: str = "optimizer step") -> str:
    """An <svg> with one polyline per series (in the order given) and dots on sparse series."""
    pts = [p for s in series for p in s.points]
    if not pts:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if percent:
        yticks = [0, 0.25, 0.5, 0.75, 1.0]
    else:
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
        yticks = nice_ticks(lo - pad if lo - pad > 0 or lo < 0 else 0.0, hi + pad)
    y0, y1 = yticks[0], yticks[-1]
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{escape(title)}" data-x0="{x0!r}" data-x1="{x1!r}" data-y0="{y0!r}" '
           f'data-y1="{y1!r}" data-box="{LEFT} {TOP} {pw} {ph}">']
    for t in yticks:
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + pw}" y1="{py(t):.2f}" '
                   f'y2="{py(t):.2f}"/><text class="tick" x="{LEFT - 6}" y="{py(t) + 4:.2f}" '
                   f'text-anchor="end">{_label(t, percent)}</text>')
    for t in nice_ticks(x0, x1, 6):
        if x0 <= t <= x1:
            out.append(f'<text class="tick" x="{px(t):.2f}" y="{TOP + ph + 21}" '
                       f'text-anchor="middle">{_label(t, False)}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT + pw}" y1="{TOP + ph}" '
               f'y2="{TOP + ph}"/><text class="axis-label" x="{LEFT + pw / 2:.1f}" '
               f'y="{HEIGHT - 4}" text-anchor="middle">{escape(x_label)}</text>')
    for s in series:
        coords = " ".join(f"{px(x):.2f},{py(y):.2f}" for x, y in s.points)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(f'<polyline fill="none" stroke="{s.color}" stroke-width="2"{dash} '
                   f'data-key="{escape(s.key)}" points="{coords}"/>')
        if len(s.points) <= MARKERS_UP_TO:
            for x, y in s.points:
                value = f"{y * 100:.1f}%" if percent else f"{y:.4g}"
                out.append(f'<circle cx="{px(x):.2f}" cy="{py(y):.2f}" r="3" fill="{s.color}">'
                           f'<title>step {x:g}: {escape(s.name)} {value}</title></circle>')
    out.append("</svg>")
    return "".join(out)


__all__ = ["Series", "line_chart", "nice_ticks"]
