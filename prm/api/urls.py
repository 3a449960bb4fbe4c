"""URL map of REST API v1: token, the core domain's viewsets, and the OpenAPI schema with its docs page."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.permissions import AllowAny
from rest_framework.routers import DefaultRouter

from prm.api import views

router = DefaultRouter()
router.register("partners", views.PartnerViewSet, basename="partner")
router.register("activity-kinds", views.ActivityKindViewSet, basename="activity-kind")
router.register("activities", views.ActivityViewSet, basename="activity")
router.register("deals", views.DealViewSet, basename="deal")
router.register("certifications", views.CertificationViewSet, basename="certification")

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    # Open to anyone, as API.md says: integrators read the schema before they hold a token.
    path("schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="api-schema"),
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    path("", include(router.urls)),
]
