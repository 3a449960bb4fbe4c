"""Query filters of the API lists; their names and meanings are a contract (KPI evidence links use them).

Windows are half-open like the KPI window (A - W, A] of docs/scoring.md: `since`/`*_after` exclude the
instant given, `until`/`*_before` include it, so a KPI's evidence link lists exactly the rows it counted.
"""

from __future__ import annotations

import datetime
import re

import django_filters
from django import forms
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from prm.inputs import parse_instant
from prm.models import Activity, ActivityKind, Certification, Deal, Partner

# An unencoded "+" in a query string arrives as a space: "...T09:30:00 02:00" meant "...T09:30:00+02:00".
_SPACE_FOR_PLUS = re.compile(r"^(.*\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}(?::?\d{2})?)$")


class InstantField(forms.Field):
    """An ISO 8601 time that must carry its UTC offset: a naive time would depend on the server's zone."""

    default_error_messages = {
        "invalid": "Enter an ISO 8601 time with a UTC offset, e.g. 2026-10-01T00:00:00Z.",
        "naive": "Give the time with a UTC offset, e.g. 2026-10-01T00:00:00Z or 2026-10-01T00:00:00+02:00.",
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        parsed = parse_instant(_SPACE_FOR_PLUS.sub(r"\1+\2", str(value).strip()))
        if parsed is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        if timezone.is_naive(parsed):
            raise forms.ValidationError(self.error_messages["naive"], code="naive")
        return parsed


class InstantFilter(django_filters.IsoDateTimeFilter):
    field_class = InstantField


class KeyInFilter(django_filters.BaseInFilter, django_filters.CharFilter):
    """One value or several, comma-separated (`kind=a,b`)."""


class ChoiceInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """One choice or several, comma-separated (`stage=won,lost`); an unknown choice is an error."""


class NullsLastOrderingFilter(django_filters.OrderingFilter):
    """Ordering where rows without a value (no score yet) come last in both directions; ties by id."""

    def get_ordering_value(self, param):
        descending = param.startswith("-")
        name = self.param_map.get(param.lstrip("-"), param.lstrip("-"))
        return F(name).desc(nulls_last=True) if descending else F(name).asc(nulls_last=True)

    def filter(self, qs, value):
        ordering = [self.get_ordering_value(param) for param in value or () if param]
        return qs.order_by(*ordering, "pk") if ordering else qs


class PartnerFilter(django_filters.FilterSet):
    tier = django_filters.CharFilter(field_name="tier__slug", help_text="Tier slug.")
    type = django_filters.ChoiceFilter(choices=Partner.Type.choices)
    region = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=Partner.Status.choices)
    owner = django_filters.CharFilter(field_name="owner__username", help_text="Username of the account manager.")
    band = django_filters.ChoiceFilter(field_name="health_band", choices=Partner.Band.choices)
    search = django_filters.CharFilter(method="filter_search", help_text="Part of the name or of the external_id.")
    ordering = NullsLastOrderingFilter(
        fields=(("name", "name"), ("health_score", "score"), ("health_trend", "trend")),
        help_text="name, score or trend; prefix with '-' for descending. Partners without a score come last.",
    )

    class Meta:
        model = Partner
        fields = []

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(external_id__icontains=value))


class ActivityKindFilter(django_filters.FilterSet):
    category = django_filters.ChoiceFilter(choices=ActivityKind.Category.choices)

    class Meta:
        model = ActivityKind
        fields = []


class ActivityFilter(django_filters.FilterSet):
    partner = django_filters.CharFilter(field_name="partner__external_id", help_text="Partner external_id.")
    kind = KeyInFilter(field_name="kind__key", help_text="Activity kind key, or several comma-separated.")
    category = django_filters.ChoiceFilter(field_name="kind__category", choices=ActivityKind.Category.choices)
    source = django_filters.CharFilter()
    since = InstantFilter(field_name="occurred_at", lookup_expr="gt", help_text="occurred_at > since (excluded).")
    until = InstantFilter(field_name="occurred_at", lookup_expr="lte", help_text="occurred_at <= until (included).")

    class Meta:
        model = Activity
        fields = []


class DealFilter(django_filters.FilterSet):
    partner = django_filters.CharFilter(field_name="partner__external_id", help_text="Partner external_id.")
    stage = ChoiceInFilter(choices=Deal.Stage.choices, help_text="One stage, or several comma-separated.")
    registered_after = InstantFilter(field_name="registered_at", lookup_expr="gt", help_text="registered_at > t.")
    registered_before = InstantFilter(field_name="registered_at", lookup_expr="lte", help_text="registered_at <= t.")
    closed_after = InstantFilter(field_name="closed_at", lookup_expr="gt", help_text="closed_at > t.")
    closed_before = InstantFilter(field_name="closed_at", lookup_expr="lte", help_text="closed_at <= t.")
    open_at = InstantFilter(
        method="filter_open_at",
        help_text="Open at t: registered_at <= t, not rejected, and not closed by t (the open_pipeline KPI).",
    )

    class Meta:
        model = Deal
        fields = []

    def filter_open_at(self, queryset: QuerySet, name: str, value: datetime.datetime) -> QuerySet:
        return (
            queryset.filter(registered_at__lte=value)
            .exclude(stage=Deal.Stage.REJECTED)
            .filter(Q(closed_at__isnull=True) | Q(closed_at__gt=value))
        )


class CertificationFilter(django_filters.FilterSet):
    partner = django_filters.CharFilter(field_name="partner__external_id", help_text="Partner external_id.")
    role = django_filters.ChoiceFilter(choices=Certification.Role.choices)
    active_on = django_filters.DateFilter(
        method="filter_active_on", help_text="Active on date d: earned_on <= d and (no expiry or expires_on > d)."
    )

    class Meta:
        model = Certification
        fields = []

    def filter_active_on(self, queryset: QuerySet, name: str, value: datetime.date) -> QuerySet:
        return queryset.filter(earned_on__lte=value).filter(Q(expires_on__isnull=True) | Q(expires_on__gt=value))
