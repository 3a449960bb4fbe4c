"""Writes of the core domain: every ingestion path (API, CSV, admin, demo) goes through these.

Each service takes items already validated by prm.inputs, writes them in one transaction with a
constant number of queries per batch, and is idempotent: sending the same items again changes nothing.
After the transaction commits, `partner_data_changed` tells later stages (scoring) which partners moved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.dispatch import Signal
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from prm.models import Activity, ActivityKind, Certification, Contact, Deal, Partner

BATCH_SIZE = 2000

# Sent after commit with `partner_ids` (a frozenset): the data behind these partners' KPIs changed.
partner_data_changed = Signal()


@dataclass(frozen=True)
class IngestResult:
    created: int
    duplicates: int

    def as_dict(self) -> dict:
        return {"created": self.created, "duplicates": self.duplicates}


@dataclass(frozen=True)
class UpsertResult:
    created: int
    updated: int
    unchanged: int

    def as_dict(self) -> dict:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


def _announce(partner_ids: Iterable[int]) -> None:
    ids = frozenset(partner_ids)
    if ids:
        transaction.on_commit(lambda: partner_data_changed.send(sender=Partner, partner_ids=ids))


def contacts_ensure(*, items: Sequence[dict]) -> None:
    """Create the contacts that items name by email and that do not exist yet; set item['contact_id']."""
    wanted = {
        (item["partner"], item["contact_email"].lower())
        for item in items
        if item.get("contact_email") and item.get("contact_id") is None
    }
    if not wanted:
        return
    existing = {
        (partner_id, email.lower()): contact_id
        for partner_id, email, contact_id in Contact.objects.filter(
            partner_id__in={partner_id for partner_id, _ in wanted}, email__in={email for _, email in wanted}
        ).values_list("partner_id", "email", "id")
    }
    missing = [Contact(partner_id=p, email=e) for (p, e) in sorted(wanted) if (p, e) not in existing]
    Contact.objects.bulk_create(missing, batch_size=BATCH_SIZE, ignore_conflicts=True)
    if missing:
        existing.update(
            {
                (partner_id, email.lower()): contact_id
                for partner_id, email, contact_id in Contact.objects.filter(
                    partner_id__in={c.partner_id for c in missing}, email__in={c.email for c in missing}
                ).values_list("partner_id", "email", "id")
            }
        )
    for item in items:
        if item.get("contact_email") and item.get("contact_id") is None:
            item["contact_id"] = existing.get((item["partner"], item["contact_email"].lower()))


def _activities_insert_postgresql(items: Sequence[dict]) -> list[int]:
    """Store the items that are new in one INSERT ... SELECT FROM unnest(column arrays) per batch, with the
    conflict rule of bulk_create(ignore_conflicts=True), and return the partner of each row stored.

    The unique (external_id, source) index decides what is new, in the same probe that inserts: no lookup
    beforehand, and no model instance or parameter group per row (docs/benchmarks.md, "Load").
    """
    table = Activity._meta.db_table
    columns = [
        ("partner_id", "bigint", lambda item: item["partner"]),
        ("kind_id", "bigint", lambda item: item["kind"].id if isinstance(item["kind"], ActivityKind) else item["kind"]),
        ("occurred_at", "timestamptz", lambda item: item["occurred_at"]),
        ("quantity", "integer", lambda item: item.get("quantity") or 1),
        ("value", "numeric", lambda item: item.get("value")),
        ("source", "text", lambda item: item["source"]),
        ("external_id", "text", lambda item: item["external_id"]),
        ("contact_id", "bigint", lambda item: item.get("contact_id")),
        ("metadata", "text", lambda item: json.dumps(item.get("metadata") or {}, cls=DjangoJSONEncoder)),
    ]
    names = ", ".join(name for name, _, _ in columns)
    arrays = ", ".join(f"%s::{kind}[]" for _, kind, _ in columns)
    sql = (
        f"INSERT INTO {table} ({names}, created_at) "
        f"SELECT {', '.join(f'u.{name}' for name, _, _ in columns[:-1])}, u.metadata::jsonb, now() "
        f"FROM unnest({arrays}) AS u({names}) "
        "ON CONFLICT (source, external_id) DO NOTHING RETURNING partner_id"
    )
    stored: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(items), BATCH_SIZE):
            batch = items[start : start + BATCH_SIZE]
            cursor.execute(sql, [[value_of(item) for item in batch] for _, _, value_of in columns])
            stored.extend(partner_id for (partner_id,) in cursor.fetchall())
    return stored


def _stored_keys(items: Sequence[dict]) -> set[tuple[str, str]]:
    """The (source, external_id) of the items already stored."""
    if not items:
        return set()
    return set(
        Activity.objects.filter(
            source__in={item["source"] for item in items}, external_id__in={item["external_id"] for item in items}
        ).values_list("source", "external_id")
    )


@transaction.atomic
def activities_ingest(*, items: Sequence[dict]) -> IngestResult:
    """Store new signal events; an event already stored (same source and external_id) is a duplicate."""
    if connection.vendor == "postgresql":
        # Contacts are created for new events only: the (rare) items naming a contact by email are looked up.
        naming = [item for item in items if item.get("contact_email") and item.get("contact_id") is None]
        stored = _stored_keys(naming)
        contacts_ensure(items=[item for item in naming if (item["source"], item["external_id"]) not in stored])
        partner_ids = _activities_insert_postgresql(items)
        _announce(partner_ids)
        return IngestResult(created=len(partner_ids), duplicates=len(items) - len(partner_ids))
    existing = _stored_keys(items)
    fresh = [item for item in items if (item["source"], item["external_id"]) not in existing]
    contacts_ensure(items=fresh)
    Activity.objects.bulk_create(
        [
            Activity(
                partner_id=item["partner"],
                kind_id=item["kind"].id if isinstance(item["kind"], ActivityKind) else item["kind"],
                occurred_at=item["occurred_at"],
                quantity=item.get("quantity") or 1,
                value=item.get("value"),
                source=item["source"],
                external_id=item["external_id"],
                contact_id=item.get("contact_id"),
                metadata=item.get("metadata") or {},
            )
            for item in fresh
        ],
        batch_size=BATCH_SIZE,
        # A concurrent request may have stored the same event since the check above.
        ignore_conflicts=True,
    )
    _announce(item["partner"] for item in fresh)
    return IngestResult(created=len(fresh), duplicates=len(items) - len(fresh))


def _upsert(
    model,
    *,
    items: Sequence[dict],
    existing: dict,
    key_of,
    build,
    fields: Sequence[str],
    with_history: bool = False,
) -> tuple[UpsertResult, list]:
    """Create items whose key is new, update those whose fields differ, leave the rest untouched."""
    to_create, to_update, unchanged = [], [], 0
    for item in items:
        instance = existing.get(key_of(item))
        if instance is None:
            to_create.append(build(item))
            continue
        changed = False
        for name in fields:
            if name in item and getattr(instance, name) != item[name]:
                setattr(instance, name, item[name])
                changed = True
        if changed:
            to_update.append(instance)
        else:
            unchanged += 1
    if with_history:
        if to_create:
            bulk_create_with_history(to_create, model, batch_size=BATCH_SIZE)
        if to_update:
            bulk_update_with_history(to_update, model, list(fields), batch_size=BATCH_SIZE)
    else:
        model.objects.bulk_create(to_create, batch_size=BATCH_SIZE)
        if to_update:
            model.objects.bulk_update(to_update, list(fields), batch_size=BATCH_SIZE)
    return UpsertResult(len(to_create), len(to_update), unchanged), to_create + to_update


_PARTNER_FIELDS = (
    "name",
    "type",
    "tier_id",
    "region",
    "status",
    "owner_id",
    "quarterly_revenue_target",
    "joined_on",
    "agreement_start",
    "agreement_end",
)


def _partner_item(item: dict) -> dict:
    """Input names (tier, owner) to model attribute names (tier_id, owner_id)."""
    data = dict(item)
    if "tier" in data:
        data["tier_id"] = data.pop("tier")
    if "owner" in data:
        data["owner_id"] = data.pop("owner")
    return data


@transaction.atomic
def partners_upsert(*, items: Sequence[dict]) -> UpsertResult:
    """Create or update partners by external_id; fields an item leaves out keep their value."""
    rows = [_partner_item(item) for item in items]
    existing = Partner.objects.select_for_update().in_bulk(
        [row["external_id"] for row in rows], field_name="external_id"
    )

    def build(row: dict) -> Partner:
        partner = Partner(external_id=row["external_id"])
        for name in _PARTNER_FIELDS:
            if row.get(name) is not None:
                setattr(partner, name, row[name])
        return partner

    result, touched = _upsert(
        Partner,
        items=rows,
        existing=existing,
        key_of=lambda row: row["external_id"],
        build=build,
        fields=_PARTNER_FIELDS,
        with_history=True,
    )
    return result


@transaction.atomic
def partner_update(*, partner: Partner, data: dict) -> Partner:
    """Change some fields of one partner (API PATCH, admin)."""
    row = _partner_item(data)
    for name in _PARTNER_FIELDS:
        if name in row:
            setattr(partner, name, row[name])
    partner.full_clean(exclude=["external_id"])
    partner.save()
    _announce([partner.id])
    return partner


@transaction.atomic
def partner_delete(*, partner: Partner) -> None:
    partner.delete()


_DEAL_FIELDS = ("partner_id", "name", "amount", "stage", "registered_at", "closed_at")


@transaction.atomic
def deals_upsert(*, items: Sequence[dict]) -> UpsertResult:
    """Create or update deal registrations by external_id (a stage change is an update)."""
    rows = []
    for item in items:
        row = dict(item)
        row["partner_id"] = row.pop("partner")
        row.setdefault("closed_at", None)
        rows.append(row)
    existing = Deal.objects.select_for_update().in_bulk([row["external_id"] for row in rows], field_name="external_id")
    previous_partner = {deal.external_id: deal.partner_id for deal in existing.values()}
    result, touched = _upsert(
        Deal,
        items=rows,
        existing=existing,
        key_of=lambda row: row["external_id"],
        build=lambda row: Deal(external_id=row["external_id"], **{name: row[name] for name in _DEAL_FIELDS}),
        fields=_DEAL_FIELDS,
    )
    _announce(
        {deal.partner_id for deal in touched} | {previous_partner.get(deal.external_id) for deal in touched} - {None}
    )
    return result


@transaction.atomic
def certifications_upsert(*, items: Sequence[dict]) -> UpsertResult:
    """Create certifications, or update the expiry of one already known by its natural key."""
    rows = [dict(item) for item in items]
    contacts_ensure(items=rows)

    def key_of(row) -> tuple:
        return (row["partner"], row["name"], row["role"], row["earned_on"], row.get("contact_id"))

    existing = {
        (c.partner_id, c.name, c.role, c.earned_on, c.contact_id): c
        for c in Certification.objects.select_for_update().filter(
            partner_id__in={row["partner"] for row in rows}, name__in={row["name"] for row in rows}
        )
    }
    for row in rows:
        row["expires_on"] = row.get("expires_on")
    result, touched = _upsert(
        Certification,
        items=rows,
        existing=existing,
        key_of=key_of,
        build=lambda row: Certification(
            partner_id=row["partner"],
            contact_id=row.get("contact_id"),
            name=row["name"],
            role=row["role"],
            earned_on=row["earned_on"],
            expires_on=row["expires_on"],
        ),
        fields=("expires_on",),
    )
    _announce(c.partner_id for c in touched)
    return result


@transaction.atomic
def activity_kind_create(*, key: str, label: str, category: str, unit: str = ActivityKind.Unit.COUNT) -> ActivityKind:
    kind = ActivityKind(key=key, label=label, category=category, unit=unit)
    kind.full_clean()
    kind.save()
    return kind
