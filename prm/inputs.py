"""Validation of incoming partner data, shared by the REST API, CSV imports and the admin import.

Every item of a body or every line of a file is validated before anything is written. References
(partners, kinds, tiers, owners, contacts) are resolved from maps fetched in a handful of queries for
the whole batch, never one query per item.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from prm.models import (
    ActivityKind,
    Certification,
    Contact,
    Deal,
    Partner,
    Tier,
    external_id_validator,
)


@dataclass(frozen=True)
class ItemError:
    """One reason an item (list body) or line (CSV file) was refused."""

    index: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


class BatchInvalid(Exception):
    """A batch had at least one bad item; nothing of it was written."""

    def __init__(self, errors: Sequence[ItemError]):
        super().__init__(f"{len(errors)} invalid item(s)")
        self.errors = list(errors)


# Fields -------------------------------------------------------------------------------------------


def parse_instant(text: str) -> datetime.datetime | None:
    """An ISO 8601 time with its offset, as UTC; None when it does not parse or has no offset.

    UTC because PostgreSQL refuses offsets beyond 15:59 that Python accepts (up to 23:59): an instant
    given as 08:00+22:35 is stored and compared as the same instant in UTC. An instant that falls outside
    the years 1 to 9999 once in UTC does not parse.
    """
    try:
        parsed = parse_datetime(text.strip())
        if parsed is None or timezone.is_naive(parsed):
            return parsed
        return parsed.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        return None


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 instant that must carry its UTC offset: a naive time is ambiguous, so refused."""

    default_error_messages = {
        "naive": "Give the time with a UTC offset, e.g. 2026-10-01T09:30:00Z or 2026-10-01T09:30:00+02:00.",
    }

    def to_internal_value(self, value):
        if isinstance(value, str):
            parsed = parse_instant(value)
            if parsed is None:
                self.fail("invalid", format="YYYY-MM-DDThh:mm[:ss[.uuuuuu]]+HH:MM or Z")
            if timezone.is_naive(parsed):
                self.fail("naive")
            return parsed
        if isinstance(value, datetime.datetime) and timezone.is_naive(value):
            self.fail("naive")
        return super().to_internal_value(value)


class FiniteDecimalField(serializers.DecimalField):
    """A decimal that refuses NaN and infinity with a clear message, whatever the input type."""

    default_error_messages = {"not_finite": "Must be a finite number (not NaN or infinity)."}

    def to_internal_value(self, data):
        if isinstance(data, float) and not math.isfinite(data):
            self.fail("not_finite")
        if isinstance(data, str) and data.strip().lower().lstrip("+-") in {"nan", "inf", "infinity", "snan"}:
            self.fail("not_finite")
        return super().to_internal_value(data)


def _money(**kwargs) -> FiniteDecimalField:
    return FiniteDecimalField(max_digits=14, decimal_places=2, **kwargs)


