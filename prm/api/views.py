"""Viewsets of REST API v1 for the core domain: partners, activity kinds, activities, deals, certifications.

Scoping, permissions, throttling and the reading of write bodies live once, in PrmViewSet; the viewsets
below only declare their querysets, filters and serializers, and hand validated items to prm.services.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings

from prm.api.filters import ActivityFilter, ActivityKindFilter, CertificationFilter, DealFilter, PartnerFilter
from prm.api.parsers import StrictJSONParser
from prm.api.permissions import BulkWriteThrottle, RolePermission
from prm.api.serializers import (
    BODY_ERRORS_SCHEMA,
    OBJECT_ERRORS_SCHEMA,
    ActivityKindSerializer,
    ActivitySerializer,
    CertificationSerializer,
    DealSerializer,
    IngestResultSerializer,
    PartnerSerializer,
    UpsertResultSerializer,
)
from prm.inputs import (
    ActivityInput,
    ActivityKindInput,
    BatchInvalid,
    CertificationInput,
    DealInput,
    ItemError,
    PartnerInput,
    validate_batch,
)
from prm.models import Activity, ActivityKind, Certification, Deal, Partner
from prm.roles import manager_owns_only, scope_to_user, writable_partners
from prm.services import (
    activities_ingest,
    activity_kind_create,
    certifications_upsert,
    deals_upsert,
    partner_delete,
    partner_update,
    partners_upsert,
)

EXTERNAL_ID_PATTERN = r"[A-Za-z0-9._-]+"

ACTIVITY_KEY = ("source", "external_id")
DEAL_KEY = ("external_id",)
PARTNER_KEY = ("external_id",)
CERTIFICATION_KEY = ("partner", "name", "role", "earned_on", "contact_email")


class ListBodyInvalid(APIException):
    """A list body with bad items: every error by index, and nothing of the body written."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Invalid items."

    def __init__(self, errors: Sequence[ItemError]):
        # Built directly: APIException would turn the integer indexes into strings.
        self.detail = {"errors": [error.as_dict() for error in errors]}


def _field_errors(errors: Sequence[ItemError]) -> dict[str, list[str]]:
    """A single object's errors in DRF's usual shape: {"field": ["message", ...]}."""
    by_field: dict[str, list[str]] = {}
    for error in errors:
        by_field.setdefault("non_field_errors" if error.field == "-" else error.field, []).append(error.message)
    return by_field


def _model_errors(invalid: DjangoValidationError) -> dict[str, list[str]]:
    """A model's full_clean() errors in DRF's shape ("__all__" is DRF's "non_field_errors")."""
    return {
        "non_field_errors" if name == "__all__" else name: messages for name, messages in invalid.message_dict.items()
    }


def _object_or_list(name: str, input_class) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(
        component_name=name,
        serializers=[input_class, input_class(many=True)],
        resource_type_field_name=None,
        many=False,
    )


_BAD_BODY = OpenApiResponse(
    BODY_ERRORS_SCHEMA,
    description='A list body: {"errors": [{"index", "field", "message"}]} and nothing written. '
    'A single object: {"field": ["message"]}.',
)
_BAD_OBJECT = OpenApiResponse(OBJECT_ERRORS_SCHEMA, description='{"field": ["message"]}; nothing changed.')


class PrmViewSet(viewsets.GenericViewSet):
    """Base of every viewset here: rows scoped to the caller, role permissions, filters, bulk throttle."""

    permission_classes = [RolePermission]
    parser_classes = [StrictJSONParser]  # a list body has no form encoding; API.md speaks JSON only
    filter_backends = [DjangoFilterBackend]
    throttle_classes = [*api_settings.DEFAULT_THROTTLE_CLASSES, BulkWriteThrottle]
    throttle_scope: str | None = "bulk"
    # Lookup path from a row to its partner ("" for partners themselves); None for data of no partner.
    partner_field: str | None = "partner"
    admin_only_actions: frozenset[str] = frozenset()

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.partner_field is None:
            return queryset
        return scope_to_user(queryset, self.request.user, self.partner_field)

    def body_object(self) -> dict:
        if not isinstance(self.request.data, Mapping):
            raise ValidationError({"non_field_errors": ["Send a JSON object."]})
        return dict(self.request.data.items())

    def validated(self, input_class, items: list, *, key_fields: tuple[str, ...], is_list: bool) -> list[dict]:
        """Validate items as one batch; a partner the caller may not write reads as unknown."""
        try:
            # Bodies are writes: a partner outside the caller's write scope reads as unknown.
            return validate_batch(
                input_class, items, key_fields=key_fields, partners_queryset=writable_partners(self.request.user)
            )
        except BatchInvalid as invalid:
            if is_list:
                raise ListBodyInvalid(invalid.errors) from None
            raise ValidationError(_field_errors(invalid.errors)) from None

    def validated_body(self, input_class, *, key_fields: tuple[str, ...]) -> tuple[list[dict], bool]:
        """The request body (one object or a list of objects) validated; also whether it was a list."""
        if isinstance(self.request.data, list):
            return self.validated(input_class, self.request.data, key_fields=key_fields, is_list=True), True
        if not isinstance(self.request.data, Mapping):
            raise ValidationError({"non_field_errors": ["Send a JSON object or a JSON list of objects."]})
        return self.validated(input_class, [self.body_object()], key_fields=key_fields, is_list=False), False


