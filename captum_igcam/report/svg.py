"""Inline SVG charts for the report: intervals and curves, no plotting library."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

#: Line and dot colours, one per method in order (matplotlib's tab10).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
ROW = 18
#: Width of the interval charts' plotting area, and least width of their labels.
PLOT = 230
LABELS = 120
#: Width of one character of the charts' 11 px text, rounded up (wide
#: letters such as ``M`` or ``W`` take about 0.65 em).
CHARACTER = 7.5
#: Margin left of the labels.
MARGIN = 4


def colour(index: int) -> str:
    """The palette's colour for the ``index``-th method."""
    return PALETTE[index % len(PALETTE)]


def element(tag: str, text: str | None = None, **attributes: object) -> str:
    """One SVG element; ``stroke_width`` is written ``stroke-width``.

    Example::

        >>> element("text", "a<b", x=1, text_anchor="end")
        '<text x="1" text-anchor="end">a&lt;b</text>'
    """
    attrs = "".join(
        f' {name.replace("_", "-")}="{html.escape(str(value))}"'
        for name, value in attributes.items()
    )
    if text is None:
        return f"<{tag}{attrs}/>"
    return f"<{tag}{attrs}>{html.escape(text)}</{tag}>"


def interval_chart(
    title: str, rows: Sequence[tuple[str, float, float, float, str]]
) -> str:
    """Dots with 95% interval whiskers, one row per entry of ``rows``.

    Args:
        title (str): Shown above the chart.
        rows (sequence of tuple): ``(label, mean, low, high, colour)``: the
            interval ends are NaN when unknown (no whisker is drawn).

    Returns:
        str: An ``<svg>`` element.
    """
    finite = [v for row in rows for v in row[1:4] if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if high == low:
        low, high = low - 0.5, high + 0.5
    longest = max((len(row[0]) for row in rows), default=0)
    labels = max(LABELS, round(MARGIN + 8 + CHARACTER * longest))
    width = labels + PLOT + 20

    def x(value: float) -> str:
        return f"{labels + PLOT * (value - low) / (high - low):.1f}"

    height = 40 + ROW * len(rows)
    parts = [_header(title, width, height)]
    for i, (label, mean, lo, hi, fill) in enumerate(rows):
        y = 30 + ROW * i
        # Anchored at the left margin: a label is never cut at the chart's edge.
        parts.append(element("text", label, x=MARGIN, y=y + 4))
        if math.isfinite(lo) and math.isfinite(hi):
            parts.append(
                element(
                    "line", x1=x(lo), x2=x(hi), y1=y, y2=y, stroke=fill, stroke_width=2
                )
            )
        if math.isfinite(mean):
            hint = element("title", f"{mean:.4g} [{lo:.4g}, {hi:.4g}]")
            parts.append(
                f'<circle cx="{x(mean)}" cy="{y}" r="4" fill="{fill}">{hint}</circle>'
            )
    axis = 30 + ROW * len(rows) + 6
    parts += [
        element("text", f"{low:.3g}", x=labels, y=axis),
        element("text", f"{high:.3g}", x=labels + PLOT, y=axis, text_anchor="end"),
        "</svg>",
    ]
    return "".join(parts)


def line_chart(
    title: str,
    series: Mapping[str, Sequence[float]],
    colours: Mapping[str, str],
    x_label: str,
    y_label: str,
) -> str:
    """Curves over ``[0, 1]`` (evenly spaced points), with a legend.

    Args:
        title (str): Shown above the chart.
        series (mapping): Name -> values at evenly spaced points of [0, 1].
        colours (mapping): Name -> CSS colour.
        x_label (str): Horizontal axis.
        y_label (str): Vertical axis.

    Returns:
        str: An ``<svg>`` element.
    """
    height, left, top, plot_w, plot_h = 300, 45, 30, 240, 220
    # The legend right of the plot: as wide as its longest name needs.
    longest = max((len(name) for name in series), default=0)
    width = max(440, round(left + plot_w + 32 + CHARACTER * longest + MARGIN))
    finite = [v for curve in series.values() for v in curve if math.isfinite(v)]
    high = max(finite, default=1.0) or 1.0
    bottom = top + plot_h
    parts = [
        _header(title, width, height),
        element("rect", x=left, y=top, width=plot_w, height=plot_h, fill="none",
                stroke="#aaa"),
    ]  # fmt: skip
    for i, (name, curve) in enumerate(series.items()):
        points = " ".join(
            f"{left + plot_w * k / max(len(curve) - 1, 1):.1f},"
            f"{bottom - plot_h * v / high:.1f}"
            for k, v in enumerate(curve)
            if math.isfinite(v)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colours[name]}" '
            f'stroke-width="2">{element("title", name)}</polyline>'
        )
        y = top + 12 + 16 * i
        parts += [
            element("line", x1=left + plot_w + 10, x2=left + plot_w + 28, y1=y - 4,
                    y2=y - 4, stroke=colours[name], stroke_width=2),
            element("text", name, x=left + plot_w + 32, y=y),
        ]  # fmt: skip
    middle = top + plot_h / 2
    parts += [
        element("text", "0", x=left, y=bottom + 14),
        element("text", "1", x=left + plot_w, y=bottom + 14, text_anchor="end"),
        element("text", x_label, x=left + plot_w / 2, y=bottom + 28,
                text_anchor="middle"),
        element("text", f"{high:.2g}", x=left - 4, y=top + 4, text_anchor="end"),
        element("text", "0", x=left - 4, y=bottom, text_anchor="end"),
        element("text", y_label, x=10, y=middle, text_anchor="middle",
                transform=f"rotate(-90 10 {middle})"),
        "</svg>",
    ]  # fmt: skip
    return "".join(parts)


def _header(title: str, width: int, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">{element("title", title)}'
        f"{element('text', title, x=4, y=14, font_weight='bold')}"
    )
