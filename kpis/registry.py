"""The one KPI registry: the catalogue (built-in and custom KPIs) and its set-based computation.

Every KPI is a small formula over *terms*; a term is one aggregate per partner taken from one pass
over one table. `kpis_compute` gathers the terms of the requested KPIs, reads each table it needs once
(conditional aggregates grouped by partner), and evaluates the formulas in Python. The number of
queries depends on the tables involved, never on the number of partners or KPIs.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from urllib.parse import urlencode

from django.db import connections
from django.db.models import (
    Avg,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    Window,
)
from django.db.models.functions import RowNumber
from django.utils import timezone

from kpis.models import BusinessReview, CustomKpi, KpiCategory, KpiUnit
from prm.models import Activity, ActivityKind, Certification, Deal, Partner

CATEGORIES = tuple(KpiCategory.values)
UNITS = tuple(KpiUnit.values)
API_BASE = "/api/v1/"


class UnknownKpiError(KeyError):
    """A KPI key that is neither built in nor an active custom KPI."""


# Formulas ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One aggregate per partner from one pass over one source.

    Sources: "activities" (measure count|sum|avg|min|max of one kind, or count of every kind of a
    category), "latest" (value of the latest activity of a kind), "deals", "certifications",
    "reviews" (a named measure of that table) and "partners" (a partner's own field).
    """

    source: str
    measure: str
    kind: str = ""
    category: str = ""

    def terms(self) -> Iterator[Term]:
        yield self

    def evaluate(self, column: Column, as_of_date: datetime.date) -> list[float | None]:
        return [_number(value) for value in column(self)]


@dataclass(frozen=True)
class Constant:
    value: float

    def terms(self) -> Iterator[Term]:
        return iter(())

    def evaluate(self, column: Column, as_of_date: datetime.date) -> list[float | None]:
        return [self.value] * column.size


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator; null when either is null or the divisor is 0."""

    numerator: Formula
    denominator: Formula

    def terms(self) -> Iterator[Term]:
        yield from self.numerator.terms()
        yield from self.denominator.terms()

    def evaluate(self, column: Column, as_of_date: datetime.date) -> list[float | None]:
        return [
            None if numerator is None or not denominator else numerator / denominator
            for numerator, denominator in zip(
                self.numerator.evaluate(column, as_of_date), self.denominator.evaluate(column, as_of_date), strict=True
            )
        ]


@dataclass(frozen=True)
class Change:
    """(current - previous) / previous; null when previous is null or 0."""

    current: Formula
    previous: Formula

    def terms(self) -> Iterator[Term]:
        yield from self.current.terms()
        yield from self.previous.terms()

    def evaluate(self, column: Column, as_of_date: datetime.date) -> list[float | None]:
        return [
            None if current is None or not previous else (current - previous) / previous
            for current, previous in zip(
                self.current.evaluate(column, as_of_date), self.previous.evaluate(column, as_of_date), strict=True
            )
        ]


@dataclass(frozen=True)
class DaysSince:
    """Whole days from a date term to A's date; null when the term is null."""

    term: Term

    def terms(self) -> Iterator[Term]:
        yield self.term

    def evaluate(self, column: Column, as_of_date: datetime.date) -> list[float | None]:
        return [None if day is None else float((as_of_date - day).days) for day in column(self.term)]


Formula = Term | Constant | Ratio | Change | DaysSince


class Column:
    """Each term's values for every partner of a computation, in one order (formulas work a column at a time:
    at 100,000 partners, evaluating them partner by partner cost more than the queries behind them)."""

    def __init__(self, partner_ids: list[int], values: Mapping[Term, dict], empties: Mapping[Term, object]):
        self.partner_ids, self.size = partner_ids, len(partner_ids)
        self._values, self._empties, self._columns = values, empties, {}

    def __call__(self, term: Term) -> list:
        """The term's value per partner; a partner without rows gets the term's empty value."""
        if term not in self._columns:
            found, empty = self._values.get(term, {}), self._empties.get(term)
            self._columns[term] = [
                empty if (value := found.get(partner_id)) is None else value for partner_id in self.partner_ids
            ]
        return self._columns[term]


