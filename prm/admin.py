"""Admin console of the partner program, built to stay fast at 100,000 partners and 10 million activities.

Lists join what they show (list_select_related), partner foreign keys use autocomplete, users and
contacts raw ids, and no filter lists every partner. The activity and deal lists never COUNT(*) millions
of rows: PostgreSQL's planner estimates stand in for large counts.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html_join
from django.utils.http import urlencode
from simple_history.admin import SimpleHistoryAdmin

from prm.admin_import import CsvImportAdminMixin
from prm.models import Activity, ActivityKind, Certification, Contact, Deal, Partner, PartnerMembership, Tier
from prm.roles import scope_to_user
from prm.services import partner_delete, partner_update


class EstimatedCountPaginator(Paginator):
    """Counts a list of millions of rows from PostgreSQL's planner instead of a COUNT(*) that reads them all.

    Unfiltered: the table's statistics (pg_class.reltuples). Filtered: an exact count of at most
    `estimate_above` rows, and past that the planner's estimate of the filtered query, since a broad
    filter (one activity category) would otherwise count millions of rows. Lists shorter than
    `estimate_above`, and every list on other databases (SQLite), are counted exactly.
    """

    estimate_above = 100_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or connections[queryset.db].vendor != "postgresql":
            return super().count
        if not queryset.query.where and not queryset.query.distinct:
            estimate = self.table_estimate()
            return estimate if estimate is not None and estimate >= self.estimate_above else super().count
        # COUNT(*) over a LIMIT subquery: stops reading after estimate_above + 1 rows.
        bounded = queryset.order_by()[: self.estimate_above + 1].count()
        if bounded <= self.estimate_above:
            return bounded
        return max(bounded, self.query_estimate(queryset))

    def table_estimate(self) -> int | None:
        queryset = self.object_list
        connection = connections[queryset.db]
        with connection.cursor() as cursor:
            # As the planner does: tuples per page at the last ANALYZE times the table's pages now,
            # so a table that grew since then is not under-counted.
            cursor.execute(
                """
                SELECT CASE WHEN relpages > 0
                            THEN reltuples / relpages * (pg_relation_size(oid) / current_setting('block_size')::int)
                            ELSE reltuples END
                FROM pg_class WHERE oid = %s::regclass
                """,
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        # reltuples is -1 for a table never analyzed: no estimate.
        if row is None or row[0] is None or row[0] < 0:
            return None
        return int(row[0])

    @staticmethod
    def query_estimate(queryset: QuerySet) -> int:
        plan = json.loads(queryset.order_by().explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])


class ExactValueFilter(admin.ListFilter):
    """A list filter typed into a box and matched exactly (index-friendly), for columns with too many values."""

    parameter_name: str
    lookup: str
    placeholder = ""
    template = "admin/prm/input_filter.html"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        if self.parameter_name in params:
            value = params.pop(self.parameter_name)[-1].strip()
            if value:
                self.used_parameters[self.parameter_name] = value

    def value(self) -> str | None:
        return self.used_parameters.get(self.parameter_name)

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [self.parameter_name]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(**{self.lookup: value}) if value else queryset

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            # The box's form resubmits the list's other filters, search and ordering.
            "hidden_params": [
                (name, value)
                for name, values in changelist.filter_params.items()
                if name != self.parameter_name
                for value in values
            ],
        }


class PartnerExternalIdFilter(ExactValueFilter):
    title = "partner"
    parameter_name = "partner"
    lookup = "partner__external_id"
    placeholder = "external id, e.g. P-1001"


class SourceFilter(ExactValueFilter):
    title = "source"
    parameter_name = "source"
    lookup = "source"
    placeholder = "e.g. crm"


class ScopedAdmin(admin.ModelAdmin):
    """Applies the program's one partner scoping rule to the admin's querysets, as to every other."""

    partner_field = "partner"

    def get_queryset(self, request):
        return scope_to_user(super().get_queryset(request), request.user, self.partner_field)


class LargeTableAdmin(ScopedAdmin):
    """For tables of millions of rows: no full count, no facet counts."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    show_facets = admin.ShowFacets.NEVER


@admin.register(Tier)
class TierAdmin(SimpleHistoryAdmin):
    list_display = (
        "name",
        "slug",
        "rank",
        "min_sales_certifications",
        "min_technical_certifications",
        "min_delivery_certifications",
        "min_quarterly_revenue",
        "min_health_score",
    )
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    ordering = ("rank", "name")


@admin.register(ActivityKind)
class ActivityKindAdmin(SimpleHistoryAdmin):
    list_display = ("key", "label", "category", "unit")
    list_filter = ("category", "unit")
    search_fields = ("key", "label")

    def get_readonly_fields(self, request, obj=None):
        # Activities, imports and KPI definitions refer to a kind by its key: it must not change under them.
        return ("key",) if obj is not None else ()


