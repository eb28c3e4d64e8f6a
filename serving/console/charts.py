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
