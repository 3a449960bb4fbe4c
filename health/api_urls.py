"""URL map of the health app's part of REST API v1."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from health import api

router = SimpleRouter()
router.register("scoring-models", api.ScoringModelViewSet, basename="scoring-model")
router.register("alerts", api.AlertViewSet, basename="alert")

urlpatterns = [
    path("partners/<str:external_id>/health/", api.PartnerHealthView.as_view(), name="partner-health"),
    path("partners/<str:external_id>/scores/", api.PartnerScoresView.as_view(), name="partner-scores"),
    path("partners/<str:external_id>/forecast/", api.PartnerForecastView.as_view(), name="partner-forecast"),
    path("scores/recompute/", api.RecomputeView.as_view(), name="scores-recompute"),
    path("scores/recompute/<str:task_id>/", api.RecomputeStatusView.as_view(), name="scores-recompute-status"),
    path("", include(router.urls)),
]
