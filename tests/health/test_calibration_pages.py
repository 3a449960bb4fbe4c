"""The calibration report page (charts, history, regenerate), applying suggested weights through the admin's
what-if preview, the forecast on the partner page, the portfolio and the API, and who may see each."""

from __future__ import annotations

import re

import pytest
from django.utils.html import escape

from health.calibration import CalibrationOptions, calibration_report_create
from health.models import CalibrationReport, PartnerForecast, ScoringComponent
from prm.models import Partner
from tests.health.test_calibration import AS_OF, build_program, synthetic_model

pytestmark = pytest.mark.django_db

FAST = CalibrationOptions(quarters=8, resamples=200)
NOISY_WEIGHTS = {"portal_logins": 1, "content_views": 1, "events_attended": 5, "meetings_held": 5}


@pytest.fixture
def report(db, partner_a, partner_b):
    build_program(partners=80)
    model = synthetic_model(NOISY_WEIGHTS)
    return calibration_report_create(model=model, as_of=AS_OF, options=FAST)


def html_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# The report page -----------------------------------------------------------------------------------


def test_report_page_shows_the_verdict_charts_and_history(client, channel_admin, report):
    older = calibration_report_create(model=report.model, as_of=AS_OF, options=FAST)
    CalibrationReport.objects.filter(pk=older.pk).update(created_at=report.created_at.replace(year=2025))
    client.force_login(channel_admin)
    html = html_of(client.get("/calibration/", {"model": report.model_id}))
    assert escape(report.verdict.split(".")[0]) in html
    # Calibration plot: ten decile bars, each carrying the revenue it brought.
    assert len(re.findall(r'<rect class="decile"[^>]*data-decile="\d+"', html)) == 10
    # One correlation line (with its interval) per component.
    for kpi in NOISY_WEIGHTS:
        assert re.search(rf'<g class="correlation" data-kpi="{kpi}" data-rho="[-0-9.]+"', html)
    # Current and suggested weights, side by side, with the out-of-sample figures.
    assert len(re.findall(r'<g class="weight" data-kpi=', html)) == 4
    assert 'data-weights="suggested"' in html and 'data-weights="current"' in html
    # The history: both reports, newest first; a past one opens on its own.
    listed = [int(pk) for pk in re.findall(r'<tr data-report="(\d+)"', html)]
    assert listed == [report.pk, older.pk]
    past = html_of(client.get("/calibration/", {"model": report.model_id, "report": older.pk}))
    assert f"Report of {older.as_of:%Y-%m-%d}" in past
    assert 'href="/calibration/"' in html  # linked from the nav for channel admins


def test_report_page_is_for_channel_admins_only(client, manager, partner_user_a, report):
    client.force_login(manager)
    assert client.get("/calibration/").status_code == 403
    assert client.post(f"/calibration/{report.pk}/apply/").status_code == 403
    assert 'href="/calibration/"' not in html_of(client.get("/portfolio/"))
    client.force_login(partner_user_a)
    assert client.get("/calibration/").status_code == 404
    assert client.post("/calibration/regenerate/", {"model": report.model_id}).status_code == 404
    client.logout()
    assert client.get("/calibration/").status_code == 302


def test_regenerate_queues_a_report_after_commit(client, channel_admin, report, django_capture_on_commit_callbacks):
    from prm.celery import app

    client.force_login(channel_admin)
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = client.post("/calibration/regenerate/", {"model": report.model_id})
        assert response.status_code == 302 and CalibrationReport.objects.count() == 1  # nothing before commit
        for callback in callbacks:
            callback()
    finally:
        app.conf.task_always_eager = False
    latest = CalibrationReport.objects.exclude(pk=report.pk).get()
    assert latest.model_id == report.model_id and latest.created_by == channel_admin and latest.trigger == "page"


def test_regenerate_needs_a_post_with_csrf(client, channel_admin, report):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(channel_admin)
    assert strict.post("/calibration/regenerate/", {"model": report.model_id}).status_code == 403
    client.force_login(channel_admin)
    assert client.get("/calibration/regenerate/").status_code == 405


# Applying the suggested weights ---------------------------------------------------------------------


def _change_form(model, weights: dict[str, float]) -> dict:
    components = list(model.components.order_by("id"))
    data = {
        "name": model.name,
        "description": model.description,
        "priority": model.priority,
        "window_days": model.window_days,
        "trend_days": model.trend_days,
        "healthy_threshold": model.healthy_threshold,
        "at_risk_threshold": model.at_risk_threshold,
        "alert_threshold": model.alert_threshold,
        "rearm_points": model.rearm_points,
        "drop_points": model.drop_points,
        "components-TOTAL_FORMS": len(components),
        "components-INITIAL_FORMS": len(components),
        "components-MIN_NUM_FORMS": 0,
        "components-MAX_NUM_FORMS": 1000,
        "subscribers-TOTAL_FORMS": 0,
        "subscribers-INITIAL_FORMS": 0,
    }
    for i, c in enumerate(components):
        data.update(
            {
                f"components-{i}-id": c.pk,
                f"components-{i}-model": model.pk,
                f"components-{i}-kpi": c.kpi,
                f"components-{i}-weight": weights[c.kpi],
                f"components-{i}-method": c.method,
                f"components-{i}-missing": c.missing,
            }
        )
    return data


