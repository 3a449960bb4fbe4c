"""REST API v1: activities, deals, certifications and activity kinds (ingest, validation, filters, throttling)."""

import datetime
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings

from prm.models import Activity, ActivityKind, Certification, Contact, Deal
from tests.factories import T0, ActivityFactory, CertificationFactory, ContactFactory, DealFactory, PartnerFactory, kind

pytestmark = pytest.mark.django_db


ACTIVITIES = "/api/v1/activities/"
DEALS = "/api/v1/deals/"
CERTIFICATIONS = "/api/v1/certifications/"
KINDS = "/api/v1/activity-kinds/"


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def event(n: int, **changes) -> dict:
    return {
        "partner": "P-A",
        "kind": "portal_login",
        "occurred_at": "2026-10-01T09:30:00+02:00",
        "source": "portal",
        "external_id": f"evt-{n}",
        **changes,
    }


# Activities: writes --------------------------------------------------------------------------------


def test_post_a_list_of_activities_is_idempotent(admin_api, partner_a):
    body = [event(n) for n in range(50)] + [event(50, kind="mdf_claimed", value=1250.5, contact_email="Ann@A.example")]
    response = admin_api.post(ACTIVITIES, body)
    assert response.status_code == 201, response.content
    assert response.json() == {"created": 51, "duplicates": 0}
    assert Activity.objects.count() == 51

    response = admin_api.post(ACTIVITIES, body)
    assert response.status_code == 201
    assert response.json() == {"created": 0, "duplicates": 51}
    assert Activity.objects.count() == 51

    claimed = Activity.objects.get(external_id="evt-50")
    assert claimed.value == Decimal("1250.50")
    assert claimed.contact.email.lower() == "ann@a.example"
    assert claimed.occurred_at == datetime.datetime(2026, 10, 1, 7, 30, tzinfo=datetime.UTC)


def test_a_stored_event_sent_again_with_a_new_contact_changes_nothing(admin_api, partner_a):
    """An event already stored is a duplicate whole: its contact is not created, its row not changed."""
    assert admin_api.post(ACTIVITIES, [event(1)]).json() == {"created": 1, "duplicates": 0}
    again = [event(1, contact_email="new@a.example"), event(2, contact_email="other@a.example")]
    assert admin_api.post(ACTIVITIES, again).json() == {"created": 1, "duplicates": 1}
    assert list(Contact.objects.values_list("email", flat=True)) == ["other@a.example"]
    assert Activity.objects.get(external_id="evt-1").contact is None
    assert Activity.objects.get(external_id="evt-2").contact.email == "other@a.example"


def test_the_same_external_id_from_two_sources_is_two_events(admin_api, partner_a):
    body = [event(1, source="crm"), event(1, source="portal")]
    assert admin_api.post(ACTIVITIES, body).json() == {"created": 2, "duplicates": 0}
    assert admin_api.post(ACTIVITIES, body).json() == {"created": 0, "duplicates": 2}


def test_post_one_activity_object(admin_api, partner_a):
    response = admin_api.post(ACTIVITIES, event(1, quantity=3, metadata={"page": "/deals"}))
    assert response.status_code == 201
    assert response.json() == {"created": 1, "duplicates": 0}
    stored = Activity.objects.get()
    assert (stored.quantity, stored.metadata, stored.partner) == (3, {"page": "/deals"}, partner_a)


def test_one_bad_item_in_the_middle_writes_nothing(admin_api, partner_a):
    body = [event(n) for n in range(5)]
    body[2]["quantity"] = 0
    response = admin_api.post(ACTIVITIES, body)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"index": 2, "field": "quantity", "message": "Ensure this value is greater than or equal to 1."}]
    }
    assert not Activity.objects.exists()