@admin.register(Partner)
class PartnerAdmin(CsvImportAdminMixin, ScopedAdmin, SimpleHistoryAdmin):
    import_kind = "partners"
    partner_field = ""
    list_display = (
        "external_id",
        "name",
        "type",
        "tier",
        "region",
        "status",
        "owner",
        "health_score",
        "health_band",
    )
    list_display_links = ("external_id", "name")
    list_filter = (
        "health_band",
        "status",
        "type",
        "tier",
        "region",
        # Only users who own partners: a select of every login would not scale.
        ("owner", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("external_id", "name")
    list_select_related = ("tier", "owner")
    raw_id_fields = ("owner",)
    readonly_fields = (
        "health_score",
        "health_band",
        "health_trend",
        "health_as_of",
        "signals",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("external_id", "name", "type", "tier", "region", "status", "owner")}),
        ("Agreement", {"fields": ("quarterly_revenue_target", "joined_on", "agreement_start", "agreement_end")}),
        ("Health (computed)", {"fields": ("health_score", "health_band", "health_trend", "health_as_of")}),
        ("Records", {"fields": ("signals", "created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        # The CRM's id ties imports and integrations to this partner: fixed once created.
        return self.readonly_fields + (("external_id",) if obj is not None else ())

    @admin.display(description="Signals")
    def signals(self, obj: Partner) -> str:
        """Links to the partner's records in their own (filtered) lists: no count, no query."""
        if obj.pk is None:
            return "-"
        query = urlencode({"partner": obj.external_id})
        links = [
            (reverse(f"admin:prm_{model._meta.model_name}_changelist") + "?" + query, model._meta.verbose_name_plural)
            for model in (Activity, Deal, Certification, Contact)
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    def save_model(self, request, obj, form, change):
        obj._history_user = request.user
        if not change:
            super().save_model(request, obj, form, change)
            return
        # The service saves and tells scoring that the partner's data changed (a target, a tier ...).
        data = {}
        for name in form.changed_data:
            value = form.cleaned_data[name]
            data[name] = value.pk if isinstance(value, Model) else value
        partner_update(partner=obj, data=data)

    def delete_model(self, request, obj):
        partner_delete(partner=obj)


@admin.register(Contact)
class ContactAdmin(ScopedAdmin):
    list_display = ("email", "name", "role", "partner")
    list_filter = (PartnerExternalIdFilter,)
    search_fields = ("email", "name")
    list_select_related = ("partner",)
    autocomplete_fields = ("partner",)
    show_facets = admin.ShowFacets.NEVER


@admin.register(PartnerMembership)
class PartnerMembershipAdmin(ScopedAdmin):
    list_display = ("user", "partner")
    list_filter = (PartnerExternalIdFilter,)
    search_fields = ("user__username", "user__email", "partner__external_id", "partner__name")
    list_select_related = ("user", "partner")
    autocomplete_fields = ("partner",)
    raw_id_fields = ("user",)


@admin.register(Activity)
class ActivityAdmin(CsvImportAdminMixin, LargeTableAdmin):
    import_kind = "activities"
    list_display = ("id", "partner", "kind", "occurred_at", "quantity", "value", "source", "external_id")
    list_filter = (PartnerExternalIdFilter, SourceFilter, "kind", "kind__category", "occurred_at")
    # Exact matches only: a substring search would read all 10 million rows.
    search_fields = ("external_id__exact",)
    search_help_text = "Exact external id of the event (add the source filter for an indexed lookup)."
    list_select_related = ("partner", "kind")
    autocomplete_fields = ("partner",)
    raw_id_fields = ("contact",)
    # Newest first by primary key walks the primary key index; sorting by another column would sort the table.
    ordering = ("-id",)
    sortable_by = ()
    readonly_fields = ("created_at",)


@admin.register(Deal)
class DealAdmin(CsvImportAdminMixin, LargeTableAdmin):
    import_kind = "deals"
    list_display = ("external_id", "name", "partner", "amount", "stage", "registered_at", "closed_at")
    list_filter = (PartnerExternalIdFilter, "stage", "registered_at", "closed_at", "partner__tier")
    search_fields = ("external_id__exact", "name")
    search_help_text = "Exact external id, or part of the deal's name."
    list_select_related = ("partner",)
    autocomplete_fields = ("partner",)
    ordering = ("-id",)
    sortable_by = ("amount", "registered_at", "closed_at")
    readonly_fields = ("updated_at",)


@admin.register(Certification)
class CertificationAdmin(CsvImportAdminMixin, ScopedAdmin):
    import_kind = "certifications"
    list_display = ("name", "role", "partner", "contact", "earned_on", "expires_on")
    list_filter = (PartnerExternalIdFilter, "role", "earned_on", "expires_on")
    search_fields = ("name",)
    list_select_related = ("partner", "contact")
    autocomplete_fields = ("partner",)
    raw_id_fields = ("contact",)
    show_facets = admin.ShowFacets.NEVER
