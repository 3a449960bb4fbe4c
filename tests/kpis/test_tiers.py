"""Tier reviews: standing against requirements, upgrades, downgrades after a grace period, approval and its record."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from kpis.models import ActionItem, KpiPeriodSnapshot, TierChange
from kpis.periods import Period
from kpis.services import kpi_period_snapshots_store, tier_change_approve
from kpis.tiers import (
    AT_RISK,
    DOWNGRADE_DUE,
    MEETS,
    NO_TIER,
    QUALIFIES_UPGRADE,
    tier_review,
    tier_review_groups,
)
from prm.models import Partner
from tests.factories import PartnerFactory, TierFactory
from tests.kpis.support import certification, deal

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
NOW = datetime.datetime(2026, 11, 15, 10, 0, tzinfo=UTC)  # latest closed quarter: Q3
Q1, Q2, Q3 = (Period.parse(p) for p in ("2026-Q1", "2026-Q2", "2026-Q3"))


@pytest.fixture
def tiers():
    silver = TierFactory(slug="silver", name="Silver", rank=1, min_quarterly_revenue=Decimal("10000"))
    gold = TierFactory(
        slug="gold",
        name="Gold",
        rank=2,
        min_quarterly_revenue=Decimal("50000"),
        min_technical_certifications=2,
        min_health_score=Decimal("60"),
    )
    platinum = TierFactory(
        slug="platinum",
        name="Platinum",
        rank=3,
        min_quarterly_revenue=Decimal("100000"),
        min_technical_certifications=3,
        min_sales_certifications=1,
        min_health_score=Decimal("75"),
    )
    return silver, gold, platinum


def _revenue(partner, period: Period, amount):
    start = period.start + datetime.timedelta(days=2)
    deal(partner, amount=amount, stage="won", registered_at=start, closed_at=start + datetime.timedelta(days=10))


def _health(partner, score):
    Partner.objects.filter(pk=partner.pk).update(health_score=score)


def _review(**kwargs):
    return {a.partner.external_id: a for a in tier_review(partners=Partner.objects.all(), now=NOW, **kwargs)}


def test_upgrade_when_the_latest_quarter_meets_the_next_tier(tiers):
    silver, gold, _ = tiers
    partner = PartnerFactory(external_id="UP", tier=silver)
    _revenue(partner, Q3, 60000)
    certification(partner, role="technical", earned_on=datetime.date(2026, 1, 10))
    certification(partner, role="technical", earned_on=datetime.date(2026, 2, 10))
    _health(partner, 70.0)
    assessment = _review()["UP"]
    assert assessment.status == QUALIFIES_UPGRADE
    assert assessment.next_tier == gold and assessment.suggested_tier == gold
    assert all(requirement.met for requirement in assessment.next_standing)
    assert [r.key for r in assessment.next_standing] == ["technical_certifications", "revenue", "health"]


def test_missing_one_requirement_of_the_next_tier_is_no_upgrade(tiers):
    silver, gold, _ = tiers
    partner = PartnerFactory(external_id="NEAR", tier=silver)
    _revenue(partner, Q3, 60000)
    certification(partner, role="technical", earned_on=datetime.date(2026, 1, 10))  # one of two
    _health(partner, 70.0)
    assessment = _review()["NEAR"]
    assert assessment.status == MEETS
    missed = [r for r in assessment.next_standing if r.met is False]
    assert [(r.key, r.required, r.actual, r.shortfall) for r in missed] == [("technical_certifications", 2, 1, 1)]


def test_one_bad_quarter_is_at_risk_two_are_a_downgrade(tiers):
    silver, gold, _ = tiers
    one_bad = PartnerFactory(external_id="ONE", tier=gold)
    two_bad = PartnerFactory(external_id="TWO", tier=gold)
    for partner in (one_bad, two_bad):
        certification(partner, role="technical", earned_on=datetime.date(2026, 1, 10))
        certification(partner, role="technical", earned_on=datetime.date(2026, 1, 11))
        _health(partner, 65.0)
        _revenue(partner, Q3, 20000)  # below gold's 50,000 in Q3
    _revenue(one_bad, Q2, 80000)  # Q2 was fine
    _revenue(two_bad, Q2, 15000)
    found = _review()
    assert (found["ONE"].status, found["ONE"].quarters_below) == (AT_RISK, 1)
    assert found["ONE"].suggested_tier is None
    assert (found["TWO"].status, found["TWO"].quarters_below) == (DOWNGRADE_DUE, 2)
    # Silver's 10,000 is met: the suggested tier is the highest lower tier the partner meets.
    assert found["TWO"].suggested_tier == silver
    assert found["TWO"].periods == [Q3, Q2]


def test_the_grace_period_is_a_setting(tiers, settings):
    _, gold, _ = tiers
    partner = PartnerFactory(external_id="G", tier=gold)
    certification(partner, role="technical", earned_on=datetime.date(2025, 1, 10))
    certification(partner, role="technical", earned_on=datetime.date(2025, 1, 11))
    _revenue(partner, Q1, 90000)  # Q1 met gold
    _revenue(partner, Q2, 1000)
    _revenue(partner, Q3, 1000)
    settings.KPI_TIER_GRACE_PERIODS = 3
    assessment = _review()["G"]
    assert (assessment.status, assessment.quarters_below, assessment.grace) == (AT_RISK, 2, 3)
    assert assessment.periods == [Q3, Q2, Q1]
    settings.KPI_TIER_GRACE_PERIODS = 1
    assert _review()["G"].status == DOWNGRADE_DUE


def test_stored_quarters_are_judged_as_stored(tiers):
    _, gold, _ = tiers
    partner = PartnerFactory(external_id="S", tier=gold)
    certification(partner, role="technical", earned_on=datetime.date(2026, 1, 10))
    certification(partner, role="technical", earned_on=datetime.date(2026, 1, 11))
    _health(partner, 65.0)
    _revenue(partner, Q2, 60000)
    _revenue(partner, Q3, 60000)
    kpi_period_snapshots_store(period=Q3, now=datetime.datetime(2026, 10, 2, tzinfo=UTC))
    # After storing, the partner's health fell; Q3 is judged on the health stored when it closed.
    _health(partner, 10.0)
    assert _review()["S"].status == MEETS
    KpiPeriodSnapshot.objects.filter(partner=partner).update(health_score=50.0)
    assert _review()["S"].status == AT_RISK


def test_unknown_health_neither_meets_nor_misses(tiers):
    _, gold, _ = tiers
    partner = PartnerFactory(external_id="U", tier=gold)
    certification(partner, role="technical", earned_on=datetime.date(2026, 1, 10))
    certification(partner, role="technical", earned_on=datetime.date(2026, 1, 11))
    _revenue(partner, Q3, 60000)
    _revenue(partner, Q2, 60000)
    assessment = _review()["U"]
    assert assessment.status == MEETS
    assert [(r.key, r.met) for r in assessment.standing if r.key == "health"] == [("health", None)]


def test_persistently_at_risk_despite_a_done_intervention(tiers, manager):
    _, gold, _ = tiers
    helped = PartnerFactory(external_id="HELPED", tier=gold)
    for partner in (helped, PartnerFactory(external_id="ALONE", tier=gold)):
        certification(partner, role="technical", earned_on=datetime.date(2026, 1, 10))
        certification(partner, role="technical", earned_on=datetime.date(2026, 1, 11))
        _revenue(partner, Q2, 90000)
        _revenue(partner, Q3, 100)
    ActionItem.objects.create(
        partner=helped,
        description="Joint pipeline plan",
        status=ActionItem.Status.DONE,
        completed_at=datetime.datetime(2026, 8, 1, tzinfo=UTC),
    )
    # Done before the stretch below began: not an intervention against it.
    ActionItem.objects.create(
        partner=helped,
        description="Old item",
        status=ActionItem.Status.DONE,
        completed_at=datetime.datetime(2026, 1, 5, tzinfo=UTC),
    )
    found = _review()
    assert found["HELPED"].persistent and found["HELPED"].interventions == 1
    assert not found["ALONE"].persistent
    groups = tier_review_groups(found.values())
    assert [a.partner.external_id for a in groups["persistent"]] == ["HELPED"]
    assert {a.partner.external_id for a in groups["at_risk"]} == {"HELPED", "ALONE"}


def test_partners_without_a_tier_may_qualify_for_the_lowest(tiers):
    silver, _, _ = tiers
    newcomer = PartnerFactory(external_id="NEW", tier=None)
    PartnerFactory(external_id="IDLE", tier=None)
    _revenue(newcomer, Q3, 12000)
    found = _review()
    assert (found["NEW"].status, found["NEW"].suggested_tier) == (QUALIFIES_UPGRADE, silver)
    assert found["IDLE"].status == NO_TIER


def test_exited_partners_are_not_reviewed(tiers):
    PartnerFactory(external_id="GONE", tier=tiers[1], status=Partner.Status.EXITED)
    assert "GONE" not in _review()


@pytest.mark.parametrize("partners", [3, 30])
def test_review_takes_constant_queries(tiers, partners, django_assert_max_num_queries):
    for index in range(partners):
        partner = PartnerFactory(tier=tiers[index % 3])
        _revenue(partner, Q3, 1000 * index)
        certification(partner, role="technical", earned_on=datetime.date(2026, 1, 10))
    with django_assert_max_num_queries(14):
        found = tier_review(partners=Partner.objects.all(), now=NOW)
    assert len(found) == partners


# Approval ----------------------------------------------------------------------------------------


def test_approving_a_change_moves_the_partner_and_records_it(tiers, channel_admin):
    silver, gold, _ = tiers
    partner = PartnerFactory(external_id="MOVE", tier=gold)
    change = tier_change_approve(
        partner=partner, to_tier=silver, user=channel_admin, reason="Two quarters below gold.", assessment={"a": 1}
    )
    partner.refresh_from_db()
    assert partner.tier == silver
    record = TierChange.objects.get()
    assert record == change
    assert (record.from_tier, record.to_tier, record.approved_by, record.approved_by_name) == (
        gold,
        silver,
        channel_admin,
        "admin",
    )
    assert record.reason == "Two quarters below gold." and record.assessment == {"a": 1}
    latest = partner.history.latest()
    assert (latest.tier_id, latest.history_user, latest.history_change_reason) == (
        silver.pk,
        channel_admin,
        "Two quarters below gold.",
    )


def test_a_change_needs_a_person_a_reason_and_a_different_tier(tiers, channel_admin):
    silver, gold, _ = tiers
    partner = PartnerFactory(tier=gold)
    with pytest.raises(ValidationError, match="reason"):
        tier_change_approve(partner=partner, to_tier=silver, user=channel_admin, reason="  ")
    with pytest.raises(ValidationError, match="user"):
        tier_change_approve(partner=partner, to_tier=silver, user=None, reason="Because")
    with pytest.raises(ValidationError, match="already"):
        tier_change_approve(partner=partner, to_tier=gold, user=channel_admin, reason="Because")
    partner.refresh_from_db()
    assert partner.tier == gold and not TierChange.objects.exists()


def test_a_partner_may_leave_the_tiers(tiers, channel_admin):
    partner = PartnerFactory(tier=tiers[0])
    tier_change_approve(partner=partner, to_tier=None, user=channel_admin, reason="Left the programme's tiers.")
    partner.refresh_from_db()
    assert partner.tier is None and TierChange.objects.get().to_tier is None
