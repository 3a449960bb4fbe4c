"""A small partner program with a scored history, for the page tests and the browser tests."""

from __future__ import annotations

import datetime
from decimal import Decimal

from health.models import ScoringModel
from health.services import scores_backfill
from kpis.models import BusinessReview
from prm.models import Activity, Certification, Deal, Partner
from tests.factories import PartnerFactory, TierFactory, kind

NOW = datetime.datetime(2026, 10, 1, 9, 0, tzinfo=datetime.UTC)
REGIONS = ("EMEA", "AMER", "APAC")
TYPES = (Partner.Type.RESELLER, Partner.Type.MSP, Partner.Type.DISTRIBUTOR)
# Four profiles, in turn: strong (healthy), middling (watch), faded in the last weeks (declining into
# at-risk), weak all along (at-risk).
STRONG, MIDDLING, FADED, WEAK = range(4)


def _signals(partner: Partner, profile: int, index: int, now: datetime.datetime) -> tuple[list, list, list, list]:
    def _days_ago(days: float) -> datetime.datetime:
        return now - datetime.timedelta(days=days)

    activities: list[Activity] = []
    deals: list[Deal] = []
    certifications: list[Certification] = []
    # Faded partners were busy three to four months ago and nearly silent since: a month ago their 90-day
    # window still held it all, today it holds little.
    ages = {
        STRONG: (3, 10, 18, 25, 33, 47, 60, 75),
        MIDDLING: (10, 45, 70),
        FADED: (70, 93, 100, 107, 114, 118),
        WEAK: (80,),
    }[profile]
    volume = {STRONG: 30, MIDDLING: 12, FADED: 25, WEAK: 2}[profile]
    for n, age in enumerate(ages):
        for key, quantity in (("portal_login", volume), ("content_view", volume // 2 or 1), ("meeting_held", 1)):
            activities.append(
                Activity(
                    partner=partner,
                    kind=kind(key),
                    occurred_at=_days_ago(age),
                    quantity=quantity,
                    source="test",
                    external_id=f"{partner.external_id}-{key}-{n}",
                )
            )
        if profile != WEAK:
            deals.append(
                Deal(
                    external_id=f"{partner.external_id}-D{n}",
                    partner=partner,
                    name=f"Deal {index}-{n}",
                    amount=Decimal(40000 if profile == STRONG else 15000),
                    stage=Deal.Stage.WON if n % 2 else Deal.Stage.REGISTERED,
                    registered_at=_days_ago(age + 1),
                    closed_at=_days_ago(age) if n % 2 else None,
                )
            )
    roles = {STRONG: ("sales", "technical", "delivery"), MIDDLING: ("sales", "technical"), FADED: ("sales",)}
    for role in roles.get(profile, ()):
        certifications.append(
            Certification(
                partner=partner,
                name=f"{role.title()} certified",
                role=role,
                earned_on=_days_ago(260).date(),
                # Faded partners' only certification lapsed a couple of weeks ago.
                expires_on=_days_ago(16).date() if profile == FADED else None,
            )
        )
    reviews = []
    if profile in (STRONG, FADED):
        held = _days_ago(11 if profile == STRONG else 122).date()
        reviews.append(BusinessReview(partner=partner, period="2026-Q3", held_on=held))
    return activities, deals, certifications, reviews


def build_program(
    partners: int, *, owner=None, weeks: int = 12, prefix: str = "X", now: datetime.datetime = NOW
) -> list[Partner]:
    """`partners` partners in four profiles, every other one owned by `owner`, scored weekly for `weeks`
    weeks up to `now` (so they have trends, sparklines and a history)."""
    silver = TierFactory(slug="silver", name="Silver", rank=1)
    gold = TierFactory(slug="gold", name="Gold", rank=2)
    created = []
    activities, deals, certifications, reviews = [], [], [], []
    for index in range(partners):
        profile = index % 4
        partner = PartnerFactory(
            external_id=f"{prefix}-{index:03d}",
            name=f"{('Strong', 'Middling', 'Faded', 'Weak')[profile]} Partner {index:03d}",
            tier=gold if profile == STRONG else silver,
            type=TYPES[index % len(TYPES)],
            region=REGIONS[index % len(REGIONS)],
            owner=owner if index % 2 == 0 else None,
            quarterly_revenue_target=Decimal(50000),
        )
        a, d, c, r = _signals(partner, profile, index, now)
        activities += a
        deals += d
        certifications += c
        reviews += r
        created.append(partner)
    Activity.objects.bulk_create(activities)
    Deal.objects.bulk_create(deals)
    Certification.objects.bulk_create(certifications)
    BusinessReview.objects.bulk_create(reviews)
    scores_backfill(weeks=weeks, now=now)
    return [Partner.objects.get(pk=p.pk) for p in created]


def default_model() -> ScoringModel:
    return ScoringModel.objects.get(name="Standard partner health")
