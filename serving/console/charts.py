"""Small SVG charts rendered on the server: no chart library, nothing for the browser to fetch."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def bars(values: Sequence[float], *, labels: Sequence[str] = (), title: str, width: int = 560, height: int = 160,
         unit: str = "") -> Markup:
    """A bar chart of ``values`` (each bar's tooltip: its label and value); empty data says so."""
    if not values:
        return Markup(f'<p class="muted">{escape(title)}: no data yet.</p>')
    top = max(values) or 1
    pad, base = 4, height - 18
    step = (width - 2 * pad) / len(values)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<title>{escape(title)}</title>',
             f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" class="axis"/>']
    for i, value in enumerate(values):
        h = (base - 14) * value / top
        label = labels[i] if i < len(labels) else str(i)
        parts.append(f'<rect x="{pad + i * step + 1:.1f}" y="{base - h:.1f}" width="{max(step - 2, 1):.1f}" '
                     f'height="{h:.1f}"><title>{escape(label)}: {value:,.0f}{escape(unit)}</title></rect>')
    parts.append(f'<text x="{pad}" y="10" class="tick">max {top:,.0f}{escape(unit)}</text>')
    if labels:
        parts.append(f'<text x="{pad}" y="{height - 4}" class="tick">{escape(labels[0])}</text>')
        parts.append(f'<text x="{width - pad}" y="{height - 4}" class="tick" text-anchor="end">{escape(labels[-1])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def share(part: int, whole: int, *, title: str, width: int = 240) -> Markup:
    """A horizontal bar showing ``part`` of ``whole``."""
    fraction = part / whole if whole else 0.0
    return Markup(
        f'<svg class="chart share" viewBox="0 0 {width} 14" role="img" aria-label="{escape(title)}">'
        f'<title>{escape(title)}: {fraction:.0%}</title><rect class="bg" x="0" y="0" width="{width}" height="14"/>'
        f'<rect x="0" y="0" width="{width * fraction:.1f}" height="14"/></svg>')


def rates(rows: Sequence[tuple[str, float | None, str]], *, title: str, width: int = 560) -> Markup:
    """Horizontal bars of rates in [0, 1], one per (label, rate, note); a missing rate says "no entries"."""
    top = max([r for _, r, _ in rows if r is not None] + [0.01])
    label_w, row_h = 110, 26
    height = row_h * len(rows) + 6
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<title>{escape(title)}</title>']
    for i, (label, rate, note) in enumerate(rows):
        y = 4 + i * row_h
        parts.append(f'<text x="0" y="{y + 15}" class="label">{escape(label)}</text>')
        if rate is None:
            parts.append(f'<text x="{label_w}" y="{y + 15}" class="tick">no entries</text>')
            continue
        w = (width - label_w - 150) * rate / top
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="18"><title>{escape(label)}: {rate:.1%}</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" class="tick">{rate:.1%} {escape(note)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def interval(estimate: float | None, low_high: Sequence[float] | None, *, title: str, width: int = 560) -> Markup:
    """A point estimate with its interval on an axis that always shows zero (so "no effect" is visible)."""
    if estimate is None or not low_high:
        return Markup(f'<p class="muted">{escape(title)}: not enough entries in both arms yet.</p>')
    low, high = low_high
    span = max(abs(low), abs(high), abs(estimate), 0.01) * 1.15
    pad, height, mid = 30, 46, 18

    def x(value: float) -> float:
        return pad + (width - 2 * pad) * (value + span) / (2 * span)

    side = "ok" if low > 0 else "bad" if high < 0 else "warn"
    return Markup(
        f'<svg class="chart interval" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f'<title>{escape(title)}: {estimate:+.1%} ({low:+.1%} to {high:+.1%})</title>'
        f'<line x1="{pad}" y1="{mid}" x2="{width - pad}" y2="{mid}" class="axis"/>'
        f'<line x1="{x(0):.1f}" y1="4" x2="{x(0):.1f}" y2="{mid + 8}" class="axis"/>'
        f'<text x="{x(0):.1f}" y="{height - 4}" class="tick" text-anchor="middle">0</text>'
        f'<line x1="{x(low):.1f}" y1="{mid}" x2="{x(high):.1f}" y2="{mid}" class="ci {side}"/>'
        f'<circle cx="{x(estimate):.1f}" cy="{mid}" r="5" class="{side}"/>'
        f'<text x="{x(low):.1f}" y="{height - 4}" class="tick" text-anchor="middle">{low:+.1%}</text>'
        f'<text x="{x(high):.1f}" y="{height - 4}" class="tick" text-anchor="middle">{high:+.1%}</text></svg>')


def paired_bars(rows: Sequence[tuple[str, float, float]], *, names: tuple[str, str], title: str, width: int = 560,
                height: int = 170, percent: bool = False) -> Markup:
    """Two bars per label (e.g. predicted beside realized, per score band), the second darker; a legend above."""
    if not rows:
        return Markup(f'<p class="muted">{escape(title)}: no data yet.</p>')
    top = max(max(a, b) for _, a, b in rows) or 1
    pad, base, legend = 4, height - 18, 16
    step = (width - 2 * pad) / len(rows)
    shown = (lambda v: f"{v:.1%}") if percent else (lambda v: f"{v:,.2f}")
    parts = [f'<svg class="chart paired" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<title>{escape(title)}</title>',
             f'<rect x="{pad}" y="2" width="10" height="10"/><text x="{pad + 14}" y="11" class="tick">{escape(names[0])}</text>',
             f'<rect x="{pad + 110}" y="2" width="10" height="10" class="second"/>'
             f'<text x="{pad + 124}" y="11" class="tick">{escape(names[1])}</text>',
             f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" class="axis"/>']
    for i, (label, first, second) in enumerate(rows):
        x = pad + i * step
        for j, (value, css) in enumerate(((first, ""), (second, ' class="second"'))):
            h = (base - legend - 4) * value / top
            parts.append(f'<rect x="{x + 2 + j * (step - 4) / 2:.1f}" y="{base - h:.1f}" width="{max((step - 4) / 2 - 1, 1):.1f}" '
                         f'height="{h:.1f}"{css}><title>{escape(label)}: {escape(names[j])} {shown(value)}</title></rect>')
        parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 4}" class="tick" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
