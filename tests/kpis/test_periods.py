"""Calendar periods: parsing, boundaries in the project's time zone (daylight saving included), KPI windows."""

import datetime
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from kpis.periods import MONTH, QUARTER, Period, PeriodError, latest_closed
from prm.models import Partner
from tests.factories import PartnerFactory
from tests.kpis.support import activity, certification, compute

UTC = datetime.UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def test_parse_and_name():
    assert Period.parse("2026-Q3") == Period(QUARTER, 2026, 3)
    assert Period.parse(" 2026-07 ") == Period(MONTH, 2026, 7)
    assert str(Period(QUARTER, 2026, 3)) == "2026-Q3" and str(Period(MONTH, 2026, 7)) == "2026-07"
    assert Period.parse("2026-Q4").label == "Q4 2026" and Period.parse("2026-02").label == "February 2026"


@pytest.mark.parametrize("text", ["2026-Q5", "2026-Q0", "2026-13", "2026-7", "26-Q1", "2026Q1", "", "Q3-2026", None])
def test_parse_refuses_what_names_no_period(text):
    with pytest.raises(PeriodError):
        Period.parse(text)


def test_neighbours_cross_years():
    assert Period.parse("2026-Q1").previous() == Period.parse("2025-Q4")
    assert Period.parse("2025-Q4").next() == Period.parse("2026-Q1")
    assert Period.parse("2026-01").previous() == Period.parse("2025-12")
    assert Period.parse("2026-Q1").back(3) == [Period.parse(p) for p in ("2026-Q1", "2025-Q4", "2025-Q3")]
    assert Period.parse("2026-Q3").months_in() == [Period.parse(p) for p in ("2026-07", "2026-08", "2026-09")]


def test_days_of_quarters_and_months():
    assert [Period.parse(f"2026-Q{n}").days for n in range(1, 5)] == [90, 91, 92, 92]
    assert Period.parse("2024-Q1").days == 91  # leap year
    assert Period.parse("2026-02").days == 28 and Period.parse("2024-02").days == 29


def test_boundaries_in_utc():
    q3 = Period.parse("2026-Q3")
    assert q3.start == datetime.datetime(2026, 7, 1, tzinfo=UTC)
    assert q3.end == datetime.datetime(2026, 10, 1, tzinfo=UTC)
    assert q3.as_of == datetime.datetime(2026, 9, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert q3.length == datetime.timedelta(days=92)
    assert q3.first_day == datetime.date(2026, 7, 1) and q3.last_day == datetime.date(2026, 9, 30)


@override_settings(TIME_ZONE="Europe/Paris")
def test_boundaries_follow_the_project_time_zone_and_daylight_saving():
    q1 = Period.parse("2026-Q1")  # CET (+01:00) to CEST (+02:00): one hour shorter
    assert q1.start == datetime.datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert q1.end == datetime.datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
    assert q1.length == datetime.timedelta(days=90) - datetime.timedelta(hours=1)
    q4 = Period.parse("2026-Q4")  # CEST to CET: one hour longer
    assert q4.start == datetime.datetime(2026, 9, 30, 22, 0, tzinfo=UTC)
    assert q4.length == datetime.timedelta(days=92, hours=1)
    march = Period.parse("2026-03")
    assert march.end.astimezone(PARIS) == datetime.datetime(2026, 4, 1, tzinfo=PARIS)


@override_settings(TIME_ZONE="America/New_York")
def test_the_period_of_an_instant_is_read_in_the_project_time_zone():
    # 02:00 UTC on 1 October is still 30 September in New York: Q3 there.
    instant = datetime.datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
    assert Period.containing(instant) == Period.parse("2026-Q3")
    assert Period.containing(instant, MONTH) == Period.parse("2026-09")
    assert latest_closed(QUARTER, instant) == Period.parse("2026-Q2")
    assert Period.parse("2026-Q3").end == datetime.datetime(2026, 10, 1, 4, 0, tzinfo=UTC)
    assert Period.parse("2026-Q3").end.astimezone(NEW_YORK).hour == 0


def test_measured_at_is_the_whole_period_once_closed_else_period_to_date():
    q3 = Period.parse("2026-Q3")
    after = datetime.datetime(2026, 11, 5, tzinfo=UTC)
    assert q3.measured_at(after) == (q3.as_of, q3.length)
    during = datetime.datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
    as_of, window = q3.measured_at(during)
    assert as_of == during and as_of - window < q3.start <= as_of - window + datetime.timedelta(microseconds=1)
    assert q3.is_closed(after) and not q3.is_closed(during) and q3.has_started(during)


@pytest.mark.django_db
def test_the_period_window_is_exactly_the_period():
    partner = PartnerFactory()
    q3 = Period.parse("2026-Q3")
    activity(partner, "portal_login", q3.start - datetime.timedelta(microseconds=1))  # Q2's last instant
    activity(partner, "portal_login", q3.start)  # Q3's first instant
    activity(partner, "portal_login", q3.as_of)  # Q3's last instant
    activity(partner, "portal_login", q3.end)  # Q4's first instant
    values = compute(["portal_logins"], as_of=q3.as_of, window_days=q3.length)
    assert values["portal_logins"][partner.id] == 2


@pytest.mark.django_db
@override_settings(TIME_ZONE="Europe/Paris")
def test_the_period_window_follows_daylight_saving_to_the_hour():
    partner = PartnerFactory()
    q1 = Period.parse("2026-Q1")
    # 23:30 UTC on 31 December is 00:30 on 1 January in Paris: Q1. A 90 x 24 h window would miss it.
    activity(partner, "portal_login", datetime.datetime(2025, 12, 31, 23, 30, tzinfo=UTC))
    # 22:30 UTC on 31 March is 00:30 on 1 April in Paris (CEST): Q2.
    activity(partner, "portal_login", datetime.datetime(2026, 3, 31, 22, 30, tzinfo=UTC))
    values = compute(["portal_logins"], partners=Partner.objects.all(), as_of=q1.as_of, window_days=q1.length)
    assert values["portal_logins"][partner.id] == 1


@pytest.mark.django_db
def test_dated_kpis_read_the_period_last_day():
    partner = PartnerFactory()
    q3 = Period.parse("2026-Q3")
    certification(partner, earned_on=datetime.date(2026, 9, 30))  # active on Q3's last day
    certification(partner, earned_on=datetime.date(2026, 10, 1))  # earned in Q4
    certification(partner, earned_on=datetime.date(2026, 1, 1), expires_on=datetime.date(2026, 9, 30))  # expired
    values = compute(["active_certifications"], as_of=q3.as_of, window_days=q3.length)
    assert values["active_certifications"][partner.id] == 1


def test_a_window_must_be_positive():
    from kpis.registry import _window

    with pytest.raises(ValueError):
        _window(datetime.datetime(2026, 1, 1, tzinfo=UTC), datetime.timedelta(0))
