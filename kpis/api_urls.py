"""URL map of the kpis app's part of REST API v1."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from kpis.api import BusinessReviewViewSet, KpiViewSet

router = SimpleRouter()
router.register("kpis", KpiViewSet, basename="kpi")
router.register("reviews", BusinessReviewViewSet, basename="review")

urlpatterns = [path("", include(router.urls))]
