"""KPI values of periods: closed periods stored once and kept, open ones period-to-date; the snapshot command."""

import datetime
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from kpis.models import KpiPeriodSnapshot
from kpis.periods import Period
from kpis.selectors import period_values
from kpis.services import custom_kpi_create, kpi_period_snapshots_store, kpi_periods_snapshot_closed
from prm.models import Partner
from tests.factories import PartnerFactory, TierFactory, kind
from tests.kpis.support import activity, certification, deal

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
Q3 = Period.parse("2026-Q3")
AFTER_Q3 = datetime.datetime(2026, 10, 2, 3, 0, tzinfo=UTC)


def _signals(partner, logins: int):
    for day in range(logins):
        activity(partner, "portal_login", Q3.start + datetime.timedelta(days=day, hours=9))
    deal(
        partner,
        amount=5000,
        stage="won",
        registered_at=Q3.start + datetime.timedelta(days=1),
        closed_at=Q3.start + datetime.timedelta(days=20),
    )
    certification(partner, role="technical", earned_on=datetime.date(2026, 2, 1))
    certification(partner, role="technical", earned_on=datetime.date(2026, 3, 1))
    certification(partner, role="sales", earned_on=datetime.date(2026, 10, 1))  # after Q3


def test_closed_period_is_stored_with_what_tier_reviews_need():
    gold = TierFactory(slug="gold")
    partner = PartnerFactory(tier=gold)
    Partner.objects.filter(pk=partner.pk).update(health_score=72.5)
    _signals(partner, 3)
    assert kpi_period_snapshots_store(period=Q3, now=AFTER_Q3) == 1
    snapshot = KpiPeriodSnapshot.objects.get(partner=partner, period="2026-Q3")
    assert snapshot.as_of == Q3.as_of
    assert snapshot.values["portal_logins"] == 3
    assert snapshot.values["partner_sourced_revenue"] == 5000
    assert snapshot.values["win_rate"] == 1.0
    assert snapshot.values["sentiment"] is None
    assert snapshot.certifications == {"technical": 2}
    assert (snapshot.health_score, snapshot.tier_id) == (72.5, gold.pk)


def test_stored_periods_stay_fixed_when_late_data_arrives():
    partner = PartnerFactory()
    _signals(partner, 3)
    kpi_period_snapshots_store(period=Q3, now=AFTER_Q3)
    # A late login dated inside Q3: the stored quarter does not move, a live computation would.
    activity(partner, "portal_login", Q3.start + datetime.timedelta(days=40))
    assert kpi_period_snapshots_store(period=Q3, now=AFTER_Q3) == 0
    stored = period_values(period=Q3, keys=["portal_logins"], partners=Partner.objects.all(), now=AFTER_Q3)
    assert stored["portal_logins"][partner.pk] == 3
    # --replace is the deliberate way to take late data in.
    kpi_period_snapshots_store(period=Q3, now=AFTER_Q3, replace=True)
    assert KpiPeriodSnapshot.objects.get(partner=partner).values["portal_logins"] == 4


def test_a_backfill_leaves_the_health_score_unknown():
    partner = PartnerFactory()
    Partner.objects.filter(pk=partner.pk).update(health_score=80.0)
    kpi_period_snapshots_store(period=Period.parse("2026-Q1"), now=AFTER_Q3)
    assert KpiPeriodSnapshot.objects.get(partner=partner).health_score is None


def test_open_periods_are_refused():
    with pytest.raises(ValueError, match="not ended"):
        kpi_period_snapshots_store(period=Period.parse("2026-Q4"), now=AFTER_Q3)


def test_period_values_of_an_open_period_are_period_to_date():
    partner = PartnerFactory()
    activity(partner, "portal_login", datetime.datetime(2026, 10, 1, 0, 0, tzinfo=UTC))  # Q4's first instant
    activity(partner, "portal_login", datetime.datetime(2026, 9, 30, 23, 0, tzinfo=UTC))  # Q3
    values = period_values(
        period=Period.parse("2026-Q4"), keys=["portal_logins"], partners=Partner.objects.all(), now=AFTER_Q3
    )
    assert values["portal_logins"][partner.pk] == 1
    future = period_values(
        period=Period.parse("2027-Q1"), keys=["portal_logins"], partners=Partner.objects.all(), now=AFTER_Q3
    )
    assert future == {"portal_logins": {}}


