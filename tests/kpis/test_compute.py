"""kpis_compute: every KPI at the edges of its window, null rules, time zone, custom KPIs, query counts."""

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from kpis.registry import BUILT_IN_KPIS, UnknownKpiError, kpis_compute
from kpis.services import custom_kpi_create
from prm.models import Partner
from prm.services import activity_kind_create
from tests.factories import PartnerFactory, kind
from tests.kpis.support import (
    DATE_A,
    DAY,
    PREVIOUS_START,
    SECOND,
    START,
    A,
    W,
    activity,
    certification,
    compute,
    deal,
    review,
    value_of,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner():
    return PartnerFactory(external_id="P-1", quarterly_revenue_target=Decimal("100000"))


@pytest.fixture
def idle():
    """A partner with no data at all."""
    return PartnerFactory(external_id="P-idle", quarterly_revenue_target=Decimal("50000"))


# Activity counts and sums --------------------------------------------------------------------------


COUNT_KPIS = [
    ("portal_logins", "portal_login"),
    ("content_views", "content_view"),
    ("events_attended", "event_attended"),
    ("campaigns_joined", "campaign_joined"),
    ("trainings_completed", "training_completed"),
    ("spiff_claims", "spiff_claimed"),
    ("meetings_held", "meeting_held"),
    ("activity_intensity", "email_sent"),
]


@pytest.mark.parametrize("key, kind_key", COUNT_KPIS)
def test_count_kpis_sum_quantity_over_the_window_edges(key, kind_key, partner, idle):
    activity(partner, kind_key, A, quantity=2)  # exactly at A: counts
    activity(partner, kind_key, START + SECOND, quantity=5)  # just inside: counts
    activity(partner, kind_key, START, quantity=100)  # exactly at A - W: outside
    activity(partner, kind_key, A + SECOND, quantity=1000)  # after A: never read
    result = compute([key])[key]
    assert result == {partner.id: 7.0, idle.id: 0.0}


def test_activity_intensity_counts_every_engagement_kind_and_only_those(partner):
    activity_kind_create(key="webinar_watched", label="Webinar watched", category="engagement")
    for kind_key in ("portal_login", "content_view", "email_sent", "email_opened", "event_attended", "campaign_joined"):
        activity(partner, kind_key, A - DAY, quantity=2)
    activity(partner, "webinar_watched", A - DAY, quantity=3)  # added by an admin: engagement too
    activity(partner, "meeting_held", A - DAY, quantity=50)  # relationship: not engagement
    activity(partner, "training_completed", A - DAY, quantity=50)
    assert value_of("activity_intensity", partner) == 15.0


def test_rebate_accrued_sums_values_not_quantities(partner, idle):
    activity(partner, "rebate_accrued", A, quantity=3, value="120.50")
    activity(partner, "rebate_accrued", START + SECOND, value="79.50")
    activity(partner, "rebate_accrued", START, value="1000")
    activity(partner, "rebate_accrued", A + SECOND, value="1000")
    assert compute(["rebate_accrued"])["rebate_accrued"] == {partner.id: 200.0, idle.id: 0.0}


# Activity ratios -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, numerator, denominator",
    [
        ("email_open_rate", "email_opened", "email_sent"),
        ("training_completion_rate", "training_completed", "training_assigned"),
    ],
)
def test_count_ratios(key, numerator, denominator, partner, idle):
    activity(partner, numerator, A, quantity=3)
    activity(partner, numerator, A + SECOND, quantity=50)
    activity(partner, denominator, START + SECOND, quantity=4)
    activity(partner, denominator, START, quantity=50)
    only_numerator = PartnerFactory()
    activity(only_numerator, numerator, A)
    result = compute([key])[key]
    assert result == {partner.id: 0.75, idle.id: None, only_numerator.id: None}


def test_email_open_rate_is_null_without_emails_sent_in_the_window(partner):
    activity(partner, "email_opened", A)
    activity(partner, "email_sent", START, quantity=10)  # just outside
    assert value_of("email_open_rate", partner) is None


def test_mdf_utilization_divides_sums_of_value(partner, idle):
    activity(partner, "mdf_allocated", START + SECOND, value="1000")
    activity(partner, "mdf_allocated", START, value="9000")
    activity(partner, "mdf_claimed", A, quantity=5, value="250")
    activity(partner, "mdf_claimed", A + SECOND, value="700")
    zero_claims = PartnerFactory()
    activity(zero_claims, "mdf_allocated", A, value="500")
    result = compute(["mdf_utilization"])["mdf_utilization"]
    assert result == {partner.id: 0.25, idle.id: None, zero_claims.id: 0.0}


