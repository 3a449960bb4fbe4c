"""REST API v1: what each role reads and writes (partner users see only their partner and write nothing)."""

import pytest

from prm.models import Activity, Certification, Deal, Partner
from prm.roles import ACCOUNT_MANAGER
from tests.factories import ActivityFactory, CertificationFactory, DealFactory, PartnerFactory, UserFactory, membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_partners_data(partner_a, partner_b):
    for partner, prefix in [(partner_a, "a"), (partner_b, "b")]:
        ActivityFactory(partner=partner, external_id=f"{prefix}-evt")
        DealFactory(partner=partner, external_id=f"{prefix}-deal")
        CertificationFactory(partner=partner, name=f"{prefix}-cert")


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_partner_user_reads_only_its_own_partner(api_client_for, partner_user_a, two_partners_data):
    client = api_client_for(partner_user_a)
    body = client.get("/api/v1/partners/").json()
    assert body["count"] == 1
    assert [row["external_id"] for row in body["results"]] == ["P-A"]
    assert client.get("/api/v1/partners/P-A/").status_code == 200
    assert [row["external_id"] for row in results(client.get("/api/v1/activities/"))] == ["a-evt"]
    assert [row["external_id"] for row in results(client.get("/api/v1/deals/"))] == ["a-deal"]
    assert [row["name"] for row in results(client.get("/api/v1/certifications/"))] == ["a-cert"]


def test_partner_user_gets_404_for_another_partners_objects(api_client_for, partner_user_a, two_partners_data):
    client = api_client_for(partner_user_a)
    other_partner = client.get("/api/v1/partners/P-B/")
    assert other_partner.status_code == 404
    # The same answer as for an object that does not exist: nothing tells that P-B exists.
    assert client.get("/api/v1/partners/P-NOWHERE/").json() == other_partner.json()
    assert client.get("/api/v1/deals/b-deal/").status_code == 404
    assert client.get("/api/v1/deals/a-deal/").status_code == 200


def test_filtering_by_another_partner_gives_nothing(api_client_for, partner_user_a, two_partners_data):
    client = api_client_for(partner_user_a)
    assert results(client.get("/api/v1/activities/?partner=P-B")) == []
    assert results(client.get("/api/v1/deals/?partner=P-B")) == []
    assert results(client.get("/api/v1/certifications/?partner=P-B")) == []
    assert results(client.get("/api/v1/partners/?search=P-B")) == []


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/api/v1/partners/", {"external_id": "P-N", "name": "N", "type": "msp"}),
        ("patch", "/api/v1/partners/P-A/", {"name": "Mine now"}),
        ("delete", "/api/v1/partners/P-A/", None),
        (
            "post",
            "/api/v1/activities/",
            [
                {
                    "partner": "P-A",
                    "kind": "portal_login",
                    "occurred_at": "2026-10-01T00:00:00Z",
                    "source": "s",
                    "external_id": "x",
                }
            ],
        ),
        (
            "post",
            "/api/v1/deals/",
            {
                "external_id": "D-N",
                "partner": "P-A",
                "name": "N",
                "amount": 1,
                "stage": "registered",
                "registered_at": "2026-10-01T00:00:00Z",
            },
        ),
        ("patch", "/api/v1/deals/a-deal/", {"stage": "approved"}),
        (
            "post",
            "/api/v1/certifications/",
            {"partner": "P-A", "name": "N", "role": "sales", "earned_on": "2026-01-01"},
        ),
        ("post", "/api/v1/activity-kinds/", {"key": "k", "label": "K", "category": "engagement"}),
    ],
)
def test_partner_users_may_not_write(api_client_for, partner_user_a, two_partners_data, method, path, body):
    before = [model.objects.count() for model in (Partner, Activity, Deal, Certification)]
    response = getattr(api_client_for(partner_user_a), method)(path, body, format="json")
    assert response.status_code == 403
    assert [model.objects.count() for model in (Partner, Activity, Deal, Certification)] == before
    assert Partner.objects.get(external_id="P-A").name == "Alpha Resellers"
    assert Deal.objects.get(external_id="a-deal").stage == "registered"


def test_account_managers_write_partner_data(api_client_for, manager, partner_b):
    client = api_client_for(manager)
    response = client.post(
        "/api/v1/activities/",
        [
            {
                "partner": "P-B",
                "kind": "meeting_held",
                "occurred_at": "2026-10-01T00:00:00Z",
                "source": "crm",
                "external_id": "m1",
            }
        ],
    )
    assert response.status_code == 201
    assert response.json() == {"created": 1, "duplicates": 0}
    assert client.patch("/api/v1/partners/P-B/", {"region": "APAC"}).status_code == 200
    assert Partner.objects.get(external_id="P-B").region == "APAC"
    assert client.post("/api/v1/partners/", {"external_id": "P-M", "name": "M", "type": "msp"}).status_code == 201


def test_a_user_without_a_role_reads_nothing_and_writes_nothing(api_client_for, two_partners_data):
    client = api_client_for(UserFactory(username="nobody"))
    assert client.get("/api/v1/partners/").json()["count"] == 0
    assert client.get("/api/v1/activities/").json()["count"] == 0
    assert client.get("/api/v1/partners/P-A/").status_code == 404
    response = client.post("/api/v1/partners/", {"external_id": "P-N", "name": "N", "type": "msp"})
    assert response.status_code == 403


def test_an_account_manager_tied_to_a_partner_is_scoped_and_may_not_write(api_client_for, partner_a, two_partners_data):
    user = UserFactory(username="bound-manager", groups=[ACCOUNT_MANAGER])
    membership(user, partner_a)
    client = api_client_for(user)
    assert [row["external_id"] for row in results(client.get("/api/v1/partners/"))] == ["P-A"]
    response = client.post(
        "/api/v1/deals/",
        [
            {
                "external_id": "b-deal",
                "partner": "P-A",
                "name": "Taken",
                "amount": 1,
                "stage": "registered",
                "registered_at": "2026-10-01T00:00:00Z",
            }
        ],
    )
    assert response.status_code == 403
    assert Deal.objects.get(external_id="b-deal").partner.external_id == "P-B"


@pytest.mark.parametrize("rows", [3, 30])
def test_partner_user_list_queries_do_not_grow_with_rows(
    api_client_for, partner_a, partner_user_a, django_assert_max_num_queries, rows
):
    client = api_client_for(partner_user_a)
    other = PartnerFactory()
    for _ in range(rows):
        ActivityFactory(partner=partner_a)
        ActivityFactory(partner=other)
    with django_assert_max_num_queries(5):
        assert len(results(client.get("/api/v1/activities/?page_size=100"))) == rows
