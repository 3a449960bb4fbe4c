"""Scoring models in the admin console: inline components, validation, weights shown, what-if preview."""

import pytest

from health.models import ScoreSnapshot, ScoringModel
from tests.factories import PartnerFactory


def form_data(model: ScoringModel, components: list[dict], **changes) -> dict:
    data = {
        "name": model.name,
        "description": model.description,
        "is_active": "on" if model.is_active else "",
        "priority": model.priority,
        "window_days": model.window_days,
        "trend_days": model.trend_days,
        "healthy_threshold": model.healthy_threshold,
        "at_risk_threshold": model.at_risk_threshold,
        "alert_threshold": model.alert_threshold,
        "rearm_points": model.rearm_points,
        "drop_points": model.drop_points,
        "components-TOTAL_FORMS": len(components),
        "components-INITIAL_FORMS": 0,
        "subscribers-TOTAL_FORMS": 0,
        "subscribers-INITIAL_FORMS": 0,
        "components-MIN_NUM_FORMS": 0,
        "components-MAX_NUM_FORMS": 1000,
    }
    for i, component in enumerate(components):
        data.update({f"components-{i}-{key}": value for key, value in component.items()})
        data.setdefault(f"components-{i}-missing", "exclude")
    data.update(changes)
    return data


@pytest.fixture
def admin_client_logged(client, channel_admin):
    channel_admin.is_superuser = True
    channel_admin.save()
    client.force_login(channel_admin)
    return client


@pytest.fixture
def default_model(db):
    return ScoringModel.objects.get(name="Standard partner health")


def test_change_page_shows_components_and_weight_shares(
    admin_client_logged, default_model, django_assert_max_num_queries
):
    with django_assert_max_num_queries(40):
        response = admin_client_logged.get(f"/admin/health/scoringmodel/{default_model.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Share of weight" in html and "15.0%" in html  # pipeline_coverage: 15 of 100
    assert "Preview these settings" in html


def test_duplicate_kpi_and_bad_target_are_refused(admin_client_logged):
    model = ScoringModel(name="New model")
    data = form_data(
        model,
        [
            {"kpi": "portal_logins", "weight": 1, "method": "target", "target": 10},
            {"kpi": "portal_logins", "weight": 1, "method": "target", "target": 0},
        ],
    )
    response = admin_client_logged.post("/admin/health/scoringmodel/add/", data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "already a component of the model" in html or "target greater than 0" in html
    assert not ScoringModel.objects.filter(name="New model").exists()


def test_add_then_history_records_who_changed_it(admin_client_logged, channel_admin):
    data = form_data(
        ScoringModel(name="Added"), [{"kpi": "portal_logins", "weight": 2, "method": "target", "target": 10}]
    )
    response = admin_client_logged.post("/admin/health/scoringmodel/add/", data)
    assert response.status_code == 302
    model = ScoringModel.objects.get(name="Added")
    assert model.components.get().weight == 2
    assert model.history.first().history_user == channel_admin


def test_preview_renders_and_saves_nothing(admin_client_logged, default_model):
    PartnerFactory()
    PartnerFactory()
    components = [{"kpi": "portal_logins", "weight": 1, "method": "percentile"}]
    before = ScoringModel.objects.get(pk=default_model.pk).components.count()
    response = admin_client_logged.post(
        f"/admin/health/scoringmodel/{default_model.id}/change/",
        form_data(default_model, components, _preview="1", healthy_threshold=50),
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "What-if preview" in html and "2 partners in the segment" in html, html[
        html.find("errorlist") - 300 : html.find("errorlist") + 300
    ]
    assert default_model.components.count() == before
    assert ScoringModel.objects.get(pk=default_model.pk).healthy_threshold == 70
    assert not ScoreSnapshot.objects.exists()
