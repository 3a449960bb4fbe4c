"""Health API: scoring models, preview, partner health with evidence, history, recompute; scoping."""

import datetime
from decimal import Decimal

import pytest

from health.models import ScoreRun, ScoreSnapshot, ScoringComponent, ScoringModel
from health.services import scores_recompute
from prm.models import Partner
from tests.factories import ActivityFactory, kind

A = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)

MODEL_BODY = {
    "name": "Engagement only",
    "is_active": False,
    "priority": 20,
    "segment": {"types": ["reseller"], "tiers": []},
    "window_days": 90,
    "trend_days": 30,
    "healthy_threshold": 70,
    "at_risk_threshold": 40,
    "alert_threshold": 40,
    "rearm_points": 5,
    "drop_points": 15,
    "components": [
        {"kpi": "portal_logins", "weight": 2, "method": "target", "target": 10, "missing": "zero"},
        {"kpi": "content_views", "weight": 1, "method": "percentile"},
    ],
}


@pytest.fixture
def scored(db, partner_a, partner_b):
    ActivityFactory(
        partner=partner_a, kind=kind("portal_login"), quantity=4, occurred_at=A - datetime.timedelta(days=3)
    )
    scores_recompute(as_of=A - datetime.timedelta(days=40))
    scores_recompute(as_of=A)
    return partner_a