class StrictIntegerField(serializers.IntegerField):
    """An integer that refuses booleans and fractions (True is not 1 and 1.5 is not 1 here)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or (isinstance(data, float) and not data.is_integer()):
            self.fail("invalid")
        return super().to_internal_value(data)


# Batch context: references resolved in bulk --------------------------------------------------------


@dataclass
class Lookups:
    """Everything an input serializer may need to resolve, fetched once for a whole batch."""

    partners: dict[str, int] = field(default_factory=dict)  # external_id -> id, already scoped to the caller
    kinds: dict[str, ActivityKind] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)
    owners: dict[str, int] = field(default_factory=dict)
    contacts: dict[tuple[int, str], int] = field(default_factory=dict)  # (partner_id, lower email) -> id


def lookups_for(items: Iterable[dict], *, partners_queryset=None) -> Lookups:
    """Resolve every reference a batch mentions, in at most five queries.

    `partners_queryset` restricts which partners may be written (a partner user's own partner);
    a partner outside it is reported as unknown, so its existence is not revealed.
    """
    items = [item for item in items if isinstance(item, dict)]
    partner_keys = {str(item["partner"]) for item in items if item.get("partner") is not None}
    kind_keys = {str(item["kind"]) for item in items if item.get("kind") is not None}
    tier_keys = {str(item["tier"]) for item in items if item.get("tier")}
    owner_keys = {str(item["owner"]) for item in items if item.get("owner")}
    emails = {str(item["contact_email"]).lower() for item in items if item.get("contact_email")}

    lookups = Lookups()
    if partner_keys:
        queryset = partners_queryset if partners_queryset is not None else Partner.objects.all()
        lookups.partners = dict(queryset.filter(external_id__in=partner_keys).values_list("external_id", "id"))
    if kind_keys:
        lookups.kinds = {kind.key: kind for kind in ActivityKind.objects.filter(key__in=kind_keys)}
    if tier_keys:
        lookups.tiers = dict(Tier.objects.filter(slug__in=tier_keys).values_list("slug", "id"))
    if owner_keys:
        User = get_user_model()
        lookups.owners = dict(User.objects.filter(username__in=owner_keys).values_list("username", "id"))
    if emails and lookups.partners:
        for partner_id, email, contact_id in Contact.objects.filter(
            partner_id__in=lookups.partners.values(), email__in=emails
        ).values_list("partner_id", "email", "id"):
            lookups.contacts[(partner_id, email.lower())] = contact_id
    return lookups


class _BatchSerializer(serializers.Serializer):
    """Base of the item serializers: resolves references from the batch's Lookups."""

    @property
    def lookups(self) -> Lookups:
        return self.context["lookups"]

    def resolve_partner(self, value: str) -> int:
        partner_id = self.lookups.partners.get(value)
        if partner_id is None:
            raise serializers.ValidationError(f"Unknown partner '{value}'.")
        return partner_id

    def resolve_contact(self, partner_id: int | None, email: str | None) -> int | None:
        """A contact email names a contact of the partner; an unknown one is created by the service."""
        if not email or partner_id is None:
            return None
        return self.lookups.contacts.get((partner_id, email.lower()))


_FAST_ACTIVITY_FIELDS = frozenset({"partner", "kind", "occurred_at", "quantity", "source", "external_id"})
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class ActivityInput(_BatchSerializer):
    partner = serializers.CharField(max_length=64)
    kind = serializers.CharField(max_length=50)
    occurred_at = AwareDateTimeField()
    quantity = StrictIntegerField(min_value=1, max_value=2_147_483_647, required=False)
    value = _money(required=False, allow_null=True)
    source = serializers.CharField(max_length=64)
    external_id = serializers.CharField(max_length=128)
    contact_email = serializers.EmailField(required=False, allow_null=True, allow_blank=True)
    metadata = serializers.DictField(required=False)

    def validate_partner(self, value: str) -> int:
        return self.resolve_partner(value)

    def fast_validated(self, item: dict) -> dict | None:
        """The item as run_validation() would clean it, when it is a plain valid event (the fields a sync
        sends for every event, nothing to trim, a known partner and kind, an aware time, a whole quantity);
        None otherwise, and DRF validates it (and words any error).

        DRF's field-by-field validation was most of the time of a 1,000-event body (docs/benchmarks.md,
        "Load"); tests/api/test_ingest_fast_path.py holds the two paths to the same results.
        """
        if not item.keys() <= _FAST_ACTIVITY_FIELDS:
            return None
        texts = (item.get("partner"), item.get("kind"), item.get("source"), item.get("external_id"))
        for text, limit in zip(texts, (64, 50, 64, 128), strict=True):
            if type(text) is not str or not text or len(text) > limit or text != text.strip():
                return None
            if _UNSTORABLE.search(text):
                return None
        partner_id = self.lookups.partners.get(texts[0])
        kind = self.lookups.kinds.get(texts[1])
        occurred_at = item.get("occurred_at")
        if partner_id is None or kind is None or type(occurred_at) is not str:
            return None
        parsed = parse_instant(occurred_at)
        if parsed is None or timezone.is_naive(parsed):
            return None
        cleaned = {"partner": partner_id, "kind": kind, "occurred_at": parsed}
        if "quantity" in item:
            quantity = item["quantity"]
            if type(quantity) is not int or not 1 <= quantity <= 2_147_483_647:
                return None
            cleaned["quantity"] = quantity
        cleaned.update(source=texts[2], external_id=texts[3], contact_id=None)
        return cleaned

    def validate_kind(self, value: str) -> ActivityKind:
        kind = self.lookups.kinds.get(value)
        if kind is None:
            raise serializers.ValidationError(f"Unknown activity kind '{value}'.")
        return kind

    def validate(self, attrs):
        kind: ActivityKind = attrs["kind"]
        value = attrs.get("value")
        if kind.unit == ActivityKind.Unit.RATING and value is not None and not (0 <= value <= 10):
            raise serializers.ValidationError({"value": "A rating must be between 0 and 10."})
        if kind.unit == ActivityKind.Unit.AMOUNT and value is not None and value < 0:
            raise serializers.ValidationError({"value": "An amount must not be negative."})
        attrs["contact_id"] = self.resolve_contact(attrs["partner"], attrs.get("contact_email"))
        return attrs


class DealInput(_BatchSerializer):
    external_id = serializers.CharField(max_length=128, validators=[external_id_validator])
    partner = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200)
    amount = _money(min_value=Decimal("0"))
    stage = serializers.ChoiceField(choices=Deal.Stage.choices)
    registered_at = AwareDateTimeField()
    closed_at = AwareDateTimeField(required=False, allow_null=True)

    def validate_partner(self, value: str) -> int:
        return self.resolve_partner(value)

    def validate(self, attrs):
        closed = attrs["stage"] in Deal.CLOSED_STAGES
        if closed and not attrs.get("closed_at"):
            raise serializers.ValidationError({"closed_at": f"Required when the stage is {attrs['stage']}."})
        if not closed and attrs.get("closed_at"):
            raise serializers.ValidationError(
                {"closed_at": f"Must be empty while the stage is {attrs['stage']} (only won or lost deals close)."}
            )
        if attrs.get("closed_at") and attrs["closed_at"] < attrs["registered_at"]:
            raise serializers.ValidationError({"closed_at": "Must not be before registered_at."})
        return attrs