def test_closed_period_without_snapshot_is_computed_and_a_new_kpi_fills_in():
    stored, unstored = PartnerFactory(), PartnerFactory()
    for partner in (stored, unstored):
        _signals(partner, 2)
        activity(partner, "event_attended", Q3.start + datetime.timedelta(days=3))
    kpi_period_snapshots_store(period=Q3, partners=Partner.objects.filter(pk=stored.pk), now=AFTER_Q3)
    # Defined after Q3 was stored: its value is computed for Q3, the stored values are kept.
    custom_kpi_create(key="webinars", label="Webinars", category="engagement", numerator_kind=kind("event_attended"))
    values = period_values(period=Q3, keys=["portal_logins", "webinars"], partners=Partner.objects.all(), now=AFTER_Q3)
    assert values["portal_logins"] == {stored.pk: 2, unstored.pk: 2}
    assert values["webinars"] == {stored.pk: 1, unstored.pk: 1}


@pytest.mark.parametrize("partners", [3, 30])
def test_period_values_take_constant_queries(partners, django_assert_max_num_queries):
    for _ in range(partners):
        _signals(PartnerFactory(), 1)
    first_two = list(Partner.objects.order_by("pk").values_list("pk", flat=True)[:2])
    kpi_period_snapshots_store(period=Q3, partners=Partner.objects.filter(pk__in=first_two), now=AFTER_Q3)
    keys = ["portal_logins", "win_rate", "sentiment", "active_certifications"]
    # Snapshots, then for unstored partners: partners, activities, latest values, deals, certifications.
    with django_assert_max_num_queries(6):
        values = period_values(period=Q3, keys=keys, partners=Partner.objects.all(), now=AFTER_Q3)
    assert len(values["portal_logins"]) == partners


@pytest.mark.parametrize("partners", [3, 30])
def test_storing_takes_constant_queries(partners, django_assert_max_num_queries):
    for _ in range(partners):
        _signals(PartnerFactory(), 1)
    # Partner ids, custom KPIs; per chunk: the registry's tables, certifications by role, partners, the insert.
    with django_assert_max_num_queries(13):
        kpi_period_snapshots_store(period=Q3, now=AFTER_Q3)
    assert KpiPeriodSnapshot.objects.count() == partners


def test_storing_in_chunks_gives_the_same_values():
    partners = [PartnerFactory() for _ in range(5)]
    for index, partner in enumerate(partners):
        _signals(partner, index + 1)
    assert kpi_period_snapshots_store(period=Q3, now=AFTER_Q3, chunk_size=2) == 5
    stored = dict(KpiPeriodSnapshot.objects.values_list("partner_id", "values__portal_logins"))
    assert stored == {partner.pk: index + 1 for index, partner in enumerate(partners)}


def test_latest_closed_quarter_and_month_are_stored_once():
    PartnerFactory()
    assert kpi_periods_snapshot_closed(now=AFTER_Q3) == {"2026-Q3": 1, "2026-09": 1}
    assert kpi_periods_snapshot_closed(now=AFTER_Q3) == {"2026-Q3": 0, "2026-09": 0}
    assert set(KpiPeriodSnapshot.objects.values_list("period", flat=True)) == {"2026-Q3", "2026-09"}


def test_snapshot_command():
    partner = PartnerFactory(quarterly_revenue_target=Decimal("10000"))
    _signals(partner, 2)
    out = StringIO()
    with time_machine.travel(AFTER_Q3, tick=False):
        call_command("snapshot_kpi_periods", "--period", "2026-Q3", "--period", "2026-08", stdout=out)
        assert out.getvalue().splitlines() == ["2026-Q3: 1 partner(s) stored", "2026-08: 1 partner(s) stored"]
        out = StringIO()
        call_command("snapshot_kpi_periods", stdout=out)
        assert out.getvalue().splitlines() == ["2026-Q3: 0 partner(s) stored", "2026-09: 1 partner(s) stored"]
        with pytest.raises(CommandError, match="Not closed yet: 2026-Q4"):
            call_command("snapshot_kpi_periods", "--period", "2026-Q4")
        with pytest.raises(CommandError, match="is not a period"):
            call_command("snapshot_kpi_periods", "--period", "2026-Q7")
    assert KpiPeriodSnapshot.objects.get(period="2026-08").values["portal_logins"] == 0
