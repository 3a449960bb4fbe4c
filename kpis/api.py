"""REST API v1 of the kpis app: the KPI catalogue, a partner's KPIs of a period against targets, business reviews."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.response import Response
from rest_framework.views import APIView

from kpis.filters import BusinessReviewFilter
from kpis.models import ActionItem, Better, BusinessReview, KpiCategory, KpiUnit, period_validator
from kpis.periods import Period, PeriodError
from kpis.registry import BUILT_IN_KPIS, kpi_catalogue
from kpis.selectors import partner_kpi_table, reviews_visible_to
from kpis.services import review_create, review_update
from prm.roles import may_write_partner, visible_partners, writable_partners

# The catalogue ------------------------------------------------------------------------------------


class KpiSerializer(serializers.Serializer):
    key = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)
    category = serializers.ChoiceField(choices=KpiCategory.choices, read_only=True)
    unit = serializers.ChoiceField(choices=KpiUnit.choices, read_only=True)
    better = serializers.ChoiceField(choices=Better.choices, read_only=True)
    description = serializers.CharField(read_only=True)
    windowed = serializers.BooleanField(read_only=True, help_text="Measured over the scoring model's window.")
    custom = serializers.BooleanField(read_only=True, help_text="Defined by an admin rather than built in.")


@extend_schema_view(
    list=extend_schema(summary="The KPI catalogue", description="Every built-in KPI, then every active custom KPI."),
    retrieve=extend_schema(summary="One KPI of the catalogue"),
)
class KpiViewSet(viewsets.GenericViewSet):
    """The KPI catalogue: every built-in KPI and every active custom KPI."""

    serializer_class = KpiSerializer
    filter_backends: list = []
    lookup_field = "key"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def list(self, request):
        page = self.paginate_queryset(list(kpi_catalogue().values()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(parameters=[OpenApiParameter("key", OpenApiTypes.STR, OpenApiParameter.PATH)])
    def retrieve(self, request, key: str):
        kpi = kpi_catalogue().get(key)
        if kpi is None:
            raise Http404
        return Response(self.get_serializer(kpi).data)


# Business reviews -----------------------------------------------------------------------------------


class ActionItemSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True, allow_null=True)
    overdue = serializers.SerializerMethodField(help_text="Still open after its due date.")

    class Meta:
        model = ActionItem
        fields = [
            "id",
            "description",
            "owner",
            "due_on",
            "kpi",
            "target_value",
            "status",
            "completed_at",
            "created_at",
            "overdue",
        ]
        read_only_fields = fields

    def get_overdue(self, item: ActionItem) -> bool:
        if "today" not in self.context:
            self.context["today"] = timezone.localdate()
        return item.status == ActionItem.Status.OPEN and item.due_on is not None and item.due_on < self.context["today"]


class BusinessReviewSerializer(serializers.ModelSerializer):
    partner = serializers.CharField(source="partner.external_id", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)
    action_items = ActionItemSerializer(many=True, read_only=True)

    class Meta:
        model = BusinessReview
        fields = [
            "id",
            "partner",
            "period",
            "held_on",
            "attendees",
            "notes",
            "created_by",
            "created_at",
            "action_items",
        ]
        read_only_fields = fields


class ActionItemInput(serializers.Serializer):
    id = serializers.IntegerField(
        required=False, help_text="In a PATCH: the action item to change. Leave out to add a new one."
    )
    description = serializers.CharField(max_length=500, required=False)
    owner = serializers.CharField(
        max_length=150, required=False, allow_null=True, allow_blank=True, help_text="Username of the owner."
    )
    due_on = serializers.DateField(required=False, allow_null=True)
    kpi = serializers.CharField(max_length=50, required=False, allow_blank=True, help_text="A KPI key, or blank.")
    target_value = serializers.DecimalField(max_digits=14, decimal_places=2, required=False, allow_null=True)
    status = serializers.ChoiceField(choices=ActionItem.Status.choices, required=False)

    def validate(self, attrs):
        if attrs.get("id") is None and not attrs.get("description"):
            raise serializers.ValidationError({"description": "Required for a new action item."})
        return attrs


class BusinessReviewInput(serializers.Serializer):
    partner = serializers.CharField(max_length=64, help_text="The partner's external_id; cannot change later.")
    period = serializers.CharField(max_length=7, validators=[period_validator], help_text="e.g. 2026-Q3")
    held_on = serializers.DateField()
    attendees = serializers.CharField(required=False, allow_blank=True)
    notes = serializers.CharField(required=False, allow_blank=True)
    action_items = ActionItemInput(
        many=True,
        required=False,
        help_text="In a PATCH, items with an id change that item, items without are added, others are kept.",
    )

    def validate_partner(self, value: str):
        review = self.instance
        if review is not None:
            if value != review.partner.external_id:
                raise serializers.ValidationError("The partner of a review cannot be changed.")
            return review.partner
        # A write: the partner must be within the caller's write scope (ACCOUNT_MANAGER_SCOPE).
        partner = writable_partners(self.context["request"].user).filter(external_id=value).first()
        if partner is None:
            # Same answer whether the partner is missing or out of the caller's scope.
            raise serializers.ValidationError(f"Unknown partner '{value}'.")
        return partner

    def validate_action_items(self, items: list[dict]) -> list[dict]:
        """Resolve owners and check KPI keys for all items at once (not one query per item)."""
        usernames = {item["owner"] for item in items if item.get("owner")}
        owners = dict(get_user_model().objects.filter(username__in=usernames).values_list("username", "id"))
        kpi_keys = {item["kpi"] for item in items if item.get("kpi")}
        known_kpis = set(BUILT_IN_KPIS) if kpi_keys <= set(BUILT_IN_KPIS) else set(kpi_catalogue())
        # Keyed by item index, as DRF reports the items' own field errors.
        errors: dict[int, dict] = {}
        for index, item in enumerate(items):
            if "owner" in item:
                name = item.pop("owner")
                item["owner_id"] = owners.get(name) if name else None
                if name and item["owner_id"] is None:
                    errors.setdefault(index, {})["owner"] = [f"Unknown user '{name}'."]
            if item.get("kpi") and item["kpi"] not in known_kpis:
                errors.setdefault(index, {})["kpi"] = [f"Unknown KPI '{item['kpi']}'."]
        if errors:
            raise serializers.ValidationError(errors)
        return items


def _require(user, permission: str) -> None:
    if not user.has_perm(permission):
        raise PermissionDenied


@extend_schema_view(
    list=extend_schema(summary="Business reviews", description="Newest first; a partner user sees its own partner's."),
    retrieve=extend_schema(summary="One business review with its action items"),
)
class BusinessReviewViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Business reviews held with partners, with the action items agreed in them."""

    serializer_class = BusinessReviewSerializer
    # Reads for every signed-in user (the queryset is scoped to the user); writes need the model permission.
    permission_classes = [DjangoModelPermissions]
    filterset_class = BusinessReviewFilter
    ordering_fields = ["held_on", "created_at"]
    ordering = ["-held_on", "-id"]

    def get_queryset(self):
        return reviews_visible_to(self.request.user)

    def _validated(self, review: BusinessReview | None) -> dict:
        serializer = BusinessReviewInput(
            instance=review, data=self.request.data, partial=review is not None, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def _respond(self, review_id: int, status_code: int = status.HTTP_200_OK) -> Response:
        review = self.get_queryset().get(pk=review_id)
        return Response(self.get_serializer(review).data, status=status_code)

    @extend_schema(
        summary="Record a business review",
        request=BusinessReviewInput,
        responses={201: BusinessReviewSerializer},
    )
    def create(self, request):
        data = self._validated(None)
        if data.get("action_items"):
            _require(request.user, "kpis.add_actionitem")
        try:
            review = review_create(created_by=request.user, **data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return self._respond(review.pk, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a business review and its action items",
        description="Action items with an id change that item, items without one are added, others are kept.",
        request=BusinessReviewInput,
        responses=BusinessReviewSerializer,
    )
    def partial_update(self, request, pk=None):
        review = self.get_object()
        if not may_write_partner(request.user, review.partner_id):
            raise PermissionDenied
        data = self._validated(review)
        data.pop("partner", None)
        action_items = data.pop("action_items", None)
        if action_items:
            if any(item.get("id") is not None for item in action_items):
                _require(request.user, "kpis.change_actionitem")
            if any(item.get("id") is None for item in action_items):
                _require(request.user, "kpis.add_actionitem")
        try:
            review_update(review=review, data=data, action_items=action_items)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return self._respond(review.pk)


# A partner's KPIs of a period ---------------------------------------------------------------------------


class PartnerKpiSerializer(serializers.Serializer):
    kpi = serializers.CharField(source="kpi.key", help_text="Key of the KPI in the catalogue.")
    label = serializers.CharField(source="kpi.label")
    # Plain strings here: the enums are documented once, on the catalogue (GET /kpis/).
    category = serializers.CharField(source="kpi.category", help_text="The KPI's category, as in the catalogue.")
    unit = serializers.CharField(source="kpi.unit", help_text="The KPI's unit, as in the catalogue.")
    better = serializers.ChoiceField(source="kpi.better", choices=Better.choices)
    value = serializers.FloatField(allow_null=True, help_text="This period's value (period-to-date while open).")
    previous_value = serializers.FloatField(source="previous", allow_null=True, help_text="The previous period's.")
    target = serializers.FloatField(source="target.value", allow_null=True, default=None)
    target_source = serializers.ChoiceField(
        source="target.source",
        choices=[("partner", "The partner's own target"), ("tier", "Its tier's default target")],
        allow_null=True,
        default=None,
    )
    attainment = serializers.FloatField(
        allow_null=True,
        help_text="value / target (target / value when lower is better); null without both or when undefined.",
    )
    met = serializers.BooleanField(allow_null=True, help_text="Whether the value meets the target (null without both).")
    trend = serializers.FloatField(source="change", allow_null=True, help_text="value - previous_value.")
    direction = serializers.ChoiceField(
        choices=[("improving", "Improving"), ("worsening", "Worsening"), ("steady", "Steady")],
        allow_null=True,
        help_text="Whether the change is for the better, given the KPI's direction.",
    )


class PartnerKpisSerializer(serializers.Serializer):
    partner = serializers.CharField(source="partner.external_id")
    period = serializers.CharField(source="period.key")
    previous_period = serializers.CharField(source="previous_period.key")
    start = serializers.DateTimeField(source="period.start", help_text="The period's first instant.")
    end = serializers.DateTimeField(source="period.end", help_text="The first instant after the period.")
    as_of = serializers.DateTimeField(help_text="The instant the values are measured at.")
    closed = serializers.BooleanField(help_text="The period has ended; its values are stored and no longer change.")
    kpis = PartnerKpiSerializer(source="lines", many=True)


class PartnerKpisView(APIView):
    """A partner's KPI values of a period with their targets, attainment, previous period and trend."""

    @extend_schema(
        summary="A partner's KPIs of a period against targets",
        parameters=[
            OpenApiParameter(
                "period",
                OpenApiTypes.STR,
                description="A quarter (2026-Q3) or a month (2026-07); default the current quarter.",
            ),
            OpenApiParameter("kpi", OpenApiTypes.STR, description="Only these KPIs (keys, comma-separated)."),
        ],
        responses=PartnerKpisSerializer,
    )
    def get(self, request, external_id: str):
        partner = get_object_or_404(visible_partners(request.user), external_id=external_id)
        raw = request.query_params.get("period") or ""
        try:
            period = Period.parse(raw) if raw else Period.current()
        except PeriodError as exc:
            raise serializers.ValidationError({"period": [str(exc)]}) from exc
        if not period.has_started():
            raise serializers.ValidationError({"period": [f"{period} has not started yet."]})
        keys = [key for key in (request.query_params.get("kpi") or "").split(",") if key.strip()]
        if keys:
            catalogue = kpi_catalogue()
            unknown = [key for key in keys if key not in catalogue]
            if unknown:
                raise serializers.ValidationError({"kpi": [f"Unknown KPI(s): {', '.join(unknown)}."]})
        table = partner_kpi_table(partner=partner, period=period, keys=[key.strip() for key in keys] or None)
        return Response(PartnerKpisSerializer(table).data)
