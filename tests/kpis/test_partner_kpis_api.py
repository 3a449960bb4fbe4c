"""GET /api/v1/partners/{external_id}/kpis/: values of a period, previous period, targets, attainment, scoping."""

import datetime
from decimal import Decimal

import pytest
import time_machine
from rest_framework.test import APIClient

from kpis.models import KpiTarget
from kpis.periods import Period
from kpis.services import kpi_period_snapshots_store, review_create
from prm.models import Partner
from tests.factories import TierFactory
from tests.kpis.support import activity, deal

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
NOW = datetime.datetime(2026, 11, 15, 10, 0, tzinfo=UTC)  # in Q4: Q3 is closed
Q2, Q3 = Period.parse("2026-Q2"), Period.parse("2026-Q3")


def _won(partner, period: Period, *, amount, days: int):
    registered = period.start + datetime.timedelta(days=1)
    return deal(
        partner,
        amount=amount,
        stage="won",
        registered_at=registered,
        closed_at=registered + datetime.timedelta(days=days),
    )


@pytest.fixture
def program(partner_a, partner_b):
    gold = TierFactory(slug="gold", name="Gold", rank=2)
    Partner.objects.filter(pk__in=[partner_a.pk, partner_b.pk]).update(tier=gold)
    for day in range(4):
        activity(partner_a, "portal_login", Q3.start + datetime.timedelta(days=day))
    activity(partner_a, "portal_login", Q2.start + datetime.timedelta(days=5))
    _won(partner_a, Q3, amount=30000, days=60)
    _won(partner_a, Q2, amount=10000, days=30)
    KpiTarget.objects.create(kpi="portal_logins", period="2026-Q3", tier=gold, value=Decimal("5"))
    KpiTarget.objects.create(kpi="sales_cycle_days", period="2026-Q3", tier=gold, value=Decimal("50"))
    KpiTarget.objects.create(kpi="sales_cycle_days", period="2026-Q3", partner=partner_a, value=Decimal("45"))
    return gold


def _by_kpi(body):
    return {line["kpi"]: line for line in body["kpis"]}


