"""Admin console of health scoring: scoring models with inline components and a what-if preview."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import F, Sum, Window
from django.template.response import TemplateResponse
from simple_history.admin import SimpleHistoryAdmin

from health.models import (
    Alert,
    AlertDelivery,
    AlertPreference,
    AlertSubscriber,
    ScoreRun,
    ScoreSnapshot,
    ScoringComponent,
    ScoringModel,
)
from prm.models import Partner


def kpi_choices() -> list[tuple[str, str]]:
    # The catalogue includes admin-defined custom KPIs, so it is read per request, not at import.
    from kpis.registry import kpi_catalogue

    return [(key, f"{kpi.label} ({kpi.category})") for key, kpi in sorted(kpi_catalogue().items())]


class ComponentForm(forms.ModelForm):
    class Meta:
        model = ScoringComponent
        fields = ["kpi", "weight", "method", "target", "lower", "upper", "direction", "missing"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kpi"] = forms.ChoiceField(choices=[("", "---------")] + kpi_choices(), label="KPI")


class ComponentFormSet(forms.BaseInlineFormSet):
    # {kpi: weight} shown instead of the saved weights (a calibration report's suggestion); saved only on Save.
    suggested_weights: dict[str, float] = {}

    def get_form_kwargs(self, index):
        kwargs = super().get_form_kwargs(index)
        if self.suggested_weights and not self.is_bound and index is not None and index < self.initial_form_count():
            kpi = self.get_queryset()[index].kpi
            if kpi in self.suggested_weights:
                kwargs["initial"] = {"weight": self.suggested_weights[kpi]}
        return kwargs

    def clean(self):
        super().clean()
        seen = set()
        for form in self.forms:
            if not getattr(form, "cleaned_data", None) or form.cleaned_data.get("DELETE"):
                continue
            kpi = form.cleaned_data.get("kpi")
            if kpi in seen:
                form.add_error("kpi", "This KPI is already a component of the model: use each KPI once.")
            seen.add(kpi)
        if not seen:
            raise forms.ValidationError("A scoring model needs at least one component.")


class ComponentInline(admin.TabularInline):
    model = ScoringComponent
    form = ComponentForm
    formset = ComponentFormSet
    extra = 1
    fields = ["kpi", "weight", "weight_share", "method", "target", "lower", "upper", "direction", "missing"]
    readonly_fields = ["weight_share"]

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        suggested = suggested_weights(request, obj)
        if suggested:
            formset = type(formset.__name__, (formset,), {"suggested_weights": suggested})
        return formset

    def get_queryset(self, request):
        # The share of each weight in one query for the whole model, not one per row.
        return super().get_queryset(request).annotate(total_weight=Window(Sum("weight"), partition_by=[F("model_id")]))

    @admin.display(description="Share of weight")
    def weight_share(self, component: ScoringComponent) -> str:
        total = getattr(component, "total_weight", None)
        if not component.pk or not total:
            return "-"
        return f"{100 * component.weight / total:.1f}%"


def suggested_weights(request, model) -> dict[str, float]:
    """The suggested weights of the calibration report named by ?calibration= (of this model), if any."""
    from health.models import CalibrationReport

    raw = request.GET.get("calibration", "")
    if model is None or not raw.isdigit():
        return {}
    report = CalibrationReport.objects.filter(pk=int(raw), model=model).only("results").first()
    weights = (report.results.get("weights") or {}) if report else {}
    if weights.get("status") != "fitted":
        return {}
    # A zero weight is not allowed (and would drop the component from future reports): the smallest one is.
    return {
        row["kpi"]: max(round(row["suggested"], 3), 0.001)
        for row in weights["rows"]
        if row.get("suggested") is not None
    }


class ScoringModelForm(forms.ModelForm):
    segment_types = forms.MultipleChoiceField(
        choices=Partner.Type.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Partner types this model applies to; none checked = all types.",
    )

    class Meta:
        model = ScoringModel
        fields = [
            "name",
            "description",
            "is_active",
            "priority",
            "segment_types",
            "segment_tiers",
            "window_days",
            "trend_days",
            "healthy_threshold",
            "at_risk_threshold",
            "alert_threshold",
            "rearm_points",
            "drop_points",
        ]


class SubscriberInline(admin.TabularInline):
    model = AlertSubscriber
    extra = 0
    raw_id_fields = ["user"]
    verbose_name = "alert subscriber"
    verbose_name_plural = "Alert subscribers (besides each partner's owner)"


@admin.register(ScoringModel)
class ScoringModelAdmin(SimpleHistoryAdmin):
    form = ScoringModelForm
    inlines = [ComponentInline, SubscriberInline]
    list_display = [
        "name",
        "is_active",
        "priority",
        "segment",
        "window_days",
        "healthy_threshold",
        "at_risk_threshold",
        "updated_at",
    ]
    list_filter = ["is_active"]
    search_fields = ["name"]
    filter_horizontal = ["segment_tiers"]
    change_form_template = "admin/health/scoringmodel/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "description", "is_active", "priority"]}),
        ("Segment", {"fields": ["segment_types", "segment_tiers"]}),
        ("Window and trend", {"fields": ["window_days", "trend_days"]}),
        (
            "Bands and alerts",
            {"fields": ["healthy_threshold", "at_risk_threshold", "alert_threshold", "rearm_points", "drop_points"]},
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("segment_tiers")

    @admin.display(description="Segment")
    def segment(self, model: ScoringModel) -> str:
        parts = [
            ", ".join(model.segment_types or []) or "all types",
            ", ".join(t.name for t in model.segment_tiers.all()) or "all tiers",
        ]
        return " / ".join(parts)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and "_preview" in request.POST:
            return self.preview_view(request, object_id)
        if request.method == "GET" and request.GET.get("calibration") and object_id:
            obj = self.get_object(request, object_id)
            if suggested_weights(request, obj):
                self.message_user(
                    request,
                    f"Weights filled in from calibration report {request.GET['calibration']}: preview them, then save "
                    "to apply (nothing has changed yet).",
                    messages.INFO,
                )
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _calibration_reason(self, request) -> str | None:
        raw = request.GET.get("calibration", "")
        return f"Suggested weights of calibration report {raw}" if raw.isdigit() else None

    def save_model(self, request, obj, form, change):
        if reason := self._calibration_reason(request):
            obj._change_reason = reason
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        reason = self._calibration_reason(request)
        if reason and formset.model is ScoringComponent:
            for component_form in formset.forms:
                component_form.instance._change_reason = reason
        super().save_formset(request, form, formset, change)

    def preview_view(self, request, object_id):
        """Score the segment with the submitted, unsaved configuration; save nothing."""
        from health.services import model_spec, scored_partners, scores_preview, segment_filter

        obj = self.get_object(request, object_id) if object_id else None
        if not (self.has_change_permission(request, obj) if obj else self.has_add_permission(request)):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        form_class = self.get_form(request, obj, change=obj is not None)
        form = form_class(request.POST, request.FILES, instance=obj)
        if not form.is_valid():
            self.message_user(request, "Fix the errors below before previewing.", messages.ERROR)
            return super().changeform_view(request, object_id)
        unsaved = form.save(commit=False)
        formsets, _ = self._create_formsets(request, unsaved, change=obj is not None)
        if not all(formset.is_valid() for formset in formsets):
            self.message_user(request, "Fix the component errors below before previewing.", messages.ERROR)
            return super().changeform_view(request, object_id)
        components = [
            f.save(commit=False)
            for formset in formsets
            for f in formset.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        tiers = list(form.cleaned_data.get("segment_tiers") or [])
        spec = model_spec(unsaved, components)
        population = scored_partners().filter(segment_filter(unsaved.segment_types, [t.id for t in tiers]))
        preview = scores_preview(spec=spec, segment=population)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": f"What-if preview of {unsaved.name}",
            "preview": preview,
            "components": spec.components,
            "bands": ["healthy", "watch", "at_risk", "no_data"],
            "total_weight": sum(c.weight for c in spec.components),
        }
        return TemplateResponse(request, "admin/health/scoringmodel/preview.html", context)


@admin.register(ScoreSnapshot)
class ScoreSnapshotAdmin(admin.ModelAdmin):
    list_display = ["partner", "model", "as_of", "score_display", "band", "trend_display"]
    list_filter = ["band", "model"]
    list_select_related = ["partner", "model"]
    search_fields = ["partner__external_id", "partner__name"]
    raw_id_fields = ["partner", "run"]
    show_full_result_count = False
    readonly_fields = [f.name for f in ScoreSnapshot._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Score", ordering="score")
    def score_display(self, snapshot):
        return "-" if snapshot.score is None else f"{snapshot.score:.1f}"

    @admin.display(description="Trend", ordering="trend")
    def trend_display(self, snapshot):
        return "-" if snapshot.trend is None else f"{snapshot.trend:+.1f}"


@admin.register(ScoreRun)
class ScoreRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "as_of",
        "model",
        "trigger",
        "partial",
        "status",
        "partners_scored",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger"]
    list_select_related = ["model"]
    readonly_fields = [f.name for f in ScoreRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = ["email", "mode", "status", "attempts", "sent_at", "last_error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class AlertForm(forms.ModelForm):
    acknowledge = forms.BooleanField(required=False, help_text="Mark this alert as seen and handled.")

    class Meta:
        model = Alert
        fields = ["acknowledgment_note"]


class AcknowledgedFilter(admin.SimpleListFilter):
    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request, model_admin):
        return [("no", "Not yet"), ("yes", "Acknowledged")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(acknowledged_at__isnull=self.value() == "no")
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    form = AlertForm
    list_display = ["partner", "kind", "as_of", "score_display", "band", "model", "acknowledged_at", "acknowledged_by"]
    list_filter = [AcknowledgedFilter, "kind", "band", "model"]
    list_select_related = ["partner", "model", "acknowledged_by"]
    search_fields = ["partner__external_id", "partner__name"]
    show_full_result_count = False
    inlines = [DeliveryInline]
    readonly_fields = [
        "partner",
        "model",
        "kind",
        "as_of",
        "score",
        "previous_score",
        "trend",
        "band",
        "reasons",
        "acknowledged_at",
        "acknowledged_by",
        "follow_up",
    ]
    fields = readonly_fields[:9] + ["acknowledge", "acknowledgment_note"] + readonly_fields[9:]
    actions = ["acknowledge_selected"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Score", ordering="score")
    def score_display(self, alert):
        return "-" if alert.score is None else f"{alert.score:.1f}"

    def save_model(self, request, obj, form, change):
        from health.alerts import alert_acknowledge

        if form.cleaned_data.get("acknowledge"):
            alert_acknowledge(alert=obj, user=request.user, note=form.cleaned_data.get("acknowledgment_note", ""))

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge_selected(self, request, queryset):
        from health.alerts import alert_acknowledge

        for alert in queryset.filter(acknowledged_at__isnull=True)[:500]:
            alert_acknowledge(alert=alert, user=request.user)
        self.message_user(request, "Acknowledged.", messages.SUCCESS)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ["alert", "email", "mode", "status", "attempts", "sent_at", "last_error"]
    list_filter = ["status", "mode"]
    list_select_related = ["alert__partner"]
    search_fields = ["email", "alert__partner__external_id"]
    raw_id_fields = ["alert", "user"]
    show_full_result_count = False
    readonly_fields = [
        "alert",
        "user",
        "email",
        "mode",
        "status",
        "claimed_at",
        "claimed_by",
        "sent_at",
        "attempts",
        "last_error",
    ]
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry sending (after fixing the address or the mail server)")
    def retry(self, request, queryset):
        count = queryset.exclude(status=AlertDelivery.Status.SENT).update(
            status=AlertDelivery.Status.PENDING, claimed_at=None, claimed_by=""
        )
        self.message_user(request, f"{count} delivery(ies) will be sent by the next sweep or `manage.py send_alerts`.")


@admin.register(AlertPreference)
class AlertPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "mode", "digest_hour", "time_zone"]
    list_filter = ["mode"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
