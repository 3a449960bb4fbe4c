"""URLs of the KPI pages, included at the site's root beside the health app's pages."""

from django.urls import path

from kpis import views

EXTERNAL_ID = "<str:external_id>"

urlpatterns = [
    path("kpis/", views.portfolio_kpis, name="kpi-portfolio"),
    path("kpis/export.csv", views.portfolio_kpis_export, name="kpi-portfolio-export"),
    path(f"partners/{EXTERNAL_ID}/kpis/", views.partner_kpis, name="partner-kpi-table"),
    path(f"partners/{EXTERNAL_ID}/review/", views.review_draft, name="review-draft"),
    path(f"partners/{EXTERNAL_ID}/review.pdf", views.review_draft_pdf, name="review-draft-pdf"),
    path("reviews/<int:review_id>/", views.review_page, name="review-summary"),
    path("reviews/<int:review_id>/summary.pdf", views.review_pdf, name="review-summary-pdf"),
    path("tiers/review/", views.tier_review_page, name="tier-review"),
    path(f"tiers/review/{EXTERNAL_ID}/change/", views.tier_change, name="tier-change"),
]