class CertificationInput(_BatchSerializer):
    partner = serializers.CharField(max_length=64)
    contact_email = serializers.EmailField(required=False, allow_null=True, allow_blank=True)
    name = serializers.CharField(max_length=200)
    role = serializers.ChoiceField(choices=Certification.Role.choices)
    earned_on = serializers.DateField()
    expires_on = serializers.DateField(required=False, allow_null=True)

    def validate_partner(self, value: str) -> int:
        return self.resolve_partner(value)

    def validate(self, attrs):
        if attrs.get("expires_on") and attrs["expires_on"] <= attrs["earned_on"]:
            raise serializers.ValidationError({"expires_on": "Must be after earned_on."})
        attrs["contact_id"] = self.resolve_contact(attrs["partner"], attrs.get("contact_email"))
        return attrs


class PartnerInput(_BatchSerializer):
    external_id = serializers.CharField(max_length=64, validators=[external_id_validator])
    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=Partner.Type.choices)
    tier = serializers.CharField(max_length=50, required=False, allow_null=True, allow_blank=True)
    region = serializers.CharField(max_length=64, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=Partner.Status.choices, required=False)
    owner = serializers.CharField(max_length=150, required=False, allow_null=True, allow_blank=True)
    quarterly_revenue_target = _money(required=False, allow_null=True, min_value=Decimal("0"))
    joined_on = serializers.DateField(required=False, allow_null=True)
    agreement_start = serializers.DateField(required=False, allow_null=True)
    agreement_end = serializers.DateField(required=False, allow_null=True)

    def validate_tier(self, value):
        if not value:
            return None
        tier_id = self.lookups.tiers.get(value)
        if tier_id is None:
            raise serializers.ValidationError(f"Unknown tier '{value}'.")
        return tier_id

    def validate_owner(self, value):
        if not value:
            return None
        owner_id = self.lookups.owners.get(value)
        if owner_id is None:
            raise serializers.ValidationError(f"Unknown user '{value}'.")
        return owner_id

    def validate(self, attrs):
        start, end = attrs.get("agreement_start"), attrs.get("agreement_end")
        if start and end and end < start:
            raise serializers.ValidationError({"agreement_end": "Must not be before agreement_start."})
        return attrs


