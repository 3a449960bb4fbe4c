"""URLs of the web pages: sign-in and password management, Today, Portfolio, partner pages, partner portal.

Included at the root of the site; names are plain (not namespaced) because Django's auth views reverse
their own names ("password_reset_done", ...) without a namespace.
"""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from health import views

EXTERNAL_ID = "<str:external_id>"

urlpatterns = [
    path("", views.today, name="today"),
    path("portfolio/", views.portfolio, name="portfolio"),
    path("portfolio/export.csv", views.portfolio_export, name="portfolio-export"),
    path(f"partners/{EXTERNAL_ID}/", views.partner_page, name="partner"),
    path(f"partners/{EXTERNAL_ID}/evidence/<slug:kpi>/", views.evidence, name="partner-evidence"),
    path(
        f"partners/{EXTERNAL_ID}/alerts/<int:alert_id>/acknowledge/",
        views.acknowledge,
        name="alert-acknowledge",
    ),
    path("portal/", views.portal, name="portal"),
    path("calibration/", views.calibration, name="calibration"),
    path("calibration/regenerate/", views.calibration_regenerate, name="calibration-regenerate"),
    path("calibration/<int:report_id>/apply/", views.calibration_apply, name="calibration-apply"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
]