@dataclass(frozen=True)
class Evidence:
    """Which API list shows the records behind a raw value: a resource and its filters.

    Filter values may name instants of the window: {start} = A - W, {end} = A, {previous_start} =
    A - 2W (times in UTC), and {date} = A's date in the project's time zone.
    """

    resource: str
    filters: tuple[tuple[str, str], ...] = ()


def count(kind: str = "", *, category: str = "") -> Term:
    return Term("activities", "count", kind=kind, category=category)


def total(kind: str) -> Term:
    return Term("activities", "sum", kind=kind)


def latest(kind: str) -> Term:
    return Term("latest", "value", kind=kind)


def deals(measure: str) -> Term:
    return Term("deals", measure)


def certifications(measure: str) -> Term:
    return Term("certifications", measure)


_WINDOW = (("since", "{start}"), ("until", "{end}"))
_CLOSED_IN_WINDOW = (("closed_after", "{start}"), ("closed_before", "{end}"))


# The catalogue -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    category: str  # engagement | enablement | pipeline | incentive | relationship | program
    unit: str  # count | ratio | amount | days | rating
    better: str  # "higher" | "lower"
    description: str  # one plain sentence a partner understands
    windowed: bool
    custom: bool = False
    # How it is computed and where its records are listed; not part of the public catalogue.
    formula: Formula | None = field(default=None, repr=False, compare=False)
    evidence: Evidence | None = field(default=None, repr=False, compare=False)

    def activity_kinds(self) -> tuple[list[str], list[str]]:
        """The activity kinds and categories the formula reads, in formula order."""
        kinds: list[str] = []
        categories: list[str] = []
        for term in self.formula.terms() if self.formula else ():
            if term.source in ("activities", "latest"):
                if term.kind and term.kind not in kinds:
                    kinds.append(term.kind)
                if term.category and term.category not in categories:
                    categories.append(term.category)
        return kinds, categories


