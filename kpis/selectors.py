"""Reads of the kpis app with their query shape: reviews, overdue actions, KPI values of periods against targets."""

from __future__ import annotations

import datetime
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from django.db.models import BooleanField, ExpressionWrapper, Prefetch, Q, QuerySet
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from kpis.models import ActionItem, BusinessReview, KpiPeriodSnapshot, TierChange
from kpis.periods import Period
from kpis.registry import Kpi, kpi_catalogue, kpis_compute
from kpis.targets import Target, attainment, attainment_class, target_met, targets_for
from prm.models import Partner
from prm.roles import scope_to_user


def reviews_visible_to(user) -> QuerySet[BusinessReview]:
    """Business reviews the user may read, with partner, author and action items (and their owners)."""
    items = ActionItem.objects.select_related("owner").order_by("id")
    reviews = BusinessReview.objects.select_related("partner", "created_by").prefetch_related(
        Prefetch("action_items", queryset=items)
    )
    return scope_to_user(reviews, user)


def overdue_action_items(*, user, today: datetime.date, owned_by=None) -> QuerySet[ActionItem]:
    """Open action items past their due date that the user may read (all of them, or those of `owned_by`).

    For the account manager's Today page: `owned_by=request.user` lists the manager's own overdue items.
    """
    items = ActionItem.objects.filter(status=ActionItem.Status.OPEN, due_on__lt=today).select_related(
        "partner", "owner", "review"
    )
    if owned_by is not None:
        items = items.filter(owner=owned_by)
    return scope_to_user(items, user).order_by("due_on", "id")


# Period values ------------------------------------------------------------------------------------


def period_values(
    *,
    period: Period,
    keys: Collection[str],
    partners: QuerySet[Partner],
    now: datetime.datetime | None = None,
    catalogue: Mapping[str, Kpi] | None = None,
) -> dict[str, dict[int, float | None]]:
    """KPI values of a period for every partner of `partners`: result[key][partner_id].

    A closed period reads its stored snapshots (so it never changes); what they lack (a partner without a
    snapshot yet, a KPI defined after the period closed) is computed as of the period's last instant.
    An open period is computed period-to-date. A constant number of queries whatever the partners.
    """
    keys = list(dict.fromkeys(keys))
    now = now or timezone.now()
    result: dict[str, dict[int, float | None]] = {key: {} for key in keys}
    if not keys or not period.has_started(now):
        return result
    as_of, window = period.measured_at(now)
    if not period.is_closed(now):
        return _computed(keys, as_of, window, partners, catalogue)

    projection = {f"v{index}": KeyTransform(key, "values") for index, key in enumerate(keys)}
    present = {
        f"h{index}": ExpressionWrapper(Q(values__has_key=key), output_field=BooleanField())
        for index, key in enumerate(keys)
    }
    stored = (
        KpiPeriodSnapshot.objects.filter(period=str(period), partner__in=partners.values("pk"))
        .order_by()
        .values("partner_id", **projection, **present)
    )
    snapshot_ids: list[int] = []
    lacking: set[str] = set()
    for row in stored:
        snapshot_ids.append(row["partner_id"])
        for index, key in enumerate(keys):
            if row[f"h{index}"]:
                value = row[f"v{index}"]
                result[key][row["partner_id"]] = None if value is None else float(value)
            else:
                lacking.add(key)
    unstored = partners.exclude(pk__in=snapshot_ids) if snapshot_ids else partners
    for key, values in _computed(keys, as_of, window, unstored, catalogue).items():
        result[key].update(values)
    if lacking and snapshot_ids:
        # Only where the snapshot has no value: what it stored stays as it was.
        computed = _computed(sorted(lacking), as_of, window, partners.filter(pk__in=snapshot_ids), catalogue)
        for key, values in computed.items():
            for partner_id, value in values.items():
                result[key].setdefault(partner_id, value)
    return result


def _computed(keys, as_of, window, partners, catalogue) -> dict[str, dict[int, float | None]]:
    return kpis_compute(keys=keys, as_of=as_of, window_days=window, partners=partners, catalogue=catalogue)


@dataclass
class KpiLine:
    """One KPI of a partner in a period, beside the previous period and its target."""

    kpi: Kpi
    value: float | None
    previous: float | None
    target: Target | None
    attainment: float | None
    met: bool | None
    change: float | None  # value - previous
    direction: str | None  # improving | worsening | steady (by the KPI's "better"), None without both values

    @property
    def css(self) -> str:
        return attainment_class(self.attainment, self.met)


def kpi_line(kpi: Kpi, value: float | None, previous: float | None, target: Target | None) -> KpiLine:
    change = None if value is None or previous is None else value - previous
    if change is None:
        direction = None
    elif abs(change) < 1e-9:
        direction = "steady"
    else:
        direction = "improving" if (change > 0) == (kpi.better == "higher") else "worsening"
    target_value = target.value if target else None
    return KpiLine(
        kpi=kpi,
        value=value,
        previous=previous,
        target=target,
        attainment=attainment(value, target_value, kpi.better),
        met=target_met(value, target_value, kpi.better),
        change=change,
        direction=direction,
    )