# Sentiment -----------------------------------------------------------------------------------------


def test_sentiment_is_the_latest_value_in_the_window(partner, idle):
    activity(partner, "sentiment_recorded", START + SECOND, value=2)
    activity(partner, "sentiment_recorded", A, value=8)
    activity(partner, "sentiment_recorded", A + SECOND, value=1)  # after A
    assert compute(["sentiment"])["sentiment"] == {partner.id: 8.0, idle.id: None}


def test_sentiment_tie_on_time_goes_to_the_highest_id(partner):
    activity(partner, "sentiment_recorded", A - DAY, value=3)
    activity(partner, "sentiment_recorded", A - DAY, value=9)
    activity(partner, "sentiment_recorded", A - DAY, value=6)  # the highest id
    activity(partner, "sentiment_recorded", A - 2 * DAY, value=10)
    assert value_of("sentiment", partner) == 6.0


def test_sentiment_outside_the_window_is_null(partner):
    activity(partner, "sentiment_recorded", START, value=7)
    activity(partner, "sentiment_recorded", A + SECOND, value=7)
    assert value_of("sentiment", partner) is None


# Deals ---------------------------------------------------------------------------------------------


def test_deals_registered_counts_any_stage_in_the_window(partner, idle):
    deal(partner, amount=1, registered_at=A)
    deal(partner, amount=1, stage="rejected", registered_at=START + SECOND)
    deal(partner, amount=1, stage="lost", registered_at=A - DAY, closed_at=A + DAY)
    deal(partner, amount=1, registered_at=START)
    deal(partner, amount=1, registered_at=A + SECOND)
    assert compute(["deals_registered"])["deals_registered"] == {partner.id: 3.0, idle.id: 0.0}


def test_open_pipeline_at_a(partner, idle):
    deal(partner, amount=100, registered_at=A - 400 * DAY)  # not windowed: any age counts
    deal(partner, amount=200, stage="approved", registered_at=A)  # registered exactly at A
    deal(partner, amount=400, stage="won", registered_at=A - DAY, closed_at=A + SECOND)  # closed after A: open at A
    deal(partner, amount=1000, stage="rejected", registered_at=A - DAY)
    deal(partner, amount=2000, stage="won", registered_at=A - DAY, closed_at=A)  # closed exactly at A
    deal(partner, amount=4000, stage="lost", registered_at=A - 9 * DAY, closed_at=A - DAY)
    deal(partner, amount=8000, registered_at=A + SECOND)  # not registered yet at A
    assert compute(["open_pipeline"])["open_pipeline"] == {partner.id: 700.0, idle.id: 0.0}


def test_pipeline_coverage_divides_by_the_target(partner, idle):
    deal(partner, amount=25000, registered_at=A - DAY)
    no_target = PartnerFactory(quarterly_revenue_target=None)
    zero_target = PartnerFactory(quarterly_revenue_target=Decimal("0"))
    for other in (no_target, zero_target):
        deal(other, amount=5000, registered_at=A - DAY)
    result = compute(["pipeline_coverage"])["pipeline_coverage"]
    assert result == {partner.id: 0.25, idle.id: 0.0, no_target.id: None, zero_target.id: None}


def test_win_rate_over_deals_closed_in_the_window(partner, idle):
    deal(partner, amount=1, stage="won", registered_at=A - 9 * DAY, closed_at=A)
    deal(partner, amount=1, stage="lost", registered_at=A - 99 * DAY, closed_at=START + SECOND)
    deal(partner, amount=1, stage="lost", registered_at=A - 99 * DAY, closed_at=A - DAY)
    deal(partner, amount=1, stage="lost", registered_at=A - 99 * DAY, closed_at=START)  # outside
    deal(partner, amount=1, stage="won", registered_at=A - 9 * DAY, closed_at=A + SECOND)  # after A
    deal(partner, amount=1, stage="approved", registered_at=A - DAY)  # open: not closed
    only_open = PartnerFactory()
    deal(only_open, amount=1, registered_at=A - DAY)
    result = compute(["win_rate"])["win_rate"]
    assert result == {partner.id: pytest.approx(1 / 3), idle.id: None, only_open.id: None}