# Null rules, as decided for this catalogue: totals (counts, sums, active_certifications, open_pipeline,
# partner_sourced_revenue, rebate_accrued, activity_intensity, deals_registered, spiff_claims,
# meetings_held) are 0 when nothing happened: an empty window is a real "none". "The set is empty ->
# null" applies to means, rates, latest values and days-since, which have no value without data.
_BUILT_IN = (
    Kpi(
        "portal_logins",
        "Portal logins",
        "engagement",
        "count",
        "higher",
        "How many times people at the partner signed in to the partner portal in the window.",
        True,
        formula=count("portal_login"),
    ),
    Kpi(
        "content_views",
        "Content views",
        "engagement",
        "count",
        "higher",
        "How many pieces of content the partner viewed in the window.",
        True,
        formula=count("content_view"),
    ),
    Kpi(
        "events_attended",
        "Events attended",
        "engagement",
        "count",
        "higher",
        "How many events the partner attended in the window.",
        True,
        formula=count("event_attended"),
    ),
    Kpi(
        "campaigns_joined",
        "Campaigns joined",
        "engagement",
        "count",
        "higher",
        "How many marketing campaigns the partner joined in the window.",
        True,
        formula=count("campaign_joined"),
    ),
    Kpi(
        "email_open_rate",
        "Email open rate",
        "engagement",
        "ratio",
        "higher",
        "The share of emails sent to the partner in the window that were opened.",
        True,
        formula=Ratio(count("email_opened"), count("email_sent")),
    ),
    Kpi(
        "activity_intensity",
        "Activity intensity",
        "engagement",
        "count",
        "higher",
        "How many engagement events of any kind the partner had in the window.",
        True,
        formula=count(category="engagement"),
    ),
    Kpi(
        "trainings_completed",
        "Trainings completed",
        "enablement",
        "count",
        "higher",
        "How many trainings the partner's people completed in the window.",
        True,
        formula=count("training_completed"),
    ),
    Kpi(
        "training_completion_rate",
        "Training completion rate",
        "enablement",
        "ratio",
        "higher",
        "Trainings completed in the window divided by trainings assigned in the window.",
        True,
        formula=Ratio(count("training_completed"), count("training_assigned")),
    ),
    Kpi(
        "active_certifications",
        "Active certifications",
        "enablement",
        "count",
        "higher",
        "How many certifications the partner's people hold today (earned and not expired).",
        False,
        formula=certifications("active"),
        evidence=Evidence("certifications", (("active_on", "{date}"),)),
    ),
    Kpi(
        "certification_role_coverage",
        "Certification role coverage",
        "enablement",
        "ratio",
        "higher",
        "The share of the three roles (sales, technical, delivery) covered by at least one active certification.",
        False,
        formula=Ratio(certifications("active_roles"), Constant(3.0)),
        evidence=Evidence("certifications", (("active_on", "{date}"),)),
    ),
    Kpi(
        "deals_registered",
        "Deals registered",
        "pipeline",
        "count",
        "higher",
        "How many deals the partner registered in the window, whatever became of them.",
        True,
        formula=deals("registered"),
        evidence=Evidence("deals", (("registered_after", "{start}"), ("registered_before", "{end}"))),
    ),
    Kpi(
        "open_pipeline",
        "Open pipeline",
        "pipeline",
        "amount",
        "higher",
        "The total amount of the partner's registered deals that are still open (not won, lost or rejected).",
        False,
        formula=deals("open_amount"),
        evidence=Evidence("deals", (("open_at", "{end}"),)),
    ),
    Kpi(
        "pipeline_coverage",
        "Pipeline coverage",
        "pipeline",
        "ratio",
        "higher",
        "The open pipeline divided by the partner's quarterly revenue target.",
        False,
        formula=Ratio(deals("open_amount"), Term("partners", "quarterly_revenue_target")),
        evidence=Evidence("deals", (("open_at", "{end}"),)),
    ),
    Kpi(
        "win_rate",
        "Win rate",
        "pipeline",
        "ratio",
        "higher",
        "The share of the partner's deals closed in the window that were won.",
        True,
        formula=Ratio(deals("won"), deals("closed")),
        evidence=Evidence("deals", (("stage", "won,lost"), *_CLOSED_IN_WINDOW)),
    ),
    Kpi(
        "partner_sourced_revenue",
        "Partner-sourced revenue",
        "pipeline",
        "amount",
        "higher",
        "The total amount of the partner's deals won in the window.",
        True,
        formula=deals("won_amount"),
        evidence=Evidence("deals", (("stage", "won"), *_CLOSED_IN_WINDOW)),
    ),
    Kpi(
        "average_deal_size",
        "Average deal size",
        "pipeline",
        "amount",
        "higher",
        "The average amount of the partner's deals won in the window.",
        True,
        formula=Ratio(deals("won_amount"), deals("won")),
        evidence=Evidence("deals", (("stage", "won"), *_CLOSED_IN_WINDOW)),
    ),
    Kpi(
        "pipeline_trend",
        "Pipeline trend",
        "pipeline",
        "ratio",
        "higher",
        "How much more (or less) deal value the partner registered in the window than in the window before it.",
        True,
        formula=Change(deals("registered_amount"), deals("registered_amount_previous")),
        evidence=Evidence(
            "deals",
            (
                ("stage", "registered,approved,won,lost"),
                ("registered_after", "{previous_start}"),
                ("registered_before", "{end}"),
            ),
        ),
    ),
    Kpi(
        "sales_cycle_days",
        "Sales cycle",
        "pipeline",
        "days",
        "lower",
        "The average number of days from registration to win for the partner's deals won in the window.",
        True,
        formula=Ratio(deals("won_cycle_days"), deals("won")),
        evidence=Evidence("deals", (("stage", "won"), *_CLOSED_IN_WINDOW)),
    ),
    Kpi(
        "mdf_utilization",
        "MDF utilization",
        "incentive",
        "ratio",
        "higher",
        "Market development funds claimed in the window divided by funds allocated in the window.",
        True,
        formula=Ratio(total("mdf_claimed"), total("mdf_allocated")),
    ),
    Kpi(
        "rebate_accrued",
        "Rebate accrued",
        "incentive",
        "amount",
        "higher",
        "The total rebate the partner accrued in the window.",
        True,
        formula=total("rebate_accrued"),
    ),
    Kpi(
        "spiff_claims",
        "SPIFF claims",
        "incentive",
        "count",
        "higher",
        "How many sales incentive (SPIFF) claims the partner made in the window.",
        True,
        formula=count("spiff_claimed"),
    ),
    Kpi(
        "meetings_held",
        "Meetings held",
        "relationship",
        "count",
        "higher",
        "How many meetings were held with the partner in the window.",
        True,
        formula=count("meeting_held"),
    ),
    Kpi(
        "sentiment",
        "Sentiment",
        "relationship",
        "rating",
        "higher",
        "The latest sentiment rating (0 to 10) recorded for the partner in the window.",
        True,
        formula=latest("sentiment_recorded"),
    ),
    Kpi(
        "days_since_business_review",
        "Days since business review",
        "program",
        "days",
        "lower",
        "How many days ago the partner's latest business review was held.",
        False,
        formula=DaysSince(Term("reviews", "latest_held_on")),
        evidence=Evidence("reviews", (("held_before", "{date}"),)),
    ),
)
BUILT_IN_KPIS: dict[str, Kpi] = {kpi.key: kpi for kpi in _BUILT_IN}

