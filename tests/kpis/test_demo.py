"""The KPI layer's part of seed_demo: tier targets, quarterly reviews with action items, deterministic for a seed."""

import datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from kpis.models import ActionItem, BusinessReview, KpiTarget
from kpis.periods import Period
from kpis.registry import kpis_compute
from prm.models import Partner, Tier

NOW = datetime.datetime(2026, 11, 20, 15, 30, tzinfo=datetime.UTC)
TODAY = NOW.date()

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def reviews_fingerprint() -> list[tuple]:
    return list(
        BusinessReview.objects.order_by("partner__external_id", "held_on").values_list(
            "partner__external_id", "period", "held_on", "notes"
        )
    )


def test_targets_for_every_tier_and_quarter_shown():
    output = seed("--partners", "30", "--seed", "5")
    quarters = {q.key for q in Period.of_date(TODAY).back(5)}
    assert quarters == {"2026-Q4", "2026-Q3", "2026-Q2", "2026-Q1", "2025-Q4"}
    tiers = Tier.objects.count()
    assert tiers == 4
    targets = KpiTarget.objects.filter(tier__isnull=False)
    assert set(targets.values_list("period", flat=True)) == quarters
    assert targets.filter(kpi="win_rate").count() == tiers * len(quarters)
    platinum = targets.get(kpi="partner_sourced_revenue", period="2026-Q3", tier__slug="platinum")
    assert platinum.value == 350000
    assert f"KPI targets: {targets.count()}" in output
    # Targets already set by an admin are left alone when the demo is seeded again.
    platinum.value = 1
    platinum.save()
    seed("--partners", "30", "--seed", "5", "--reset")
    platinum.refresh_from_db()
    assert platinum.value == 1


def test_reviews_follow_closed_quarters_with_actions_done_and_overdue():
    seed("--partners", "40", "--seed", "5")
    reviews = list(BusinessReview.objects.select_related("partner"))
    assert len(reviews) > 40  # most partners, in each of four quarters
    assert {r.period for r in reviews} == {"2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"}
    for review in reviews:
        assert Period.parse(review.period).last_day < review.held_on < TODAY
        assert review.partner.owner_id is not None and review.partner.status != Partner.Status.EXITED
    items = ActionItem.objects.all()
    assert items.count() >= len(reviews)
    assert items.filter(status=ActionItem.Status.DONE, completed_at__isnull=False).exists()
    overdue = items.filter(status=ActionItem.Status.OPEN, due_on__lt=TODAY)
    assert overdue.exists()
    assert not items.filter(status=ActionItem.Status.OPEN, completed_at__isnull=False).exists()
    assert all(item.owner_id == item.partner.owner_id for item in items.select_related("partner"))

    # Reviews feed the days_since_business_review KPI of the reviewed partners.
    reviewed = {r.partner_id for r in reviews}
    values = kpis_compute(
        keys=["days_since_business_review"], as_of=NOW, window_days=90, partners=Partner.objects.all()
    )["days_since_business_review"]
    assert all(values[pk] is not None for pk in reviewed)


def test_same_seed_same_reviews():
    seed("--partners", "20", "--seed", "9")
    first = reviews_fingerprint()
    assert first
    seed("--partners", "20", "--seed", "9", "--reset")
    assert reviews_fingerprint() == first
    seed("--partners", "20", "--seed", "10", "--reset")
    assert reviews_fingerprint() != first
