"""Tier reviews: each partner's standing against its tier's requirements, upgrades, downgrades with a grace period.

A tier requires active certifications per role, partner-sourced revenue a quarter and a minimum health
score (prm.models.Tier). Standing is judged on closed quarters only, as their values were stored
(kpis.periods, KpiPeriodSnapshot), so a quarter in progress never counts against a partner:

- **qualifies for upgrade**: the latest closed quarter meets every requirement of the next tier by rank
  (a partner without a tier: of the lowest tier);
- **at risk**: the latest closed quarter misses a requirement of its own tier, but fewer consecutive
  quarters than the grace period (settings.KPI_TIER_GRACE_PERIODS, default 2) have;
- **downgrade due**: the grace period's quarters in a row all missed; the suggested tier is the highest
  lower tier the latest quarter meets (else the lowest lower tier);
- **persistently at risk**: at risk or downgrade due although an action item for the partner was done
  during the stretch of missed quarters (an intervention that did not lift it).

A requirement whose fact is unknown (no health score stored) is neither met nor missed. Nothing here
changes a tier: kpis.services.tier_change_approve does, on a person's approval.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from kpis.models import ActionItem, KpiPeriodSnapshot
from kpis.periods import QUARTER, Period, latest_closed
from kpis.selectors import period_values
from prm.models import Certification, Partner, Tier

QUALIFIES_UPGRADE = "qualifies_upgrade"
MEETS = "meets"
AT_RISK = "at_risk"
DOWNGRADE_DUE = "downgrade_due"
NO_TIER = "no_tier"
STATUS_LABELS = {
    QUALIFIES_UPGRADE: "Qualifies for upgrade",
    MEETS: "Meets its tier",
    AT_RISK: "At risk (in grace period)",
    DOWNGRADE_DUE: "Downgrade due",
    NO_TIER: "No tier",
}
ROLES = tuple(Certification.Role.values)
REVENUE_KPI = "partner_sourced_revenue"


def grace_periods() -> int:
    """Closed quarters in a row below its tier before a downgrade is suggested."""
    return max(1, int(getattr(settings, "KPI_TIER_GRACE_PERIODS", 2)))


def active_certifications_by_role(*, partners: QuerySet[Partner], day: datetime.date) -> dict[int, dict[str, int]]:
    """Active certifications on `day` per partner and role, in one grouped query: result[partner_id][role]."""
    active = Q(earned_on__lte=day) & (Q(expires_on__isnull=True) | Q(expires_on__gt=day))
    rows = (
        Certification.objects.filter(active, partner__in=partners.values("pk"))
        .order_by()
        .values("partner_id", "role")
        .annotate(number=Count("id"))
    )
    result: dict[int, dict[str, int]] = {}
    for row in rows:
        result.setdefault(row["partner_id"], {})[row["role"]] = row["number"]
    return result


@dataclass(frozen=True)
class Facts:
    """What tier requirements are judged on, for one partner at the close of one quarter."""

    revenue: float | None
    certifications: dict[str, int]
    health_score: float | None


def quarter_facts(*, period: Period, partners: QuerySet[Partner], now: datetime.datetime) -> dict[int, Facts]:
    """Facts of a closed quarter for each partner: stored snapshots, computed for partners without one.

    Computed facts take today's health score only for the latest closed quarter (else unknown).
    """
    facts: dict[int, Facts] = {}
    stored = KpiPeriodSnapshot.objects.filter(period=str(period), partner__in=partners.values("pk")).values_list(
        "partner_id", "values", "certifications", "health_score"
    )
    for partner_id, values, certifications, health_score in stored:
        revenue = values.get(REVENUE_KPI)
        facts[partner_id] = Facts(
            revenue=None if revenue is None else float(revenue),
            certifications=certifications or {},
            health_score=health_score,
        )
    if facts:
        partners = partners.exclude(kpi_period_snapshots__period=str(period))
    revenue = period_values(period=period, keys=[REVENUE_KPI], partners=partners, now=now)[REVENUE_KPI]
    if revenue:
        roles = active_certifications_by_role(partners=partners, day=period.last_day)
        latest = period == latest_closed(QUARTER, now)
        health = dict(partners.values_list("pk", "health_score")) if latest else {}
        for partner_id, value in revenue.items():
            facts[partner_id] = Facts(
                revenue=value, certifications=roles.get(partner_id, {}), health_score=health.get(partner_id)
            )
    return facts


@dataclass(frozen=True)
class Requirement:
    key: str  # sales_certifications | technical_certifications | delivery_certifications | revenue | health
    label: str
    required: float
    actual: float | None
    met: bool | None  # None when the fact is unknown

    @property
    def shortfall(self) -> float | None:
        return None if self.actual is None or self.met else self.required - self.actual


def requirements(tier: Tier, facts: Facts | None) -> list[Requirement]:
    """The tier's requirements beside a partner's facts; requirements the tier does not set are left out."""
    facts = facts or Facts(revenue=None, certifications={}, health_score=None)
    found = []
    for role in ROLES:
        needed = getattr(tier, f"min_{role}_certifications")
        if needed:
            actual = facts.certifications.get(role, 0)
            found.append(
                Requirement(
                    f"{role}_certifications", f"{role.title()} certifications", needed, actual, actual >= needed
                )
            )
    if tier.min_quarterly_revenue is not None:
        needed = float(tier.min_quarterly_revenue)
        actual = facts.revenue
        met = None if actual is None else actual >= needed
        found.append(Requirement("revenue", "Partner-sourced revenue in the quarter", needed, actual, met))
    if tier.min_health_score is not None:
        needed = float(tier.min_health_score)
        actual = facts.health_score
        met = None if actual is None else actual >= needed
        found.append(Requirement("health", "Health score", needed, actual, met))
    return found


def meets(tier: Tier, facts: Facts | None) -> bool:
    return all(requirement.met is not False for requirement in requirements(tier, facts))


@dataclass
class Assessment:
    """One partner's tier standing, and what a reviewer may approve."""

    partner: Partner
    status: str
    periods: list[Period]  # the closed quarters judged, newest first
    quarters_below: int  # consecutive closed quarters below its tier, newest first
    grace: int
    standing: list[Requirement] = field(default_factory=list)  # latest quarter vs its own tier
    next_tier: Tier | None = None
    next_standing: list[Requirement] = field(default_factory=list)  # latest quarter vs the next tier
    suggested_tier: Tier | None = None
    interventions: int = 0  # action items done during the stretch below

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def persistent(self) -> bool:
        return self.status in (AT_RISK, DOWNGRADE_DUE) and self.interventions > 0

    @property
    def change_suggested(self) -> bool:
        return self.status in (QUALIFIES_UPGRADE, DOWNGRADE_DUE) and self.suggested_tier != self.partner.tier

    def as_record(self) -> dict:
        """What a TierChange keeps of the assessment that justified it."""
        return {
            "status": self.status,
            "periods": [str(period) for period in self.periods],
            "quarters_below": self.quarters_below,
            "grace": self.grace,
            "interventions": self.interventions,
            "standing": [
                {"key": r.key, "required": r.required, "actual": r.actual, "met": r.met} for r in self.standing
            ],
            "next_standing": [
                {"key": r.key, "required": r.required, "actual": r.actual, "met": r.met} for r in self.next_standing
            ],
        }


