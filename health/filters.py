"""django-filter FilterSets of the health API."""

import django_filters

from health.models import Alert
from prm.api.filters import InstantFilter


class AlertFilter(django_filters.FilterSet):
    partner = django_filters.CharFilter(field_name="partner__external_id")
    kind = django_filters.ChoiceFilter(choices=Alert.Kind.choices)
    model = django_filters.NumberFilter(field_name="model_id")
    band = django_filters.CharFilter()
    acknowledged = django_filters.BooleanFilter(field_name="acknowledged_at", lookup_expr="isnull", exclude=True)
    # With an offset, as every time filter of the API (a naive time or an offset PostgreSQL refuses is a 400).
    since = InstantFilter(field_name="as_of", lookup_expr="gt")
    until = InstantFilter(field_name="as_of", lookup_expr="lte")

    class Meta:
        model = Alert
        fields = ["partner", "kind", "model", "band", "acknowledged", "since", "until"]
