"""KPI targets: which target applies to a partner (its own over its tier's), attainment, and writes by batch or CSV.

Attainment says how far a value is toward its target, 1.0 meaning "exactly on target":

- higher is better: value / target;
- lower is better: target / value (a sales cycle of 60 days against a target of 45 attains 0.75).

Edge cases, where the division says nothing useful, give null rather than a made-up number:

- value or target null (no data, no target): null;
- higher is better and target <= 0: null (every value meets a zero target; `met` says so);
- lower is better and value <= 0: null (zero days since a review beats any target; `met` says so);
- lower is better and target < 0: null.

`met` is defined whenever value and target both are: value >= target (higher) or value <= target (lower).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework import serializers
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from kpis.models import KpiTarget, any_period_validator
from kpis.periods import Period
from kpis.registry import kpi_catalogue
from prm.inputs import FiniteDecimalField, _BatchSerializer
from prm.services import UpsertResult

# Attainment at or above this (and below 1) reads as "near target" on pages.
NEAR_TARGET = 0.9
HIGHER, LOWER = "higher", "lower"


def attainment(value: float | None, target: float | None, better: str) -> float | None:
    """value / target (higher is better) or target / value (lower is better); null where undefined."""
    if value is None or target is None:
        return None
    value, target = float(value), float(target)
    if better == LOWER:
        if value <= 0 or target < 0:
            return None
        return target / value
    if target <= 0:
        return None
    return value / target


def target_met(value: float | None, target: float | None, better: str) -> bool | None:
    if value is None or target is None:
        return None
    return float(value) <= float(target) if better == LOWER else float(value) >= float(target)


def attainment_class(attained: float | None, met: bool | None) -> str:
    """CSS class of an attainment: met, near (>= NEAR_TARGET), below, or none (no target or no data)."""
    if met is None:
        return "att-none"
    if met:
        return "att-met"
    if attained is not None and attained >= NEAR_TARGET:
        return "att-near"
    return "att-below"


@dataclass(frozen=True)
class Target:
    value: float
    source: str  # "partner" (its own) or "tier" (its tier's default)


def targets_for(
    *,
    period: Period | str,
    keys: Collection[str],
    partner_tiers: Mapping[int, int | None],
    partners: QuerySet | None = None,
) -> dict[int, dict[str, Target]]:
    """The target of each KPI for each partner in one query: result[partner_id][kpi].

    `partner_tiers` maps partner id to tier id. A partner's own target wins over its tier's. Pass
    `partners` (the queryset the ids came from) for large sets: it is used as a subquery instead of
    listing every id in the query.
    """
    if not partner_tiers or not keys:
        return {}
    tier_ids = {tier_id for tier_id in partner_tiers.values() if tier_id is not None}
    partner_filter = (
        Q(partner__in=partners.values("pk")) if partners is not None else Q(partner__in=list(partner_tiers))
    )
    rows = KpiTarget.objects.filter(period=str(period), kpi__in=list(keys)).filter(
        partner_filter | Q(tier__in=tier_ids)
    )
    by_tier: dict[int, dict[str, Target]] = {}
    own: dict[int, dict[str, Target]] = {}
    for kpi, tier_id, partner_id, value in rows.values_list("kpi", "tier_id", "partner_id", "value"):
        if partner_id is not None:
            own.setdefault(partner_id, {})[kpi] = Target(float(value), "partner")
        else:
            by_tier.setdefault(tier_id, {})[kpi] = Target(float(value), "tier")
    result: dict[int, dict[str, Target]] = {}
    for partner_id, tier_id in partner_tiers.items():
        merged = {**by_tier.get(tier_id, {}), **own.get(partner_id, {})}
        if merged:
            result[partner_id] = merged
    return result


# Writes ------------------------------------------------------------------------------------------------


class TargetInput(_BatchSerializer):
    """One target of a batch (a CSV line): a KPI, a period, a tier slug or a partner external_id, a value."""

    kpi = serializers.CharField(max_length=50)
    period = serializers.CharField(max_length=7, validators=[any_period_validator])
    tier = serializers.CharField(max_length=50, required=False, allow_blank=True, allow_null=True)
    partner = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)
    value = FiniteDecimalField(max_digits=16, decimal_places=4)

    def _catalogue(self) -> Collection[str]:
        # One serializer validates a whole batch: look the catalogue up once, not once per line.
        if not hasattr(self, "_known_kpis"):
            self._known_kpis = set(kpi_catalogue())
        return self._known_kpis

    def validate_kpi(self, value: str) -> str:
        if value not in self._catalogue():
            raise serializers.ValidationError(f"Unknown KPI '{value}'.")
        return value

    def validate_tier(self, value):
        if not value:
            return None
        tier_id = self.lookups.tiers.get(value)
        if tier_id is None:
            raise serializers.ValidationError(f"Unknown tier '{value}'.")
        return tier_id

    def validate_partner(self, value):
        return self.resolve_partner(value) if value else None

    def validate(self, attrs):
        if (attrs.get("tier") is None) == (attrs.get("partner") is None):
            raise serializers.ValidationError({"partner": "Give a tier or a partner, not both and not neither."})
        return attrs


TARGET_KEY_FIELDS = ("kpi", "period", "tier", "partner")


@transaction.atomic
def kpi_targets_upsert(*, items: Sequence[dict]) -> UpsertResult:
    """Create or change targets by (kpi, period, tier or partner); items as TargetInput cleans them."""
    rows = [
        {
            "kpi": item["kpi"],
            "period": item["period"],
            "tier_id": item.get("tier"),
            "partner_id": item.get("partner"),
            "value": Decimal(item["value"]),
        }
        for item in items
    ]
    if not rows:
        return UpsertResult(0, 0, 0)

    def key(row) -> tuple:
        return row["kpi"], row["period"], row["tier_id"], row["partner_id"]

    wanted = Q()
    for period in {row["period"] for row in rows}:
        wanted |= Q(period=period, kpi__in={row["kpi"] for row in rows if row["period"] == period})
    existing = {
        (target.kpi, target.period, target.tier_id, target.partner_id): target
        for target in KpiTarget.objects.select_for_update().filter(wanted).order_by()
    }
    to_create, to_update, unchanged = [], [], 0
    now = timezone.now()
    for row in rows:
        target = existing.get(key(row))
        if target is None:
            to_create.append(KpiTarget(**row))
        elif target.value != row["value"]:
            target.value, target.updated_at = row["value"], now
            to_update.append(target)
        else:
            unchanged += 1
    # With history, as every change of a target is configuration worth auditing.
    if to_create:
        bulk_create_with_history(to_create, KpiTarget)
    if to_update:
        bulk_update_with_history(to_update, KpiTarget, ["value", "updated_at"])
    return UpsertResult(created=len(to_create), updated=len(to_update), unchanged=unchanged)


def register_csv_import() -> None:
    """Make "targets" a kind of prm.importing: `import_targets FILE` and the admin's Import CSV page use it."""
    from prm.importing import SPECS, ImportSpec

    SPECS.setdefault(
        "targets",
        ImportSpec(
            kind="targets",
            serializer_class=TargetInput,
            columns=tuple(TargetInput._declared_fields),
            key_fields=TARGET_KEY_FIELDS,
            write=kpi_targets_upsert,
        ),
    )
