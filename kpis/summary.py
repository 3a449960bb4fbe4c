"""The business-review summary of a partner and period: what the review page, its print and its PDF show.

Sections: KPIs against targets and the previous period; where performance is above and below
expectation, ranked; enablement against the tier's requirements; pipeline coverage against the quarterly
target; the health score's trend and components; the previous review's action items, their status and
whether the KPI each targeted moved. A draft (no review recorded yet) has every section but the
review's own attendees and notes.

The health section reads the health app's stored snapshots through Django's app registry, not its code:
health sits above kpis (it imports kpis), and its snapshots' stored shape is the published Health body
of the API (docs/api.md), so reading them does not tie kpis to health's internals.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.apps import apps
from django.utils import timezone

from kpis.models import ActionItem, BusinessReview
from kpis.periods import Period
from kpis.registry import kpi_catalogue
from kpis.selectors import KpiLine, PeriodTable, partner_kpi_table, period_values
from kpis.targets import attainment, attainment_class, target_met
from kpis.tiers import ROLES, active_certifications_by_role
from prm.models import Partner

HEALTH_DAYS = 180
ENABLEMENT_KPIS = ("trainings_completed", "training_completion_rate", "active_certifications")
RANKED = 5


@dataclass
class RoleLine:
    role: str
    required: int
    actual: int

    @property
    def met(self) -> bool:
        return self.actual >= self.required


@dataclass
class Coverage:
    quarterly_target: float | None
    open_pipeline: float | None
    coverage: float | None  # open_pipeline / quarterly target
    revenue: float | None  # partner-sourced revenue of the period
    revenue_attainment: float | None
    tier_minimum: float | None

    @property
    def css(self) -> str:
        met = target_met(self.revenue, self.quarterly_target, "higher")
        return attainment_class(self.revenue_attainment, met)


@dataclass
class HealthSection:
    score: float | None
    band: str
    trend: float | None
    points: list[tuple[datetime.date, float]]
    components: list[dict]
    chart: dict


@dataclass
class ActionFollowUp:
    item: ActionItem
    kpi_label: str
    then: float | None  # the KPI in the period the item was agreed in
    now: float | None  # the KPI in this period
    moved: str | None  # improving | worsening | steady, by the KPI's direction
    target_reached: bool | None
    unit: str


@dataclass
class ReviewSummary:
    partner: Partner
    period: Period
    review: BusinessReview | None
    previous_review: BusinessReview | None
    table: PeriodTable
    above: list[KpiLine]
    below: list[KpiLine]
    roles: list[RoleLine]
    enablement: list[KpiLine]
    coverage: Coverage
    health: HealthSection
    follow_ups: list[ActionFollowUp]
    generated_at: datetime.datetime
    shown: list[KpiLine] = field(default_factory=list)

    @property
    def draft(self) -> bool:
        return self.review is None

    @property
    def title(self) -> str:
        return f"{self.partner.name} — business review {self.period.label}"


def _ranked(lines: list[KpiLine]) -> tuple[list[KpiLine], list[KpiLine]]:
    """Above expectation (met, best attainment first) and below (missed, worst first)."""
    judged = [line for line in lines if line.met is not None]
    above = sorted(
        (line for line in judged if line.met), key=lambda line: -(line.attainment if line.attainment is not None else 1)
    )
    below = sorted(
        (line for line in judged if not line.met),
        key=lambda line: line.attainment if line.attainment is not None else 0,
    )
    return above[:RANKED], below[:RANKED]


def _health(partner: Partner, as_of: datetime.datetime) -> HealthSection:
    points: list[tuple[datetime.date, float]] = []
    components: list[dict] = []
    score, band, trend = partner.health_score, partner.health_band, partner.health_trend
    thresholds = (70.0, 40.0)
    if apps.is_installed("health") and partner.health_model_id:
        snapshots = apps.get_model("health", "ScoreSnapshot").objects.filter(
            partner=partner,
            model_id=partner.health_model_id,
            as_of__gt=as_of - datetime.timedelta(days=HEALTH_DAYS),
            as_of__lte=as_of,
        )
        daily: dict[datetime.date, list[float]] = {}
        latest = None
        for row in snapshots.order_by("as_of").values("as_of", "score", "band", "trend", "components"):
            if row["score"] is not None:
                day = timezone.localtime(row["as_of"], timezone.get_default_timezone()).date()
                daily.setdefault(day, []).append(row["score"])
            latest = row
        points = [(day, sum(scores) / len(scores)) for day, scores in sorted(daily.items())]
        if latest is not None:
            score, band, trend = latest["score"], latest["band"], latest["trend"]
            catalogue = kpi_catalogue()
            components = [
                {
                    **component,
                    "label": catalogue[component["kpi"]].label
                    if component.get("kpi") in catalogue
                    else component["kpi"],
                    "unit": catalogue[component["kpi"]].unit if component.get("kpi") in catalogue else "count",
                }
                for component in latest["components"]
            ]
            components.sort(key=lambda c: -(c.get("contribution") or 0))
        model = (
            apps.get_model("health", "ScoringModel")
            .objects.filter(pk=partner.health_model_id)
            .values_list("healthy_threshold", "at_risk_threshold")
            .first()
        )
        if model:
            thresholds = (float(model[0]), float(model[1]))
    start = (as_of - datetime.timedelta(days=HEALTH_DAYS)).date()
    return HealthSection(
        score=score,
        band=band,
        trend=trend,
        points=points,
        components=components,
        chart=health_chart(points, start=start, end=as_of.date(), thresholds=thresholds),
    )


def health_chart(
    points: list[tuple[datetime.date, float]],
    *,
    start: datetime.date,
    end: datetime.date,
    thresholds: tuple[float, float],
    width: int = 640,
    height: int = 180,
) -> dict:
    """Geometry of an inline SVG of the score over time (0-100) with the band thresholds."""
    left, right, top, bottom = 30, 8, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(1, (end - start).days)

    def x(day: datetime.date) -> float:
        return round(left + (day - start).days / span * plot_w, 1)

    def y(value: float) -> float:
        return round(top + (1 - max(0.0, min(100.0, value)) / 100) * plot_h, 1)

    months = []
    day = start.replace(day=1)
    while day <= end:
        if day >= start:
            months.append({"x": x(day), "label": day.strftime("%b")})
        day = (day + datetime.timedelta(days=32)).replace(day=1)
    coords = [(x(day), y(value)) for day, value in points]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "bottom": top + plot_h,
        "label_y": height - 6,
        "points": " ".join(f"{px},{py}" for px, py in coords),
        "last": coords[-1] if coords else None,
        "thresholds": [{"value": value, "y": y(value)} for value in thresholds],
        "ticks": [{"y": y(value), "label": value} for value in (0, 50, 100)],
        "months": months,
    }


def _follow_ups(previous: BusinessReview | None, now_values: dict, *, period: Period, now) -> list[ActionFollowUp]:
    if previous is None:
        return []
    items = list(previous.action_items.all())
    catalogue = kpi_catalogue()
    keys = sorted({item.kpi for item in items if item.kpi in catalogue})
    then: dict[str, dict[int, float | None]] = {}
    if keys:
        try:
            agreed_in = Period.parse(previous.period)
        except ValueError:
            agreed_in = None
        if agreed_in is not None and agreed_in != period:
            then = period_values(
                period=agreed_in,
                keys=keys,
                partners=Partner.objects.filter(pk=previous.partner_id),
                now=now,
                catalogue=catalogue,
            )
    follow_ups = []
    for item in items:
        kpi = catalogue.get(item.kpi)
        before = then.get(item.kpi, {}).get(previous.partner_id) if kpi else None
        after = now_values.get(item.kpi) if kpi else None
        moved = None
        if before is not None and after is not None:
            change = after - before
            moved = (
                "steady"
                if abs(change) < 1e-9
                else ("improving" if (change > 0) == (kpi.better == "higher") else "worsening")
            )
        reached = None
        if kpi and item.target_value is not None:
            reached = target_met(after, float(item.target_value), kpi.better)
        follow_ups.append(
            ActionFollowUp(
                item=item,
                kpi_label=kpi.label if kpi else item.kpi,
                then=before,
                now=after,
                moved=moved,
                target_reached=reached,
                unit=kpi.unit if kpi else "count",
            )
        )
    return follow_ups


def review_summary(
    *,
    partner: Partner,
    period: Period,
    review: BusinessReview | None = None,
    now: datetime.datetime | None = None,
) -> ReviewSummary:
    """Everything the summary shows, in a number of queries that does not grow with the partner's data."""
    now = now or timezone.now()
    table = partner_kpi_table(partner=partner, period=period, now=now)
    by_key = {line.kpi.key: line for line in table.lines}
    above, below = _ranked(table.lines)

    tier = partner.tier
    day = timezone.localtime(table.as_of, timezone.get_default_timezone()).date()
    active = active_certifications_by_role(partners=Partner.objects.filter(pk=partner.pk), day=day).get(partner.pk, {})
    roles = [
        RoleLine(
            role=role,
            required=getattr(tier, f"min_{role}_certifications", 0) if tier else 0,
            actual=active.get(role, 0),
        )
        for role in ROLES
    ]

    quarterly = float(partner.quarterly_revenue_target) if partner.quarterly_revenue_target is not None else None
    revenue = by_key["partner_sourced_revenue"].value if "partner_sourced_revenue" in by_key else None
    coverage = Coverage(
        quarterly_target=quarterly,
        open_pipeline=by_key["open_pipeline"].value if "open_pipeline" in by_key else None,
        coverage=by_key["pipeline_coverage"].value if "pipeline_coverage" in by_key else None,
        revenue=revenue,
        revenue_attainment=attainment(revenue, quarterly, "higher"),
        tier_minimum=float(tier.min_quarterly_revenue) if tier and tier.min_quarterly_revenue is not None else None,
    )

    reviews = BusinessReview.objects.filter(partner=partner).prefetch_related("action_items__owner")
    if review is not None:
        previous = reviews.filter(held_on__lte=review.held_on).exclude(pk=review.pk).order_by("-held_on", "-id").first()
    else:
        previous = reviews.order_by("-held_on", "-id").first()
    now_values = {key: line.value for key, line in by_key.items()}
    return ReviewSummary(
        partner=partner,
        period=period,
        review=review,
        previous_review=previous,
        table=table,
        above=above,
        below=below,
        roles=roles,
        enablement=[by_key[key] for key in ENABLEMENT_KPIS if key in by_key],
        coverage=coverage,
        health=_health(partner, table.as_of),
        follow_ups=_follow_ups(previous, now_values, period=period, now=now),
        generated_at=now,
        shown=[line for line in table.lines if line.value is not None or line.target is not None],
    )


def default_review_period(now: datetime.datetime | None = None) -> Period:
    """The quarter a review held now looks back on: the latest closed one."""
    return Period.containing(now or timezone.now()).previous()
