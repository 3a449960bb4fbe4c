"""Admin console: changelists that do not grow queries with rows, the CSV import page, audit history."""

import datetime
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from prm.admin import EstimatedCountPaginator
from prm.admin_import import imports_dir
from prm.models import Activity, ActivityKind, Certification, Contact, Deal, Partner, PartnerMembership, Tier
from prm.roles import ACCOUNT_MANAGER
from tests.factories import (
    ActivityFactory,
    CertificationFactory,
    ContactFactory,
    DealFactory,
    PartnerFactory,
    TierFactory,
    UserFactory,
    membership,
)

DATA = Path(__file__).parent / "data"
User = get_user_model()

IMPORTABLE = ["partner", "activity", "deal", "certification"]
# Session, user, its permissions and groups, the page's rows and a few lookups (filter choices, counts).
CHANGELIST_QUERIES = {
    "tier": 7,
    "activitykind": 7,
    "partner": 11,
    "contact": 8,
    "partnermembership": 8,
    "activity": 9,
    "deal": 9,
    "certification": 8,
}
MAX_CHANGE_PAGE_QUERIES = 8


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def populate(start: int, stop: int) -> None:
    """Rows of every model, each pointing at distinct related rows (a query per row would show)."""
    for n in range(start, stop):
        tier = TierFactory(slug=f"tier-{n}")
        # Plain users: hashing a password per row would make this slow and adds nothing here.
        owner = User.objects.create(username=f"owner-{n}", is_staff=True)
        partner = PartnerFactory(external_id=f"P-{n}", name=f"Partner {n}", tier=tier, owner=owner)
        contact = ContactFactory(partner=partner, email=f"c{n}@partner.example")
        kind = ActivityKind.objects.create(key=f"custom_{n}", label=f"Custom {n}", category="engagement")
        ActivityFactory(partner=partner, kind=kind, contact=contact)
        DealFactory(partner=partner)
        CertificationFactory(partner=partner, contact=contact)
        membership(User.objects.create(username=f"member-{n}"), partner)


def changelist_queries(client: Client, model_name: str, query: str = "") -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(f"admin:prm_{model_name}_changelist") + query)
    assert response.status_code == 200, model_name
    return len(captured)


# Changelists and change pages --------------------------------------------------------------------


@pytest.mark.django_db
def test_changelists_query_count_does_not_grow_with_rows(channel_admin, django_assert_max_num_queries):
    client = client_for(channel_admin)
    populate(0, 3)
    for name in CHANGELIST_QUERIES:  # fill per-process caches (content types) before counting
        changelist_queries(client, name)
    with_3 = {name: changelist_queries(client, name) for name in CHANGELIST_QUERIES}
    populate(3, 30)
    with_30 = {name: changelist_queries(client, name) for name in CHANGELIST_QUERIES}
    assert with_30 == with_3
    for name, pinned in CHANGELIST_QUERIES.items():
        with django_assert_max_num_queries(pinned):
            response = client.get(reverse(f"admin:prm_{name}_changelist"))
        assert response.status_code == 200
    # The rows are really on the pages.
    assert b"P-29" in client.get(reverse("admin:prm_partner_changelist")).content
    assert b"custom_29" in client.get(reverse("admin:prm_activity_changelist")).content


@pytest.mark.django_db
def test_filtered_and_searched_changelists_do_not_grow(channel_admin):
    client = client_for(channel_admin)
    queries = {
        "partner": "?q=Partner&status__exact=active&owner__id__exact=1",
        "activity": "?partner=P-1&source=test&kind__category__exact=engagement&q=evt-1",
        "deal": "?partner=P-1&stage__exact=registered&q=Deal",
        "certification": "?partner=P-1&role__exact=sales",
        "contact": "?partner=P-1",
    }
    populate(0, 3)
    with_3 = {name: changelist_queries(client, name, query) for name, query in queries.items()}
    populate(3, 30)
    assert {name: changelist_queries(client, name, query) for name, query in queries.items()} == with_3