def test_scoring_model_create_and_read_back(admin_api):
    response = admin_api.post("/api/v1/scoring-models/", MODEL_BODY, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["segment"] == {"types": ["reseller"], "tiers": []}
    assert [c["kpi"] for c in body["components"]] == ["portal_logins", "content_views"]
    assert body["components"][1]["direction"] in ("", None)
    model = ScoringModel.objects.get(name="Engagement only")
    assert model.components.count() == 2 and model.history.count() == 1


@pytest.mark.parametrize(
    "change,field",
    [
        ({"at_risk_threshold": 80}, "at_risk_threshold"),
        ({"components": [{"kpi": "nope", "weight": 1, "method": "target", "target": 1}]}, "components"),
        ({"components": [{"kpi": "portal_logins", "weight": 0, "method": "target", "target": 1}]}, "components"),
        ({"components": [{"kpi": "portal_logins", "weight": 1, "method": "target", "target": 0}]}, "components"),
        (
            {"components": [{"kpi": "portal_logins", "weight": 1, "method": "range", "lower": 5, "upper": 5}]},
            "components",
        ),
        (
            {"components": [{"kpi": "portal_logins", "weight": 1, "method": "target", "target": 1}] * 2},
            "components",
        ),
    ],
)
def test_scoring_model_validation(admin_api, change, field):
    response = admin_api.post("/api/v1/scoring-models/", {**MODEL_BODY, **change}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ScoringModel.objects.filter(name="Engagement only").exists()


def test_scoring_model_update_changes_components_by_kpi(admin_api):
    model = ScoringModel.objects.get(name="Standard partner health")
    body = {
        **MODEL_BODY,
        "name": model.name,
        "components": [{"kpi": "win_rate", "weight": 3, "method": "range", "lower": 0, "upper": 1}],
    }
    response = admin_api.put(f"/api/v1/scoring-models/{model.id}/", body, format="json")
    assert response.status_code == 200, response.json()
    assert list(model.components.values_list("kpi", "weight")) == [("win_rate", Decimal("3.000"))]


def test_only_channel_admins_change_models(api_client_for, manager, partner_user_a):
    model = ScoringModel.objects.get(name="Standard partner health")
    for user in (manager, partner_user_a):
        client = api_client_for(user)
        assert client.get("/api/v1/scoring-models/").status_code == 200
        assert client.patch(f"/api/v1/scoring-models/{model.id}/", {"priority": 1}, format="json").status_code == 403


def test_preview_writes_nothing(admin_api, scored):
    model = ScoringModel.objects.get(name="Standard partner health")
    counts = (ScoreSnapshot.objects.count(), ScoreRun.objects.count(), ScoringComponent.objects.count())
    partner_rows = list(Partner.objects.values_list("health_score", "health_band"))
    body = {**MODEL_BODY, "segment": {"types": [], "tiers": []}, "healthy_threshold": 30, "at_risk_threshold": 10}
    response = admin_api.post(f"/api/v1/scoring-models/{model.id}/preview/", body, format="json")
    assert response.status_code == 200, response.json()
    preview = response.json()
    assert preview["partners"] == 2
    assert sum(preview["preview_bands"].values()) == 2
    assert sum(b["preview"] for b in preview["distribution"]) == 2
    assert preview["movers"] and {"partner", "score", "current_score", "delta"} <= set(preview["movers"][0])
    assert (ScoreSnapshot.objects.count(), ScoreRun.objects.count(), ScoringComponent.objects.count()) == counts
    assert list(Partner.objects.values_list("health_score", "health_band")) == partner_rows


def test_partner_health_with_components_and_evidence(admin_api, scored):
    response = admin_api.get("/api/v1/partners/P-A/health/")
    assert response.status_code == 200
    health = response.json()
    assert health["partner"] == "P-A" and health["as_of"].startswith("2026-10-01T00:00:00")
    assert health["band"] in {"healthy", "watch", "at_risk", "no_data"}
    logins = next(c for c in health["components"] if c["kpi"] == "activity_intensity")
    assert logins["raw"] == 4
    assert "/api/v1/activities/?" in logins["evidence"] and "partner=P-A" in logins["evidence"]
    assert sum(c["contribution"] for c in health["components"]) == pytest.approx(health["score"])
    # The evidence link lists exactly the records counted.
    evidence = admin_api.get(logins["evidence"])
    assert evidence.status_code == 200
    assert sum(row["quantity"] for row in evidence.json()["results"]) == 4


def test_partner_health_as_of_and_history(admin_api, scored):
    older = admin_api.get("/api/v1/partners/P-A/health/", {"as_of": "2026-09-01T00:00:00Z"}).json()
    assert older["as_of"].startswith("2026-08-22")
    history = admin_api.get("/api/v1/partners/P-A/scores/").json()
    assert [row["as_of"][:10] for row in history["results"]] == ["2026-10-01", "2026-08-22"]
    assert admin_api.get("/api/v1/partners/P-A/health/", {"as_of": "yesterday"}).status_code == 400


def test_partner_users_see_only_their_own_health(api_client_for, partner_user_a, scored):
    client = api_client_for(partner_user_a)
    assert client.get("/api/v1/partners/P-A/health/").status_code == 200
    assert client.get("/api/v1/partners/P-B/health/").status_code == 404
    assert client.get("/api/v1/partners/P-B/scores/").status_code == 404
    assert client.get("/api/v1/partners/NOPE/scores/").status_code == 404
    assert client.post("/api/v1/scores/recompute/", {}, format="json").status_code == 403


def test_anonymous_is_refused(client, scored):
    assert client.get("/api/v1/partners/P-A/health/").status_code in (401, 403)
    assert client.get("/api/v1/scoring-models/").status_code in (401, 403)


def test_history_query_count_is_constant(admin_api, partner_a, django_assert_max_num_queries):
    for day in range(12):
        scores_recompute(as_of=A - datetime.timedelta(days=7 * day), partners=Partner.objects.filter(pk=partner_a.pk))
    with django_assert_max_num_queries(8):
        response = admin_api.get("/api/v1/partners/P-A/scores/")
    assert response.json()["count"] == 12


def test_recompute_is_queued_with_a_task_id(admin_api, django_capture_on_commit_callbacks):
    # The task runs in-process here; tests/health/test_worker.py runs it in a real worker over Redis.
    from prm.celery import app

    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_api.post("/api/v1/scores/recompute/", {"as_of": "2026-10-01T00:00:00Z"}, format="json")
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 202
    assert response.json()["task_id"]
    assert ScoreRun.objects.filter(as_of=A, trigger="api", status="succeeded").exists()
    assert (
        admin_api.post("/api/v1/scores/recompute/", {"as_of": "2026-10-01T00:00:00"}, format="json").status_code == 400
    )