def test_won_deal_kpis_over_the_window(partner, idle):
    # 10 days and 40.5 days from registration to win; the others are out of the window or not won.
    deal(partner, amount=300, stage="won", registered_at=A - 20 * DAY, closed_at=A - 10 * DAY)
    deal(partner, amount=500, stage="won", registered_at=START - 12 * datetime.timedelta(hours=1) + SECOND, closed_at=A)
    deal(partner, amount=100, stage="won", registered_at=START + SECOND, closed_at=START + SECOND)
    deal(partner, amount=9000, stage="won", registered_at=START - 99 * DAY, closed_at=START)
    deal(partner, amount=9000, stage="won", registered_at=A - DAY, closed_at=A + SECOND)
    deal(partner, amount=9000, stage="lost", registered_at=A - DAY, closed_at=A)
    result = compute(["partner_sourced_revenue", "average_deal_size", "sales_cycle_days"])
    assert result["partner_sourced_revenue"] == {partner.id: 900.0, idle.id: 0.0}
    assert result["average_deal_size"] == {partner.id: 300.0, idle.id: None}
    cycles = [10, (W * 86400 + 12 * 3600 - 1) / 86400, 0]
    assert result["sales_cycle_days"][partner.id] == pytest.approx(sum(cycles) / 3)
    assert result["sales_cycle_days"][idle.id] is None


def test_pipeline_trend(partner, idle):
    # Current window (A - W, A]: 600 (the rejected deal does not count); previous (A - 2W, A - W]: 400.
    deal(partner, amount=500, registered_at=A)
    deal(partner, amount=100, stage="won", registered_at=START + SECOND, closed_at=A + DAY)
    deal(partner, amount=999, stage="rejected", registered_at=A - DAY)
    deal(partner, amount=300, stage="lost", registered_at=START, closed_at=A - DAY)  # A - W: previous window
    deal(partner, amount=100, registered_at=PREVIOUS_START + SECOND)
    deal(partner, amount=999, registered_at=PREVIOUS_START)  # before both windows
    deal(partner, amount=999, registered_at=A + SECOND)  # after A
    only_current = PartnerFactory()
    deal(only_current, amount=100, registered_at=A - DAY)
    only_previous = PartnerFactory()
    deal(only_previous, amount=100, registered_at=START - DAY)
    result = compute(["pipeline_trend"])["pipeline_trend"]
    assert result == {partner.id: 0.5, idle.id: None, only_current.id: None, only_previous.id: -1.0}


# Certifications ------------------------------------------------------------------------------------


def test_active_certifications_on_the_boundaries(partner, idle):
    certification(partner, role="sales", earned_on=DATE_A)  # earned today: active
    certification(partner, role="technical", earned_on=DATE_A - 400 * DAY, expires_on=DATE_A + DAY)
    certification(partner, role="sales", earned_on=DATE_A - 900 * DAY)  # never expires
    certification(partner, role="delivery", earned_on=DATE_A - 400 * DAY, expires_on=DATE_A)  # expired today
    certification(partner, role="delivery", earned_on=DATE_A + DAY)  # not earned yet
    result = compute(["active_certifications", "certification_role_coverage"])
    assert result["active_certifications"] == {partner.id: 3.0, idle.id: 0.0}
    assert result["certification_role_coverage"] == {partner.id: pytest.approx(2 / 3), idle.id: 0.0}


def test_all_three_roles_cover_fully(partner):
    for role in ("sales", "technical", "delivery"):
        certification(partner, role=role, earned_on=DATE_A - DAY)
    assert value_of("certification_role_coverage", partner) == 1.0


@pytest.mark.parametrize(
    "zone, as_of, active",
    [
        # 03:30 UTC on Oct 2 is still Oct 1 in New York: earned Oct 2 is not active yet, expires Oct 2 still is.
        ("America/New_York", datetime.datetime(2026, 10, 2, 3, 30, tzinfo=datetime.UTC), {"expires"}),
        ("UTC", datetime.datetime(2026, 10, 2, 3, 30, tzinfo=datetime.UTC), {"earned"}),
        # 11:30 UTC on Oct 1 is already Oct 2 in Auckland.
        ("Pacific/Auckland", datetime.datetime(2026, 10, 1, 11, 30, tzinfo=datetime.UTC), {"earned"}),
        ("UTC", datetime.datetime(2026, 10, 1, 11, 30, tzinfo=datetime.UTC), {"expires"}),
    ],
)
def test_certification_dates_use_the_project_time_zone(zone, as_of, active):
    day = datetime.date(2026, 10, 2)
    earned = PartnerFactory(external_id="earned")
    certification(earned, earned_on=day)
    expires = PartnerFactory(external_id="expires")
    certification(expires, earned_on=day - 100 * DAY, expires_on=day)
    with override_settings(TIME_ZONE=zone):
        result = compute(["active_certifications"], as_of=as_of)["active_certifications"]
    assert {p.external_id for p in (earned, expires) if result[p.id] == 1.0} == active


