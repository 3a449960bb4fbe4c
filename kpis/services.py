"""Writes of the kpis app: business reviews and action items, custom KPIs, closed periods' values, tier changes."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from kpis.models import ActionItem, BusinessReview, CustomKpi, KpiPeriodSnapshot, TierChange
from kpis.periods import MONTH, QUARTER, Period, latest_closed
from kpis.registry import kpi_catalogue, kpis_compute
from kpis.tiers import active_certifications_by_role
from prm.models import ActivityKind, Partner, Tier
from prm.services import partner_update

REVIEW_FIELDS = ("period", "held_on", "attendees", "notes")
# What an action item dict may carry (owner as owner_id: callers resolve usernames in bulk).
ACTION_ITEM_FIELDS = ("description", "owner_id", "due_on", "kpi", "target_value")


def _check_item(item: ActionItem) -> None:
    # Field checks only: foreign keys and constraints would each cost a query per item, and the
    # callers give ids they resolved; the database enforces both anyway.
    item.clean_fields(exclude=["partner", "review", "owner"])


def _apply(item: ActionItem, data: dict, now: datetime.datetime) -> None:
    for name in ACTION_ITEM_FIELDS:
        if name in data:
            setattr(item, name, data[name])
    if "status" in data:
        item.set_status(data["status"], at=now)


@transaction.atomic
def review_create(
    *,
    partner: Partner,
    period: str,
    held_on: datetime.date,
    attendees: str = "",
    notes: str = "",
    created_by=None,
    action_items: Sequence[dict] = (),
) -> BusinessReview:
    """Record a business review and the action items agreed in it, all or nothing."""
    review = BusinessReview(
        partner=partner, period=period, held_on=held_on, attendees=attendees, notes=notes, created_by=created_by
    )
    review.full_clean(exclude=["partner", "created_by"])
    review.save()
    now = timezone.now()
    items = []
    for data in action_items:
        item = ActionItem(partner=partner, review=review)
        _apply(item, data, now)
        _check_item(item)
        items.append(item)
    ActionItem.objects.bulk_create(items)
    return review


@transaction.atomic
def review_update(*, review: BusinessReview, data: dict, action_items: Sequence[dict] | None = None) -> BusinessReview:
    """Change a review's fields and its action items.

    An action item with an `id` updates that item of this review; one without is added. Items left
    out are kept as they are (cancel one by setting its status).
    """
    for name in REVIEW_FIELDS:
        if name in data:
            setattr(review, name, data[name])
    review.full_clean(exclude=["partner", "created_by"])
    review.save()
    if not action_items:
        return review

    now = timezone.now()
    wanted_ids = [data["id"] for data in action_items if data.get("id") is not None]
    existing = ActionItem.objects.select_for_update().in_bulk(wanted_ids) if wanted_ids else {}
    to_update, to_create, errors = [], [], []
    for index, data in enumerate(action_items):
        if data.get("id") is None:
            item = ActionItem(partner_id=review.partner_id, review=review)
            to_create.append(item)
        else:
            item = existing.get(data["id"])
            if item is None or item.review_id != review.id:
                errors.append(f"Item {index}: no action item {data['id']} in this review.")
                continue
            to_update.append(item)
        _apply(item, data, now)
        _check_item(item)
    if errors:
        raise ValidationError({"action_items": errors})
    if to_update:
        ActionItem.objects.bulk_update(to_update, ["status", "completed_at", *ACTION_ITEM_FIELDS])
    ActionItem.objects.bulk_create(to_create)
    return review


@transaction.atomic
def custom_kpi_create(
    *,
    key: str,
    label: str,
    category: str,
    numerator_kind: ActivityKind,
    numerator_aggregate: str = CustomKpi.Aggregate.COUNT,
    denominator_kind: ActivityKind | None = None,
    denominator_aggregate: str | None = None,
    better: str = "higher",
    description: str = "",
    is_active: bool = True,
) -> CustomKpi:
    """Define a KPI without code; it joins the catalogue at once if active."""
    custom = CustomKpi(
        key=key,
        label=label,
        category=category,
        better=better,
        description=description,
        numerator_kind=numerator_kind,
        numerator_aggregate=numerator_aggregate,
        denominator_kind=denominator_kind,
        denominator_aggregate=denominator_aggregate,
        is_active=is_active,
    )
    custom.full_clean()
    custom.save()
    return custom


# Closed periods ------------------------------------------------------------------------------------

# A snapshot stored this long after its period closed still records the health score of the close;
# a later one (a backfill) leaves it unknown rather than record today's score as the period's.
HEALTH_SCORE_FRESH_FOR = datetime.timedelta(days=7)
SNAPSHOT_CHUNK = 2000


def kpi_period_snapshots_store(
    *,
    period: Period,
    partners: QuerySet[Partner] | None = None,
    replace: bool = False,
    now: datetime.datetime | None = None,
    chunk_size: int = SNAPSHOT_CHUNK,
) -> int:
    """Store a closed period's KPI values for every partner that has none yet (or all, with `replace`).

    Partners are read in chunks of ids, each in a constant number of queries (the KPI registry's tables,
    certifications, one insert), so memory stays flat at any number of partners. Returns the number of
    snapshots written. Running it again writes nothing new: past periods stay as first stored.
    """
    now = now or timezone.now()
    if not period.is_closed(now):
        raise ValueError(f"{period} has not ended yet; only closed periods are stored.")
    catalogue = kpi_catalogue()
    keys = list(catalogue)
    selected = (partners if partners is not None else Partner.objects.all()).order_by()
    if not replace:
        selected = selected.exclude(kpi_period_snapshots__period=str(period))
    ids = list(selected.order_by("pk").values_list("pk", flat=True))
    keep_health = now - period.end <= HEALTH_SCORE_FRESH_FOR
    written = 0
    for offset in range(0, len(ids), chunk_size):
        chunk = Partner.objects.filter(pk__in=ids[offset : offset + chunk_size])
        values = kpis_compute(
            keys=keys, as_of=period.as_of, window_days=period.length, partners=chunk, catalogue=catalogue
        )
        roles = active_certifications_by_role(partners=chunk, day=period.last_day)
        rows = [
            KpiPeriodSnapshot(
                partner_id=partner_id,
                period=str(period),
                as_of=period.as_of,
                values={key: values[key].get(partner_id) for key in keys},
                certifications=roles.get(partner_id, {}),
                health_score=health_score if keep_health else None,
                tier_id=tier_id,
            )
            for partner_id, tier_id, health_score in chunk.values_list("pk", "tier_id", "health_score")
        ]
        with transaction.atomic():
            if replace:
                KpiPeriodSnapshot.objects.bulk_create(
                    rows,
                    update_conflicts=True,
                    unique_fields=["partner", "period"],
                    update_fields=["as_of", "values", "certifications", "health_score", "tier", "created_at"],
                )
            else:
                # A concurrent run may have stored some of them meanwhile: the first one stays.
                KpiPeriodSnapshot.objects.bulk_create(rows, ignore_conflicts=True)
        written += len(rows)
    return written


def kpi_periods_snapshot_closed(
    *, now: datetime.datetime | None = None, quarters: int = 1, months: int = 1
) -> dict[str, int]:
    """Store the latest closed quarters and months not stored yet (what the beat task runs daily)."""
    now = now or timezone.now()
    periods = [*latest_closed(QUARTER, now).back(quarters), *latest_closed(MONTH, now).back(months)]
    return {str(period): kpi_period_snapshots_store(period=period, now=now) for period in periods}


# Tier changes --------------------------------------------------------------------------------------


@transaction.atomic
def tier_change_approve(
    *, partner: Partner, to_tier: Tier | None, user, reason: str, assessment: dict | None = None
) -> TierChange:
    """Move a partner to another tier (None: no tier) on a person's approval, and record who, when and why.

    This is the one way tier reviews change a tier: nothing moves a partner automatically.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        raise ValidationError({"user": "A tier change needs the person who approves it."})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the tier changes."})
    locked = Partner.objects.select_for_update(of=("self",)).select_related("tier").get(pk=partner.pk)
    to_tier_id = to_tier.pk if to_tier is not None else None
    if locked.tier_id == to_tier_id:
        raise ValidationError({"to_tier": f"{locked.name} is already in that tier."})
    from_tier = locked.tier
    # The partner's own history records the approver and the reason too.
    locked._history_user = user
    locked._change_reason = reason[:100]
    partner_update(partner=locked, data={"tier": to_tier_id})
    change = TierChange.objects.create(
        partner=locked,
        from_tier=from_tier,
        to_tier=to_tier,
        reason=reason,
        approved_by=user,
        approved_by_name=user.get_username(),
        approved_at=timezone.now(),
        assessment=assessment or {},
    )
    partner.tier_id, partner.tier = locked.tier_id, to_tier
    return change
