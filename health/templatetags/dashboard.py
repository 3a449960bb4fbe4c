"""Dashboard template tags: server-rendered SVG charts (no JavaScript, strict-CSP safe) and value formats."""

from __future__ import annotations

import datetime

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from health.selectors import FLAT_TREND, Distribution, History

register = template.Library()

SCORE_MAX = 100.0


def _y(score: float, top: float, height: float) -> float:
    return round(top + (SCORE_MAX - max(0.0, min(SCORE_MAX, score))) / SCORE_MAX * height, 1)


# Sparkline -----------------------------------------------------------------------------------------


def sparkline_geometry(values: list[float], *, width: int = 100, height: int = 24, pad: int = 2) -> dict:
    """Polyline points of a score series on a fixed 0-100 scale, so that rows compare at a glance."""
    plot_h = height - 2 * pad
    if not values:
        return {"width": width, "height": height, "points": "", "last": None}
    step = (width - 2 * pad) / max(1, len(values) - 1)
    coords = [(round(pad + i * step, 1), _y(v, pad, plot_h)) for i, v in enumerate(values)]
    if len(coords) == 1:
        coords = [(pad, coords[0][1]), (width - pad, coords[0][1])]
    return {
        "width": width,
        "height": height,
        "points": " ".join(f"{x},{y}" for x, y in coords),
        "last": coords[-1],
        "first_value": values[0],
        "last_value": values[-1],
        "count": len(values),
    }


@register.simple_tag
def sparkline(values):
    # Built in Python rather than with a template: it is drawn on every row of a page of fifty.
    chart = sparkline_geometry(list(values or []))
    if not chart["points"]:
        return mark_safe('<span class="muted small">no history</span>')
    width, height = chart["width"], chart["height"]
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="Weekly score, {} weeks: from {} to {}"><line class="mid" x1="0" x2="{}" y1="{}" y2="{}"/>'
        '<polyline class="line" points="{}"/><circle class="dot" cx="{}" cy="{}" r="2"/></svg>',
        width,
        height,
        width,
        height,
        chart["count"],
        f"{chart['first_value']:.0f}",
        f"{chart['last_value']:.0f}",
        width,
        height / 2,
        height / 2,
        chart["points"],
        chart["last"][0],
        chart["last"][1],
    )


# Score history -------------------------------------------------------------------------------------


def history_geometry(history: History, model, *, width: int = 720, height: int = 240) -> dict:
    """The score over time with the band zones and the dates the scoring model changed."""
    left, right, top, bottom = 34, 10, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(1, (history.end - history.start).days)

    def x(day: datetime.date) -> float:
        return round(left + (day - history.start).days / span * plot_w, 1)

    healthy = float(model.healthy_threshold) if model else 70.0
    at_risk = float(model.at_risk_threshold) if model else 40.0
    zones = [
        {"band": "healthy", "y": _y(100, top, plot_h), "h": round(_y(healthy, top, plot_h) - _y(100, top, plot_h), 1)},
        {
            "band": "watch",
            "y": _y(healthy, top, plot_h),
            "h": round(_y(at_risk, top, plot_h) - _y(healthy, top, plot_h), 1),
        },
        {
            "band": "at_risk",
            "y": _y(at_risk, top, plot_h),
            "h": round(_y(0, top, plot_h) - _y(at_risk, top, plot_h), 1),
        },
    ]
    thresholds = [
        {"label": f"healthy ≥ {healthy:g}", "value": healthy, "y": _y(healthy, top, plot_h)},
        {"label": f"at risk < {at_risk:g}", "value": at_risk, "y": _y(at_risk, top, plot_h)},
    ]
    for line in thresholds:
        line["label_y"] = round(line["y"] - 3, 1)
    coords = [(x(day), _y(score, top, plot_h)) for day, score in history.points]
    changes = [
        {"x": x(when.date()), "label_x": x(when.date()) + 3, "date": when.date()}
        for when in history.model_changes
        if history.start <= when.date() <= history.end
    ]
    months = []
    day = history.start.replace(day=1)
    while day <= history.end:
        if day >= history.start:
            months.append({"x": x(day), "label": day.strftime("%b" if day.month != 1 else "%b %Y")})
        day = (day + datetime.timedelta(days=32)).replace(day=1)
    step = max(1, len(months) // 6)
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "plot_width": plot_w,
        "top": top,
        "bottom": top + plot_h,
        "tick_x": left - 4,
        "change_label_y": top + 10,
        "empty_x": left + 12,
        "empty_y": top + 30,
        "zones": zones,
        "thresholds": thresholds,
        "points": " ".join(f"{px},{py}" for px, py in coords),
        "dots": [{"x": px, "y": py} for px, py in coords[-1:]],
        "count": len(coords),
        "changes": changes,
        "y_ticks": [{"y": _y(v, top, plot_h), "label": v} for v in (0, 50, 100)],
        "months": months[::step],
        "label_y": height - 8,
    }


