"""REST API v1: authentication, and the partners endpoints (list, filters, ordering, create, upsert, change)."""

import datetime

import pytest
from rest_framework.test import APIClient

from prm.models import Partner
from tests.factories import PartnerFactory, TierFactory, UserFactory

pytestmark = pytest.mark.django_db


PARTNERS = "/api/v1/partners/"


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["external_id"] for row in response.json()["results"]]


# Authentication -----------------------------------------------------------------------------------


def test_token_endpoint_gives_a_token_that_authenticates(channel_admin, partner_a):
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": "admin", "password": "pw-for-tests-1"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert names(client.get(PARTNERS)) == ["P-A"]


def test_token_endpoint_refuses_a_wrong_password(channel_admin):
    response = APIClient().post("/api/v1/auth/token/", {"username": "admin", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert "token" not in response.json()


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", PARTNERS),
        ("post", PARTNERS),
        ("get", f"{PARTNERS}P-A/"),
        ("get", "/api/v1/activities/"),
        ("post", "/api/v1/activities/"),
        ("get", "/api/v1/deals/"),
        ("get", "/api/v1/certifications/"),
        ("get", "/api/v1/activity-kinds/"),
    ],
)
def test_no_credentials_answers_401(partner_a, method, path):
    response = getattr(APIClient(), method)(path, {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_a_bad_token_answers_401(partner_a):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get(PARTNERS).status_code == 401


def test_schema_is_served_without_credentials():
    response = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ["/api/v1/partners/", "/api/v1/partners/{external_id}/", "/api/v1/activities/", "/api/v1/deals/"]:
        assert path in paths
    assert APIClient().get("/api/v1/docs/").status_code == 200


# List, fields, filters, ordering ------------------------------------------------------------------


def test_partner_fields_and_health(admin_api, manager):
    gold = TierFactory(slug="gold")
    PartnerFactory(
        external_id="P-1",
        name="One",
        tier=gold,
        owner=manager,
        health_score=71.256,
        health_band=Partner.Band.HEALTHY,
        health_trend=-3.5,
        health_as_of=datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC),
        health_model_id=7,
    )
    row = admin_api.get(PARTNERS).json()["results"][0]
    assert row["external_id"] == "P-1"
    assert row["tier"] == "gold"
    assert row["owner"] == "manager"
    assert row["type"] == "reseller"
    assert row["quarterly_revenue_target"] == 100000
    assert row["joined_on"] == "2024-01-15"
    assert row["health"] == {
        "score": pytest.approx(71.256),
        "band": "healthy",
        "trend": -3.5,
        "as_of": "2026-10-01T00:00:00Z",
        "model": 7,
    }


def test_partner_without_score_has_empty_health(admin_api, partner_b):
    row = admin_api.get(f"{PARTNERS}P-B/").json()
    assert row["health"] == {"score": None, "band": "no_data", "trend": None, "as_of": None, "model": None}


@pytest.fixture
def program(manager):
    gold, silver = TierFactory(slug="gold"), TierFactory(slug="silver")
    other_manager = UserFactory(username="other-manager")
    PartnerFactory(external_id="ACME-1", name="Acme", tier=gold, owner=manager, region="EMEA")
    PartnerFactory(
        external_id="BOLT-2", name="Bolt", tier=silver, type=Partner.Type.MSP, region="APAC", owner=other_manager
    )
    PartnerFactory(external_id="CORE-3", name="Core Acmeish", tier=None, status=Partner.Status.PROBATION, region="EMEA")
    Partner.objects.filter(external_id="ACME-1").update(health_score=80, health_trend=5, health_band="healthy")
    Partner.objects.filter(external_id="BOLT-2").update(health_score=30, health_trend=-20, health_band="at_risk")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("tier=gold", ["ACME-1"]),
        ("type=msp", ["BOLT-2"]),
        ("region=EMEA", ["ACME-1", "CORE-3"]),
        ("status=probation", ["CORE-3"]),
        ("owner=manager", ["ACME-1"]),
        ("band=at_risk", ["BOLT-2"]),
        ("band=no_data", ["CORE-3"]),
        ("search=acme", ["ACME-1", "CORE-3"]),
        ("search=bolt-2", ["BOLT-2"]),
        ("tier=gold&region=APAC", []),
    ],
)
def test_partner_filters(admin_api, program, query, expected):
    assert names(admin_api.get(f"{PARTNERS}?{query}")) == expected