# Business reviews ----------------------------------------------------------------------------------


def test_days_since_business_review(partner, idle):
    review(partner, held_on=DATE_A - 40 * DAY)
    review(partner, held_on=DATE_A - 10 * DAY)
    review(partner, held_on=DATE_A + DAY)  # planned: after A
    today = PartnerFactory()
    review(today, held_on=DATE_A)
    only_future = PartnerFactory()
    review(only_future, held_on=DATE_A + DAY)
    result = compute(["days_since_business_review"])["days_since_business_review"]
    assert result == {partner.id: 10.0, idle.id: None, today.id: 0.0, only_future.id: None}


def test_days_since_business_review_counts_from_the_local_date(partner):
    review(partner, held_on=datetime.date(2026, 10, 1))
    as_of = datetime.datetime(2026, 10, 2, 2, 0, tzinfo=datetime.UTC)
    assert value_of("days_since_business_review", partner, as_of=as_of) == 1.0
    with override_settings(TIME_ZONE="America/Los_Angeles"):
        assert value_of("days_since_business_review", partner, as_of=as_of) == 0.0


# Custom KPIs ---------------------------------------------------------------------------------------


def _custom(key, numerator, aggregate, denominator=None, denominator_aggregate=None):
    return custom_kpi_create(
        key=key,
        label=key,
        category="relationship",
        numerator_kind=kind(numerator),
        numerator_aggregate=aggregate,
        denominator_kind=kind(denominator) if denominator else None,
        denominator_aggregate=denominator_aggregate,
    )


def test_custom_kpis(partner, idle):
    _custom("c_count", "meeting_held", "count")
    _custom("c_sum", "rebate_accrued", "sum")
    _custom("c_avg", "sentiment_recorded", "avg")
    _custom("c_min", "sentiment_recorded", "min")
    _custom("c_max", "sentiment_recorded", "max")
    _custom("c_latest", "sentiment_recorded", "latest")
    _custom("c_ratio", "meeting_held", "count", "event_attended", "count")
    _custom("c_mixed", "rebate_accrued", "sum", "meeting_held", "count")
    activity(partner, "meeting_held", A, quantity=3)
    activity(partner, "meeting_held", START, quantity=50)
    activity(partner, "rebate_accrued", START + SECOND, value="10.25")
    activity(partner, "rebate_accrued", A, value="20")
    activity(partner, "rebate_accrued", A + SECOND, value="500")
    activity(partner, "sentiment_recorded", A - 3 * DAY, value=9)
    activity(partner, "sentiment_recorded", A - 2 * DAY, value=4)
    activity(partner, "sentiment_recorded", A - 2 * DAY, value=5)
    activity(partner, "sentiment_recorded", A + SECOND, value=0)
    activity(partner, "event_attended", START, quantity=7)  # outside: the ratio's divisor is 0
    keys = ["c_count", "c_sum", "c_avg", "c_min", "c_max", "c_latest", "c_ratio", "c_mixed"]
    result = compute(keys)
    assert {key: result[key][partner.id] for key in keys} == {
        "c_count": 3.0,
        "c_sum": 30.25,
        "c_avg": 6.0,
        "c_min": 4.0,
        "c_max": 9.0,
        "c_latest": 5.0,
        "c_ratio": None,
        "c_mixed": pytest.approx(30.25 / 3),
    }
    assert {key: result[key][idle.id] for key in keys} == {
        "c_count": 0.0,
        "c_sum": 0.0,
        "c_avg": None,
        "c_min": None,
        "c_max": None,
        "c_latest": None,
        "c_ratio": None,
        "c_mixed": None,
    }


def test_custom_ratio_with_a_divisor(partner):
    _custom("c_ratio", "meeting_held", "count", "event_attended", "count")
    activity(partner, "meeting_held", A, quantity=3)
    activity(partner, "event_attended", A, quantity=4)
    assert value_of("c_ratio", partner) == 0.75


def test_inactive_or_unknown_kpis_are_refused(partner):
    custom = _custom("c_count", "meeting_held", "count")
    custom.is_active = False
    custom.save()
    with pytest.raises(UnknownKpiError):
        compute(["c_count"])
    with pytest.raises(UnknownKpiError):
        compute(["portal_logins", "no_such_kpi"])


# Every partner, nulls and zeros --------------------------------------------------------------------

