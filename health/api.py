"""REST API v1 of health scoring: scoring models, what-if preview, partner health and history, recompute."""

from __future__ import annotations

import uuid

from celery.result import AsyncResult
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from health.alerts import alert_acknowledge
from health.filters import AlertFilter
from health.models import Alert, ScoreSnapshot, ScoringComponent, ScoringModel
from health.services import model_spec, scored_partners, scores_preview, segment_filter
from health.tasks import recompute_scores
from kpis.registry import kpi_catalogue, kpi_evidence_url
from prm.inputs import parse_instant
from prm.models import Partner, Tier
from prm.roles import is_channel_admin, may_write_partner, partner_id_of, scope_to_user, visible_partners

# Permissions ---------------------------------------------------------------------------------------


class ReadAnyWriteChannelAdmin(permissions.BasePermission):
    """Everyone signed in reads scoring models (the portal explains them); channel admins change them."""

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return True
        return is_channel_admin(request.user)


class IsVendorStaff(permissions.BasePermission):
    """Channel admins and account managers: not partner users."""

    def has_permission(self, request, view):
        return (
            request.user.is_authenticated
            and partner_id_of(request.user) is None
            and (is_channel_admin(request.user) or request.user.is_staff)
        )


class IsChannelAdmin(permissions.BasePermission):
    def has_permission(self, request, view):
        return is_channel_admin(request.user)


# Scoring models ------------------------------------------------------------------------------------


class ComponentSerializer(serializers.ModelSerializer):
    kpi = serializers.CharField(max_length=50)
    weight = serializers.DecimalField(max_digits=8, decimal_places=3, coerce_to_string=False)
    target = serializers.DecimalField(
        max_digits=16, decimal_places=4, allow_null=True, required=False, coerce_to_string=False
    )
    lower = serializers.DecimalField(
        max_digits=16, decimal_places=4, allow_null=True, required=False, coerce_to_string=False
    )
    upper = serializers.DecimalField(
        max_digits=16, decimal_places=4, allow_null=True, required=False, coerce_to_string=False
    )
    direction = serializers.ChoiceField(choices=ScoringComponent.Direction.choices, required=False, allow_blank=True)

    class Meta:
        model = ScoringComponent
        fields = ["kpi", "weight", "method", "target", "lower", "upper", "direction", "missing"]

    def validate(self, attrs):
        component = ScoringComponent(**attrs)
        try:
            component.clean()
        except Exception as exc:  # django.core.exceptions.ValidationError
            raise serializers.ValidationError(getattr(exc, "message_dict", {"-": [str(exc)]}))
        return attrs


class SegmentSerializer(serializers.Serializer):
    types = serializers.ListField(child=serializers.ChoiceField(choices=Partner.Type.choices), required=False)
    tiers = serializers.ListField(child=serializers.SlugField(), required=False)


class ScoringModelSerializer(serializers.ModelSerializer):
    segment = SegmentSerializer(required=False)
    components = ComponentSerializer(many=True)
    healthy_threshold = serializers.DecimalField(max_digits=5, decimal_places=2, required=False, coerce_to_string=False)
    at_risk_threshold = serializers.DecimalField(max_digits=5, decimal_places=2, required=False, coerce_to_string=False)
    alert_threshold = serializers.DecimalField(max_digits=5, decimal_places=2, required=False, coerce_to_string=False)
    rearm_points = serializers.DecimalField(max_digits=5, decimal_places=2, required=False, coerce_to_string=False)
    drop_points = serializers.DecimalField(max_digits=5, decimal_places=2, required=False, coerce_to_string=False)

    class Meta:
        model = ScoringModel
        fields = [
            "id",
            "name",
            "description",
            "is_active",
            "priority",
            "segment",
            "window_days",
            "trend_days",
            "healthy_threshold",
            "at_risk_threshold",
            "alert_threshold",
            "rearm_points",
            "drop_points",
            "components",
            "updated_at",
        ]
        read_only_fields = ["id", "updated_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["segment"] = {
            "types": list(instance.segment_types or []),
            "tiers": [tier.slug for tier in instance.segment_tiers.all()],
        }
        return data

    def validate_components(self, components):
        keys = [c["kpi"] for c in components]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise serializers.ValidationError(f"A KPI may be used once per model: {', '.join(duplicates)}.")
        if not components:
            raise serializers.ValidationError("A scoring model needs at least one component.")
        return components

    def validate_segment(self, segment):
        slugs = segment.get("tiers", [])
        tiers = {tier.slug: tier for tier in Tier.objects.filter(slug__in=slugs)}
        unknown = sorted(set(slugs) - set(tiers))
        if unknown:
            raise serializers.ValidationError({"tiers": f"Unknown tier(s): {', '.join(unknown)}."})
        return {"types": segment.get("types", []), "tiers": [tiers[s] for s in slugs]}

    def validate(self, attrs):
        instance = self.instance or ScoringModel()
        healthy = attrs.get("healthy_threshold", instance.healthy_threshold)
        at_risk = attrs.get("at_risk_threshold", instance.at_risk_threshold)
        if at_risk > healthy:
            raise serializers.ValidationError({"at_risk_threshold": "Must not be above healthy_threshold."})
        return attrs

    def unsaved(self) -> tuple[ScoringModel, list[ScoringComponent], dict]:
        """The validated body as unsaved objects (for the what-if preview)."""
        data = dict(self.validated_data)
        components = [ScoringComponent(**c) for c in data.pop("components")]
        segment = data.pop("segment", {"types": [], "tiers": []})
        model = ScoringModel(**data)
        model.segment_types = segment.get("types", [])
        return model, components, segment


