"""Inline SVG charts for the HTML report: line curves, horizontal bars with CIs, heat maps.

Hand-written SVG rather than matplotlib: the report must be one self-contained file, SVG
text stays sharp at any zoom (class names in a 77×77 confusion matrix stay legible when
zoomed), every mark can carry a ``<title>`` tooltip with the exact number, and hone does
not need a plotting dependency. Each function returns one ``<svg>`` string; every piece of
caller text passes through ``html.escape``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PALETTE = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb")
_FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif"
_CHAR_W = 0.58  # average glyph width as a share of the font size, for layout estimates


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _svg_open(width: float, height: float, title: str) -> str:
    """Scalable root element: fixed viewBox, shrinks to the page width, never grows past it."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" style="max-width:100%;height:auto;{_FONT}" role="img" '
        f'aria-label="{_e(title)}"><title>{_e(title)}</title>'
        f'<rect width="100%" height="100%" fill="#fff"/>'
    )


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks, v = [], start
    while v < hi + step * 0.999:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) < 0.01:
        return f"{v:.0e}"
    return f"{v:g}"


@dataclass(frozen=True)
class Series:
    """One named line or bar series; ``lo``/``hi`` are optional CI bounds per value."""

    name: str
    values: Sequence[float]
    x: Sequence[float] = ()
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None
    color: str = ""


@dataclass
class _Frame:
    """Plot area geometry and data → pixel mapping."""

    left: float
    top: float
    width: float
    height: float
    x_ticks: list[float] = field(default_factory=list)
    y_ticks: list[float] = field(default_factory=list)

    def px(self, x: float) -> float:
        lo, hi = self.x_ticks[0], self.x_ticks[-1]
        return self.left + (x - lo) / ((hi - lo) or 1.0) * self.width

    def py(self, y: float) -> float:
        lo, hi = self.y_ticks[0], self.y_ticks[-1]
        return self.top + self.height - (y - lo) / ((hi - lo) or 1.0) * self.height


def _legend(series: Sequence[Series], x: float, y: float) -> str:
    parts, cx = [], x
    for s in series:
        parts.append(f'<rect x="{cx:.1f}" y="{y - 9:.1f}" width="12" height="10" fill="{s.color}"/>'
                     f'<text x="{cx + 16:.1f}" y="{y:.1f}" font-size="12">{_e(s.name)}</text>')
        cx += 28 + len(s.name) * 12 * _CHAR_W
    return "".join(parts)


def _colored(series: Sequence[Series]) -> list[Series]:
    return [Series(s.name, s.values, s.x, s.lo, s.hi, s.color or PALETTE[i % len(PALETTE)])
            for i, s in enumerate(series)]


def _axes(f: _Frame, x_label: str, y_label: str, y_fmt: str = "") -> str:
    """Grid lines, tick labels and axis titles for a line chart frame."""
    out = []
    for t in f.y_ticks:
        y = f.py(t)
        label = f"{t:{y_fmt}}" if y_fmt else _fmt_tick(t)
        out.append(f'<line x1="{f.left}" x2="{f.left + f.width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{f.left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{label}</text>')
    for t in f.x_ticks:
        x = f.px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.top + f.height}" y2="{f.top + f.height + 4}" '
                   f'stroke="#555"/><text x="{x:.1f}" y="{f.top + f.height + 17}" font-size="11" '
                   f'text-anchor="middle">{_fmt_tick(t)}</text>')
    out.append(f'<rect x="{f.left}" y="{f.top}" width="{f.width}" height="{f.height}" fill="none" stroke="#999"/>')
    out.append(f'<text x="{f.left + f.width / 2:.1f}" y="{f.top + f.height + 34}" font-size="12" '
               f'text-anchor="middle">{_e(x_label)}</text>')
    cy = f.top + f.height / 2
    out.append(f'<text x="14" y="{cy:.1f}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 14 {cy:.1f})">{_e(y_label)}</text>')
    return "".join(out)


