"""Server-rendered SVG line charts: no chart library, no script, readable by screen readers.

One metric's values per period as a polyline with points, the y range on the left, the first
and last period below, a dashed target line and a dotted human-baseline line.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 360, 150
# room for the y labels on the left and the x labels below
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 22


@dataclass(frozen=True)
class Point:
    label: str  # the period, e.g. "2026-01-05"
    value: float | None  # None: no data that period


def number(value: float | None, *, digits: int = 4) -> str:
    """A value as people read it: `digits` significant digits, never an exponent, whole
    numbers from 1,000 (no thousands separator: the CSV export uses this too)."""
    if value is None:
        return ""
    size = abs(value)
    if size < 1e-9:  # float noise, e.g. 97.59 - 97.59
        return "0"
    if size >= 1000:
        return f"{value:.0f}"
    decimals = max(0, min(6, digits - 1 - math.floor(math.log10(size))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fmt(value: float) -> str:
    return number(value, digits=3)


def _px(coordinate: float) -> str:
    return f"{coordinate:.1f}"


def _bounds(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if low == high:  # a flat line sits in the middle
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.08
    return low - pad, high + pad


def line_chart(*, title: str, points: Sequence[Point], unit: str = "",
               target: float | None = None, baseline: float | None = None) -> SafeString:
    """The chart as inline SVG markup (safe to put in a template as it is)."""
    known = [p.value for p in points if p.value is not None]
    extra = [v for v in (target, baseline) if v is not None]
    if not known:
        return format_html('<p class="muted small">No data for {} yet.</p>', title)
    low, high = _bounds(known + extra)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return LEFT + i * step

    def y(value: float) -> float:
        return TOP + plot_h * (high - value) / (high - low)

    suffix = f" {unit}" if unit else ""
    latest = known[-1]
    summary = f"{title}: {len(known)} periods, latest {_fmt(latest)}{suffix}"
    if target is not None:
        summary += f", target {_fmt(target)}{suffix}"
    if baseline is not None:
        summary += f", human baseline {_fmt(baseline)}{suffix}"
    parts = [
        format_html('<svg class="chart" viewBox="0 0 {} {}" width="100%" role="img" '
                    'aria-label="{}" preserveAspectRatio="xMidYMid meet">',
                    WIDTH, HEIGHT, summary),
        format_html("<title>{}</title>", summary),
        format_html('<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/>',
                    LEFT, TOP, LEFT, TOP + plot_h),
        format_html('<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/>',
                    LEFT, TOP + plot_h, WIDTH - RIGHT, TOP + plot_h),
        format_html('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>',
                    LEFT - 4, TOP + 8, _fmt(high)),
        format_html('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>',
                    LEFT - 4, TOP + plot_h, _fmt(low)),
        format_html('<text class="tick" x="{}" y="{}" text-anchor="start">{}</text>',
                    LEFT, HEIGHT - 4, points[0].label),
        format_html('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>',
                    WIDTH - RIGHT, HEIGHT - 4, points[-1].label),
    ]
    for css, value, name in (("target-line", target, "Target"),
                             ("baseline-line", baseline, "Human baseline")):
        if value is not None:
            parts.append(format_html(
                '<line class="{}" x1="{}" y1="{}" x2="{}" y2="{}">'
                "<title>{} {}{}</title></line>",
                css, LEFT, _px(y(value)), WIDTH - RIGHT, _px(y(value)), name, _fmt(value),
                suffix))
    coords = [(x(i), y(p.value), p) for i, p in enumerate(points) if p.value is not None]
    parts.append(format_html('<polyline class="series" points="{}"/>',
                             " ".join(f"{_px(cx)},{_px(cy)}" for cx, cy, _ in coords)))
    for cx, cy, p in coords:
        parts.append(format_html(
            '<circle class="point" cx="{}" cy="{}" r="3"><title>{}: {}{}</title>'
            "</circle>", _px(cx), _px(cy), p.label, _fmt(p.value), suffix))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))  # every part went through format_html