@pytest.mark.parametrize(
    "bad_item, field",
    [
        ({"occurred_at": "2026-10-01T09:30:00"}, "occurred_at"),
        ({"kind": "mdf_claimed", "value": "NaN"}, "value"),
        ({"kind": "sentiment_recorded", "value": 11}, "value"),
        ({"kind": "telepathy"}, "kind"),
        ({"partner": "P-NOPE"}, "partner"),
        ({"external_id": "evt-0"}, "external_id"),  # the same (source, external_id) as item 0
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_activity_lists_are_refused_whole(admin_api, partner_a, bad_item, field):
    body = [event(0), event(1), {**event(2), **bad_item}]
    response = admin_api.post(ACTIVITIES, body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(error["index"], error["field"]) for error in errors] == [(2, field)]
    assert errors[0]["message"]
    assert not Activity.objects.exists()


def test_a_single_object_reports_errors_by_field(admin_api, partner_a):
    response = admin_api.post(ACTIVITIES, event(1, occurred_at="2026-10-01T09:30:00", kind="telepathy"))
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"occurred_at", "kind"}
    assert body["kind"] == ["Unknown activity kind 'telepathy'."]
    assert not Activity.objects.exists()


def test_more_than_5000_items_are_refused(admin_api, partner_a):
    response = admin_api.post(ACTIVITIES, [event(n) for n in range(settings.API_MAX_LIST_ITEMS + 1)])
    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == -1
    assert "5000" in response.json()["errors"][0]["message"]
    assert not Activity.objects.exists()


@pytest.mark.slow
def test_5000_items_are_accepted(admin_api, partner_a):
    response = admin_api.post(ACTIVITIES, [event(n) for n in range(settings.API_MAX_LIST_ITEMS)])
    assert response.json() == {"created": 5000, "duplicates": 0}
    assert Activity.objects.count() == 5000


def test_a_json_nan_literal_is_refused(admin_api, partner_a):
    raw = '[{"partner": "P-A", "kind": "mdf_claimed", "occurred_at": "2026-10-01T00:00:00Z", "source": "s", '
    raw += '"external_id": "e1", "value": NaN}]'
    response = admin_api.generic("POST", ACTIVITIES, raw, content_type="application/json")
    assert response.status_code == 400
    assert not Activity.objects.exists()


@pytest.mark.parametrize("body", [[], "text", 42])
def test_bodies_that_are_not_objects_are_refused(admin_api, partner_a, body):
    response = admin_api.post(ACTIVITIES, body)
    assert response.status_code == 400
    assert not Activity.objects.exists()


# Activities: list and filters ------------------------------------------------------------------------


@pytest.fixture
def signals(partner_a, partner_b):
    hour = datetime.timedelta(hours=1)
    ActivityFactory(partner=partner_a, external_id="a-login-before", occurred_at=T0 - hour)
    ActivityFactory(partner=partner_a, external_id="a-login-at", occurred_at=T0)
    ActivityFactory(partner=partner_a, external_id="a-login-after", occurred_at=T0 + hour, source="crm")
    ActivityFactory(partner=partner_a, external_id="a-sent", kind=kind("email_sent"), occurred_at=T0 + hour)
    ActivityFactory(partner=partner_a, external_id="a-mdf", kind=kind("mdf_claimed"), value=10, occurred_at=T0)
    ActivityFactory(partner=partner_b, external_id="b-login", occurred_at=T0)


def external_ids(response) -> set[str]:
    return {row["external_id"] for row in results(response)}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("partner=P-B", {"b-login"}),
        ("partner=P-A&kind=email_sent,mdf_claimed", {"a-sent", "a-mdf"}),
        ("partner=P-A&kind=portal_login", {"a-login-before", "a-login-at", "a-login-after"}),
        ("category=incentive", {"a-mdf"}),
        ("source=crm", {"a-login-after"}),
        # The KPI window (A - W, A]: since excluded, until included.
        ("partner=P-A&kind=portal_login&since=2026-10-01T00:00:00Z", {"a-login-after"}),
        ("partner=P-A&kind=portal_login&until=2026-10-01T00:00:00Z", {"a-login-before", "a-login-at"}),
        ("kind=portal_login&since=2026-09-30T23:00:00Z&until=2026-10-01T00:00:00Z", {"a-login-at", "b-login"}),
        # The same instant in another offset; and a '+' sent unencoded (it arrives as a space).
        ("partner=P-A&kind=portal_login&until=2026-10-01T02:00:00%2B02:00", {"a-login-before", "a-login-at"}),
        ("partner=P-A&kind=portal_login&until=2026-10-01T02:00:00+02:00", {"a-login-before", "a-login-at"}),
    ],
)
def test_activity_filters(admin_api, signals, query, expected):
    assert external_ids(admin_api.get(f"{ACTIVITIES}?{query}")) == expected


