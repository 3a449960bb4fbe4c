"""Formats of the KPI pages: values by unit, attainment as a percentage, signed changes."""

from django import template

register = template.Library()


@register.filter
def kpi_value(value, unit: str = "count") -> str:
    """A KPI value as a person reads it: 42, 37%, 12,500, 18 days, 7.5/10; a dash when undefined."""
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
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


@register.filter
def kpi_change(value, unit: str = "count") -> str:
    """A change between periods with its sign: +3, −12%, +1,500."""
    if value in (None, ""):
        return "–"
    value = float(value)
    sign = "+" if value > 0 else ("−" if value < 0 else "±")
    return sign + kpi_value(abs(value), unit)


@register.filter
def percent(value) -> str:
    if value in (None, ""):
        return "–"
    return f"{float(value) * 100:.0f}%"


@register.filter
def direction_arrow(direction) -> str:
    return {"improving": "▲", "worsening": "▼", "steady": "▶"}.get(direction or "", "")
