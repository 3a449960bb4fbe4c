"""Query-string filters of the kpis app's API lists."""

from django_filters import rest_framework as filters

from kpis.models import BusinessReview


class BusinessReviewFilter(filters.FilterSet):
    partner = filters.CharFilter(field_name="partner__external_id", help_text="The partner's external_id.")
    period = filters.CharFilter(help_text="The quarter reviewed, e.g. 2026-Q3.")
    held_before = filters.DateFilter(
        field_name="held_on", lookup_expr="lte", help_text="Reviews held on or before this date."
    )

    class Meta:
        model = BusinessReview
        fields = ["partner", "period", "held_before"]
