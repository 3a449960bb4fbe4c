"""URL map of the kpis app's part of REST API v1."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from kpis.api import BusinessReviewViewSet, KpiViewSet, PartnerKpisView

router = SimpleRouter()
router.register("kpis", KpiViewSet, basename="kpi")
router.register("reviews", BusinessReviewViewSet, basename="review")

urlpatterns = [
    path("partners/<str:external_id>/kpis/", PartnerKpisView.as_view(), name="partner-kpis"),
    path("", include(router.urls)),
]
