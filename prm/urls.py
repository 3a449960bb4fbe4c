"""Top-level URLs: admin console, REST API v1 (one URL module per app), pages, health check."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("prm.api.urls")),
    path("api/v1/", include("kpis.api_urls")),
    path("api/v1/", include("health.api_urls")),
    path("healthz", healthz, name="healthz"),
    path("", include("kpis.urls")),
    # Last: the dashboards, the partner portal and the sign-in pages.
    path("", include("health.urls")),
]
