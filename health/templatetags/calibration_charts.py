"""Charts of the calibration report as server-rendered SVG: score deciles, correlations with intervals, weights."""

from __future__ import annotations

from django import template

register = template.Library()

# Presentation attributes, not style: a strict CSP allows them.
CURRENT, SUGGESTED, INTERVAL = "#8a94a6", "#2f6fde", "#2f6fde"


@register.inclusion_tag("health/charts/calibration_deciles.html")
def decile_chart(deciles: list[dict], width: int = 520, height: int = 220):
    """Mean realized revenue of each score decile (lowest scores left): a calibrated score rises left to right."""
    left, right, top, bottom = 60, 10, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    tallest = max((d.get("revenue_mean") or 0 for d in deciles), default=0) or 1.0
    step = plot_w / max(1, len(deciles))
    bars = []
    for index, point in enumerate(deciles):
        value = point.get("revenue_mean") or 0.0
        h = value / tallest * plot_h
        bars.append(
            {
                "x": round(left + index * step + 2, 1),
                "y": round(top + plot_h - h, 1),
                "w": round(step - 4, 1),
                "h": round(h, 1),
                "label_x": round(left + index * step + step / 2, 1),
                "decile": point["decile"],
                "revenue": value,
                "score_low": point.get("score_low"),
                "score_high": point.get("score_high"),
                "fell_share": point.get("fell_share"),
            }
        )
    ticks = [
        {"y": round(top + plot_h - fraction * plot_h, 1), "label": _money(tallest * fraction)}
        for fraction in (0, 0.5, 1)
    ]
    return {
        "chart": {
            "width": width,
            "height": height,
            "left": left,
            "right": width - right,
            "axis_y": top + plot_h,
            "tick_x": left - 4,
            "label_y": top + plot_h + 14,
            "caption_y": height - 4,
            "bars": bars,
            "ticks": ticks,
            "fill": SUGGESTED,
        }
    }


def _money(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:.0f}"


@register.inclusion_tag("health/charts/calibration_correlations.html")
def correlation_chart(rows: list[dict], key: str = "revenue", width: int = 520):
    """One line per component: its rank correlation (dot) and bootstrap interval (bar) on a -1 to +1 axis."""
    left, right, top, row_h = 190, 16, 18, 20
    height = top + row_h * len(rows) + 10
    plot_w = width - left - right

    def x(value: float) -> float:
        return round(left + (max(-1.0, min(1.0, value)) + 1) / 2 * plot_w, 1)

    lines = []
    for index, row in enumerate(rows):
        correlation = row.get(key) or {}
        y = top + index * row_h + row_h / 2
        line = {"label": row.get("label") or row["kpi"], "kpi": row["kpi"], "y": round(y, 1), "text_y": round(y + 4, 1)}
        if correlation.get("rho") is not None:
            line.update(
                rho=correlation["rho"],
                low=correlation.get("low"),
                high=correlation.get("high"),
                cx=x(correlation["rho"]),
                x1=x(correlation.get("low") if correlation.get("low") is not None else correlation["rho"]),
                x2=x(correlation.get("high") if correlation.get("high") is not None else correlation["rho"]),
            )
        lines.append(line)
    return {
        "chart": {
            "width": width,
            "height": height,
            "label_x": left - 6,
            "zero_x": x(0),
            "top": top - 12,
            "bottom": height - 6,
            "ticks": [{"x": x(v), "label": f"{v:+.1f}" if v else "0"} for v in (-1, -0.5, 0, 0.5, 1)],
            "tick_y": top - 6,
            "lines": lines,
            "stroke": INTERVAL,
        }
    }


@register.inclusion_tag("health/charts/calibration_weights.html")
def weights_chart(rows: list[dict], width: int = 520):
    """Each component's share of the weight: current (grey) above suggested (blue)."""
    left, right, top, row_h = 190, 50, 6, 24
    height = top + row_h * len(rows) + 6
    plot_w = width - left - right
    widest = max((max(r.get("current_share") or 0, r.get("suggested_share") or 0) for r in rows), default=0) or 1.0
    bars = []
    for index, row in enumerate(rows):
        y = top + index * row_h
        current, suggested = row.get("current_share") or 0.0, row.get("suggested_share") or 0.0
        bars.append(
            {
                "label": row.get("label") or row["kpi"],
                "kpi": row["kpi"],
                "text_y": round(y + 14, 1),
                "current_y": round(y + 2, 1),
                "suggested_y": round(y + 11, 1),
                "current_w": round(current / widest * plot_w, 1),
                "suggested_w": round(suggested / widest * plot_w, 1),
                "current": current,
                "suggested": suggested,
                "value_x": round(left + max(current, suggested) / widest * plot_w + 4, 1),
            }
        )
    return {
        "chart": {
            "width": width,
            "height": height,
            "left": left,
            "label_x": left - 6,
            "bars": bars,
            "current_fill": CURRENT,
            "suggested_fill": SUGGESTED,
        }
    }


@register.filter
def channel_admin(user) -> bool:
    """Whether the nav offers the calibration report (channel admins only, as the page itself decides)."""
    from prm.roles import is_channel_admin, is_partner_user

    return is_channel_admin(user) and not is_partner_user(user)