@pytest.mark.django_db
def test_partner_change_page_does_not_grow_with_its_records(channel_admin, partner_a):
    client = client_for(channel_admin)
    url = reverse("admin:prm_partner_change", args=[partner_a.pk])

    def add(count: int) -> None:
        for _ in range(count):
            contact = ContactFactory(partner=partner_a)
            ActivityFactory(partner=partner_a, contact=contact)
            DealFactory(partner=partner_a)
            CertificationFactory(partner=partner_a, contact=contact)

    add(3)
    client.get(url)  # first request of the session: per-process caches (content types) fill here
    with CaptureQueriesContext(connection) as with_3:
        response = client.get(url)
    assert response.status_code == 200
    add(27)
    with CaptureQueriesContext(connection) as with_30:
        assert client.get(url).status_code == 200
    assert len(with_30) == len(with_3) <= MAX_CHANGE_PAGE_QUERIES
    # The page links to the partner's records in their filtered lists rather than listing them.
    assert reverse("admin:prm_activity_changelist") + "?partner=P-A" in response.content.decode()


@pytest.mark.django_db
def test_partner_filter_and_exact_search_on_activities(channel_admin, partner_a, partner_b):
    ActivityFactory(partner=partner_a, external_id="mine", source="crm")
    ActivityFactory(partner=partner_b, external_id="theirs", source="crm")
    ActivityFactory(partner=partner_b, external_id="other", source="web")
    client = client_for(channel_admin)
    url = reverse("admin:prm_activity_changelist")
    page = client.get(url + "?partner=P-A")
    assert page.context["cl"].result_count == 1 and b"mine" in page.content
    assert client.get(url + "?source=crm").context["cl"].result_count == 2
    assert client.get(url + "?q=theirs").context["cl"].result_count == 1
    # A substring is not a match: the search is exact so it can use an index.
    assert client.get(url + "?q=their").context["cl"].result_count == 0
    # The filter box keeps the list's other parameters.
    assert b'<input type="hidden" name="source" value="crm">' in client.get(url + "?partner=P-A&source=crm").content


@pytest.mark.django_db
def test_partner_autocomplete_for_account_manager(manager, partner_a, partner_b):
    response = client_for(manager).get(
        reverse("admin:autocomplete"),
        {"app_label": "prm", "model_name": "activity", "field_name": "partner", "term": "Alpha"},
    )
    assert response.status_code == 200
    assert [item["text"] for item in response.json()["results"]] == ["Alpha Resellers (P-A)"]


@pytest.mark.django_db
def test_partner_list_shows_health_read_only(channel_admin, partner_a):
    Partner.objects.filter(pk=partner_a.pk).update(health_score="72.50", health_band="healthy")
    client = client_for(channel_admin)
    page = client.get(reverse("admin:prm_partner_changelist")).content.decode()
    for column in ("external_id", "name", "type", "tier", "region", "status", "owner", "health_score", "health_band"):
        assert f"column-{column}" in page
    assert '<td class="field-health_score">72.5</td><td class="field-health_band">Healthy</td>' in page
    form = client.get(reverse("admin:prm_partner_change", args=[partner_a.pk])).context["adminform"].form
    assert "health_score" not in form.fields and "health_band" not in form.fields
    assert "owner" in form.fields and "external_id" not in form.fields  # the CRM id is fixed once created