NULL_WITHOUT_DATA = {
    "email_open_rate",
    "training_completion_rate",
    "win_rate",
    "average_deal_size",
    "pipeline_trend",
    "sales_cycle_days",
    "mdf_utilization",
    "sentiment",
    "days_since_business_review",
}


def test_partners_without_data_get_zero_totals_and_null_rates(partner, idle):
    activity(partner, "portal_login", A)
    result = compute(list(BUILT_IN_KPIS))
    for key in BUILT_IN_KPIS:
        expected = None if key in NULL_WITHOUT_DATA else 0.0
        assert result[key][idle.id] == expected, key
        assert isinstance(result[key][partner.id], float | None)
    # pipeline_coverage = 0 open pipeline / 50000 target.
    assert result["pipeline_coverage"][idle.id] == 0.0


def test_values_are_floats(partner):
    activity(partner, "rebate_accrued", A, value="12.34")
    deal(partner, amount="1000.10", registered_at=A - DAY)
    result = compute(["rebate_accrued", "open_pipeline", "portal_logins"])
    assert [type(result[key][partner.id]) for key in result] == [float, float, float]
    assert result["rebate_accrued"][partner.id] == 12.34


def test_only_the_given_partners_are_computed(partner, idle):
    others = PartnerFactory.create_batch(3)
    activity(others[1], "portal_login", A, quantity=4)
    subset = Partner.objects.filter(id__gte=others[0].id, id__lte=others[1].id)
    result = compute(["portal_logins", "sentiment"], partners=subset)
    assert result == {
        "portal_logins": {others[0].id: 0.0, others[1].id: 4.0},
        "sentiment": {others[0].id: None, others[1].id: None},
    }


def test_an_empty_partner_set_reads_nothing_else():
    with CaptureQueriesContext(connection) as queries:
        result = compute(list(BUILT_IN_KPIS), partners=Partner.objects.none())
    assert result == {key: {} for key in BUILT_IN_KPIS}
    assert len(queries) <= 1


def test_as_of_must_be_aware():
    with pytest.raises(ValueError):
        kpis_compute(
            keys=["portal_logins"], as_of=datetime.datetime(2026, 10, 1), window_days=90, partners=Partner.objects.all()
        )


# Queries -------------------------------------------------------------------------------------------


def _population(n: int) -> None:
    for index in range(n):
        p = PartnerFactory()
        activity(p, "portal_login", A - DAY, quantity=index + 1)
        activity(p, "sentiment_recorded", A - DAY, value=5)
        activity(p, "meeting_held", A - DAY)
        deal(p, amount=100, stage="won", registered_at=A - 9 * DAY, closed_at=A - DAY)
        certification(p, earned_on=DATE_A - DAY)
        review(p, held_on=DATE_A - DAY)


def _queries_for_everything() -> tuple[int, list[str]]:
    keys = [*BUILT_IN_KPIS, "c_avg", "c_latest"]
    with CaptureQueriesContext(connection) as queries:
        result = compute(keys)
    assert all(len(values) == Partner.objects.count() for values in result.values())
    return len(queries), [q["sql"] for q in queries.captured_queries]


def test_query_count_does_not_grow_with_partners():
    _custom("c_avg", "meeting_held", "avg")
    _custom("c_latest", "meeting_held", "latest")
    _population(3)
    few, _ = _queries_for_everything()
    _population(27)
    many, statements = _queries_for_everything()
    # Custom KPI lookup, partners, activities, latest values, deals, certifications, reviews.
    assert few == many == 7
    assert sum('FROM "prm_activity"' in sql for sql in statements) == 2


def test_only_the_tables_the_keys_need_are_read(partner):
    with CaptureQueriesContext(connection) as queries:
        compute(["portal_logins", "email_open_rate", "activity_intensity"])
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 2
    assert not any(table in sql for sql in statements for table in ("prm_deal", "prm_certification", "kpis_"))
    with CaptureQueriesContext(connection) as queries:
        compute(["win_rate"])
    assert len(queries) == 2 and "prm_deal" in queries.captured_queries[1]["sql"]


def test_a_sliced_partner_set_keeps_its_slice(partner, idle):
    PartnerFactory.create_batch(3)
    newest_two = Partner.objects.order_by("-id")[:2]
    activity(partner, "portal_login", A)
    result = compute(["portal_logins"], partners=newest_two)["portal_logins"]
    assert set(result) == set(Partner.objects.order_by("-id").values_list("id", flat=True)[:2])
    assert partner.id not in result