class ScoringModelViewSet(viewsets.ModelViewSet):
    """Scoring models with their components; channel admins create and change them."""

    serializer_class = ScoringModelSerializer
    permission_classes = [permissions.IsAuthenticated, ReadAnyWriteChannelAdmin]
    http_method_names = ["get", "post", "put", "patch", "head", "options"]
    queryset = ScoringModel.objects.prefetch_related("components", "segment_tiers").order_by("priority", "id")
    filterset_fields = ["is_active"]
    ordering_fields = ["priority", "name", "id"]

    def perform_create(self, serializer):
        from health.services import scoring_model_save

        serializer.instance = scoring_model_save(model=None, data=serializer.validated_data)

    def perform_update(self, serializer):
        from health.services import scoring_model_save

        serializer.instance = scoring_model_save(model=serializer.instance, data=serializer.validated_data)

    @extend_schema(
        request=ScoringModelSerializer,
        responses=inline_serializer(
            "ScorePreview",
            {
                "partners": serializers.IntegerField(),
                "band_changes": serializers.IntegerField(),
                "current_bands": serializers.DictField(child=serializers.IntegerField()),
                "preview_bands": serializers.DictField(child=serializers.IntegerField()),
                "distribution": serializers.ListField(child=serializers.DictField()),
                "movers": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated, IsVendorStaff])
    def preview(self, request, pk=None):
        """What-if: the scores and bands the body's (unsaved) configuration would give, beside today's."""
        self.get_object()  # 404 for an unknown model
        serializer = ScoringModelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model, components, segment = serializer.unsaved()
        spec = model_spec(model, components)
        population = scored_partners().filter(segment_filter(segment["types"], [t.id for t in segment["tiers"]]))
        preview = scores_preview(spec=spec, segment=population)
        return Response(
            {
                "partners": preview.partners,
                "band_changes": preview.band_changes,
                "current_bands": preview.current_bands,
                "preview_bands": preview.preview_bands,
                "distribution": preview.distribution,
                "movers": preview.movers,
            }
        )


# Partner health and history ------------------------------------------------------------------------


class SnapshotSerializer(serializers.ModelSerializer):
    partner = serializers.CharField(source="partner.external_id")
    model = serializers.IntegerField(source="model_id")
    model_name = serializers.CharField(source="model.name")
    components = serializers.SerializerMethodField()

    class Meta:
        model = ScoreSnapshot
        fields = ["partner", "model", "model_name", "as_of", "score", "band", "trend", "category_scores", "components"]

    def get_components(self, snapshot) -> list[dict]:
        request = self.context.get("request")
        catalogue = self.context.setdefault("catalogue", kpi_catalogue())
        components = []
        for component in snapshot.components:
            url = (
                kpi_evidence_url(
                    component["kpi"],
                    partner_external_id=snapshot.partner.external_id,
                    as_of=snapshot.as_of,
                    window_days=snapshot.window_days,
                    catalogue=catalogue,
                )
                if component["kpi"] in catalogue
                else None  # a custom KPI deleted since: its records can no longer be named
            )
            components.append({**component, "evidence": request.build_absolute_uri(url) if (url and request) else url})
        return components


class SnapshotHistorySerializer(SnapshotSerializer):
    class Meta(SnapshotSerializer.Meta):
        fields = ["partner", "model", "model_name", "as_of", "score", "band", "trend", "category_scores"]


def _instant(request, name: str):
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = parse_instant(raw)
    if value is None or timezone.is_naive(value):
        raise serializers.ValidationError(
            {name: ["Give an ISO 8601 instant with an offset, e.g. 2026-10-01T00:00:00Z."]}
        )
    return value


def _model_param(request) -> int | None:
    raw = request.query_params.get("model")
    if raw is None:
        return None
    if not raw.isdigit():
        raise serializers.ValidationError({"model": ["A scoring model id (a whole number)."]})
    return int(raw)


def _partner_for(request, external_id: str) -> Partner:
    """The partner, if the caller may see it; 404 otherwise (its existence is not revealed)."""
    return get_object_or_404(visible_partners(request.user), external_id=external_id)


class PartnerHealthView(APIView):
    """The partner's latest health snapshot, with components and the evidence behind each."""

    @extend_schema(
        parameters=[
            OpenApiParameter("model", OpenApiTypes.INT, description="Scoring model id (default: the partner's own)"),
            OpenApiParameter("as_of", OpenApiTypes.DATETIME, description="Latest snapshot at or before this instant"),
        ],
        responses=SnapshotSerializer,
    )
    def get(self, request, external_id: str):
        partner = _partner_for(request, external_id)
        snapshots = ScoreSnapshot.objects.filter(partner=partner).select_related("partner", "model")
        model_id = _model_param(request) or partner.health_model_id
        if model_id:
            snapshots = snapshots.filter(model_id=model_id)
        as_of = _instant(request, "as_of")
        if as_of:
            snapshots = snapshots.filter(as_of__lte=as_of)
        snapshot = snapshots.order_by("-as_of").first()
        if snapshot is None:
            raise Http404("No health snapshot for this partner yet.")
        return Response(SnapshotSerializer(snapshot, context={"request": request}).data)


class PartnerScoresView(generics.ListAPIView):
    """Score history of a partner, newest first."""

    serializer_class = SnapshotHistorySerializer
    filter_backends = []

    @extend_schema(
        parameters=[
            OpenApiParameter("model", OpenApiTypes.INT),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="as_of >= since"),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="as_of <= until"),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        partner = _partner_for(self.request, self.kwargs["external_id"])
        snapshots = ScoreSnapshot.objects.filter(partner=partner).select_related("partner", "model")
        model_id = _model_param(self.request)
        if model_id:
            snapshots = snapshots.filter(model_id=model_id)
        since, until = _instant(self.request, "since"), _instant(self.request, "until")
        if since:
            snapshots = snapshots.filter(as_of__gte=since)
        if until:
            snapshots = snapshots.filter(as_of__lte=until)
        return snapshots.order_by("-as_of", "model_id")


# Recompute -----------------------------------------------------------------------------------------


class RecomputeRequestSerializer(serializers.Serializer):
    as_of = serializers.DateTimeField(required=False)
    model = serializers.PrimaryKeyRelatedField(queryset=ScoringModel.objects.all(), required=False)

    def validate_as_of(self, value):
        raw = self.initial_data.get("as_of")
        parsed = parse_instant(raw) if isinstance(raw, str) else None
        if parsed is None or timezone.is_naive(parsed):
            raise serializers.ValidationError("Give an ISO 8601 instant with an offset, e.g. 2026-10-01T00:00:00Z.")
        return parsed


class RecomputeView(APIView):
    """Queue a recompute; answers 202 with the task id to follow at /scores/recompute/{task_id}/."""

    permission_classes = [permissions.IsAuthenticated, IsChannelAdmin]

    @extend_schema(
        request=RecomputeRequestSerializer,
        responses={202: inline_serializer("RecomputeQueued", {"task_id": serializers.CharField()})},
    )
    def post(self, request):
        body = RecomputeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        task_id = str(uuid.uuid4())
        kwargs = {
            "as_of": body.validated_data["as_of"].isoformat() if "as_of" in body.validated_data else None,
            "model_id": body.validated_data["model"].pk if "model" in body.validated_data else None,
            "trigger": "api",
        }
        transaction.on_commit(lambda: recompute_scores.apply_async(kwargs=kwargs, task_id=task_id))
        return Response({"task_id": task_id}, status=status.HTTP_202_ACCEPTED)


class RecomputeStatusView(APIView):
    """State of a queued recompute: PENDING, STARTED, SUCCESS (with its result) or FAILURE."""

    permission_classes = [permissions.IsAuthenticated, IsChannelAdmin]

    @extend_schema(
        responses=inline_serializer(
            "RecomputeStatus",
            {"task_id": serializers.CharField(), "status": serializers.CharField(), "result": serializers.JSONField()},
        )
    )
    def get(self, request, task_id: str):
        result = AsyncResult(str(task_id))
        payload = result.result if result.successful() else (str(result.result) if result.failed() else None)
        return Response({"task_id": str(task_id), "status": result.status, "result": payload})


# Alerts --------------------------------------------------------------------------------------------


class AlertSerializer(serializers.ModelSerializer):
    partner = serializers.CharField(source="partner.external_id")
    partner_name = serializers.CharField(source="partner.name")
    model = serializers.IntegerField(source="model_id")
    acknowledged = serializers.SerializerMethodField()
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", default=None, allow_null=True)
    follow_up = serializers.IntegerField(source="follow_up_id", allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "partner",
            "partner_name",
            "model",
            "kind",
            "as_of",
            "score",
            "previous_score",
            "trend",
            "band",
            "reasons",
            "created_at",
            "acknowledged",
            "acknowledged_at",
            "acknowledged_by",
            "acknowledgment_note",
            "follow_up",
        ]

    def get_acknowledged(self, alert) -> bool:
        return alert.acknowledged_at is not None


class FollowUpSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=500)
    owner = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.filter(is_active=True), required=False
    )
    due_on = serializers.DateField(required=False, allow_null=True)
    kpi = serializers.CharField(max_length=50, required=False, allow_blank=True)


class AcknowledgeSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    follow_up = FollowUpSerializer(required=False)


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts raised by the recompute; vendor staff read and acknowledge them (partner users see none)."""

    serializer_class = AlertSerializer
    permission_classes = [permissions.IsAuthenticated, IsVendorStaff]
    filterset_class = AlertFilter
    ordering_fields = ["as_of", "score", "trend"]
    ordering = ["-as_of", "-id"]

    def get_queryset(self):
        return scope_to_user(Alert.objects.select_related("partner", "acknowledged_by"), self.request.user)

    def permission_denied(self, request, message=None, code=None):
        # For a partner user, alerts do not exist (as every record beyond its own partner): 404, not 403.
        if request.user.is_authenticated and partner_id_of(request.user) is not None:
            raise Http404
        super().permission_denied(request, message=message, code=code)

    @extend_schema(request=AcknowledgeSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Acknowledge the alert (the first acknowledgment stands), optionally with a follow-up action."""
        alert = self.get_object()
        if not may_write_partner(request.user, alert.partner_id):
            raise PermissionDenied("You may not act on this partner's alerts.")
        body = AcknowledgeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = alert_acknowledge(
            alert=alert,
            user=request.user,
            note=body.validated_data.get("note", ""),
            follow_up=body.validated_data.get("follow_up"),
        )
        return Response(AlertSerializer(alert, context={"request": request}).data)


