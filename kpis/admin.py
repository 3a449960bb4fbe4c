"""Admin console of the kpis app: custom KPIs, targets (CSV import), reviews, action items and read-only records.

Closed periods, tier changes (the tier review approves them) and review reminders are written by the
application and only listed here.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from kpis.models import ActionItem, BusinessReview, CustomKpi, KpiPeriodSnapshot, KpiTarget, ReviewReminder, TierChange
from kpis.registry import kpi_catalogue
from prm.admin import ScopedAdmin
from prm.admin_import import CsvImportAdminMixin


@admin.register(CustomKpi)
class CustomKpiAdmin(SimpleHistoryAdmin):
    list_display = (
        "key",
        "label",
        "category",
        "numerator_aggregate",
        "numerator_kind",
        "denominator_aggregate",
        "denominator_kind",
        "better",
        "is_active",
    )
    list_filter = ("is_active", "category")
    search_fields = ("key", "label")
    list_select_related = ("numerator_kind", "denominator_kind")
    autocomplete_fields = ("numerator_kind", "denominator_kind")
    fieldsets = (
        (None, {"fields": ("key", "label", "category", "better", "description", "is_active")}),
        ("Numerator", {"fields": ("numerator_aggregate", "numerator_kind")}),
        ("Denominator (optional)", {"fields": ("denominator_aggregate", "denominator_kind")}),
    )

    def get_readonly_fields(self, request, obj=None):
        # Scoring models refer to a KPI by its key: it must not change under them.
        return ("key",) if obj is not None else ()


class ActionItemInline(admin.TabularInline):
    model = ActionItem
    fk_name = "review"
    fields = ("description", "owner", "due_on", "kpi", "target_value", "status", "completed_at")
    readonly_fields = ("completed_at",)
    extra = 1

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "owner":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "owner":
            # Every row offers the same owners: read them once per page instead of once per row.
            if not hasattr(request, "_kpis_owner_choices"):
                request._kpis_owner_choices = list(field.choices)
            field.choices = request._kpis_owner_choices
        return field


@admin.register(BusinessReview)
class BusinessReviewAdmin(ScopedAdmin):
    list_display = ("partner", "period", "held_on", "open_action_items", "created_by")
    list_select_related = ("partner", "created_by")
    list_filter = ("held_on",)
    date_hierarchy = "held_on"
    search_fields = ("partner__external_id", "partner__name", "period")
    autocomplete_fields = ("partner",)
    raw_id_fields = ("created_by",)
    readonly_fields = ("created_by", "created_at")
    inlines = (ActionItemInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(open_items=Count("action_items", filter=Q(action_items__status=ActionItem.Status.OPEN)))
        )

    @admin.display(description="Open action items", ordering="open_items")
    def open_action_items(self, review: BusinessReview) -> int:
        return review.open_items

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        now = timezone.now()
        items = formset.save(commit=False)
        for item in items:
            # Items belong to the review's partner; leaving "open" stamps completed_at.
            item.partner_id = form.instance.partner_id
            item.set_status(item.status, at=now)
            item.save()
        for item in formset.deleted_objects:
            item.delete()
        formset.save_m2m()


@admin.register(ActionItem)
class ActionItemAdmin(ScopedAdmin):
    list_display = ("description", "partner", "review", "owner", "due_on", "kpi", "status", "completed_at")
    list_select_related = ("partner", "review", "owner")
    list_filter = ("status", "due_on")
    search_fields = ("description", "partner__external_id", "partner__name")
    autocomplete_fields = ("partner",)
    raw_id_fields = ("review", "owner")
    readonly_fields = ("completed_at", "created_at")

    def save_model(self, request, obj, form, change):
        obj.set_status(obj.status, at=timezone.now())
        super().save_model(request, obj, form, change)


class KpiTargetForm(forms.ModelForm):
    class Meta:
        model = KpiTarget
        fields = ("kpi", "period", "tier", "partner", "value")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A list of the catalogue rather than a free text box: a mistyped key would target nothing.
        self.fields["kpi"] = forms.ChoiceField(
            choices=[(key, f"{kpi.label} ({key})") for key, kpi in kpi_catalogue().items()],
            help_text="The KPI this target is for.",
        )


@admin.register(KpiTarget)
class KpiTargetAdmin(CsvImportAdminMixin, SimpleHistoryAdmin):
    import_kind = "targets"
    form = KpiTargetForm
    list_display = ("kpi", "period", "tier", "partner", "value", "updated_at")
    list_select_related = ("tier", "partner")
    list_filter = ("period", "kpi", "tier")
    search_fields = ("kpi", "period", "partner__external_id", "partner__name")
    autocomplete_fields = ("partner",)
    ordering = ("-period", "kpi", "tier__rank", "partner__name")


class ReadOnlyAdmin(ScopedAdmin):
    """Records written by the application only: listed and shown, never added or edited here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(KpiPeriodSnapshot)
class KpiPeriodSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("partner", "period", "as_of", "tier", "health_score", "created_at")
    list_select_related = ("partner", "tier")
    list_filter = ("period",)
    search_fields = ("partner__external_id", "partner__name")
    ordering = ("-period", "partner__name")
    show_facets = admin.ShowFacets.NEVER


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdmin):
    list_display = ("partner", "from_tier", "to_tier", "approved_by_name", "approved_at", "reason")
    list_select_related = ("partner", "from_tier", "to_tier")
    list_filter = ("to_tier", "approved_at")
    search_fields = ("partner__external_id", "partner__name", "reason")
    date_hierarchy = "approved_at"

    def has_delete_permission(self, request, obj=None):
        # The record of who approved what stays.
        return False


@admin.register(ReviewReminder)
class ReviewReminderAdmin(ReadOnlyAdmin):
    list_display = ("partner", "owner", "due_since", "last_review_on", "status", "sent_at", "attempts", "last_error")
    list_select_related = ("partner", "owner")
    list_filter = ("status", "due_since")
    search_fields = ("partner__external_id", "partner__name", "owner__username")