def test_suggested_weights_go_through_the_preview_and_change_the_model_only_on_save(client, channel_admin, report):
    model = report.model
    suggested = {row["kpi"]: max(round(row["suggested"], 3), 0.001) for row in report.results["weights"]["rows"]}
    history = model.history.count()
    component_history = ScoringComponent.history.filter(model_id=model.pk).count()
    client.force_login(channel_admin)

    response = client.post(f"/calibration/{report.pk}/apply/")
    assert response.status_code == 303
    target = response["Location"]
    assert target == f"/admin/health/scoringmodel/{model.pk}/change/?calibration={report.pk}"
    form = html_of(client.get(target))
    for i, component in enumerate(model.components.order_by("id")):
        shown = re.search(rf'name="components-{i}-weight" value="([0-9.]+)"', form).group(1)
        assert float(shown) == pytest.approx(suggested[component.kpi])
    assert "Weights filled in from calibration report" in form

    preview = client.post(target, {**_change_form(model, suggested), "_preview": "1"})
    assert "What-if preview" in html_of(preview)
    # Neither opening the form nor previewing changed anything.
    assert model.history.count() == history
    assert ScoringComponent.history.filter(model_id=model.pk).count() == component_history
    assert {c.kpi: float(c.weight) for c in model.components.all()} == NOISY_WEIGHTS

    saved = client.post(target, {**_change_form(model, suggested), "_save": "Save"})
    assert saved.status_code == 302
    assert {c.kpi: float(c.weight) for c in model.components.all()} == pytest.approx(suggested)
    changes = ScoringComponent.history.filter(model_id=model.pk).order_by("-history_id")[:4]
    assert all(change.history_user == channel_admin for change in changes)
    assert all(
        change.history_change_reason == f"Suggested weights of calibration report {report.pk}" for change in changes
    )
    assert model.history.latest().history_user == channel_admin


def test_a_report_without_suggested_weights_has_nothing_to_apply(client, channel_admin, report):
    results = {**report.results, "weights": {"status": "too_little_history"}}
    CalibrationReport.objects.filter(pk=report.pk).update(results=results)
    client.force_login(channel_admin)
    response = client.post(f"/calibration/{report.pk}/apply/")
    assert response.status_code == 302 and response["Location"].startswith("/calibration/")


# The forecast where people look -------------------------------------------------------------------


def _use_report_model(report) -> None:
    # As a recompute would: partners' own model is the report's.
    Partner.objects.update(health_model_id=report.model_id)


def test_partner_page_shows_the_forecast_with_its_interval(client, manager, partner_a, report):
    _use_report_model(report)
    forecast = PartnerForecast.objects.get(report=report, partner=partner_a)
    client.force_login(manager)
    html = html_of(client.get(f"/partners/{partner_a.external_id}/"))
    assert f'data-predicted="{forecast.predicted:.0f}"' in html
    assert f"{forecast.low:,.0f}" in html and f"{forecast.high:,.0f}" in html


def test_portfolio_sorts_by_forecast_in_constant_queries(client, manager, report, django_assert_max_num_queries):
    _use_report_model(report)
    client.force_login(manager)
    with django_assert_max_num_queries(12):
        html = html_of(client.get("/portfolio/", {"ordering": "-forecast"}))
    shown = [float(v) for v in re.findall(r'data-forecast="([0-9.]+)"', html)]
    assert len(shown) == 50 and shown == sorted(shown, reverse=True)
    best = PartnerForecast.objects.filter(report=report).order_by("-predicted").first()
    assert shown[0] == pytest.approx(round(best.predicted))
    ascending = [
        float(v)
        for v in re.findall(r'data-forecast="([0-9.]+)"', html_of(client.get("/portfolio/", {"ordering": "forecast"})))
    ]
    assert ascending == sorted(ascending)


def test_forecast_api_is_scoped_like_the_other_partner_resources(
    api_client_for, manager, partner_a, partner_b, partner_user_a, report
):
    forecast = PartnerForecast.objects.get(report=report, partner=partner_a)
    own = api_client_for(partner_user_a).get(f"/api/v1/partners/{partner_a.external_id}/forecast/")
    assert own.status_code == 200
    body = own.json()
    assert body["partner"] == partner_a.external_id and body["report"] == report.pk
    assert body["predicted"] == pytest.approx(forecast.predicted) and body["low"] <= body["predicted"] <= body["high"]
    assert body["period_start"].startswith("2026-10-02") and body["period_end"].startswith("2027-01-02")
    assert body["holdout"]["quarters"] == report.results["forecast"]["holdout"]["quarters"]
    # Another partner's forecast does not exist for a partner user; staff read any.
    assert api_client_for(partner_user_a).get(f"/api/v1/partners/{partner_b.external_id}/forecast/").status_code == 404
    assert api_client_for(manager).get(f"/api/v1/partners/{partner_b.external_id}/forecast/").status_code == 200
    assert api_client_for(None).get(f"/api/v1/partners/{partner_a.external_id}/forecast/").status_code == 401
    assert api_client_for(manager).get("/api/v1/partners/P-A/forecast/", {"model": 999999}).status_code == 404


def test_forecast_api_is_in_the_schema(admin_api):
    schema = admin_api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/partners/{external_id}/forecast/" in schema and "PartnerForecast" in schema


def test_report_page_queries_do_not_grow_with_the_history(client, channel_admin, report):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(channel_admin)
    url = f"/calibration/?model={report.model_id}"
    client.get(url)  # the session and the user's groups, once
    with CaptureQueriesContext(connection) as one:
        html_of(client.get(url))
    for _ in range(3):
        calibration_report_create(model=report.model, as_of=AS_OF, options=CalibrationOptions(quarters=1, resamples=20))
    with CaptureQueriesContext(connection) as four:
        html = html_of(client.get(url))
    assert len(re.findall(r'<tr data-report="\d+"', html)) == 4
    assert len(four) == len(one) <= 10
