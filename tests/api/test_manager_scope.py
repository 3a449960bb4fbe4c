"""ACCOUNT_MANAGER_SCOPE: account managers write every partner ("all"), only their own ("write-own"), or
read and write only their own ("own"); applied to every queryset and body through prm/roles.py."""

from __future__ import annotations

import pytest
from django.test import Client

from health.models import Alert
from kpis.models import BusinessReview
from prm.models import Activity, Deal, Partner

pytestmark = pytest.mark.django_db

# The manager fixture owns partner A; partner B has no owner.
EVENT = {"kind": "meeting_held", "occurred_at": "2026-10-01T00:00:00Z", "source": "crm", "external_id": "m-1"}


@pytest.fixture(params=["all", "write-own", "own"])
def scope(request, settings):
    settings.ACCOUNT_MANAGER_SCOPE = request.param
    return request.param


def test_manager_reads(api_client_for, manager, program, scope):
    client = api_client_for(manager)
    listed = {row["external_id"] for row in client.get("/api/v1/partners/").json()["results"]}
    deals = {row["partner"] for row in client.get("/api/v1/deals/").json()["results"]}
    other = client.get("/api/v1/partners/P-B/")
    if scope == "own":
        assert listed == deals == {"P-A"}
        assert other.status_code == 404
        assert client.get("/api/v1/partners/P-B/health/").status_code == 404
        assert {row["partner"] for row in client.get("/api/v1/alerts/").json()["results"]} <= {"P-A"}
    else:
        assert listed == deals == {"P-A", "P-B"}
        assert other.status_code == 200


def test_manager_writes_events_of_own_partners_only_when_held(api_client_for, manager, program, scope):
    client = api_client_for(manager)
    own = client.post("/api/v1/activities/", [{**EVENT, "partner": "P-A"}], format="json")
    assert own.status_code == 201
    other = client.post("/api/v1/activities/", [{**EVENT, "partner": "P-B", "external_id": "m-2"}], format="json")
    if scope == "all":
        assert other.status_code == 201
    else:
        assert other.status_code == 400
        assert other.json()["errors"][0] == {"index": 0, "field": "partner", "message": "Unknown partner 'P-B'."}
        assert not Activity.objects.filter(external_id="m-2").exists()


def test_manager_changes_other_partners_only_in_scope_all(api_client_for, manager, program, scope):
    client = api_client_for(manager)
    assert client.patch("/api/v1/partners/P-A/", {"region": "APAC"}, format="json").status_code == 200
    response = client.patch("/api/v1/partners/P-B/", {"region": "APAC"}, format="json")
    deal = client.patch("/api/v1/deals/b-deal/", {"stage": "approved"}, format="json")
    expected = {"all": 200, "write-own": 403, "own": 404}[scope]
    assert (response.status_code, deal.status_code) == (expected, expected)
    assert (Partner.objects.get(external_id="P-B").region == "APAC") is (scope == "all")
    assert (Deal.objects.get(external_id="b-deal").stage == "approved") is (scope == "all")


def test_manager_creates_partners_they_own_when_held(api_client_for, manager, program, scope):
    client = api_client_for(manager)
    mine = client.post("/api/v1/partners/", {"external_id": "P-M", "name": "M", "type": "msp", "owner": "manager"})
    assert mine.status_code == 201
    unowned = client.post("/api/v1/partners/", [{"external_id": "P-U", "name": "U", "type": "msp"}], format="json")
    takeover = client.post(
        "/api/v1/partners/", [{"external_id": "P-B", "name": "Mine", "type": "reseller"}], format="json"
    )
    if scope == "all":
        assert unowned.status_code == takeover.status_code == 200
    else:
        assert unowned.json()["errors"] == [
            {"index": 0, "field": "owner", "message": "You may only create partners that you own."}
        ]
        assert takeover.json()["errors"][0]["field"] == "external_id"
        assert not Partner.objects.filter(external_id="P-U").exists()
        assert Partner.objects.get(external_id="P-B").name == "Beta Systems"


def test_reviews_and_alerts_of_other_partners(api_client_for, manager, program, scope, partner_b):
    client = api_client_for(manager)
    review = client.post("/api/v1/reviews/", {"partner": "P-B", "period": "2026-Q3", "held_on": "2026-09-01"})
    assert (review.status_code == 201) is (scope == "all")
    assert BusinessReview.objects.filter(partner=partner_b).exists() is (scope == "all")
    alert = Alert.objects.filter(partner=partner_b).first()
    if alert is None:
        pytest.skip("the recompute raised no alert for partner B")
    answer = client.post(f"/api/v1/alerts/{alert.pk}/acknowledge/", {"note": "x"}, format="json")
    assert answer.status_code == {"all": 200, "write-own": 403, "own": 404}[scope]
    page = Client()
    page.force_login(manager)
    answer = page.post(f"/partners/P-B/alerts/{alert.pk}/acknowledge/", {"note": "x"})
    assert answer.status_code == {"all": 302, "write-own": 403, "own": 404}[scope]
    alert.refresh_from_db()
    assert (alert.acknowledged_at is not None) is (scope == "all")


def test_channel_admins_and_partner_users_are_not_affected(
    api_client_for, channel_admin, partner_user_a, program, settings
):
    settings.ACCOUNT_MANAGER_SCOPE = "own"
    admin = api_client_for(channel_admin)
    assert admin.get("/api/v1/partners/").json()["count"] == 2
    assert admin.post("/api/v1/activities/", [{**EVENT, "partner": "P-B"}], format="json").status_code == 201
    user = api_client_for(partner_user_a)
    assert user.get("/api/v1/partners/").json()["count"] == 1
    assert user.post("/api/v1/activities/", [{**EVENT, "partner": "P-A"}], format="json").status_code == 403


def test_an_unknown_scope_stops_start_up():
    from tests.prm.test_settings import start

    result = start({"DEBUG": "true", "ACCOUNT_MANAGER_SCOPE": "mine"})
    assert result.returncode != 0 and "ACCOUNT_MANAGER_SCOPE" in result.stderr