@pytest.mark.parametrize(
    "query, field",
    [
        ("since=yesterday", "since"),
        ("until=2026-10-01T00:00:00", "until"),  # naive: refused, it would depend on the server's zone
        ("category=gossip", "category"),
    ],
)
def test_activity_filter_values_that_do_not_parse_answer_400(admin_api, signals, query, field):
    response = admin_api.get(f"{ACTIVITIES}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_activity_rows(admin_api, signals):
    ContactFactory(partner=Activity.objects.get(external_id="a-mdf").partner, email="c@a.example")
    Activity.objects.filter(external_id="a-mdf").update(contact=Contact.objects.get(email="c@a.example"))
    row = results(admin_api.get(f"{ACTIVITIES}?kind=mdf_claimed"))[0]
    assert row["partner"] == "P-A"
    assert row["kind"] == "mdf_claimed"
    assert row["occurred_at"] == "2026-10-01T00:00:00Z"
    assert row["value"] == 10
    assert row["contact_email"] == "c@a.example"
    assert results(admin_api.get(f"{ACTIVITIES}?kind=email_sent"))[0]["contact_email"] is None


def test_activities_are_listed_newest_first(admin_api, signals):
    times = [row["occurred_at"] for row in results(admin_api.get(f"{ACTIVITIES}?partner=P-A"))]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize("rows", [3, 30])
def test_activity_list_queries_do_not_grow_with_rows(admin_api, partner_a, django_assert_max_num_queries, rows):
    contact = ContactFactory(partner=partner_a)
    for n in range(rows):
        ActivityFactory(partner=PartnerFactory(), contact=contact if n % 2 else None)
    with django_assert_max_num_queries(4):
        assert len(results(admin_api.get(f"{ACTIVITIES}?page_size=100"))) == rows


# Deals -----------------------------------------------------------------------------------------------


def deal(external_id: str = "D-1", **changes) -> dict:
    return {
        "external_id": external_id,
        "partner": "P-A",
        "name": "Big one",
        "amount": 50000,
        "stage": "registered",
        "registered_at": "2026-09-01T00:00:00Z",
        **changes,
    }


def test_post_one_deal_creates_it_and_a_second_time_answers_400(admin_api, partner_a):
    response = admin_api.post(DEALS, deal())
    assert response.status_code == 201, response.content
    assert response.json()["external_id"] == "D-1"
    assert response.json()["partner"] == "P-A"
    assert response.json()["amount"] == 50000

    response = admin_api.post(DEALS, deal(name="Other name"))
    assert response.status_code == 400
    assert "external_id" in response.json()
    assert Deal.objects.get().name == "Big one"


@pytest.mark.parametrize(
    "changes",
    [
        {"stage": "won"},  # a won deal needs closed_at
        {"stage": "lost", "closed_at": None},
        {"stage": "approved", "closed_at": "2026-09-20T00:00:00Z"},  # only won or lost deals close
        {"stage": "won", "closed_at": "2026-08-01T00:00:00Z"},  # before registered_at
        {"stage": "won", "closed_at": "2026-09-20T00:00:00"},  # naive
    ],
)
def test_deal_closed_at_rules(admin_api, partner_a, changes):
    response = admin_api.post(DEALS, deal(**changes))
    assert response.status_code == 400
    assert list(response.json()) == ["closed_at"]
    assert not Deal.objects.exists()


def test_deal_list_upserts_by_external_id(admin_api, partner_a):
    body = [deal("D-1"), deal("D-2"), deal("D-3")]
    response = admin_api.post(DEALS, body)
    assert response.status_code == 200
    assert response.json() == {"created": 3, "updated": 0, "unchanged": 0}

    body[1] = deal("D-2", stage="won", closed_at="2026-09-15T00:00:00Z")
    response = admin_api.post(DEALS, [*body, deal("D-4")])
    assert response.json() == {"created": 1, "updated": 1, "unchanged": 2}
    won = Deal.objects.get(external_id="D-2")
    assert (won.stage, won.closed_at) == ("won", datetime.datetime(2026, 9, 15, tzinfo=datetime.UTC))
    assert Deal.objects.count() == 4


def test_deal_list_with_a_bad_item_writes_nothing(admin_api, partner_a):
    response = admin_api.post(DEALS, [deal("D-1"), deal("D-2", amount=-5), deal("D-1", name="again")])
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "amount"), (2, "external_id")]
    assert not Deal.objects.exists()