def line_chart(series: Sequence[Series], *, title: str, x_label: str = "step", y_label: str = "",
               y_min: float | None = None, marker_x: float | None = None, marker_label: str = "best",
               width: int = 640, height: int = 300) -> str:
    """Curves over training steps; ``marker_x`` draws a dashed vertical line (e.g. the best step)."""
    series = _colored([s for s in series if len(s.values)])
    xs = [x for s in series for x in s.x] or [0.0, 1.0]
    ys = [y for s in series for y in s.values if math.isfinite(y)] or [0.0, 1.0]
    lo = min(ys) if y_min is None else min(y_min, min(ys))
    f = _Frame(56, 48, width - 72, height - 100, nice_ticks(min(xs), max(xs), 6), nice_ticks(lo, max(ys), 5))
    out = [_svg_open(width, height, title),
           f'<text x="{width / 2}" y="18" font-size="14" font-weight="600" text-anchor="middle">{_e(title)}</text>',
           _legend(series, f.left, 38), _axes(f, x_label, y_label)]
    if marker_x is not None and f.x_ticks[0] <= marker_x <= f.x_ticks[-1]:
        mx = f.px(marker_x)
        out.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{f.top}" y2="{f.top + f.height}" stroke="#333" '
                   f'stroke-dasharray="4 3"/><text x="{mx + 3:.1f}" y="{f.top + 12}" font-size="11">'
                   f'{_e(marker_label)} ({_fmt_tick(marker_x)})</text>')
    for s in series:
        pts = [(f.px(x), f.py(y), x, y) for x, y in zip(s.x, s.values, strict=True) if math.isfinite(y)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        if len(pts) <= 80:
            out.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{s.color}"><title>{_e(s.name)} @ '
                       f'{_fmt_tick(x)}: {y:.4g}</title></circle>' for px, py, x, y in pts)
    return "".join(out) + "</svg>"


def _bar(f: _Frame, y: float, h: float, s: Series, i: int, label: str, fmt: str, x_max: float) -> str:
    """One horizontal bar with its CI whisker, value text and tooltip; a NaN value draws '—' only."""
    v = s.values[i]
    if not math.isfinite(v):
        return (f'<text x="{f.left + 4:.1f}" y="{y + h - 1:.1f}" font-size="{h - 1:.0f}" fill="#777">'
                "— (not measured)</text>")
    end = f.px(min(max(v, 0.0), x_max))
    tip = f"{label} — {s.name}: {v:{fmt}}"
    parts = []
    lo, hi = (s.lo[i], s.hi[i]) if s.lo is not None and s.hi is not None else (math.nan, math.nan)
    if math.isfinite(lo) and math.isfinite(hi):
        tip += f" (CI {lo:{fmt}} – {hi:{fmt}})"
        x1, x2, my = f.px(max(lo, 0.0)), f.px(min(hi, x_max)), y + h / 2
        parts.append(f'<path d="M{x1:.1f} {my:.1f}H{x2:.1f}M{x1:.1f} {my - 3:.1f}v6M{x2:.1f} {my - 3:.1f}v6" '
                     f'stroke="#222" stroke-width="1.2" fill="none"/>')
        end = max(end, x2)
    bar = (f'<rect x="{f.left}" y="{y:.1f}" width="{max(f.px(min(max(v, 0.0), x_max)) - f.left, 0):.1f}" '
           f'height="{h}" fill="{s.color}"><title>{_e(tip)}</title></rect>')
    text = f'<text x="{end + 4:.1f}" y="{y + h - 1:.1f}" font-size="{min(h, 11) - 1:.0f}">{v:{fmt}}</text>'
    return bar + "".join(parts) + text