@dataclass
class PeriodTable:
    partner: Partner
    period: Period
    previous_period: Period
    as_of: datetime.datetime
    closed: bool
    lines: list[KpiLine]


def partner_kpi_table(
    *,
    partner: Partner,
    period: Period,
    keys: Collection[str] | None = None,
    now: datetime.datetime | None = None,
) -> PeriodTable:
    """Every KPI (or those of `keys`) of one partner: this period, the previous one, target, attainment, trend."""
    now = now or timezone.now()
    catalogue = kpi_catalogue()
    chosen = {key: catalogue[key] for key in keys} if keys else catalogue
    partners = Partner.objects.filter(pk=partner.pk)
    current = period_values(period=period, keys=chosen, partners=partners, now=now, catalogue=catalogue)
    previous = period_values(period=period.previous(), keys=chosen, partners=partners, now=now, catalogue=catalogue)
    targets = targets_for(period=period, keys=chosen, partner_tiers={partner.pk: partner.tier_id}).get(partner.pk, {})
    lines = [
        kpi_line(kpi, current[key].get(partner.pk), previous[key].get(partner.pk), targets.get(key))
        for key, kpi in chosen.items()
    ]
    return PeriodTable(
        partner=partner,
        period=period,
        previous_period=period.previous(),
        as_of=period.measured_at(now)[0],
        closed=period.is_closed(now),
        lines=lines,
    )


# Portfolio comparison -----------------------------------------------------------------------------

DEFAULT_COMPARISON_KPIS = (
    "partner_sourced_revenue",
    "pipeline_coverage",
    "win_rate",
    "deals_registered",
    "active_certifications",
    "activity_intensity",
)


@dataclass
class Cell:
    value: float | None
    target: Target | None
    attainment: float | None
    met: bool | None

    @property
    def css(self) -> str:
        return attainment_class(self.attainment, self.met)


@dataclass
class Comparison:
    """Partners' KPI values of one period, sorted; rows are (partner id, {kpi: Cell})."""

    period: Period
    kpis: list[Kpi]
    rows: list[tuple[int, dict[str, Cell]]]
    sort: str


def kpi_comparison(
    *,
    partners: QuerySet[Partner],
    period: Period,
    keys: Collection[str],
    sort: str = "name",
    now: datetime.datetime | None = None,
) -> Comparison:
    """The portfolio's chosen KPIs for a period with attainment, sorted by name or by any chosen KPI.

    Sorting by a KPI needs every partner's value, so all filtered partners are computed set-based (a
    constant number of queries); the caller then fetches only the rows of the page it shows. Partners
    without a value sort last in both directions; ties go by name.
    """
    catalogue = kpi_catalogue()
    kpis = [catalogue[key] for key in keys]
    chosen = [kpi.key for kpi in kpis]
    info = list(partners.order_by().values_list("pk", "tier_id", "name"))
    values = period_values(period=period, keys=chosen, partners=partners, now=now, catalogue=catalogue)
    targets = targets_for(
        period=period, keys=chosen, partner_tiers={pk: tier_id for pk, tier_id, _ in info}, partners=partners
    )
    better = {kpi.key: kpi.better for kpi in kpis}
    rows = []
    for pk, _, _ in info:
        own = targets.get(pk, {})
        cells = {}
        for key in chosen:
            value, target = values[key].get(pk), own.get(key)
            target_value = target.value if target else None
            cells[key] = Cell(
                value=value,
                target=target,
                attainment=attainment(value, target_value, better[key]),
                met=target_met(value, target_value, better[key]),
            )
        rows.append((pk, cells))
    names = {pk: name.casefold() for pk, _, name in info}
    descending = sort.startswith("-")
    field_name = sort.lstrip("-")
    if field_name in better:
        # Name order first, then a stable sort by value: ties keep name order; missing values go last.
        rows.sort(key=lambda row: (names[row[0]], row[0]))
        present = [row for row in rows if row[1][field_name].value is not None]
        missing = [row for row in rows if row[1][field_name].value is None]
        present.sort(key=lambda row: row[1][field_name].value, reverse=descending)
        rows = present + missing
    else:
        sort = "-name" if descending else "name"
        rows.sort(key=lambda row: (names[row[0]], row[0]), reverse=descending)
    return Comparison(period=period, kpis=kpis, rows=rows, sort=sort)


def recent_tier_changes(*, partners: QuerySet[Partner], limit: int = 20) -> list[TierChange]:
    """The latest approved tier changes of these partners, with what the list shows joined in."""
    changes = TierChange.objects.filter(partner__in=partners.values("pk")).select_related(
        "partner", "from_tier", "to_tier"
    )
    return list(changes.order_by("-approved_at", "-id")[:limit])