# Revenue forecast ----------------------------------------------------------------------------------


class PartnerForecastSerializer(serializers.Serializer):
    partner = serializers.CharField(source="partner.external_id")
    model = serializers.IntegerField(source="model_id")
    report = serializers.IntegerField(source="report_id")
    generated_at = serializers.DateTimeField(source="report.created_at")
    period_start = serializers.SerializerMethodField()
    period_end = serializers.SerializerMethodField()
    predicted = serializers.FloatField(help_text="Predicted partner-sourced revenue over the period.")
    low = serializers.FloatField(help_text="Lower end of the interval (see holdout.interval).")
    high = serializers.FloatField(help_text="Upper end of the interval.")
    revenue_last_quarter = serializers.FloatField(help_text="Partner-sourced revenue of the three months before.")
    holdout = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_period_start(self, forecast) -> str:
        return forecast.report.as_of.isoformat()

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_period_end(self, forecast) -> str:
        from health.calibration import forecast_period

        return forecast_period(forecast)[1].isoformat()

    @extend_schema_field(
        inline_serializer(
            "ForecastHoldout",
            {
                "quarters": serializers.ListField(child=serializers.CharField()),
                "mape": serializers.FloatField(allow_null=True),
                "spearman": serializers.FloatField(allow_null=True),
                "coverage": serializers.FloatField(allow_null=True),
                "interval": serializers.FloatField(),
            },
        )
    )
    def get_holdout(self, forecast) -> dict:
        section = forecast.report.results.get("forecast") or {}
        holdout = section.get("holdout") or {}
        return {
            "quarters": holdout.get("quarters", []),
            "mape": holdout.get("mape"),
            "spearman": holdout.get("spearman"),
            "coverage": holdout.get("coverage"),
            "interval": section.get("interval"),
        }


class PartnerForecastView(APIView):
    """The partner's predicted partner-sourced revenue for the three months after the latest calibration."""

    @extend_schema(
        parameters=[
            OpenApiParameter("model", OpenApiTypes.INT, description="Scoring model id (default: the partner's own)")
        ],
        responses=PartnerForecastSerializer,
    )
    def get(self, request, external_id: str):
        from health.models import PartnerForecast

        partner = _partner_for(request, external_id)
        model_id = _model_param(request) or partner.health_model_id
        forecasts = PartnerForecast.objects.filter(partner=partner).select_related("partner", "report")
        if model_id:
            forecasts = forecasts.filter(model_id=model_id)
        forecast = forecasts.order_by("-report_id").first()
        if forecast is None:
            raise Http404("No forecast for this partner yet.")
        return Response(PartnerForecastSerializer(forecast, context={"request": request}).data)
