"""REST API of the kpis app: the KPI catalogue and business reviews (scoping, nested action items)."""

import datetime

import pytest
import time_machine
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from kpis.models import ActionItem, BusinessReview
from kpis.services import custom_kpi_create, review_create
from tests.factories import PartnerFactory, UserFactory, kind

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 10, 1, 9, 30, tzinfo=datetime.UTC)


# The catalogue ------------------------------------------------------------------------------------


def test_catalogue_lists_built_ins_then_active_custom_kpis(api_client_for, partner_user_a):
    custom_kpi_create(key="webinars", label="Webinars", category="engagement", numerator_kind=kind("event_attended"))
    response = api_client_for(partner_user_a).get("/api/v1/kpis/", {"page_size": 100})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 25
    assert body["results"][0] == {
        "key": "portal_logins",
        "label": "Portal logins",
        "category": "engagement",
        "unit": "count",
        "better": "higher",
        "description": "How many times people at the partner signed in to the partner portal in the window.",
        "windowed": True,
        "custom": False,
    }
    assert body["results"][-1]["key"] == "webinars" and body["results"][-1]["custom"] is True
    by_key = {kpi["key"]: kpi for kpi in body["results"]}
    assert (by_key["sales_cycle_days"]["better"], by_key["sales_cycle_days"]["unit"]) == ("lower", "days")
    assert by_key["open_pipeline"]["windowed"] is False


def test_catalogue_is_paginated(admin_api):
    body = admin_api.get("/api/v1/kpis/", {"page_size": 10}).json()
    assert body["count"] == 24 and len(body["results"]) == 10 and body["next"]


def test_one_kpi_by_key(admin_api):
    assert admin_api.get("/api/v1/kpis/win_rate/").json()["label"] == "Win rate"
    assert admin_api.get("/api/v1/kpis/no_such_kpi/").status_code == 404


def test_catalogue_needs_credentials():
    assert APIClient().get("/api/v1/kpis/").status_code == 401


# Business reviews ----------------------------------------------------------------------------------


@pytest.fixture
def reviews(partner_a, partner_b, manager):
    a = review_create(
        partner=partner_a,
        period="2026-Q3",
        held_on=datetime.date(2026, 9, 20),
        created_by=manager,
        action_items=[{"description": "Plan the Q4 campaign", "owner_id": manager.id}],
    )
    b = review_create(partner=partner_b, period="2026-Q2", held_on=datetime.date(2026, 6, 30))
    return a, b


def _review_body(**overrides):
    body = {
        "partner": "P-A",
        "period": "2026-Q3",
        "held_on": "2026-09-28",
        "attendees": "Alice (partner), Manager (vendor)",
        "notes": "Pipeline review.",
        "action_items": [
            {
                "description": "Run a joint webinar",
                "owner": "manager",
                "due_on": "2026-10-15",
                "kpi": "events_attended",
                "target_value": 3,
            },
            {"description": "Send the price list", "status": "done"},
        ],
    }
    body.update(overrides)
    return body


