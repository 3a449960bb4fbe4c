"""Admin console of the kpis app: lists stay at a fixed number of queries, forms validate and fill in."""

import datetime

import pytest
import time_machine
from django.urls import reverse

from kpis.models import ActionItem, BusinessReview, CustomKpi
from kpis.services import custom_kpi_create, review_create
from tests.factories import PartnerFactory, UserFactory, kind

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 10, 1, 9, 30, tzinfo=datetime.UTC)


@pytest.fixture
def admin_client_logged(client, channel_admin):
    client.force_login(channel_admin)
    return client


def _rows(n: int) -> None:
    owner = UserFactory(is_staff=True)
    for index in range(n):
        partner = PartnerFactory()
        review_create(
            partner=partner,
            period="2026-Q3",
            held_on=datetime.date(2026, 9, 1),
            created_by=owner,
            action_items=[{"description": "one", "owner_id": owner.id}, {"description": "two", "status": "done"}],
        )
        custom_kpi_create(
            key=f"custom_{index}",
            label=f"Custom {index}",
            category="engagement",
            numerator_kind=kind("email_opened"),
            denominator_kind=kind("email_sent"),
            denominator_aggregate="count",
        )


@pytest.mark.parametrize("rows", [3, 30])
@pytest.mark.parametrize("model", ["customkpi", "businessreview", "actionitem"])
def test_changelists_do_not_query_per_row(admin_client_logged, django_assert_max_num_queries, rows, model):
    _rows(rows)
    # Session, user, groups, permissions, counts, the page; the review list's date hierarchy adds two.
    with django_assert_max_num_queries({"customkpi": 7, "businessreview": 10, "actionitem": 8}[model]):
        response = admin_client_logged.get(reverse(f"admin:kpis_{model}_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == rows * (2 if model == "actionitem" else 1)


def test_review_list_shows_open_items(admin_client_logged):
    _rows(1)
    response = admin_client_logged.get(reverse("admin:kpis_businessreview_changelist"))
    assert response.context["cl"].result_list[0].open_items == 1


@pytest.mark.parametrize("items", [2, 20])
def test_review_change_page_queries_do_not_grow_with_items(admin_client_logged, django_assert_max_num_queries, items):
    owner = UserFactory(is_staff=True)
    review = review_create(
        partner=PartnerFactory(),
        period="2026-Q3",
        held_on=datetime.date(2026, 9, 1),
        action_items=[{"description": f"item {i}", "owner_id": owner.id} for i in range(items)],
    )
    # The owner choices are read once for all rows, not once per row.
    with django_assert_max_num_queries(11):
        response = admin_client_logged.get(reverse("admin:kpis_businessreview_change", args=[review.id]))
    assert response.status_code == 200
    assert response.content.decode().count('name="action_items-') >= items


def test_custom_kpi_form_explains_a_built_in_key(admin_client_logged):
    response = admin_client_logged.post(
        reverse("admin:kpis_customkpi_add"),
        {
            "key": "sentiment",
            "label": "Mine",
            "category": "relationship",
            "better": "higher",
            "numerator_aggregate": "avg",
            "numerator_kind": kind("sentiment_recorded").id,
            "denominator_kind": kind("meeting_held").id,
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["key"] == ["'sentiment' is a built-in KPI; choose another key."]
    assert errors["denominator_aggregate"] == ["Give both the denominator kind and its aggregate, or neither."]
    assert not CustomKpi.objects.exists()


def test_adding_a_review_in_the_admin_fills_in_author_partner_and_completion(admin_client_logged, channel_admin):
    partner = PartnerFactory()
    with time_machine.travel(NOW, tick=False):
        response = admin_client_logged.post(
            reverse("admin:kpis_businessreview_add"),
            {
                "partner": partner.id,
                "period": "2026-Q3",
                "held_on": "2026-09-30",
                "attendees": "",
                "notes": "",
                "action_items-TOTAL_FORMS": "2",
                "action_items-INITIAL_FORMS": "0",
                "action_items-MIN_NUM_FORMS": "0",
                "action_items-MAX_NUM_FORMS": "1000",
                "action_items-0-description": "Call back",
                "action_items-0-status": "open",
                "action_items-1-description": "Sent the deck",
                "action_items-1-status": "done",
            },
        )
    assert response.status_code == 302, response.context["adminform"].form.errors
    review = BusinessReview.objects.get()
    assert review.created_by == channel_admin and review.partner == partner
    items = {item.description: item for item in ActionItem.objects.all()}
    assert {item.partner_id for item in items.values()} == {partner.id}
    assert items["Call back"].completed_at is None
    assert items["Sent the deck"].completed_at == NOW


def test_an_action_item_cannot_point_at_another_partners_review(admin_client_logged):
    review = review_create(partner=PartnerFactory(), period="2026-Q3", held_on=datetime.date(2026, 9, 1))
    response = admin_client_logged.post(
        reverse("admin:kpis_actionitem_add"),
        {"partner": PartnerFactory().id, "review": review.id, "description": "x", "status": "open", "kpi": ""},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["review"] == ["This review was held with another partner."]