_AGGREGATE_WORDS = {
    "count": "Number of",
    "sum": "Total value of",
    "avg": "Average value of",
    "min": "Lowest value of",
    "max": "Highest value of",
    "latest": "Latest value of",
}
_KIND_UNITS = {ActivityKind.Unit.COUNT: "count", ActivityKind.Unit.AMOUNT: "amount", ActivityKind.Unit.RATING: "rating"}


def _custom_term(aggregate: str, kind_key: str) -> Term:
    if aggregate == CustomKpi.Aggregate.LATEST:
        return latest(kind_key)
    return Term("activities", aggregate, kind=kind_key)


def _custom_kpi(custom: CustomKpi) -> Kpi:
    """A CustomKpi row (with its kinds selected) as a catalogue entry."""
    numerator = _custom_term(custom.numerator_aggregate, custom.numerator_kind.key)
    description = f"{_AGGREGATE_WORDS[custom.numerator_aggregate]} '{custom.numerator_kind.label}' activities"
    if custom.denominator_kind_id is not None:
        formula: Formula = Ratio(numerator, _custom_term(custom.denominator_aggregate, custom.denominator_kind.key))
        unit = "ratio"
        description += (
            f" divided by the {_AGGREGATE_WORDS[custom.denominator_aggregate].lower()}"
            f" '{custom.denominator_kind.label}' activities"
        )
    else:
        formula = numerator
        unit = (
            "count" if custom.numerator_aggregate == "count" else _KIND_UNITS.get(custom.numerator_kind.unit, "count")
        )
    return Kpi(
        key=custom.key,
        label=custom.label,
        category=custom.category,
        unit=unit,
        better=custom.better,
        description=custom.description or f"{description} in the window.",
        windowed=True,
        custom=True,
        formula=formula,
    )


def _custom_kpis(keys: Collection[str] | None = None) -> dict[str, Kpi]:
    """Active custom KPIs (all, or those of `keys`), in one query."""
    rows = CustomKpi.objects.filter(is_active=True).select_related("numerator_kind", "denominator_kind")
    if keys is not None:
        rows = rows.filter(key__in=list(keys))
    return {row.key: _custom_kpi(row) for row in rows.order_by("key")}


def kpi_catalogue() -> dict[str, Kpi]:
    """Every built-in KPI, then every active custom KPI (one query)."""
    return {**BUILT_IN_KPIS, **_custom_kpis()}