@extend_schema_view(
    create=extend_schema(
        request=_object_or_list("PartnerBody", PartnerInput),
        responses={
            201: OpenApiResponse(PartnerSerializer, description="One object: the partner, created."),
            200: OpenApiResponse(UpsertResultSerializer, description="A list: upserted by external_id."),
            400: _BAD_BODY,
        },
        description="One object creates a partner (400 if its external_id exists); a list upserts by external_id.",
    ),
    partial_update=extend_schema(request=PartnerInput, responses={200: PartnerSerializer, 400: _BAD_OBJECT}),
    destroy=extend_schema(description="Channel admins only."),
)
class PartnerViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    PrmViewSet,
):
    queryset = Partner.objects.select_related("tier", "owner").order_by("name", "pk")
    serializer_class = PartnerSerializer
    filterset_class = PartnerFilter
    lookup_field = "external_id"
    lookup_value_regex = EXTERNAL_ID_PATTERN
    partner_field = ""
    admin_only_actions = frozenset({"destroy"})
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):
        items, is_list = self.validated_body(PartnerInput, key_fields=PARTNER_KEY)
        self.check_write_scope(items, is_list=is_list)
        if is_list:
            return Response(partners_upsert(items=items).as_dict(), status=status.HTTP_200_OK)
        external_id = items[0]["external_id"]
        with transaction.atomic():
            # Checked inside the transaction so that a concurrent create cannot slip between check and write.
            if partners_upsert(items=items).created != 1:
                raise ValidationError({"external_id": [f"A partner '{external_id}' already exists."]})
        partner = self.get_queryset().get(external_id=external_id)
        return Response(self.get_serializer(partner).data, status=status.HTTP_201_CREATED)

    def check_write_scope(self, items: list[dict], *, is_list: bool) -> None:
        """An account manager held to their own partners (ACCOUNT_MANAGER_SCOPE) creates only partners they own
        and changes only those; every item at fault is reported, and nothing is written."""
        user = self.request.user
        if not manager_owns_only(user, for_write=True):
            return
        external_ids = [item["external_id"] for item in items]
        found = dict(Partner.objects.filter(external_id__in=external_ids).values_list("external_id", "owner_id"))
        errors = []
        for index, item in enumerate(items):
            if item["external_id"] in found and found[item["external_id"]] != user.pk:
                errors.append(ItemError(index, "external_id", "You may not change this partner."))
            elif item["external_id"] not in found and item.get("owner") != user.pk:
                errors.append(ItemError(index, "owner", "You may only create partners that you own."))
        if errors:
            if is_list:
                raise ListBodyInvalid(errors)
            raise ValidationError(_field_errors(errors))

    def partial_update(self, request, *args, **kwargs):
        partner = self.get_object()
        body = self.body_object()
        if body.get("external_id", partner.external_id) != partner.external_id:
            raise ValidationError({"external_id": ["Cannot be changed."]})
        current = {
            "external_id": partner.external_id,
            "name": partner.name,
            "type": partner.type,
            "tier": partner.tier.slug if partner.tier else None,
            "region": partner.region,
            "status": partner.status,
            "owner": partner.owner.username if partner.owner else None,
            "quarterly_revenue_target": partner.quarterly_revenue_target,
            "joined_on": partner.joined_on,
            "agreement_start": partner.agreement_start,
            "agreement_end": partner.agreement_end,
        }
        # The whole partner is validated with the changes applied, so cross-field rules see the result.
        (cleaned,) = self.validated(PartnerInput, [{**current, **body}], key_fields=PARTNER_KEY, is_list=False)
        try:
            partner_update(partner=partner, data={name: cleaned[name] for name in body if name != "external_id"})
        except DjangoValidationError as invalid:
            raise ValidationError(_model_errors(invalid)) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=partner.pk)).data)

    def perform_destroy(self, instance: Partner) -> None:
        partner_delete(partner=instance)