def test_manager_records_a_review_with_action_items(api_client_for, manager, partner_a):
    with time_machine.travel(NOW, tick=False):
        response = api_client_for(manager).post("/api/v1/reviews/", _review_body(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert {k: body[k] for k in ("partner", "period", "held_on", "created_by", "created_at")} == {
        "partner": "P-A",
        "period": "2026-Q3",
        "held_on": "2026-09-28",
        "created_by": "manager",
        "created_at": "2026-10-01T09:30:00Z",
    }
    first, second = body["action_items"]
    assert (first["owner"], first["kpi"], first["target_value"], first["status"]) == (
        "manager",
        "events_attended",
        3.0,
        "open",
    )
    assert first["completed_at"] is None
    assert (second["owner"], second["status"], second["completed_at"]) == (None, "done", "2026-10-01T09:30:00Z")
    assert ActionItem.objects.filter(partner=partner_a, review_id=body["id"]).count() == 2


@pytest.mark.parametrize(
    "overrides, errors",
    [
        ({"partner": "P-nope"}, {"partner": ["Unknown partner 'P-nope'."]}),
        ({"period": "2026-Q5"}, {"period": ["Use a year and quarter, e.g. 2026-Q3."]}),
        (
            {"action_items": [{"description": "x"}, {"description": "y", "owner": "ghost", "kpi": "vibes"}]},
            {"action_items": {"1": {"owner": ["Unknown user 'ghost'."], "kpi": ["Unknown KPI 'vibes'."]}}},
        ),
        (
            {"action_items": [{"owner": "manager"}]},
            {"action_items": {"0": {"description": ["Required for a new action item."]}}},
        ),
    ],
)
def test_invalid_reviews_write_nothing(api_client_for, manager, partner_a, overrides, errors):
    response = api_client_for(manager).post("/api/v1/reviews/", _review_body(**overrides), format="json")
    assert response.status_code == 400
    assert response.json() == errors
    assert not BusinessReview.objects.exists() and not ActionItem.objects.exists()


def test_partner_user_reads_only_its_own_reviews(api_client_for, partner_user_a, reviews):
    a, b = reviews
    client = api_client_for(partner_user_a)
    body = client.get("/api/v1/reviews/").json()
    assert [r["id"] for r in body["results"]] == [a.id]
    assert body["results"][0]["action_items"][0]["owner"] == "manager"
    assert client.get(f"/api/v1/reviews/{a.id}/").status_code == 200
    assert client.get(f"/api/v1/reviews/{b.id}/").status_code == 404
    # Filtering by another partner reveals nothing either.
    assert client.get("/api/v1/reviews/", {"partner": "P-B"}).json()["count"] == 0


def test_partner_user_cannot_write(api_client_for, partner_user_a, reviews):
    a, _ = reviews
    client = api_client_for(partner_user_a)
    assert client.post("/api/v1/reviews/", _review_body(), format="json").status_code == 403
    assert client.patch(f"/api/v1/reviews/{a.id}/", {"notes": "mine"}, format="json").status_code == 403
    a.refresh_from_db()
    assert a.notes == "" and BusinessReview.objects.count() == 2


def test_a_user_without_role_sees_nothing(api_client_for, reviews):
    stranger = UserFactory(username="stranger")
    client = api_client_for(stranger)
    assert client.get("/api/v1/reviews/").json()["count"] == 0
    assert client.get(f"/api/v1/reviews/{reviews[0].id}/").status_code == 404
    assert client.post("/api/v1/reviews/", _review_body(), format="json").status_code == 403


def test_reviews_need_credentials(reviews):
    assert APIClient().get("/api/v1/reviews/").status_code == 401


def test_filters_and_order(admin_api, reviews, partner_a):
    a, b = reviews
    older = review_create(partner=partner_a, period="2026-Q1", held_on=datetime.date(2026, 3, 31))
    assert [r["id"] for r in admin_api.get("/api/v1/reviews/").json()["results"]] == [a.id, b.id, older.id]
    assert [r["id"] for r in admin_api.get("/api/v1/reviews/", {"partner": "P-A"}).json()["results"]] == [
        a.id,
        older.id,
    ]
    held = admin_api.get("/api/v1/reviews/", {"held_before": "2026-06-30"}).json()["results"]
    assert [r["id"] for r in held] == [b.id, older.id]


def test_patch_changes_fields_and_action_items(api_client_for, manager, reviews):
    a, _ = reviews
    item = a.action_items.get()
    client = api_client_for(manager)
    with time_machine.travel(NOW, tick=False):
        response = client.patch(
            f"/api/v1/reviews/{a.id}/",
            {
                "notes": "Follow-up agreed.",
                "action_items": [{"id": item.id, "status": "done"}, {"description": "Certify two engineers"}],
            },
            format="json",
        )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["notes"] == "Follow-up agreed." and body["period"] == "2026-Q3"
    done, added = body["action_items"]
    assert (done["id"], done["status"], done["completed_at"], done["description"]) == (
        item.id,
        "done",
        "2026-10-01T09:30:00Z",
        "Plan the Q4 campaign",
    )
    assert (added["description"], added["status"]) == ("Certify two engineers", "open")
    assert ActionItem.objects.get(id=added["id"]).partner_id == a.partner_id

    # Reopening clears the completion time.
    reopened = client.patch(f"/api/v1/reviews/{a.id}/", {"action_items": [{"id": item.id, "status": "open"}]})
    assert reopened.json()["action_items"][0]["completed_at"] is None


def test_patch_refuses_items_of_other_reviews_and_writes_nothing(api_client_for, manager, reviews):
    a, b = reviews
    other_item = ActionItem.objects.create(partner=b.partner, review=b, description="B's")
    response = api_client_for(manager).patch(
        f"/api/v1/reviews/{a.id}/",
        {"notes": "changed", "action_items": [{"id": other_item.id, "status": "done"}]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"action_items": [f"Item 0: no action item {other_item.id} in this review."]}
    a.refresh_from_db()
    other_item.refresh_from_db()
    assert a.notes == "" and other_item.status == "open"


def test_the_partner_of_a_review_cannot_change(api_client_for, manager, reviews):
    a, _ = reviews
    response = api_client_for(manager).patch(f"/api/v1/reviews/{a.id}/", {"partner": "P-B"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"partner": ["The partner of a review cannot be changed."]}


def test_put_is_not_offered(admin_api, reviews):
    assert admin_api.put(f"/api/v1/reviews/{reviews[0].id}/", _review_body(), format="json").status_code == 405


def _many_reviews(n: int) -> None:
    owner = UserFactory(username="owner", is_staff=True)
    for index in range(n):
        partner = PartnerFactory()
        review_create(
            partner=partner,
            period="2026-Q3",
            held_on=datetime.date(2026, 9, 1) + datetime.timedelta(days=index % 20),
            created_by=owner,
            action_items=[{"description": "one", "owner_id": owner.id}, {"description": "two"}],
        )


@pytest.mark.parametrize("rows", [3, 30])
def test_review_list_queries_do_not_grow(api_client_for, partner_user_a, manager, django_assert_max_num_queries, rows):
    _many_reviews(rows)
    for user in (manager, partner_user_a):
        client = api_client_for(user)
        # Token, groups, partner membership, count, page, action items (with owners).
        with django_assert_max_num_queries(6):
            response = client.get("/api/v1/reviews/", {"page_size": 100})
        assert response.status_code == 200
    assert response.json()["count"] == 0  # the partner user: none of these are its partner's
    assert api_client_for(manager).get("/api/v1/reviews/", {"page_size": 100}).json()["count"] == rows


@pytest.mark.parametrize("items", [1, 20])
def test_review_create_queries_do_not_grow_with_items(
    api_client_for, manager, partner_a, django_assert_max_num_queries, items
):
    body = _review_body(action_items=[{"description": f"item {i}", "owner": "manager"} for i in range(items)])
    client = api_client_for(manager)
    with django_assert_max_num_queries(13):
        response = client.post("/api/v1/reviews/", body, format="json")
    assert response.status_code == 201
    assert len(response.json()["action_items"]) == items


def test_action_items_need_their_own_permission(api_client_for, partner_a):
    writer = UserFactory(username="writer", is_staff=True)
    writer.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_businessreview", "change_businessreview"])
    )
    client = api_client_for(writer)
    assert client.post("/api/v1/reviews/", _review_body(), format="json").status_code == 403
    assert not BusinessReview.objects.exists()
    response = client.post("/api/v1/reviews/", _review_body(action_items=[]), format="json")
    assert response.status_code == 201
    added = client.patch(f"/api/v1/reviews/{response.json()['id']}/", {"action_items": [{"description": "x"}]})
    assert added.status_code == 403 and not ActionItem.objects.exists()


def test_reviews_api_flags_overdue_items(admin_api, partner_a, manager):
    review = review_create(
        partner=partner_a,
        period="2026-Q3",
        held_on=datetime.date(2026, 9, 20),
        action_items=[
            {"description": "Late", "due_on": NOW.date() - datetime.timedelta(days=1)},
            {"description": "Later", "due_on": NOW.date() + datetime.timedelta(days=1)},
            {"description": "Done", "due_on": NOW.date() - datetime.timedelta(days=1), "status": "done"},
        ],
    )
    with time_machine.travel(NOW, tick=False):
        body = admin_api.get(f"/api/v1/reviews/{review.pk}/").json()
    assert [(item["description"], item["overdue"]) for item in body["action_items"]] == [
        ("Late", True),
        ("Later", False),
        ("Done", False),
    ]


def test_reviews_filter_by_period(admin_api, partner_a):
    q2 = review_create(partner=partner_a, period="2026-Q2", held_on=datetime.date(2026, 7, 2))
    review_create(partner=partner_a, period="2026-Q3", held_on=datetime.date(2026, 10, 2))
    body = admin_api.get("/api/v1/reviews/", {"period": "2026-Q2"}).json()
    assert [review["id"] for review in body["results"]] == [q2.pk]