def _resolve(keys: Collection[str], catalogue: Mapping[str, Kpi] | None) -> dict[str, Kpi]:
    wanted = list(dict.fromkeys(keys))
    found = {key: BUILT_IN_KPIS[key] for key in wanted if key in BUILT_IN_KPIS}
    others = [key for key in wanted if key not in found]
    if others:
        if catalogue is not None:
            found.update({key: catalogue[key] for key in others if key in catalogue})
        else:
            found.update(_custom_kpis(others))
    unknown = [key for key in wanted if key not in found]
    if unknown:
        raise UnknownKpiError(f"Unknown KPI(s): {', '.join(sorted(unknown))}")
    return found


# Computation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    as_of: datetime.datetime
    start: datetime.datetime  # A - W
    previous_start: datetime.datetime  # A - 2W
    date: datetime.date  # A's date in the project's time zone


def _window(as_of: datetime.datetime, window_days: int | datetime.timedelta) -> _Window:
    if timezone.is_naive(as_of):
        raise ValueError("as_of must be timezone-aware")
    # Arithmetic in UTC: Python subtracts within one zone by wall clock, across a daylight-saving change.
    as_of = as_of.astimezone(datetime.UTC)
    if isinstance(window_days, datetime.timedelta):
        # A calendar period's exact length (kpis.periods), which a daylight-saving change makes uneven.
        width = window_days
        if width <= datetime.timedelta(0):
            raise ValueError("the window must be longer than zero")
    else:
        if window_days < 1:
            raise ValueError("window_days must be at least 1")
        width = datetime.timedelta(days=window_days)
    return _Window(
        as_of=as_of,
        start=as_of - width,
        previous_start=as_of - 2 * width,
        # The project's zone, not whatever zone a request may have activated.
        date=timezone.localtime(as_of, timezone.get_default_timezone()).date(),
    )


def _number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds() / 86400
    return float(value)


_ACTIVITY_AGGREGATES = {
    # measure: (aggregate over the filtered rows, value for a partner with none)
    "count": (lambda q: Sum("quantity", filter=q), 0),
    "sum": (lambda q: Sum("value", filter=q), 0),
    "avg": (lambda q: Avg("value", filter=q), None),
    "min": (lambda q: Min("value", filter=q), None),
    "max": (lambda q: Max("value", filter=q), None),
}


def _activity_aggregates(terms: list[Term], window: _Window) -> tuple[Q, dict[Term, tuple]]:
    aggregates = {}
    for term in terms:
        selects = Q(kind__key=term.kind) if term.kind else Q(kind__category=term.category)
        make, empty = _ACTIVITY_AGGREGATES[term.measure]
        aggregates[term] = (make(selects), empty)
    kinds = sorted({term.kind for term in terms if term.kind})
    categories = sorted({term.category for term in terms if term.category})
    selected = Q(kind__key__in=kinds) if kinds else Q()
    if categories:
        selected = (selected | Q(kind__category__in=categories)) if kinds else Q(kind__category__in=categories)
    rows = Q(occurred_at__gt=window.start, occurred_at__lte=window.as_of) & selected
    return rows, aggregates


def _deal_aggregates(window: _Window) -> dict[str, tuple[Q, object, object]]:
    """Deal measures: (rows it reads, aggregate over them, value for a partner with none)."""
    registered = Q(registered_at__gt=window.start, registered_at__lte=window.as_of)
    registered_before = Q(registered_at__gt=window.previous_start, registered_at__lte=window.start)
    not_rejected = ~Q(stage=Deal.Stage.REJECTED)
    closed_in_window = Q(closed_at__gt=window.start, closed_at__lte=window.as_of)
    won = Q(stage=Deal.Stage.WON) & closed_in_window
    closed = Q(stage__in=Deal.CLOSED_STAGES) & closed_in_window
    # Open at A: registered by then and not yet closed then (a deal closed after A was still open).
    open_at = (
        Q(registered_at__lte=window.as_of) & not_rejected & (Q(closed_at__isnull=True) | Q(closed_at__gt=window.as_of))
    )
    cycle = ExpressionWrapper(F("closed_at") - F("registered_at"), output_field=DurationField())
    return {
        "registered": (registered, Count("id", filter=registered), 0),
        "open_amount": (open_at, Sum("amount", filter=open_at), 0),
        "won": (won, Count("id", filter=won), 0),
        "closed": (closed, Count("id", filter=closed), 0),
        "won_amount": (won, Sum("amount", filter=won), 0),
        "won_cycle_days": (won, Sum(cycle, filter=won, output_field=DurationField()), None),
        "registered_amount": (registered & not_rejected, Sum("amount", filter=registered & not_rejected), 0),
        "registered_amount_previous": (
            registered_before & not_rejected,
            Sum("amount", filter=registered_before & not_rejected),
            0,
        ),
    }