class ActivityKindInput(serializers.Serializer):
    """A new activity kind (the catalogue is configuration, not a batch of partner data)."""

    key = serializers.SlugField(max_length=50)
    label = serializers.CharField(max_length=100)
    category = serializers.ChoiceField(choices=ActivityKind.Category.choices)
    unit = serializers.ChoiceField(choices=ActivityKind.Unit.choices, default=ActivityKind.Unit.COUNT)

    def validate_key(self, value: str) -> str:
        if ActivityKind.objects.filter(key=value).exists():
            raise serializers.ValidationError(f"An activity kind '{value}' already exists.")
        return value


# Batch validation ---------------------------------------------------------------------------------


def _flatten(errors, prefix: str = "") -> list[tuple[str, str]]:
    """DRF's nested error structure as (field, message) pairs, 'non_field_errors' as field '-'."""
    pairs: list[tuple[str, str]] = []
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = "-" if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            pairs.extend(_flatten(value, name))
    elif isinstance(errors, list):
        for value in errors:
            pairs.extend(_flatten(value, prefix))
    else:
        pairs.append((prefix or "-", str(errors)))
    return pairs


def validate_batch(
    serializer_class: type[_BatchSerializer],
    items: Sequence,
    *,
    key_fields: tuple[str, ...],
    partners_queryset=None,
    max_items: int | None = None,
) -> list[dict]:
    """Validate every item; return the cleaned items or raise BatchInvalid with every error found.

    `key_fields` name the identity of an item in the batch: the same key twice in one batch is an
    error (it would make the result depend on the order of items).
    """
    max_items = max_items or settings.API_MAX_LIST_ITEMS
    if len(items) > max_items:
        raise BatchInvalid([ItemError(-1, "-", f"At most {max_items} items per request; got {len(items)}.")])
    if not items:
        raise BatchInvalid([ItemError(-1, "-", "The list is empty.")])

    lookups = lookups_for(items, partners_queryset=partners_queryset)
    errors: list[ItemError] = []
    cleaned: list[dict] = []
    first_seen: dict[tuple, int] = {}
    # One serializer for the whole batch: building one per item (deep copies of its fields) was half the cost.
    serializer = serializer_class(context={"lookups": lookups})
    declared = set(serializer_class._declared_fields)
    fast_validated = getattr(serializer, "fast_validated", None)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(ItemError(index, "-", "Each item must be a JSON object."))
            continue
        for name in sorted(set(item) - declared):
            errors.append(ItemError(index, name, "Unknown field."))
        validated = fast_validated(item) if fast_validated else None
        if validated is None:
            try:
                validated = serializer.run_validation(item)
            except serializers.ValidationError as exc:
                errors.extend(ItemError(index, name, message) for name, message in _flatten(exc.detail))
                continue
        key = tuple(str(item.get(name)) for name in key_fields)
        if key in first_seen:
            errors.append(
                ItemError(index, key_fields[-1], f"Duplicates item {first_seen[key]} of this batch ({', '.join(key)}).")
            )
            continue
        first_seen[key] = index
        cleaned.append(validated)
    if errors:
        raise BatchInvalid(errors)
    return cleaned
