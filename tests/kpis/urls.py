"""URLconf of the KPI page tests: the KPI pages and the health pages at the root, then the site's URLs."""

from health.urls import urlpatterns as health_pages
from kpis.urls import urlpatterns as kpi_pages
from prm.urls import urlpatterns as site_urlpatterns

urlpatterns = [*kpi_pages, *health_pages, *site_urlpatterns]
