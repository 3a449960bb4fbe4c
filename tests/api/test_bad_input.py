"""Bad write bodies on every bulk endpoint: each answers 400 with a message and writes nothing.

Oversized bodies, wrong types, unknown kinds and choices, times without offsets or with offsets the
database cannot store, NaN and infinities (as JSON literals and as strings), and the same external id
twice inside one body.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import override_settings

from health.models import ScoringModel
from kpis.models import BusinessReview
from prm.models import Activity, Certification, Contact, Deal, Partner

pytestmark = pytest.mark.django_db

ACTIVITY = {
    "partner": "P-A",
    "kind": "mdf_claimed",
    "occurred_at": "2026-10-01T09:30:00+02:00",
    "value": 100,
    "source": "mdf",
    "external_id": "e-1",
}
DEAL = {
    "external_id": "D-1",
    "partner": "P-A",
    "name": "Big one",
    "amount": 50000,
    "stage": "registered",
    "registered_at": "2026-09-01T00:00:00Z",
}
CERTIFICATION = {"partner": "P-A", "name": "Cloud Architect", "role": "technical", "earned_on": "2026-01-10"}
PARTNER = {"external_id": "P-N", "name": "New", "type": "msp", "quarterly_revenue_target": 1000}

ENDPOINTS = {
    "activities": ("/api/v1/activities/", ACTIVITY),
    "deals": ("/api/v1/deals/", DEAL),
    "certifications": ("/api/v1/certifications/", CERTIFICATION),
    "partners": ("/api/v1/partners/", PARTNER),
}


def counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Activity, Deal, Certification, Contact, Partner))


def post_raw(client, path: str, raw: str):
    return client.generic("POST", path, raw, content_type="application/json")


def refused(response, before) -> str:
    """The answer is a 400 with a message, and nothing was written; the message is returned."""
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    text = json.dumps(body)
    # A message: by item ("errors"), by field ({"field": ["..."]}) or DRF's {"detail": "..."} for a body
    # that is not JSON at all.
    messages = [e["message"] for e in body.get("errors", [])] + [
        m for value in body.values() if isinstance(value, list) for m in value if isinstance(m, str)
    ]
    if isinstance(body.get("detail"), str):
        messages.append(body["detail"])
    assert messages and all(len(message) > 5 for message in messages), body
    assert counts() == before
    return text


def two_good(endpoint: str) -> list[dict]:
    path, item = ENDPOINTS[endpoint]
    second = dict(item)
    if "external_id" in second:
        second["external_id"] += "-2"
    else:
        second["name"] += " II"
    return [item, second]


# (endpoint, field, bad value, a word the message must hold)
BAD_VALUES = [
    # Wrong types.
    ("activities", "quantity", "lots", "integer"),
    ("activities", "quantity", True, "integer"),
    ("activities", "quantity", 1.5, "integer"),
    ("activities", "metadata", "not an object", "dictionary"),
    ("activities", "partner", 42, "partner"),
    ("deals", "amount", [1], "number"),
    ("deals", "amount", {"value": 1}, "number"),
    ("certifications", "earned_on", 20260110, "date"),
    ("partners", "quarterly_revenue_target", "a lot", "number"),
    # Unknown kinds and choices.
    ("activities", "kind", "telepathy", "telepathy"),
    ("deals", "stage", "maybe", "maybe"),
    ("certifications", "role", "wizard", "wizard"),
    ("partners", "type", "friend", "friend"),
    # Times without an offset, and offsets PostgreSQL cannot store.
    ("activities", "occurred_at", "2026-10-01T09:30:00", "offset"),
    ("activities", "occurred_at", "2026-10-01", "offset"),
    ("deals", "registered_at", "2026-09-01T00:00:00", "offset"),
    ("activities", "occurred_at", "2026-13-01T00:00:00Z", "format"),
    ("activities", "occurred_at", "0001-01-01T00:00:00+01:00", "format"),
    # NaN and infinities as strings.
    ("activities", "value", "NaN", "finite"),
    ("activities", "value", "Infinity", "finite"),
    ("deals", "amount", "-inf", "finite"),
    ("partners", "quarterly_revenue_target", "nan", "finite"),
]


@pytest.mark.parametrize("endpoint, field, value, word", BAD_VALUES)
def test_a_bad_value_in_a_list_refuses_the_whole_list(admin_api, partner_a, endpoint, field, value, word):
    path, _ = ENDPOINTS[endpoint]
    body = two_good(endpoint)
    body[1] = {**body[1], field: value}
    before = counts()
    text = refused(admin_api.post(path, body, format="json"), before)
    errors = json.loads(text)["errors"]
    assert [(error["index"], error["field"]) for error in errors] == [(1, field)]
    assert word.lower() in errors[0]["message"].lower(), errors


@pytest.mark.parametrize("endpoint, field, value, word", BAD_VALUES[:6])
def test_a_bad_value_in_one_object_answers_by_field(admin_api, partner_a, endpoint, field, value, word):
    path, item = ENDPOINTS[endpoint]
    before = counts()
    text = refused(admin_api.post(path, {**item, field: value}, format="json"), before)
    assert list(json.loads(text)) == [field]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize(
    "endpoint, field", [("activities", "value"), ("deals", "amount"), ("partners", "quarterly_revenue_target")]
)
def test_nan_and_infinity_json_literals_are_refused(admin_api, partner_a, endpoint, field, literal):
    path, item = ENDPOINTS[endpoint]
    raw = json.dumps([{**item, field: 0}]).replace(f'"{field}": 0', f'"{field}": {literal}')
    assert literal in raw
    before = counts()
    refused(post_raw(admin_api, path, raw), before)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_the_same_external_id_twice_in_one_body_is_refused(admin_api, partner_a, endpoint):
    path, item = ENDPOINTS[endpoint]
    first, second = two_good(endpoint)
    # The same key as the first item: for certifications the natural key (partner, name, role, earned_on).
    second = {**second, **{key: first[key] for key in ("external_id", "name") if key in first}}
    if endpoint == "activities":
        second["occurred_at"] = "2026-10-02T00:00:00Z"  # a different event under the same id
    before = counts()
    text = refused(admin_api.post(path, [first, second], format="json"), before)
    errors = json.loads(text)["errors"]
    assert [error["index"] for error in errors] == [1]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_more_than_5000_items_are_refused(admin_api, partner_a, endpoint):
    path, item = ENDPOINTS[endpoint]
    body = [item] * (settings.API_MAX_LIST_ITEMS + 1)
    before = counts()
    text = refused(admin_api.post(path, body, format="json"), before)
    assert json.loads(text)["errors"][0]["index"] == -1 and "5000" in text


def test_a_body_over_the_upload_limit_is_refused_with_a_message(admin_api, partner_a):
    raw = json.dumps([{**ACTIVITY, "external_id": f"e-{n}", "metadata": {"pad": "x" * 500}} for n in range(50)])
    before = counts()
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=len(raw) // 2):
        response = post_raw(admin_api, "/api/v1/activities/", raw)
    assert response.status_code == 413, response.content[:300]
    assert "larger than" in response.json()["detail"]
    assert counts() == before


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        '[{"partner": "P-A",',
        "[1, 2]",
        '[["partner", "P-A"]]',
        '"a string"',
        "null",
        "[]",
    ],
)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_bodies_that_are_not_objects_or_lists_of_objects_are_refused(admin_api, partner_a, endpoint, raw):
    path, _ = ENDPOINTS[endpoint]
    before = counts()
    response = post_raw(admin_api, path, raw)
    assert response.status_code == 400, response.content[:300]
    assert response.json()
    assert counts() == before


def test_form_encoded_bodies_are_refused(admin_api, partner_a):
    before = counts()
    response = admin_api.post("/api/v1/activities/", ACTIVITY, format="multipart")
    assert response.status_code == 415
    assert counts() == before


# Other write bodies: scoring models, reviews, recompute ------------------------------------------------


def test_scoring_model_with_nan_weight_or_naive_recompute_time_is_refused(admin_api, partner_a):
    models = ScoringModel.objects.count()
    body = {
        "name": "Bad",
        "components": [{"kpi": "portal_logins", "weight": "NaN", "method": "target", "target": 10}],
    }
    response = admin_api.post("/api/v1/scoring-models/", body, format="json")
    assert response.status_code == 400 and "components" in response.json()
    assert ScoringModel.objects.count() == models
    for as_of in ("2026-10-01T00:00:00", "2026-10-01T00:00:00+22:35x", "soon"):
        response = admin_api.post("/api/v1/scores/recompute/", {"as_of": as_of}, format="json")
        assert response.status_code == 400 and "as_of" in response.json(), as_of


def test_review_with_an_unknown_partner_or_bad_date_is_refused(admin_api, partner_a):
    for body in (
        {"partner": "P-NOPE", "period": "2026-Q3", "held_on": "2026-09-20"},
        {"partner": "P-A", "period": "2026-Q9", "held_on": "2026-09-20"},
        {"partner": "P-A", "period": "2026-Q3", "held_on": "yesterday"},
    ):
        response = admin_api.post("/api/v1/reviews/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()
    assert not BusinessReview.objects.exists()


def test_an_offset_postgresql_cannot_store_is_read_as_the_same_instant(admin_api, partner_a):
    """Python accepts offsets up to 23:59 and PostgreSQL only to 15:59: the instant is stored in UTC."""
    response = admin_api.post(
        "/api/v1/activities/", [{**ACTIVITY, "occurred_at": "2026-10-01T08:00:00+22:35"}], format="json"
    )
    assert response.status_code == 201, response.content
    assert Activity.objects.get().occurred_at.isoformat() == "2026-09-30T09:25:00+00:00"
    listed = admin_api.get("/api/v1/activities/", {"since": "2026-09-29T13:54:00-19:30"})
    assert listed.status_code == 200 and listed.json()["count"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"partner": "P-\\u0000A"},
        {"source": "crm\\u0000"},
        {"partner": "\\udb8a"},
        {"contact_email": "a\\u0000@b.example"},
        {"metadata": {"note": "\\u0000"}},
        {"metadata": {"\\udb8a": 1}},
    ],
)
def test_text_postgresql_cannot_store_is_refused(admin_api, partner_a, change):
    """NUL characters and unpaired surrogates are valid JSON that PostgreSQL refuses: a 400, not a 500."""
    ((name, value),) = change.items()
    item = {**ACTIVITY, name: "@@"}
    raw = json.dumps([item]).replace('"@@"', json.dumps(value, ensure_ascii=False).replace("\\\\", "\\"))
    before = counts()
    text = refused(post_raw(admin_api, "/api/v1/activities/", raw), before)
    assert "NUL characters or unpaired surrogates" in text
