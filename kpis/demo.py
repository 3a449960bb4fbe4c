"""Demo content of the KPI layer: tier targets for the quarters shown, and quarterly business reviews with actions.

`seed_demo` calls this after prm.demo has written the partner program, so that the KPI pages colour attainment,
the review summaries have a previous review to compare with, and overdue actions show on Today.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from kpis.models import ActionItem, BusinessReview, KpiTarget
from kpis.periods import Period
from prm.models import Partner, Tier

QUARTERS_OF_TARGETS = 5  # the current quarter and the four before it
QUARTERS_OF_REVIEWS = 4  # the closed quarters of the demo's year
REVIEW_SHARE = 0.75  # partners a manager reviews in a given quarter; the rest go without one
# Per KPI: the target of tiers of rank 0..3 (ratios as fractions).
TIER_TARGETS = {
    "partner_sourced_revenue": [10000, 25000, 100000, 350000],
    "deals_registered": [2, 4, 6, 10],
    "win_rate": [0.4, 0.4, 0.45, 0.5],
    "pipeline_coverage": [1.0, 1.5, 2.0, 2.0],
    "active_certifications": [1, 2, 5, 8],
    "trainings_completed": [1, 2, 3, 4],
    "activity_intensity": [100, 150, 200, 250],
    "sales_cycle_days": [60, 60, 55, 50],
    "mdf_utilization": [0.6, 0.7, 0.8, 0.8],
}
# What a review typically agrees on: the words, the KPI it should move, and its target relative to now.
ACTIONS = [
    ("Register three new opportunities from the joint campaign", "deals_registered", 3),
    ("Certify a second delivery engineer", "active_certifications", None),
    ("Run a pipeline review with the partner's sales lead every two weeks", "pipeline_coverage", 1.5),
    ("Get the sales team through the new product training", "trainings_completed", 3),
    ("Claim the remaining MDF before the quarter closes", "mdf_utilization", 0.8),
    ("Weekly portal use by the whole sales team", "portal_logins", 60),
    ("Send the partner newsletter to every contact", "", None),
]
NOTES = [
    "Pipeline discussed deal by deal; two registrations stuck in approval.",
    "Partner is hiring two presales engineers; enablement plan agreed.",
    "Marketing funds under-used; agreed a joint campaign for next quarter.",
    "Good quarter; partner asks for earlier access to the roadmap.",
    "Win rate down: pricing pressure from a competitor in two accounts.",
]


@dataclass
class DemoKpiSummary:
    targets: int = 0
    reviews: int = 0
    action_items: int = 0
    overdue_action_items: int = 0

    def as_lines(self) -> list[str]:
        return [
            f"KPI targets: {self.targets} (per tier and quarter)",
            f"Business reviews: {self.reviews}; action items: {self.action_items} "
            f"({self.overdue_action_items} open and overdue)",
        ]


def _targets_create(*, quarters: list[Period]) -> int:
    """Tier targets for every KPI of TIER_TARGETS and quarter, leaving targets already set alone."""
    tiers = list(Tier.objects.order_by("rank"))
    existing = set(
        KpiTarget.objects.filter(tier__isnull=False, period__in=[q.key for q in quarters]).values_list(
            "kpi", "period", "tier_id"
        )
    )
    targets = []
    for quarter in quarters:
        for kpi, by_rank in TIER_TARGETS.items():
            for tier in tiers:
                if (kpi, quarter.key, tier.pk) in existing:
                    continue
                value = by_rank[min(tier.rank, len(by_rank) - 1)]
                targets.append(KpiTarget(kpi=kpi, period=quarter.key, tier=tier, value=Decimal(str(value))))
    if targets:
        bulk_create_with_history(targets, KpiTarget)
    return len(targets)


def demo_reviews_and_targets_create(*, seed: int, today: datetime.date | None = None) -> DemoKpiSummary:
    """Tier targets for the demo's quarters, and for most partners a review after each closed quarter.

    Older reviews' actions are mostly done (some cancelled, some still open past their due date); the latest
    ones are open. The same seed gives the same reviews.
    """
    today = today or timezone.localdate()
    rng = random.Random(seed * 7919 + 17)
    current = Period.of_date(today)
    summary = DemoKpiSummary()
    with transaction.atomic():
        summary.targets = _targets_create(quarters=current.back(QUARTERS_OF_TARGETS))
        partners = list(
            Partner.objects.exclude(status=Partner.Status.EXITED)
            .exclude(owner=None)
            .select_related("owner")
            .order_by("pk")
        )
        reviews, pending_items = [], []
        for quarter in reversed(current.previous().back(QUARTERS_OF_REVIEWS)):
            for partner in partners:
                if rng.random() > REVIEW_SHARE:
                    continue
                held_on = quarter.last_day + datetime.timedelta(days=rng.randint(8, 35))
                if held_on >= today or (partner.joined_on and held_on < partner.joined_on):
                    continue
                review = BusinessReview(
                    partner=partner,
                    period=quarter.key,
                    held_on=held_on,
                    attendees=f"{partner.owner.get_full_name() or partner.owner.username}; partner sales lead",
                    notes=rng.choice(NOTES),
                    created_by=partner.owner,
                )
                reviews.append(review)
                for description, kpi, target in rng.sample(ACTIONS, rng.randint(1, 2)):
                    pending_items.append((review, description, kpi, target))
        BusinessReview.objects.bulk_create(reviews)
        items = []
        now = timezone.now()
        for review, description, kpi, target in pending_items:
            due_on = review.held_on + datetime.timedelta(days=rng.choice([30, 45, 60]))
            item = ActionItem(
                partner=review.partner,
                review=review,
                description=description,
                owner=review.partner.owner,
                due_on=due_on,
                kpi=kpi,
                target_value=None if target is None else Decimal(str(target)),
            )
            if due_on < today:
                draw = rng.random()
                if draw < 0.7:
                    done_on = due_on - datetime.timedelta(days=rng.randint(0, 20))
                    completed_at = timezone.make_aware(datetime.datetime.combine(done_on, datetime.time(15)))
                    item.set_status(ActionItem.Status.DONE, at=min(completed_at, now))
                elif draw < 0.78:
                    item.set_status(ActionItem.Status.CANCELLED, at=now)
                else:
                    summary.overdue_action_items += 1
            items.append(item)
        ActionItem.objects.bulk_create(items)
    summary.reviews, summary.action_items = len(reviews), len(items)
    return summary