def test_patch_deal(admin_api, partner_a, partner_b):
    DealFactory(external_id="D-9", partner=partner_a, registered_at=T0)
    response = admin_api.patch(f"{DEALS}D-9/", {"stage": "won", "closed_at": "2026-10-05T00:00:00Z"})
    assert response.status_code == 200, response.content
    assert response.json()["stage"] == "won"
    assert response.json()["closed_at"] == "2026-10-05T00:00:00Z"

    # Reopening needs closed_at cleared too, as the closed_at rules say.
    assert admin_api.patch(f"{DEALS}D-9/", {"stage": "approved"}).status_code == 400
    assert admin_api.patch(f"{DEALS}D-9/", {"stage": "approved", "closed_at": None}).status_code == 200
    assert admin_api.patch(f"{DEALS}D-9/", {"partner": "P-B"}).json()["partner"] == "P-B"
    assert admin_api.patch(f"{DEALS}D-9/", {"external_id": "D-10"}).status_code == 400
    stored = Deal.objects.get()
    assert (stored.external_id, stored.stage, stored.closed_at, stored.partner) == ("D-9", "approved", None, partner_b)


@pytest.fixture
def pipeline(partner_a, partner_b):
    day = datetime.timedelta(days=1)
    DealFactory(external_id="open", partner=partner_a, registered_at=T0 - 10 * day)
    DealFactory(external_id="rejected", partner=partner_a, stage="rejected", registered_at=T0 - 10 * day)
    DealFactory(external_id="won-at", partner=partner_a, stage="won", registered_at=T0 - 20 * day, closed_at=T0)
    DealFactory(
        external_id="lost-later", partner=partner_a, stage="lost", registered_at=T0 - 20 * day, closed_at=T0 + day
    )
    DealFactory(external_id="future", partner=partner_b, registered_at=T0 + day)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("partner=P-B", {"future"}),
        ("stage=won", {"won-at"}),
        ("stage=won,lost", {"won-at", "lost-later"}),
        # after excludes the instant given, before includes it (open and rejected were registered at 09-21).
        ("registered_after=2026-09-21T00:00:00Z", {"future"}),
        ("registered_after=2026-09-20T23:59:59Z", {"open", "rejected", "future"}),
        ("registered_before=2026-09-21T00:00:00Z", {"open", "rejected", "won-at", "lost-later"}),
        ("registered_before=2026-09-11T00:00:00Z", {"won-at", "lost-later"}),
        ("closed_after=2026-10-01T00:00:00Z", {"lost-later"}),
        ("closed_before=2026-10-01T00:00:00Z", {"won-at"}),
        # Open at T0: registered by then, not rejected, not closed by then (won-at closed exactly at T0).
        ("open_at=2026-10-01T00:00:00Z", {"open", "lost-later"}),
    ],
)
def test_deal_filters(admin_api, pipeline, query, expected):
    assert {row["external_id"] for row in results(admin_api.get(f"{DEALS}?{query}"))} == expected


@pytest.mark.parametrize("query, field", [("stage=won,maybe", "stage"), ("open_at=soon", "open_at")])
def test_deal_filter_values_that_do_not_parse_answer_400(admin_api, pipeline, query, field):
    response = admin_api.get(f"{DEALS}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("rows", [3, 30])
def test_deal_list_queries_do_not_grow_with_rows(admin_api, django_assert_max_num_queries, rows):
    DealFactory.create_batch(rows)
    with django_assert_max_num_queries(4):
        assert len(results(admin_api.get(f"{DEALS}?page_size=100"))) == rows


# Certifications --------------------------------------------------------------------------------------


def certification(**changes) -> dict:
    return {"partner": "P-A", "name": "Cloud Architect", "role": "technical", "earned_on": "2026-01-10", **changes}


def test_certifications_upsert_by_natural_key(admin_api, partner_a):
    body = [certification(), certification(contact_email="eve@a.example"), certification(role="sales")]
    response = admin_api.post(CERTIFICATIONS, body)
    assert response.status_code == 200, response.content
    assert response.json() == {"created": 3, "updated": 0, "unchanged": 0}
    assert Contact.objects.filter(partner=partner_a, email="eve@a.example").count() == 1

    body[1]["expires_on"] = "2028-01-10"
    response = admin_api.post(CERTIFICATIONS, body)
    assert response.json() == {"created": 0, "updated": 1, "unchanged": 2}
    assert Certification.objects.count() == 3
    assert Certification.objects.get(contact__email="eve@a.example").expires_on == datetime.date(2028, 1, 10)

    response = admin_api.post(CERTIFICATIONS, certification(role="sales"))
    assert response.json() == {"created": 0, "updated": 0, "unchanged": 1}


def test_certification_errors(admin_api, partner_a):
    response = admin_api.post(CERTIFICATIONS, certification(expires_on="2026-01-10"))
    assert response.status_code == 400
    assert list(response.json()) == ["expires_on"]

    response = admin_api.post(CERTIFICATIONS, [certification(), certification(role="janitor"), certification()])
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "role"), (2, "contact_email")]
    assert not Certification.objects.exists()