def _certification_aggregates(window: _Window) -> dict[str, tuple[Q, object, object]]:
    active = Q(earned_on__lte=window.date) & (Q(expires_on__isnull=True) | Q(expires_on__gt=window.date))
    return {
        "active": (active, Count("id", filter=active), 0),
        "active_roles": (active, Count("role", filter=active, distinct=True), 0),
    }


def _review_aggregates(window: _Window) -> dict[str, tuple[Q, object, object]]:
    held = Q(held_on__lte=window.date)
    return {"latest_held_on": (held, Max("held_on", filter=held), None)}


def _grouped(queryset: QuerySet, rows: Q, aggregates: dict[Term, tuple], partners: QuerySet) -> dict[Term, dict]:
    """One GROUP BY partner query: {term: {partner_id: value}} for partners that have rows."""
    aliases = {f"t{index}": term for index, term in enumerate(aggregates)}
    result: dict[Term, dict] = {term: {} for term in aggregates}
    grouped = (
        queryset.filter(rows, partner_id__in=partners.values("pk"))
        .order_by()
        .values("partner_id")
        .annotate(**{alias: aggregates[term][0] for alias, term in aliases.items()})
        .values_list("partner_id", *aliases)
    )
    columns = [result[term] for term in aliases.values()]
    for partner_id, *row in _rows(grouped):
        for values, value in zip(columns, row, strict=True):
            values[partner_id] = value
    return result


