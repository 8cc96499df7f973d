"""Small charts drawn on the server: no JavaScript, no network, no chart library.

Charts scale to their container (viewBox) and take their colours from CSS classes
(``hc-…`` in herald.css), so they follow the admin's light and dark themes.
"""

import math
from dataclasses import dataclass
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 420, 180
LEFT, RIGHT, TOP, BOTTOM = 36, 8, 10, 22


@dataclass
class Series:
    name: str
    css: str  # a class such as "hc-sent", which sets the fill or stroke
    values: list[float | None]


def nice_ceiling(value: float) -> int:
    """The smallest of 2, 4, 6, 8, 10 × 10ⁿ at or above `value`: the axis shows 0, half and
    the top, and for counts the half must be a whole number too."""
    if value <= 2:
        return 2
    exponent = 10 ** max(math.floor(math.log10(value)), 0)
    for step in (2, 4, 6, 8, 10):
        if value <= step * exponent:
            return step * exponent
    return 20 * exponent  # pragma: no cover


def _number(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 1000:
        return f"{value / 1000:,.1f}k".replace(".0k", "k")
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _day(d: date) -> str:
    return f"{d.day} {d:%b}"


def _frame(days: list[date], top: float, *, percent: bool) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        label = f"{top * fraction:.0f}%" if percent else _number(top * fraction)
        parts.append(f'<line class="hc-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="hc-axis" x="{LEFT - 5}" y="{y + 3.5:.1f}" text-anchor="end">{label}</text>'
        )
    if days:
        slot = (WIDTH - LEFT - RIGHT) / len(days)
        picks = sorted({0, len(days) // 2, len(days) - 1})
        for i in picks:
            x = LEFT + slot * (i + 0.5)
            anchor = "start" if i == 0 and len(days) > 1 else "end" if i == len(days) - 1 and i else "middle"
            x = LEFT if anchor == "start" else WIDTH - RIGHT if anchor == "end" else x
            parts.append(
                f'<text class="hc-axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{_day(days[i])}</text>"
            )
    return parts


def _svg(parts: list[str], label: str) -> SafeString:
    # Safe: every text interpolated into the parts was escaped where it was added.
    return mark_safe(
        f'<svg class="hc-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>"
    )


def _empty(parts: list[str], text: str) -> None:
    parts.append(
        f'<text class="hc-empty" x="{(WIDTH + LEFT) / 2:.0f}" y="{(HEIGHT - BOTTOM) / 2 + 6:.0f}" '
        f'text-anchor="middle">{escape(text)}</text>'
    )


def bar_chart(
    *, days: list[date], series: list[Series], label: str, empty: str = "Nothing yet", stacked: bool = True
) -> SafeString:
    """Bars per day: the series stacked bottom to top in the order given, or side by side."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(days))]
    each = [v or 0 for s in series for v in s.values]
    highest = max(totals if stacked else each, default=0)
    top = nice_ceiling(highest)
    parts = _frame(days, top, percent=False)
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    bar_w = max(slot * 0.72, 1.0)
    for i, d in enumerate(days):
        if not totals[i]:
            continue
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = TOP + plot_h
        width = bar_w if stacked else bar_w / len(series)
        tip = f"{_day(d)}: " + ", ".join(f"{_number(s.values[i] or 0)} {s.name}" for s in series)
        parts.append(f"<g><title>{escape(tip)}</title>")
        for n, s in enumerate(series):
            h = plot_h * (s.values[i] or 0) / top
            if h <= 0:
                continue
            if stacked:
                y -= h
                left, bottom = x, y
            else:
                left, bottom = x + n * width, TOP + plot_h - h
            parts.append(
                f'<rect class="{s.css}" x="{left:.2f}" y="{bottom:.2f}" width="{width:.2f}" '
                f'height="{h:.2f}" rx="{min(1.5, width / 3):.1f}"/>'
            )
        parts.append("</g>")
    if not any(totals):
        _empty(parts, empty)
    return _svg(parts, label)


def line_chart(
    *,
    days: list[date],
    series: list[Series],
    label: str,
    percent: bool = False,
    empty: str = "Nothing yet",
    bridge_gaps: bool = False,
) -> SafeString:
    """Lines per day; a None value leaves a gap (or, with `bridge_gaps`, is skipped over).
    With `percent`, the axis runs 0–100 %."""
    values = [v for s in series for v in s.values if v is not None]
    top = 100 if percent else nice_ceiling(max(values, default=0))
    parts = _frame(days, top, percent=percent)
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    for s in series:
        runs, run = [], []
        for i, v in enumerate(s.values):
            if v is None:
                if run and not bridge_gaps:
                    runs.append(run)
                    run = []
                continue
            run.append((LEFT + slot * (i + 0.5), TOP + plot_h * (1 - v / top), i, v))
        if run:
            runs.append(run)
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in run)
                parts.append(f'<polyline class="{s.css} hc-line" points="{points}"/>')
            for x, y, i, v in run:
                shown = f"{v:.1f} %" if percent else _number(v)
                parts.append(
                    f'<circle class="{s.css} hc-dot" cx="{x:.1f}" cy="{y:.1f}" r="2.2">'
                    f"<title>{escape(f'{_day(days[i])}: {shown} {s.name}')}</title></circle>"
                )
    if not values or (not percent and not any(values)):
        _empty(parts, empty)
    return _svg(parts, label)


def rate_bars(
    *, rows: list[tuple[str, float | None, int]], label: str, empty: str = "Nothing sent yet"
) -> SafeString:
    """Horizontal bars, one per (name, rate 0–1 or None, sample size): open rates of variants
    or languages, each with the number of sends it rests on beside it.

    HTML rather than SVG: a scaled viewBox would draw the names twice the body's size at
    desktop width and half of it on a phone; here the text keeps the page's size and only
    the bars stretch."""
    top = max((r for _, r, _ in rows if r), default=0)
    scale = nice_ceiling(100 * top) if top else 100
    parts = []
    for name, rate, sample in rows:
        shown = "–" if rate is None else f"{100 * rate:.1f} %"
        width = 100 * (100 * rate) / scale if rate else 0
        parts.append(
            f'<div class="hc-rate" title="{escape(f"{name}: {shown} of {sample:,} sent")}">'
            f'<span class="hc-rate-name">{escape(name)}</span>'
            f'<span class="hc-rate-track"><span class="hc-rate-fill" style="width: {width:.2f}%">'
            "</span></span>"
            f'<span class="hc-rate-note">{escape(shown)} · n={sample:,}</span></div>'
        )
    if not rows or not any(sample for _, _, sample in rows):
        parts.append(f'<p class="hc-rate-empty">{escape(empty)}</p>')
    return mark_safe(  # every interpolated text was escaped above
        f'<div class="hc-rates" role="group" aria-label="{escape(label)}">' + "".join(parts) + "</div>"
    )