def bar_chart(categories: Sequence[str], series: Sequence[Series], *, title: str, x_max: float = 1.0,
              value_fmt: str = ".1%", bar_h: int = 12, width: int = 720) -> str:
    """Horizontal grouped bars, one group per category, with optional CI whiskers.

    Horizontal so long class and system names stay readable without rotation.
    """
    series = _colored(series)
    font = 11 if bar_h >= 10 else 9
    names = [_clip(str(c), 48) for c in categories]
    label_w = min(330.0, 12 + max((len(n) for n in names), default=4) * font * _CHAR_W)
    group_h = bar_h * len(series) + (8 if len(series) > 1 else 3)
    top = 50 if len(series) > 1 else 34
    height = top + group_h * len(categories) + 30
    f = _Frame(label_w, top, width - label_w - 64, group_h * len(categories), nice_ticks(0.0, x_max, 5), [0, 1])
    out = [_svg_open(width, height, title),
           f'<text x="{width / 2}" y="18" font-size="14" font-weight="600" text-anchor="middle">{_e(title)}</text>']
    if len(series) > 1:
        out.append(_legend(series, label_w, 38))
    for t in f.x_ticks:
        x = f.px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + f.height}" stroke="#e5e5e5"/>'
                   f'<text x="{x:.1f}" y="{top + f.height + 14}" font-size="11" text-anchor="middle">'
                   f'{t:{value_fmt.replace(".1", ".0")}}</text>')
    for ci, (cat, name) in enumerate(zip(categories, names, strict=True)):
        gy = top + ci * group_h
        out.append(f'<text x="{label_w - 6:.1f}" y="{gy + group_h / 2 + 4:.1f}" font-size="{font}" '
                   f'text-anchor="end"><title>{_e(cat)}</title>{_e(name)}</text>')
        for si, s in enumerate(series):
            out.append(_bar(f, gy + si * bar_h + 1, bar_h - 2, s, ci, str(cat), value_fmt, x_max))
    out.append(f'<line x1="{f.left}" x2="{f.left}" y1="{top}" y2="{top + f.height}" stroke="#555"/>')
    return "".join(out) + "</svg>"


def _blue(share: float) -> str:
    """White → dark blue; square-root scale so rare confusions stay visible next to the diagonal."""
    t = math.sqrt(min(max(share, 0.0), 1.0))
    lo, hi = (247, 251, 255), (8, 48, 107)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str) -> str:
    """Confusion matrix (rows = true, cols = predicted), coloured by share of the true class.

    Cell size and label font shrink with the class count (26 classes → ~24 px cells with
    counts printed; 77 → ~12 px cells, 9 px labels); each cell's tooltip gives the numbers.
    """
    k = len(labels)
    cell = min(26.0, max(9.0, 900.0 / max(k, 1)))
    font = min(11.0, max(6.0, cell * 0.78))
    names = [_clip(str(x), 32) for x in labels]
    lab_w = 10 + max((len(n) for n in names), default=4) * font * _CHAR_W
    left, top = lab_w + 22, lab_w + 40
    size = cell * k
    width, height = max(left + size + 16, 40 + len(title) * 14 * _CHAR_W), top + size + 16
    out = [_svg_open(width, height, title),
           f'<text x="{width / 2:.0f}" y="18" font-size="14" font-weight="600" text-anchor="middle">{_e(title)}</text>',
           f'<text x="{left + size / 2:.1f}" y="34" font-size="12" text-anchor="middle">predicted →</text>',
           (f'<text x="12" y="{top + size / 2:.1f}" font-size="12" text-anchor="middle" '
            f'transform="rotate(-90 12 {top + size / 2:.1f})">true →</text>'),
           f'<rect x="{left}" y="{top}" width="{size:.1f}" height="{size:.1f}" fill="{_blue(0)}" stroke="#999"/>']
    for i, name in enumerate(names):
        c = i * cell + cell / 2 + font * 0.35
        out.append(f'<text x="{left - 4:.1f}" y="{top + c:.1f}" font-size="{font:.1f}" text-anchor="end">'
                   f'{_e(name)}</text>')
        x = left + c
        out.append(f'<text x="{x:.1f}" y="{top - 4:.1f}" font-size="{font:.1f}" '
                   f'transform="rotate(-90 {x:.1f} {top - 4:.1f})">{_e(name)}</text>')
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            if not count:
                continue
            share = count / total
            x, y = left + j * cell, top + i * cell
            tip = f"true {labels[i]} → predicted {labels[j]}: {count} ({share:.0%} of {labels[i]})"
            edge = ' stroke="#c00" stroke-width="0.8"' if i != j else ""  # outline confusions
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" fill="{_blue(share)}"'
                       f'{edge}><title>{_e(tip)}</title></rect>')
            if cell >= 18:
                ink = "#fff" if share > 0.35 else "#111"
                out.append(f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 3.5:.1f}" font-size="9.5" '
                           f'text-anchor="middle" fill="{ink}">{count}</text>')
    return "".join(out) + "</svg>"