@pytest.mark.parametrize(
    "ordering, expected",
    [
        ("name", ["ACME-1", "BOLT-2", "CORE-3"]),
        ("-name", ["CORE-3", "BOLT-2", "ACME-1"]),
        # Partners without a score come last in both directions.
        ("score", ["BOLT-2", "ACME-1", "CORE-3"]),
        ("-score", ["ACME-1", "BOLT-2", "CORE-3"]),
        ("trend", ["BOLT-2", "ACME-1", "CORE-3"]),
        ("-trend", ["ACME-1", "BOLT-2", "CORE-3"]),
    ],
)
def test_partner_ordering(admin_api, program, ordering, expected):
    assert names(admin_api.get(f"{PARTNERS}?ordering={ordering}")) == expected


@pytest.mark.parametrize(
    "query, field", [("type=bank", "type"), ("band=great", "band"), ("ordering=owner", "ordering")]
)
def test_a_filter_value_that_does_not_parse_answers_400_naming_it(admin_api, program, query, field):
    response = admin_api.get(f"{PARTNERS}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_page_size_is_capped_at_1000(admin_api):
    Partner.objects.bulk_create(
        [Partner(external_id=f"X-{n:04d}", name=f"Partner {n:04d}", type="reseller") for n in range(1001)]
    )
    body = admin_api.get(f"{PARTNERS}?page_size=1001").json()
    assert body["count"] == 1001
    assert len(body["results"]) == 1000
    assert body["next"] is not None
    assert len(admin_api.get(f"{PARTNERS}?page_size=7").json()["results"]) == 7


@pytest.mark.parametrize("rows", [3, 30])
def test_partner_list_queries_do_not_grow_with_rows(admin_api, manager, django_assert_max_num_queries, rows):
    tiers = [TierFactory(slug=f"t{n}") for n in range(3)]
    for n in range(rows):
        PartnerFactory(tier=tiers[n % 3], owner=manager)
    with django_assert_max_num_queries(4):
        response = admin_api.get(f"{PARTNERS}?page_size=100")
    assert len(response.json()["results"]) == rows
    assert {row["owner"] for row in response.json()["results"]} == {"manager"}


# Create, upsert ------------------------------------------------------------------------------------


def new_partner(**changes) -> dict:
    return {"external_id": "NEW-1", "name": "Newco", "type": "distributor", "region": "NA", **changes}


def test_post_one_partner_creates_it(admin_api, manager):
    TierFactory(slug="gold")
    response = admin_api.post(PARTNERS, new_partner(tier="gold", owner="manager", quarterly_revenue_target=5000))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["external_id"] == "NEW-1"
    assert body["tier"] == "gold"
    assert body["owner"] == "manager"
    assert body["health"]["band"] == "no_data"
    partner = Partner.objects.get(external_id="NEW-1")
    assert partner.type == "distributor"
    assert partner.owner == manager
    assert partner.history.count() == 1


def test_post_one_partner_whose_external_id_exists_answers_400_and_changes_nothing(admin_api, partner_a):
    response = admin_api.post(PARTNERS, new_partner(external_id="P-A", name="Renamed"))
    assert response.status_code == 400
    assert "external_id" in response.json()
    partner_a.refresh_from_db()
    assert partner_a.name == "Alpha Resellers"
    assert partner_a.history.count() == 1


def test_post_one_invalid_partner_answers_field_errors(admin_api):
    response = admin_api.post(PARTNERS, {"external_id": "bad id!", "name": "X", "type": "bank", "tier": "nope"})
    assert response.status_code == 400
    assert set(response.json()) == {"external_id", "type", "tier"}
    assert all(isinstance(messages, list) for messages in response.json().values())
    assert not Partner.objects.exists()


def test_post_partner_list_upserts_by_external_id(admin_api, partner_a):
    body = [new_partner(), new_partner(external_id="NEW-2", name="Second")]
    response = admin_api.post(PARTNERS, body)
    assert response.status_code == 200
    assert response.json() == {"created": 2, "updated": 0, "unchanged": 0}

    body[1]["name"] = "Second, renamed"
    response = admin_api.post(PARTNERS, [*body, {"external_id": "P-A", "name": "Alpha Resellers", "type": "reseller"}])
    assert response.json() == {"created": 0, "updated": 1, "unchanged": 2}
    assert Partner.objects.get(external_id="NEW-2").name == "Second, renamed"
    assert Partner.objects.count() == 3


def test_post_partner_list_with_a_bad_item_writes_nothing(admin_api):
    body = [new_partner(), new_partner(external_id="NEW-2", owner="ghost"), new_partner(external_id="NEW-3")]
    response = admin_api.post(PARTNERS, body)
    assert response.status_code == 400
    assert response.json() == {"errors": [{"index": 1, "field": "owner", "message": "Unknown user 'ghost'."}]}
    assert not Partner.objects.exists()


# Change, delete ------------------------------------------------------------------------------------


def test_patch_partner_changes_only_the_fields_sent(api_client_for, manager, partner_a):
    TierFactory(slug="gold")
    response = api_client_for(manager).patch(f"{PARTNERS}P-A/", {"tier": "gold", "status": "probation"})
    assert response.status_code == 200, response.content
    assert response.json()["tier"] == "gold"
    assert response.json()["status"] == "probation"
    partner_a.refresh_from_db()
    assert (partner_a.tier.slug, partner_a.status, partner_a.name, partner_a.owner) == (
        "gold",
        "probation",
        "Alpha Resellers",
        manager,
    )


@pytest.mark.parametrize(
    "change, field",
    [
        ({"tier": "platinum"}, "tier"),
        ({"external_id": "P-Z"}, "external_id"),
        ({"agreement_start": "2026-05-01", "agreement_end": "2026-04-01"}, "agreement_end"),
        ({"quarterly_revenue_target": -1}, "quarterly_revenue_target"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_patch_partner_refuses_bad_changes(admin_api, partner_a, change, field):
    response = admin_api.patch(f"{PARTNERS}P-A/", change)
    assert response.status_code == 400
    assert field in response.json()
    partner_a.refresh_from_db()
    assert partner_a.external_id == "P-A" and partner_a.tier is None and partner_a.agreement_start is None


def test_patch_partner_can_clear_the_owner(admin_api, partner_a):
    response = admin_api.patch(f"{PARTNERS}P-A/", {"owner": None})
    assert response.status_code == 200
    assert response.json()["owner"] is None
    partner_a.refresh_from_db()
    assert partner_a.owner is None


def test_put_is_not_offered(admin_api, partner_a):
    assert admin_api.put(f"{PARTNERS}P-A/", new_partner(external_id="P-A")).status_code == 405


def test_only_channel_admins_delete_partners(api_client_for, admin_api, manager, partner_a):
    assert api_client_for(manager).delete(f"{PARTNERS}P-A/").status_code == 403
    assert Partner.objects.filter(external_id="P-A").exists()
    assert admin_api.delete(f"{PARTNERS}P-A/").status_code == 204
    assert not Partner.objects.filter(external_id="P-A").exists()


def test_external_ids_with_dots_work_in_urls(admin_api):
    PartnerFactory(external_id="acme.eu_1-x")
    assert admin_api.get(f"{PARTNERS}acme.eu_1-x/").json()["external_id"] == "acme.eu_1-x"
