"""Writes of the kpis app: business reviews with their action items, and custom KPIs."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from kpis.models import ActionItem, BusinessReview, CustomKpi
from prm.models import ActivityKind, Partner

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