def test_a_closed_quarter_against_targets_and_the_previous_quarter(admin_api, program):
    with time_machine.travel(NOW, tick=False):
        response = admin_api.get("/api/v1/partners/P-A/kpis/", {"period": "2026-Q3"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert {k: body[k] for k in ("partner", "period", "previous_period", "start", "end", "as_of", "closed")} == {
        "partner": "P-A",
        "period": "2026-Q3",
        "previous_period": "2026-Q2",
        "start": "2026-07-01T00:00:00Z",
        "end": "2026-10-01T00:00:00Z",
        "as_of": "2026-09-30T23:59:59.999999Z",
        "closed": True,
    }
    lines = _by_kpi(body)
    assert len(lines) == 24
    assert lines["portal_logins"] == {
        "kpi": "portal_logins",
        "label": "Portal logins",
        "category": "engagement",
        "unit": "count",
        "better": "higher",
        "value": 4.0,
        "previous_value": 1.0,
        "target": 5.0,
        "target_source": "tier",
        "attainment": 0.8,
        "met": False,
        "trend": 3.0,
        "direction": "improving",
    }
    # Lower is better, and the partner's own target overrides the tier's: 45 / 60.
    cycle = lines["sales_cycle_days"]
    assert (cycle["value"], cycle["previous_value"], cycle["target"], cycle["target_source"]) == (
        60.0,
        30.0,
        45.0,
        "partner",
    )
    assert cycle["attainment"] == pytest.approx(0.75)
    assert (cycle["met"], cycle["trend"], cycle["direction"]) == (False, 30.0, "worsening")
    assert (lines["sentiment"]["value"], lines["sentiment"]["target"], lines["sentiment"]["attainment"]) == (
        None,
        None,
        None,
    )
    assert lines["sentiment"]["direction"] is None


def test_the_other_partner_gets_its_tier_target(admin_api, program):
    with time_machine.travel(NOW, tick=False):
        lines = _by_kpi(admin_api.get("/api/v1/partners/P-B/kpis/", {"period": "2026-Q3"}).json())
    assert (lines["sales_cycle_days"]["target"], lines["sales_cycle_days"]["target_source"]) == (50.0, "tier")
    assert lines["portal_logins"]["value"] == 0.0 and lines["portal_logins"]["attainment"] == 0.0


def test_default_is_the_current_quarter_to_date(admin_api, program, partner_a):
    activity(partner_a, "portal_login", datetime.datetime(2026, 10, 3, tzinfo=UTC))
    with time_machine.travel(NOW, tick=False):
        body = admin_api.get("/api/v1/partners/P-A/kpis/").json()
    assert (body["period"], body["previous_period"], body["closed"]) == ("2026-Q4", "2026-Q3", False)
    assert body["as_of"] == "2026-11-15T10:00:00Z"
    lines = _by_kpi(body)
    assert (lines["portal_logins"]["value"], lines["portal_logins"]["previous_value"]) == (1.0, 4.0)
    assert lines["portal_logins"]["target"] is None


def test_a_month_and_a_kpi_selection(admin_api, program):
    with time_machine.travel(NOW, tick=False):
        body = admin_api.get(
            "/api/v1/partners/P-A/kpis/", {"period": "2026-07", "kpi": "portal_logins,win_rate"}
        ).json()
    assert body["previous_period"] == "2026-06"
    assert [line["kpi"] for line in body["kpis"]] == ["portal_logins", "win_rate"]
    assert body["kpis"][0]["value"] == 4.0


def test_stored_quarters_are_served_as_stored(admin_api, program, partner_a):
    with time_machine.travel(NOW, tick=False):
        kpi_period_snapshots_store(period=Q3)
        activity(partner_a, "portal_login", Q3.start + datetime.timedelta(days=50))  # late data
        lines = _by_kpi(admin_api.get("/api/v1/partners/P-A/kpis/", {"period": "2026-Q3"}).json())
    assert lines["portal_logins"]["value"] == 4.0


@pytest.mark.parametrize(
    "params, errors",
    [
        (
            {"period": "2026-Q5"},
            {"period": ["'2026-Q5' is not a period: give a quarter like 2026-Q3 or a month like 2026-07."]},
        ),
        ({"period": "2027-Q1"}, {"period": ["2027-Q1 has not started yet."]}),
        ({"kpi": "win_rate,vibes"}, {"kpi": ["Unknown KPI(s): vibes."]}),
    ],
)
def test_bad_parameters(admin_api, program, params, errors):
    with time_machine.travel(NOW, tick=False):
        response = admin_api.get("/api/v1/partners/P-A/kpis/", params)
    assert (response.status_code, response.json()) == (400, errors)


def test_partner_users_read_only_their_own_partner(api_client_for, partner_user_a, program):
    client = api_client_for(partner_user_a)
    with time_machine.travel(NOW, tick=False):
        assert client.get("/api/v1/partners/P-A/kpis/").status_code == 200
        assert client.get("/api/v1/partners/P-B/kpis/").status_code == 404
        assert client.get("/api/v1/partners/P-nope/kpis/").status_code == 404


def test_credentials_are_needed(program):
    assert APIClient().get("/api/v1/partners/P-A/kpis/").status_code == 401


@pytest.mark.parametrize("reviews", [1, 10])
def test_query_count_does_not_grow_with_data(admin_api, program, partner_a, reviews, django_assert_max_num_queries):
    for index in range(reviews):
        review_create(partner=partner_a, period="2026-Q3", held_on=datetime.date(2026, 7, 1 + index))
        activity(partner_a, "sentiment_recorded", Q3.start + datetime.timedelta(days=index), value=7)
    # Auth (token, user), partner, membership and groups, custom KPIs; two periods of the registry's
    # tables (and stored snapshots for the closed one), targets.
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(19):
        response = admin_api.get("/api/v1/partners/P-A/kpis/", {"period": "2026-Q3"})
    assert _by_kpi(response.json())["sentiment"]["value"] == 7.0
