"""A small fixture program for the review-summary and page tests: one partner's quarter told in full.

Alpha Resellers (P-A, Gold, owner "manager", quarterly revenue target 100,000), reviewed on 2026-07-05
for 2026-Q2, when two actions were agreed. In 2026-Q3 it:

- won 30,000 (one deal, 60 days from registration to win) and lost one deal: win rate 0.5;
- registered 4 deals (Q2: 1); open pipeline at the end of Q3: 150,000 (coverage 1.5);
- completed 3 trainings out of 4 assigned; holds 1 technical and 1 sales certification (Gold: 2 technical);
- has health snapshots (a scoring model of the health app) rising from 52 to 64 over Q3.

Targets for 2026-Q3: Gold's win_rate 0.4, deals_registered 6, trainings_completed 2, sales_cycle_days 50,
and Alpha's own sales_cycle_days 45 (overrides Gold's).
"""

import datetime
from decimal import Decimal

from django.utils import timezone

from kpis.models import ActionItem, KpiTarget
from kpis.periods import Period
from kpis.services import review_create
from prm.models import Partner
from tests.factories import TierFactory
from tests.kpis.support import activity, certification, deal

UTC = datetime.UTC
Q2, Q3 = Period.parse("2026-Q2"), Period.parse("2026-Q3")
NOW = datetime.datetime(2026, 10, 6, 9, 0, tzinfo=UTC)  # early Q4, when Q3's review is prepared


def build(partner: Partner, manager) -> dict:
    gold = TierFactory(
        slug="gold",
        name="Gold",
        rank=2,
        min_technical_certifications=2,
        min_sales_certifications=1,
        min_quarterly_revenue=Decimal("50000"),
        min_health_score=Decimal("60"),
    )
    Partner.objects.filter(pk=partner.pk).update(
        tier=gold, quarterly_revenue_target=Decimal("100000"), health_score=64.0, health_band="watch"
    )
    partner.refresh_from_db()
    day = datetime.timedelta(days=1)

    # Q2: one deal registered (still open at the end of Q3, 120,000).
    deal(partner, amount=120000, registered_at=Q2.start + 10 * day)
    # Q3: four deals registered: one won, one lost, two open (30,000 of open pipeline).
    won_at = Q3.start + 5 * day
    deal(partner, amount=30000, stage="won", registered_at=won_at, closed_at=won_at + 60 * day)
    deal(partner, amount=8000, stage="lost", registered_at=Q3.start + 6 * day, closed_at=Q3.start + 30 * day)
    deal(partner, amount=20000, registered_at=Q3.start + 40 * day)
    deal(partner, amount=10000, registered_at=Q3.start + 50 * day)
    for index in range(4):
        activity(partner, "training_assigned", Q3.start + (index + 1) * day)
    for index in range(3):
        activity(partner, "training_completed", Q3.start + (index + 20) * day)
    activity(partner, "training_completed", Q2.start + 3 * day)
    certification(partner, role="technical", earned_on=datetime.date(2026, 2, 1))
    certification(partner, role="sales", earned_on=datetime.date(2026, 8, 1))

    previous = review_create(
        partner=partner,
        period="2026-Q2",
        held_on=datetime.date(2026, 7, 5),
        attendees="Alice (partner), Manager (vendor)",
        created_by=manager,
        action_items=[
            {
                "description": "Register every opportunity",
                "owner_id": manager.id,
                "due_on": datetime.date(2026, 8, 1),
                "kpi": "deals_registered",
                "target_value": Decimal("3"),
                "status": "done",
            },
            {
                "description": "Finish the sales training",
                "owner_id": manager.id,
                "due_on": datetime.date(2026, 9, 1),
                "kpi": "trainings_completed",
                "target_value": Decimal("5"),
            },
        ],
    )
    for kpi, value in (("win_rate", "0.4"), ("deals_registered", "6"), ("trainings_completed", "2")):
        KpiTarget.objects.create(kpi=kpi, period="2026-Q3", tier=gold, value=Decimal(value))
    KpiTarget.objects.create(kpi="sales_cycle_days", period="2026-Q3", tier=gold, value=Decimal("50"))
    KpiTarget.objects.create(kpi="sales_cycle_days", period="2026-Q3", partner=partner, value=Decimal("45"))

    model = _health_snapshots(partner)
    return {"tier": gold, "previous_review": previous, "model": model}


def _health_snapshots(partner: Partner):
    from health.models import ScoreSnapshot, ScoringModel

    model = ScoringModel.objects.order_by("pk").first()
    components = [
        {
            "kpi": "pipeline_coverage",
            "category": "pipeline",
            "raw": 1.5,
            "normalized": 50.0,
            "weight": 15,
            "contribution": 30.0,
            "included": True,
        },
        {
            "kpi": "deals_registered",
            "category": "pipeline",
            "raw": 4,
            "normalized": 66.7,
            "weight": 10,
            "contribution": 26.7,
            "included": True,
        },
        {
            "kpi": "sentiment",
            "category": "relationship",
            "raw": None,
            "normalized": None,
            "weight": 5,
            "contribution": 0.0,
            "included": False,
        },
    ]
    for week, score in enumerate((52.0, 55.0, 58.0, 61.0, 64.0)):
        ScoreSnapshot.objects.create(
            partner=partner,
            model=model,
            as_of=Q3.start + datetime.timedelta(days=14 * week + 10),
            score=score,
            band="watch",
            trend=3.0,
            components=components,
            window_days=90,
        )
    Partner.objects.filter(pk=partner.pk).update(health_model_id=model.pk)
    partner.refresh_from_db()
    return model


def overdue_item(partner: Partner, owner) -> ActionItem:
    return ActionItem.objects.create(
        partner=partner,
        description="Send the renewal quote",
        owner=owner,
        due_on=timezone.localdate(NOW) - datetime.timedelta(days=3),
    )