@pytest.mark.django_db
def test_staff_partner_user_sees_only_its_partner(partner_a, partner_b):
    user = UserFactory(username="staff-at-a", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_partner"))
    membership(user, partner_a)
    page = client_for(user).get(reverse("admin:prm_partner_changelist"))
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [partner_a]


@pytest.mark.django_db
def test_partner_add_and_delete_through_the_admin(channel_admin, partner_a):
    client = client_for(channel_admin)
    response = client.post(
        reverse("admin:prm_partner_add"),
        {"external_id": "P-NEW", "name": "Newcomer", "type": "msp", "region": "NA", "status": "onboarding",
         "_save": "Save"},
    )  # fmt: skip
    assert response.status_code == 302
    created = Partner.objects.get(external_id="P-NEW")
    assert created.history.get().history_user == channel_admin
    ActivityFactory(partner=partner_a)
    response = client.post(reverse("admin:prm_partner_delete", args=[partner_a.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Partner.objects.filter(pk=partner_a.pk).exists() and Activity.objects.count() == 0


# The estimated count ------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_unfiltered_count_comes_from_planner_statistics(channel_admin, partner_a, monkeypatch):
    for _ in range(30):
        ActivityFactory(partner=partner_a)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE prm_activity")
    for _ in range(5):
        ActivityFactory(partner=partner_a)  # not yet in the statistics

    monkeypatch.setattr(EstimatedCountPaginator, "estimate_above", 1)
    paginator = EstimatedCountPaginator(Activity.objects.order_by("-id"), 100)
    with CaptureQueriesContext(connection) as captured:
        assert paginator.count == 30
    assert not any("COUNT(" in query["sql"].upper() for query in captured)

    client = client_for(channel_admin)
    with CaptureQueriesContext(connection) as captured:
        page = client.get(reverse("admin:prm_activity_changelist"))
    assert page.context["cl"].result_count == 30
    assert not any("COUNT(" in query["sql"].upper() for query in captured)


@pytest.mark.postgres
@pytest.mark.django_db
def test_filtered_count_is_exact_up_to_the_threshold_then_estimated(partner_a, partner_b, monkeypatch):
    for _ in range(35):
        ActivityFactory(partner=partner_a)
    ActivityFactory(partner=partner_b)
    filtered = Activity.objects.filter(partner=partner_a).order_by("-id")
    assert EstimatedCountPaginator(filtered, 100).count == 35

    monkeypatch.setattr(EstimatedCountPaginator, "estimate_above", 10)
    with CaptureQueriesContext(connection) as captured:
        count = EstimatedCountPaginator(filtered, 100).count
    # Counting stopped after 11 rows; the planner's estimate of the filtered query is the count.
    assert "LIMIT 11" in captured[0]["sql"] and captured[1]["sql"].startswith("EXPLAIN")
    assert count >= 11


@pytest.mark.django_db
def test_small_tables_are_counted_exactly(partner_a):
    for _ in range(4):
        ActivityFactory(partner=partner_a)
    # Below the threshold (and on SQLite) statistics are not trusted: an exact count.
    assert EstimatedCountPaginator(Activity.objects.order_by("-id"), 100).count == 4


# Audit history ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_history_records_an_admin_change(channel_admin, partner_a):
    gold = TierFactory(slug="gold", name="Gold")
    client = client_for(channel_admin)
    response = client.post(
        reverse("admin:prm_partner_change", args=[partner_a.pk]),
        {
            "name": "Alpha Resellers Group",
            "type": "reseller",
            "tier": gold.pk,
            "region": "EMEA",
            "status": "probation",
            "owner": partner_a.owner_id,
            "quarterly_revenue_target": "150000",
            "joined_on": "2024-01-15",
            "agreement_start": "",
            "agreement_end": "",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    partner_a.refresh_from_db()
    assert (partner_a.name, partner_a.status, partner_a.tier) == ("Alpha Resellers Group", "probation", gold)
    latest = partner_a.history.latest("history_date")
    assert (latest.history_type, latest.history_user, latest.name) == ("~", channel_admin, "Alpha Resellers Group")
    assert latest.prev_record.name == "Alpha Resellers"
    history_page = client.get(reverse("admin:prm_partner_history", args=[partner_a.pk]))
    assert history_page.status_code == 200
    history_html = history_page.content.decode()
    assert "<strong>Status:</strong>" in history_html and "probation" in history_html
    assert f'<a href="/admin/auth/user/{channel_admin.pk}/change/">admin</a>' in history_html

    response = client.post(
        reverse("admin:prm_tier_change", args=[gold.pk]),
        {"slug": "gold", "name": "Gold Plus", "rank": "5", "min_sales_certifications": "2",
         "min_technical_certifications": "1", "min_delivery_certifications": "0",
         "min_quarterly_revenue": "", "min_health_score": "", "_save": "Save"},
    )  # fmt: skip
    assert response.status_code == 302
    tier_change = Tier.history.filter(id=gold.pk).latest("history_date")
    assert (tier_change.name, tier_change.history_user) == ("Gold Plus", channel_admin)

    kind = ActivityKind.objects.get(key="portal_login")
    response = client.post(
        reverse("admin:prm_activitykind_change", args=[kind.pk]),
        {"label": "Portal sign-in", "category": "engagement", "unit": "count", "_save": "Save"},
    )
    assert response.status_code == 302
    assert kind.history.latest("history_date").history_user == channel_admin
    assert client.get(reverse("admin:prm_activitykind_history", args=[kind.pk])).status_code == 200


# CSV import through the admin -------------------------------------------------------------------------


def upload(client: Client, model_name: str, content: bytes, filename: str = "file.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        reverse(f"admin:prm_{model_name}_import"), {"file": SimpleUploadedFile(filename, content, "text/csv")}
    )


def pending_files() -> list[Path]:
    return sorted(imports_dir().glob("*.csv"))


@pytest.fixture
def clean_imports_dir():
    for leftover in pending_files():
        leftover.unlink()
    yield
    for leftover in pending_files():
        leftover.unlink()


@pytest.mark.django_db
def test_import_button_on_changelists(channel_admin):
    client = client_for(channel_admin)
    for name in IMPORTABLE:
        page = client.get(reverse(f"admin:prm_{name}_changelist")).content.decode()
        assert f'href="{reverse(f"admin:prm_{name}_import")}"' in page
        assert client.get(reverse(f"admin:prm_{name}_import")).status_code == 200
    assert 'id="import-csv"' not in client.get(reverse("admin:prm_tier_changelist")).content.decode()


@pytest.mark.django_db
def test_admin_import_dry_run_then_confirm(channel_admin, partner_a, partner_b, clean_imports_dir):
    client = client_for(channel_admin)
    response = upload(client, "activity", (DATA / "activities.csv").read_bytes())
    assert response.status_code == 200
    result = response.context["result"]
    assert result.dry_run and result.counts == {"created": 4, "duplicates": 0}
    assert b"Confirm import" in response.content
    token = response.context["token"]
    assert pending_files() == [imports_dir() / f"{token}.csv"]
    assert Activity.objects.count() == 0  # a dry run

    # Another session cannot confirm this upload, even knowing its token.
    other = client_for(UserFactory(username="other-admin", is_staff=True, is_superuser=True))
    refused = other.post(reverse("admin:prm_activity_import"), {"token": token, "confirm": "1"})
    assert refused.status_code == 302 and Activity.objects.count() == 0

    response = client.post(reverse("admin:prm_activity_import"), {"token": token, "confirm": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:prm_activity_changelist")
    assert Activity.objects.count() == 4
    assert "created 4, duplicates 0" in [str(message) for message in response.context["messages"]][0]
    assert pending_files() == []

    # The same file again: the preview says nothing is new.
    response = upload(client, "activity", (DATA / "activities.csv").read_bytes())
    assert response.context["result"].counts == {"created": 0, "duplicates": 4}
    assert b"writes nothing new" in response.content
    client.post(reverse("admin:prm_activity_import"), {"token": response.context["token"], "cancel": "1"})
    assert pending_files() == [] and Activity.objects.count() == 4


@pytest.mark.django_db
def test_admin_import_of_every_kind(channel_admin, manager, partner_a, partner_b, clean_imports_dir):
    TierFactory(slug="gold")
    client = client_for(channel_admin)
    for name, filename, model, created in [
        ("partner", "partners.csv", Partner, 3),
        ("deal", "deals.csv", Deal, 3),
        ("certification", "certifications.csv", Certification, 3),
    ]:
        before = model.objects.count()
        response = upload(client, name, (DATA / filename).read_bytes())
        assert response.context["result"].counts["created"] == created
        client.post(reverse(f"admin:prm_{name}_import"), {"token": response.context["token"], "confirm": "1"})
        assert model.objects.count() == before + created


@pytest.mark.django_db
def test_admin_import_shows_every_error_and_writes_nothing(channel_admin, partner_a, partner_b, clean_imports_dir):
    client = client_for(channel_admin)
    response = upload(client, "activity", (DATA / "activities_bad.csv").read_bytes())
    assert response.status_code == 200
    assert "result" not in response.context
    errors = re.findall(r"<li>(line \d+, column \w+):", response.content.decode())
    assert errors == ["line 3, column kind", "line 5, column occurred_at"]
    assert b"Nothing was written" in response.content
    assert Activity.objects.count() == 0
    assert pending_files() == []


@pytest.mark.django_db
def test_admin_import_needs_add_permission(manager, clean_imports_dir):
    # Account managers may add partners, activities, deals and certifications (migration 0002) ...
    client = client_for(manager)
    for name in IMPORTABLE:
        assert client.get(reverse(f"admin:prm_{name}_import")).status_code == 200
    # ... and without the add permission of a model, its import page is forbidden.
    Group.objects.get(name=ACCOUNT_MANAGER).permissions.remove(Permission.objects.get(codename="add_deal"))
    client = client_for(manager)  # a fresh user object: permissions are cached per user instance
    assert client.get(reverse("admin:prm_deal_import")).status_code == 403
    assert upload(client, "deal", (DATA / "deals.csv").read_bytes()).status_code == 403
    assert 'id="import-csv"' not in client.get(reverse("admin:prm_deal_changelist")).content.decode()
    assert client.get(reverse("admin:prm_partner_import")).status_code == 200
    assert Deal.objects.count() == 0 and pending_files() == []


@pytest.mark.django_db
def test_partner_user_cannot_reach_the_import_page(partner_user_a):
    response = client_for(partner_user_a).get(reverse("admin:prm_activity_import"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_stale_uploads_are_swept(channel_admin, partner_a, partner_b, clean_imports_dir):
    import os

    abandoned = imports_dir() / ("x" * 43 + ".csv")
    abandoned.write_text("left behind")
    old = (datetime.datetime.now() - datetime.timedelta(days=2)).timestamp()
    os.utime(abandoned, (old, old))
    upload(client_for(channel_admin), "activity", (DATA / "activities.csv").read_bytes())
    assert not abandoned.exists()
    assert len(pending_files()) == 1


def test_models_registered():
    from django.contrib import admin

    for model in (Tier, Partner, Contact, PartnerMembership, ActivityKind, Activity, Deal, Certification):
        assert admin.site.is_registered(model)


@pytest.mark.django_db
def test_admin_import_is_scoped_to_the_users_partners(partner_a, partner_b, clean_imports_dir):
    user = UserFactory(username="staff-at-a", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_activity", "view_activity"]))
    membership(user, partner_a)
    response = upload(client_for(user), "activity", (DATA / "activities.csv").read_bytes())
    # Rows of partner B (lines 4 and 5) are refused as if B did not exist.
    errors = re.findall(r"<li>(line \d+, column \w+: [^<]*)</li>", response.content.decode())
    assert errors == [
        "line 4, column partner: Unknown partner &#x27;P-B&#x27;.",
        "line 5, column partner: Unknown partner &#x27;P-B&#x27;.",
    ]
    assert Activity.objects.count() == 0