def _rows(queryset: QuerySet) -> list[tuple]:
    """A values_list queryset's rows. On PostgreSQL, the driver's values as they are (ints, Decimals, dates,
    intervals, which _number reads): Django's per-value converters cost seconds over 100,000 partners and
    would only convert them to the same types. Elsewhere (SQLite stores dates as text) through Django."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return list(queryset)
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _table_pass(
    queryset: QuerySet, measures: dict[str, tuple], terms: list[Term], partners: QuerySet
) -> tuple[dict[Term, dict], dict[Term, object]]:
    chosen = {term: measures[term.measure] for term in terms}
    rows = reduce(or_, dict.fromkeys(selects for selects, _, _ in chosen.values()))
    values = _grouped(queryset, rows, {term: (aggregate,) for term, (_, aggregate, _) in chosen.items()}, partners)
    return values, {term: empty for term, (_, _, empty) in chosen.items()}


def _latest_values(terms: list[Term], window: _Window, partners: QuerySet) -> dict[Term, dict]:
    """Value of the latest activity of each kind per partner (latest occurred_at, then highest id)."""
    by_kind = {term.kind: term for term in terms}
    result: dict[Term, dict] = {term: {} for term in terms}
    ranked = (
        Activity.objects.filter(
            occurred_at__gt=window.start,
            occurred_at__lte=window.as_of,
            kind__key__in=list(by_kind),
            partner_id__in=partners.values("pk"),
        )
        .annotate(
            kind_key=F("kind__key"),
            rank=Window(
                RowNumber(),
                partition_by=[F("partner_id"), F("kind_id")],
                order_by=[F("occurred_at").desc(), F("id").desc()],
            ),
        )
        .filter(rank=1)
        .values_list("partner_id", "kind_key", "value")
    )
    for partner_id, kind_key, value in ranked:
        result[by_kind[kind_key]][partner_id] = value
    return result


def kpis_compute(
    *,
    keys: Collection[str],
    as_of: datetime.datetime,
    window_days: int | datetime.timedelta,
    partners: QuerySet[Partner],
    catalogue: Mapping[str, Kpi] | None = None,
) -> dict[str, dict[int, float | None]]:
    """Raw values of the requested KPIs for every partner of `partners`: result[key][partner_id].

    `window_days` is W in days, or a timedelta for a window of any exact length (a calendar period).

    A constant number of queries whatever the number of partners: one for the partners, then one
    per table the requested KPIs read (activities, latest activity values, deals, certifications,
    business reviews), plus one to look up custom KPIs unless `catalogue` is given. Nothing after
    `as_of` is read.
    """
    kpis = _resolve(keys, catalogue)
    window = _window(as_of, window_days)
    terms = list(dict.fromkeys(term for kpi in kpis.values() for term in kpi.formula.terms()))
    by_source: dict[str, list[Term]] = {}
    for term in terms:
        by_source.setdefault(term.source, []).append(term)

    if not partners.query.is_sliced:
        # Order is irrelevant here and would only cost a sort (a sliced set keeps the order that defines it).
        partners = partners.order_by()
    partner_targets = dict(partners.values_list("id", "quarterly_revenue_target"))
    values: dict[Term, dict] = {}
    empties: dict[Term, object] = {}
    if by_source.get("partners"):
        for term in by_source["partners"]:
            values[term], empties[term] = partner_targets, None
    if partner_targets and by_source.get("activities"):
        rows, aggregates = _activity_aggregates(by_source["activities"], window)
        values.update(_grouped(Activity.objects.all(), rows, aggregates, partners))
        empties.update({term: empty for term, (_, empty) in aggregates.items()})
    if partner_targets and by_source.get("latest"):
        values.update(_latest_values(by_source["latest"], window, partners))
    tables = (
        ("deals", Deal.objects.all(), _deal_aggregates),
        ("certifications", Certification.objects.all(), _certification_aggregates),
        ("reviews", BusinessReview.objects.all(), _review_aggregates),
    )
    for source, queryset, measures in tables:
        if partner_targets and by_source.get(source):
            table_values, table_empties = _table_pass(queryset, measures(window), by_source[source], partners)
            values.update(table_values)
            empties.update(table_empties)

    column = Column(list(partner_targets), values, empties)
    return {
        key: dict(zip(column.partner_ids, kpi.formula.evaluate(column, window.date), strict=True))
        for key, kpi in kpis.items()
    }


# Evidence ------------------------------------------------------------------------------------------


def _utc(instant: datetime.datetime) -> str:
    return instant.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def kpi_evidence_url(
    key: str,
    *,
    partner_external_id: str,
    as_of: datetime.datetime,
    window_days: int | datetime.timedelta,
    catalogue: Mapping[str, Kpi] | None = None,
) -> str | None:
    """Path and query of the API list of the very records behind a raw value.

    For custom KPIs, pass `catalogue` (from `kpi_catalogue()`) when building many URLs: without it,
    each call looks the KPI up (one query).
    """
    try:
        kpi = _resolve([key], catalogue)[key]
    except UnknownKpiError:
        return None
    evidence = kpi.evidence
    if evidence is None:
        kinds, categories = kpi.activity_kinds()
        if not kinds and not categories:
            return None
        filters: list[tuple[str, str]] = []
        if kinds:
            filters.append(("kind", ",".join(kinds)))
        if categories:
            filters.append(("category", ",".join(categories)))
        evidence = Evidence("activities", (*filters, *_WINDOW))
    window = _window(as_of, window_days)
    slots = {
        "{start}": _utc(window.start),
        "{end}": _utc(window.as_of),
        "{previous_start}": _utc(window.previous_start),
        "{date}": window.date.isoformat(),
    }
    query = [("partner", partner_external_id)] + [(name, slots.get(value, value)) for name, value in evidence.filters]
    # ":" and "," are legal in a query string; keeping them makes the URL readable.
    return f"{API_BASE}{evidence.resource}/?{urlencode(query, safe=':,')}"