@extend_schema_view(
    create=extend_schema(
        request=ActivityKindInput,
        responses={201: ActivityKindSerializer, 400: _BAD_OBJECT},
        description="Channel admins only.",
    )
)
class ActivityKindViewSet(mixins.ListModelMixin, PrmViewSet):
    queryset = ActivityKind.objects.order_by("category", "key")
    serializer_class = ActivityKindSerializer
    filterset_class = ActivityKindFilter
    partner_field = None  # the catalogue belongs to no partner: everyone signed in reads it
    throttle_scope = None
    admin_only_actions = frozenset({"create"})

    def create(self, request, *args, **kwargs):
        kind_input = ActivityKindInput(data=request.data)
        kind_input.is_valid(raise_exception=True)
        try:
            kind = activity_kind_create(**kind_input.validated_data)
        except DjangoValidationError as invalid:
            raise ValidationError(_model_errors(invalid)) from None
        return Response(self.get_serializer(kind).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    create=extend_schema(
        request=_object_or_list("ActivityBody", ActivityInput),
        responses={201: IngestResultSerializer, 400: _BAD_BODY},
        description="One event or a list of up to 5,000. An event already stored (same source and external_id) "
        "is counted as a duplicate and left as it is.",
    )
)
class ActivityViewSet(mixins.ListModelMixin, PrmViewSet):
    queryset = Activity.objects.select_related("partner", "kind", "contact").order_by("-occurred_at", "-pk")
    serializer_class = ActivitySerializer
    filterset_class = ActivityFilter

    def create(self, request, *args, **kwargs):
        items, _ = self.validated_body(ActivityInput, key_fields=ACTIVITY_KEY)
        return Response(activities_ingest(items=items).as_dict(), status=status.HTTP_201_CREATED)


@extend_schema_view(
    create=extend_schema(
        request=_object_or_list("DealBody", DealInput),
        responses={
            201: OpenApiResponse(DealSerializer, description="One object: the deal, created."),
            200: OpenApiResponse(UpsertResultSerializer, description="A list: upserted by external_id."),
            400: _BAD_BODY,
        },
        description="One object creates a deal (400 if its external_id exists); a list upserts by external_id.",
    ),
    partial_update=extend_schema(request=DealInput, responses={200: DealSerializer, 400: _BAD_OBJECT}),
)
class DealViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PrmViewSet):
    queryset = Deal.objects.select_related("partner").order_by("-registered_at", "-pk")
    serializer_class = DealSerializer
    filterset_class = DealFilter
    lookup_field = "external_id"
    lookup_value_regex = EXTERNAL_ID_PATTERN
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create(self, request, *args, **kwargs):
        items, is_list = self.validated_body(DealInput, key_fields=DEAL_KEY)
        if is_list:
            return Response(deals_upsert(items=items).as_dict(), status=status.HTTP_200_OK)
        external_id = items[0]["external_id"]
        with transaction.atomic():
            if deals_upsert(items=items).created != 1:
                raise ValidationError({"external_id": [f"A deal '{external_id}' already exists."]})
        deal = self.get_queryset().get(external_id=external_id)
        return Response(self.get_serializer(deal).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        deal = self.get_object()
        body = self.body_object()
        if body.get("external_id", deal.external_id) != deal.external_id:
            raise ValidationError({"external_id": ["Cannot be changed."]})
        current = {
            "external_id": deal.external_id,
            "partner": deal.partner.external_id,
            "name": deal.name,
            "amount": deal.amount,
            "stage": deal.stage,
            "registered_at": deal.registered_at,
            "closed_at": deal.closed_at,
        }
        items = self.validated(DealInput, [{**current, **body}], key_fields=DEAL_KEY, is_list=False)
        deals_upsert(items=items)
        return Response(self.get_serializer(self.get_queryset().get(pk=deal.pk)).data)


@extend_schema_view(
    create=extend_schema(
        request=_object_or_list("CertificationBody", CertificationInput),
        responses={200: UpsertResultSerializer, 400: _BAD_BODY},
        description="One object or a list, upserted by (partner, name, role, earned_on, contact_email): "
        "a certification already known gets its expires_on updated.",
    )
)
class CertificationViewSet(mixins.ListModelMixin, PrmViewSet):
    queryset = Certification.objects.select_related("partner", "contact").order_by("-earned_on", "-pk")
    serializer_class = CertificationSerializer
    filterset_class = CertificationFilter

    def create(self, request, *args, **kwargs):
        items, _ = self.validated_body(CertificationInput, key_fields=CERTIFICATION_KEY)
        return Response(certifications_upsert(items=items).as_dict(), status=status.HTTP_200_OK)