@pytest.fixture
def credentials(partner_a, partner_b):
    CertificationFactory(partner=partner_a, name="expired", earned_on=datetime.date(2025, 1, 1), expires_on=T0.date())
    CertificationFactory(partner=partner_a, name="lasting", role="technical", earned_on=datetime.date(2025, 1, 1))
    CertificationFactory(partner=partner_a, name="fresh", earned_on=T0.date())
    CertificationFactory(partner=partner_b, name="b-cert", earned_on=datetime.date(2025, 6, 1))


@pytest.mark.parametrize(
    "query, expected",
    [
        ("partner=P-B", {"b-cert"}),
        ("role=technical", {"lasting"}),
        # Active on d: earned_on <= d and (no expiry or expires_on > d).
        ("partner=P-A&active_on=2026-10-01", {"lasting", "fresh"}),
        ("partner=P-A&active_on=2026-09-30", {"expired", "lasting"}),
    ],
)
def test_certification_filters(admin_api, credentials, query, expected):
    assert {row["name"] for row in results(admin_api.get(f"{CERTIFICATIONS}?{query}"))} == expected


def test_certification_filter_value_that_does_not_parse_answers_400(admin_api, credentials):
    response = admin_api.get(f"{CERTIFICATIONS}?active_on=someday")
    assert response.status_code == 400
    assert list(response.json()) == ["active_on"]


@pytest.mark.parametrize("rows", [3, 30])
def test_certification_list_queries_do_not_grow_with_rows(admin_api, django_assert_max_num_queries, rows):
    for n in range(rows):
        partner = PartnerFactory()
        CertificationFactory(partner=partner, contact=ContactFactory(partner=partner) if n % 2 else None)
    with django_assert_max_num_queries(4):
        rows_listed = results(admin_api.get(f"{CERTIFICATIONS}?page_size=100"))
    assert len(rows_listed) == rows
    assert sum(1 for row in rows_listed if row["contact_email"]) == rows // 2


# Activity kinds ---------------------------------------------------------------------------------------


def test_activity_kinds_are_listed_for_everyone_signed_in(api_client_for, partner_user_a):
    keys = [row["key"] for row in results(api_client_for(partner_user_a).get(f"{KINDS}?page_size=100"))]
    assert "portal_login" in keys and "sentiment_recorded" in keys


def test_only_channel_admins_create_activity_kinds(api_client_for, admin_api, manager):
    new_kind = {"key": "webinar_hosted", "label": "Webinar hosted", "category": "engagement"}
    assert api_client_for(manager).post(KINDS, new_kind).status_code == 403
    assert not ActivityKind.objects.filter(key="webinar_hosted").exists()

    response = admin_api.post(KINDS, new_kind)
    assert response.status_code == 201
    assert response.json() == {**new_kind, "unit": "count"}
    assert ActivityKind.objects.filter(key="webinar_hosted", category="engagement").exists()

    response = admin_api.post(KINDS, new_kind)
    assert response.status_code == 400
    assert list(response.json()) == ["key"]
    response = admin_api.post(KINDS, {"key": "bad key", "label": "x", "category": "gossip"})
    assert set(response.json()) == {"key", "category"}


@pytest.mark.parametrize("rows", [3, 30])
def test_activity_kind_list_queries_do_not_grow_with_rows(admin_api, django_assert_max_num_queries, rows):
    ActivityKind.objects.all().delete()
    ActivityKind.objects.bulk_create(
        [ActivityKind(key=f"k{n}", label=f"K {n}", category="engagement") for n in range(rows)]
    )
    with django_assert_max_num_queries(4):
        assert len(results(admin_api.get(f"{KINDS}?page_size=100"))) == rows


# Throttling --------------------------------------------------------------------------------------------


def test_bulk_posts_have_their_own_rate(admin_api, partner_a):
    cache.clear()
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "bulk": "2/minute"}
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}):
        assert admin_api.post(ACTIVITIES, [event(1)]).status_code == 201
        assert admin_api.post(DEALS, [deal()]).status_code == 200
        assert admin_api.post(CERTIFICATIONS, [certification()]).status_code == 429
        # Reads are not bulk writes: only the user rate applies to them.
        assert admin_api.get(ACTIVITIES).status_code == 200
    cache.clear()
    assert Certification.objects.count() == 0