@register.inclusion_tag("health/charts/history.html")
def history_chart(history, model):
    return {"chart": history_geometry(history, model)}


# Distribution --------------------------------------------------------------------------------------


def distribution_geometry(distribution: Distribution, *, width: int = 360, height: int = 150) -> dict:
    """Partners per ten-point score bucket, each bar stacked by band (at-risk at the bottom)."""
    left, right, top, bottom = 8, 8, 8, 20
    plot_w, plot_h = width - left - right, height - top - bottom
    tallest = max((sum(bucket.values()) for bucket in distribution.buckets), default=0) or 1
    bar_w = plot_w / len(distribution.buckets)
    bars = []
    for index, bucket in enumerate(distribution.buckets):
        base = top + plot_h
        for band in ("at_risk", "watch", "healthy"):
            count = bucket.get(band, 0)
            if not count:
                continue
            h = count / tallest * plot_h
            base -= h
            bars.append(
                {
                    "x": round(left + index * bar_w + 1, 1),
                    "y": round(base, 1),
                    "w": round(bar_w - 2, 1),
                    "h": round(h, 1),
                    "band": band,
                    "count": count,
                    "range": f"{index * 10}–{index * 10 + 10}",
                }
            )
    ticks = [
        {"x": round(left + i * bar_w, 1), "label": i * 10, "anchor": {0: "start", 10: "end"}.get(i, "middle")}
        for i in range(0, 11, 2)
    ]
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "ticks": ticks,
        "axis_y": top + plot_h,
        "label_y": height - 5,
    }


@register.inclusion_tag("health/charts/distribution.html")
def distribution_chart(distribution):
    return {"chart": distribution_geometry(distribution)}


# Formats -------------------------------------------------------------------------------------------


@register.filter
def trend_arrow(trend) -> str:
    if trend in (None, ""):
        return ""
    if trend > FLAT_TREND:
        return "▲"
    if trend < -FLAT_TREND:
        return "▼"
    return "▶"


@register.filter
def trend_class(trend) -> str:
    if trend in (None, ""):
        return "trend-none"
    if trend > FLAT_TREND:
        return "trend-up"
    if trend < -FLAT_TREND:
        return "trend-down"
    return "trend-flat"


BAND_LABELS = {"healthy": "Healthy", "watch": "Watch", "at_risk": "At risk", "no_data": "No data"}


@register.filter
def band_label(band) -> str:
    return BAND_LABELS.get(band or "no_data", band)


@register.filter
def kpi_value(value, unit: str = "count") -> str:
    """A raw KPI value as a person reads it: 42, 37%, 12,500, 18 days, 7.5/10."""
    if value in (None, ""):
        return "–"
    value = float(value)
    if unit == "ratio":
        return f"{value * 100:.0f}%"
    if unit == "amount":
        return f"{value:,.0f}"
    if unit == "days":
        return f"{value:.0f} days"
    if unit == "rating":
        return f"{value:.1f}/10"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


@register.filter
def fixed(value, digits=1) -> str:
    """A number with a fixed count of decimals ("" for none); a negative count drops trailing zeros.

    Cheaper than floatformat (no localization lookups): it runs on every cell of the dashboards.
    """
    if value in (None, ""):
        return ""
    digits = int(digits)
    text = f"{float(value):.{abs(digits)}f}"
    if digits < 0 and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


@register.filter
def score(value) -> str:
    return "–" if value in (None, "") else f"{float(value):.1f}"


@register.simple_tag
def component_rule(component, kpi=None) -> str:
    """How a component turns its KPI into points, in plain words."""
    if component is None:
        return ""
    unit = kpi.unit if kpi else "count"
    lower_is_better = (component.direction or (kpi.better if kpi else "higher")) == "lower"
    if component.method == "target":
        target = kpi_value(component.target, unit)
        if lower_is_better:
            return f"Full marks at {target} or less; fewer points the further above."
        return f"Full marks at {target} or more; half marks at half of it."
    if component.method == "range":
        low, high = kpi_value(component.lower, unit), kpi_value(component.upper, unit)
        if lower_is_better:
            return f"Full marks at {low} or less, no points at {high} or more."
        return f"No points at {low} or less, full marks at {high} or more."
    return "Compared with the other partners: the best get full marks, the lowest none."


MISSING_WORDS = {
    "exclude": "Without data it is left out and the other parts count for more.",
    "zero": "Without data it counts as zero.",
    "neutral": "Without data it counts as half marks.",
}


@register.filter
def missing_rule(component) -> str:
    return MISSING_WORDS.get(getattr(component, "missing", ""), "")