def _assess(
    partner: Partner,
    tiers: list[Tier],
    periods: list[Period],
    facts_by_period: list[dict[int, Facts]],
    interventions: dict[int, list[datetime.datetime]],
    grace: int,
) -> Assessment:
    latest_facts = facts_by_period[0].get(partner.pk)
    current = partner.tier
    higher = [tier for tier in tiers if current is None or tier.rank > current.rank]
    next_tier = higher[0] if higher else None
    assessment = Assessment(
        partner=partner,
        status=NO_TIER if current is None else MEETS,
        periods=periods,
        quarters_below=0,
        grace=grace,
        next_tier=next_tier,
        next_standing=requirements(next_tier, latest_facts) if next_tier else [],
    )
    if current is not None:
        assessment.standing = requirements(current, latest_facts)
        for facts in facts_by_period:
            if meets(current, facts.get(partner.pk)):
                break
            assessment.quarters_below += 1
    if assessment.quarters_below:
        stretch_start = periods[assessment.quarters_below - 1].start
        assessment.interventions = sum(
            1 for done_at in interventions.get(partner.pk, ()) if stretch_start <= done_at < periods[0].end
        )
        if assessment.quarters_below >= grace:
            assessment.status = DOWNGRADE_DUE
            lower = [tier for tier in tiers if tier.rank < current.rank]
            fitting = [tier for tier in lower if meets(tier, latest_facts)]
            assessment.suggested_tier = fitting[-1] if fitting else (lower[0] if lower else None)
        else:
            assessment.status = AT_RISK
    elif next_tier is not None and latest_facts is not None and meets(next_tier, latest_facts):
        assessment.status = QUALIFIES_UPGRADE
        assessment.suggested_tier = next_tier
    return assessment


def tier_review(
    *, partners: QuerySet[Partner], now: datetime.datetime | None = None, grace: int | None = None
) -> list[Assessment]:
    """Every partner's tier standing, judged on the latest closed quarters.

    A constant number of queries whatever the number of partners: the tiers, the partners, and per judged
    quarter its snapshots plus what is computed for partners without one; one for interventions.
    """
    now = now or timezone.now()
    grace = grace or grace_periods()
    tiers = list(Tier.objects.order_by("rank", "name"))
    periods = latest_closed(QUARTER, now).back(grace)
    partners = partners.exclude(status=Partner.Status.EXITED)
    rows = list(partners.select_related("tier", "owner").order_by("name", "pk"))
    if not rows:
        return []
    facts_by_period = [quarter_facts(period=period, partners=partners, now=now) for period in periods]
    done = ActionItem.objects.filter(
        partner__in=partners.values("pk"),
        status=ActionItem.Status.DONE,
        completed_at__gte=periods[-1].start,
        completed_at__lt=periods[0].end,
    ).values_list("partner_id", "completed_at")
    interventions: dict[int, list[datetime.datetime]] = {}
    for partner_id, completed_at in done:
        interventions.setdefault(partner_id, []).append(completed_at)
    return [_assess(partner, tiers, periods, facts_by_period, interventions, grace) for partner in rows]


def tier_review_groups(assessments: Iterable[Assessment]) -> dict[str, list[Assessment]]:
    """The tier-review page's lists: upgrades, downgrades due, at risk, and persistently at risk."""
    groups: dict[str, list[Assessment]] = {"upgrade": [], "downgrade": [], "at_risk": [], "persistent": []}
    for assessment in assessments:
        if assessment.status == QUALIFIES_UPGRADE:
            groups["upgrade"].append(assessment)
        elif assessment.status == DOWNGRADE_DUE:
            groups["downgrade"].append(assessment)
        elif assessment.status == AT_RISK:
            groups["at_risk"].append(assessment)
        if assessment.persistent:
            groups["persistent"].append(assessment)
    return groups
