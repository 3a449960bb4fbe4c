"""Reads behind the dashboards and the partner portal, each with a fixed query shape (never a query per row)."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import (
    Avg,
    Case,
    CharField,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Floor, Least, TruncDate, TruncWeek
from django.shortcuts import get_object_or_404
from django.utils.functional import cached_property

from health.models import Alert, PartnerForecast, ScoreSnapshot, ScoringModel
from health.services import ScoreChange, component_changes
from kpis.filters import BusinessReviewFilter
from kpis.models import ActionItem, BusinessReview
from kpis.registry import Kpi, kpi_catalogue, kpi_evidence_url, kpis_compute
from prm.api.filters import ActivityFilter, CertificationFilter, DealFilter, NullsLastOrderingFilter, PartnerFilter
from prm.models import Activity, Certification, Deal, Partner, Tier
from prm.roles import partner_id_of, scope_to_user, visible_partners

PAGE_SIZE = 50
SPARKLINE_WEEKS = 12
HISTORY_DAYS = 365
# A trend within this many points either way is shown as flat.
FLAT_TREND = 1.0
TODAY_LIMIT = 50
# Today lists a decline when the score fell at least this much over the model's trend window.
STEEP_DECLINE = 10.0
# An intervention (a done action item) is given this long to work before its partner counts as
# "still at risk despite it".
INTERVENTION_GRACE = datetime.timedelta(days=30)
EVIDENCE_LIMIT = 200
TIMELINE_LIMIT = 25
DEALS_LIMIT = 20
CERTIFICATIONS_LIMIT = 50
ALERTS_LIMIT = 20
BANDS = (Partner.Band.HEALTHY, Partner.Band.WATCH, Partner.Band.AT_RISK, Partner.Band.NO_DATA)


# Portfolio -----------------------------------------------------------------------------------------

# Column name in the URL -> partner field it sorts by.
PORTFOLIO_COLUMNS = {
    "name": "name",
    "score": "health_score",
    "band": "health_band",
    "trend": "health_trend",
    "tier": "tier__rank",
    "type": "type",
    "region": "region",
    "owner": "owner__username",
    "status": "status",
    "forecast": "forecast_predicted",
}
# The partner's latest revenue forecast under its own model: an index read per partner, only where used.
FORECAST = Subquery(
    PartnerForecast.objects.filter(partner=OuterRef("pk"), model_id=OuterRef("health_model_id"))
    .order_by("-report_id")
    .values("predicted")[:1]
)
# Worst first when ascending; partners without data come last either way.
BAND_RANK = Case(
    When(health_band=Partner.Band.AT_RISK, then=Value(0)),
    When(health_band=Partner.Band.WATCH, then=Value(1)),
    When(health_band=Partner.Band.HEALTHY, then=Value(2)),
    default=Value(None),
    output_field=IntegerField(),
)
DEFAULT_ORDERING = "score"


class PortfolioOrdering(NullsLastOrderingFilter):
    def get_ordering_value(self, param):
        if param.lstrip("-") == "band":
            return BAND_RANK.desc(nulls_last=True) if param.startswith("-") else BAND_RANK.asc(nulls_last=True)
        return super().get_ordering_value(param)


class PortfolioFilter(PartnerFilter):
    """The API's partner filters (same names, same meaning), sortable by every column of the portfolio."""

    ordering = PortfolioOrdering(fields=tuple((field, name) for name, field in PORTFOLIO_COLUMNS.items()))

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("ordering"):
            queryset = self.filters["ordering"].filter(queryset, [DEFAULT_ORDERING])
        return queryset


def portfolio_filter(*, user, params: Mapping[str, str]) -> PortfolioFilter:
    """The user's partners narrowed and sorted as the query string says (invalid values are ignored)."""
    queryset = visible_partners(user).select_related("tier", "owner").alias(forecast_predicted=FORECAST)
    return PortfolioFilter(params, queryset=queryset)


@dataclass
class FilterChoices:
    tiers: list[tuple[str, str]]
    owners: list[str]
    regions: list[str]


REGIONS_CACHE_KEY = "health:portfolio:regions"
# Regions are read by a scan of every partner; the menu may lag a new region by this long.
REGIONS_CACHE_SECONDS = 300


def portfolio_choices() -> FilterChoices:
    """Values offered by the portfolio's filter menus: tiers and owners (two small queries) and the regions
    in use (one scan of the partners, cached for a few minutes)."""
    owners = (
        get_user_model()
        .objects.filter(Exists(Partner.objects.filter(owner=OuterRef("pk"))))
        .order_by("username")
        .values_list("username", flat=True)
    )
    regions = cache.get(REGIONS_CACHE_KEY)
    if regions is None:
        regions = list(
            Partner.objects.exclude(region="").order_by("region").values_list("region", flat=True).distinct()
        )
        cache.set(REGIONS_CACHE_KEY, regions, REGIONS_CACHE_SECONDS)
    return FilterChoices(
        tiers=list(Tier.objects.order_by("rank", "name").values_list("slug", "name")),
        owners=list(owners),
        regions=regions,
    )


# Filters that no index serves: evaluated once, then the matching partners are read by primary key.
SCAN_ONCE_FILTERS = ("search",)
SCAN_ONCE_LIMIT = 5000


def portfolio_partners(filterset: PortfolioFilter) -> QuerySet[Partner]:
    """The filtered, sorted partners. A search scans every name once for the matching ids (when they are
    few), so that the distribution and the page then read those partners by primary key instead of
    scanning again."""
    partners = filterset.qs  # validates the form: cleaned_data holds every valid filter
    if not any(filterset.form.cleaned_data.get(name) for name in SCAN_ONCE_FILTERS):
        return partners
    ids = list(partners.order_by().values_list("pk", flat=True)[: SCAN_ONCE_LIMIT + 1])
    if len(ids) > SCAN_ONCE_LIMIT:
        return partners
    return (
        Partner.objects.filter(pk__in=ids)
        .select_related("tier", "owner")
        .alias(forecast_predicted=FORECAST)
        .order_by(*partners.query.order_by)
    )


def page_partners(page) -> list[Partner]:
    """The partners of one page: their ids sorted first (a narrow sort, no joins), then their rows."""
    ids = list(page.object_list.values_list("pk", flat=True))
    rows = Partner.objects.filter(pk__in=ids).select_related("tier", "owner").annotate(forecast=FORECAST).in_bulk()
    return [rows[pk] for pk in ids]


@dataclass
class Distribution:
    """Partners by band, and by score bucket of ten points split by band (a stacked histogram)."""

    bands: dict[str, int]
    buckets: list[dict[str, int]]  # ten buckets 0-10 ... 90-100, each {band: count}

    @property
    def total(self) -> int:
        return sum(self.bands.values())

    @property
    def scored(self) -> int:
        return self.total - self.bands[Partner.Band.NO_DATA]


def score_distribution(partners: QuerySet[Partner]) -> Distribution:
    """One grouped query over the (filtered) partners."""
    rows = (
        partners.order_by()
        .annotate(bucket=Least(Floor(F("health_score") / 10), Value(9.0)))
        .values("bucket", "health_band")
        .annotate(partners=Count("*"))
    )
    bands = dict.fromkeys(BANDS, 0)
    buckets = [dict.fromkeys(BANDS[:3], 0) for _ in range(10)]
    for row in rows:
        band = row["health_band"] or Partner.Band.NO_DATA
        bands[band] = bands.get(band, 0) + row["partners"]
        if row["bucket"] is not None and band in buckets[0]:
            buckets[max(0, int(row["bucket"]))][band] += row["partners"]
    return Distribution(bands=bands, buckets=buckets)


class CountedPaginator(Paginator):
    """A paginator told the number of rows (already counted by the distribution): no COUNT query."""

    def __init__(self, object_list, per_page, *, count: int):
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


def sparklines(
    partners: Iterable[Partner], *, now: datetime.datetime, weeks: int = SPARKLINE_WEEKS
) -> dict[int, list[float]]:
    """Weekly average score of each partner under its current model over the last weeks: one query."""
    ids = [partner.pk for partner in partners if partner.health_model_id]
    if not ids:
        return {}
    rows = (
        ScoreSnapshot.objects.filter(
            partner_id__in=ids,
            model_id=F("partner__health_model_id"),
            as_of__gt=now - datetime.timedelta(weeks=weeks),
            as_of__lte=now,
            score__isnull=False,
        )
        .annotate(week=TruncWeek("as_of"))
        .values("partner_id", "week")
        .annotate(average=Avg("score"))
        .order_by("partner_id", "week")
    )
    lines: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        lines[row["partner_id"]].append(row["average"])
    return dict(lines)


CSV_HEADER = [
    "external_id",
    "name",
    "score",
    "band",
    "trend",
    "tier",
    "type",
    "region",
    "status",
    "owner",
    "scored_at",
]


def portfolio_rows(partners: QuerySet[Partner]) -> Iterator[list]:
    """The filtered list as CSV rows, streamed from a server-side cursor (constant memory)."""
    rows = partners.values_list(
        "external_id",
        "name",
        "health_score",
        "health_band",
        "health_trend",
        "tier__name",
        "type",
        "region",
        "status",
        "owner__username",
        "health_as_of",
    )
    for external_id, name, score, band, trend, tier, kind, region, status, owner, as_of in rows.iterator(
        chunk_size=2000
    ):
        yield [
            external_id,
            name,
            "" if score is None else f"{score:.2f}",
            band,
            "" if trend is None else f"{trend:.2f}",
            tier or "",
            kind,
            region,
            status,
            owner or "",
            as_of.isoformat() if as_of else "",
        ]


# One partner ---------------------------------------------------------------------------------------


def partner_visible(*, user, external_id: str) -> Partner:
    """The partner if the user may read it; 404 otherwise (another partner's existence is not revealed)."""
    return get_object_or_404(visible_partners(user).select_related("tier", "owner"), external_id=external_id)


def partner_of_user(user) -> Partner | None:
    """The partner a partner user belongs to."""
    partner_id = partner_id_of(user)
    if partner_id is None:
        return None
    return Partner.objects.select_related("tier", "owner").filter(pk=partner_id).first()


def scoring_model_of(partner: Partner) -> ScoringModel | None:
    """The model that scores the partner now (with its components); the first active one before any score."""
    models = ScoringModel.objects.prefetch_related("components")
    if partner.health_model_id:
        model = models.filter(pk=partner.health_model_id).first()
        if model is not None:
            return model
    return models.filter(is_active=True).order_by("priority", "id").first()


def latest_snapshot(partner: Partner, model: ScoringModel | None) -> ScoreSnapshot | None:
    if model is None:
        return None
    snapshot = ScoreSnapshot.objects.filter(partner=partner, model=model).order_by("-as_of").first()
    if snapshot is not None:
        snapshot.partner = partner  # already loaded: spares a query wherever the snapshot names its partner
    return snapshot


@dataclass
class History:
    points: list[tuple[datetime.date, float]]
    model_changes: list[datetime.datetime]
    start: datetime.date
    end: datetime.date


def score_history(
    partner: Partner, model: ScoringModel | None, *, now: datetime.datetime, days: int = HISTORY_DAYS
) -> History:
    """Daily average score under the model over the last days, and when the model's settings changed."""
    since = now - datetime.timedelta(days=days)
    points: list[tuple[datetime.date, float]] = []
    changes: list[datetime.datetime] = []
    if model is not None:
        rows = (
            ScoreSnapshot.objects.filter(
                partner=partner, model=model, as_of__gt=since, as_of__lte=now, score__isnull=False
            )
            .annotate(day=TruncDate("as_of"))
            .values("day")
            .annotate(average=Avg("score"))
            .order_by("day")
        )
        points = [(row["day"], row["average"]) for row in rows]
        changes = list(
            model.history.filter(history_date__gt=since, history_date__lte=now)
            .order_by("history_date")
            .values_list("history_date", flat=True)
        )
    return History(points=points, model_changes=changes, start=since.date(), end=now.date())


@dataclass
class KpiRow:
    kpi: Kpi
    value: float | None
    component: object | None  # the model's ScoringComponent for this KPI, if the model uses it
    evidence_url: str | None


def partner_kpis(
    partner: Partner,
    model: ScoringModel | None,
    *,
    as_of: datetime.datetime,
    evidence_url: Callable[[str], str],
    catalogue: Mapping[str, Kpi] | None = None,
) -> list[KpiRow]:
    """Every KPI of the catalogue for one partner now, beside the model's component for it if any.

    A constant number of queries: the custom KPIs (unless `catalogue` is given), then one per table read.
    """
    catalogue = catalogue if catalogue is not None else kpi_catalogue()
    window_days = model.window_days if model else 90
    values = kpis_compute(
        keys=list(catalogue),
        as_of=as_of,
        window_days=window_days,
        partners=Partner.objects.filter(pk=partner.pk),
        catalogue=catalogue,
    )
    components = {c.kpi: c for c in model.components.all()} if model else {}
    rows = []
    for key, kpi in catalogue.items():
        has_evidence = (
            kpi_evidence_url(
                key,
                partner_external_id=partner.external_id,
                as_of=as_of,
                window_days=window_days,
                catalogue=catalogue,
            )
            is not None
        )
        rows.append(
            KpiRow(
                kpi=kpi,
                value=values[key].get(partner.pk),
                component=components.get(key),
                evidence_url=evidence_url(key) if has_evidence else None,
            )
        )
    # The model's KPIs first, in its order; then the rest of the catalogue.
    order = {key: index for index, key in enumerate(components)}
    return sorted(rows, key=lambda row: order.get(row.kpi.key, len(order)))


@dataclass
class ComponentRow:
    kpi: str
    label: str
    unit: str
    category: str
    raw: float | None
    normalized: float | None
    weight: float
    share: float  # weight / sum of all weights, in percent
    contribution: float
    included: bool
    gain: float  # points the score would gain if this component reached full marks
    evidence_url: str | None
    component: object | None  # the model's ScoringComponent
    definition: Kpi | None  # the KPI of the catalogue (None for a custom KPI deleted since)


def component_rows(
    snapshot: ScoreSnapshot | None,
    model: ScoringModel | None,
    *,
    evidence_url: Callable[[str], str],
    catalogue: Mapping[str, Kpi] | None = None,
) -> list[ComponentRow]:
    """The snapshot's components with labels, shares and the gain to full marks.

    gain_i = w_i * (100 - s_i) / sum(w) over the included components; an excluded component gains nothing
    until it has data.
    """
    if snapshot is None:
        return []
    catalogue = catalogue if catalogue is not None else kpi_catalogue()
    specs = {c.kpi: c for c in model.components.all()} if model else {}
    total_weight = sum(float(c["weight"]) for c in snapshot.components) or 1.0
    included_weight = sum(float(c["weight"]) for c in snapshot.components if c.get("included")) or 1.0
    rows = []
    for c in snapshot.components:
        kpi = catalogue.get(c["kpi"])
        normalized = c.get("normalized")
        included = bool(c.get("included"))
        has_evidence = (
            kpi is not None
            and kpi_evidence_url(
                c["kpi"],
                partner_external_id=snapshot.partner.external_id,
                as_of=snapshot.as_of,
                window_days=snapshot.window_days,
                catalogue=catalogue,
            )
            is not None
        )
        rows.append(
            ComponentRow(
                kpi=c["kpi"],
                label=kpi.label if kpi else c["kpi"],
                unit=kpi.unit if kpi else "count",
                category=c.get("category") or (kpi.category if kpi else ""),
                raw=c.get("raw"),
                normalized=normalized,
                weight=float(c["weight"]),
                share=100.0 * float(c["weight"]) / total_weight,
                contribution=float(c.get("contribution") or 0.0),
                included=included,
                gain=float(c["weight"]) * (100.0 - normalized) / included_weight if included else 0.0,
                evidence_url=evidence_url(c["kpi"]) if has_evidence else None,
                component=specs.get(c["kpi"]),
                definition=kpi,
            )
        )
    return rows


# KPI -> what an account manager can do when it is weak.
ADVICE = {
    "portal_logins": "Few portal logins: walk the partner's team through the portal and its new content.",
    "content_views": "Little content viewed: send the latest sales kit and battle cards.",
    "events_attended": "No recent events: invite the partner to the next webinar or partner day.",
    "campaigns_joined": "No campaigns joined: offer a ready-to-run campaign in a box.",
    "email_open_rate": "Emails go unread: check the contacts are right and who should receive what.",
    "activity_intensity": "Low engagement: schedule a call to re-engage the partner's team.",
    "trainings_completed": "Few trainings completed: propose a learning path for the sales team.",
    "training_completion_rate": "Assigned trainings are not finished: agree deadlines with the partner's lead.",
    "active_certifications": "Few active certifications: offer certification vouchers.",
    "certification_role_coverage": "Roles without certification (e.g. no technical certification): "
    "offer delivery and technical training.",
    "deals_registered": "Few deals registered: review the pipeline together and remind them of deal registration.",
    "open_pipeline": "Thin open pipeline: plan joint account mapping.",
    "pipeline_coverage": "Pipeline far below target: build a joint pipeline plan for the quarter.",
    "win_rate": "Deals are being lost: offer deal support and competitive training.",
    "partner_sourced_revenue": "Little revenue won: focus on the deals closest to closing.",
    "average_deal_size": "Small deals: introduce up-sell bundles and larger offers.",
    "pipeline_trend": "Pipeline is shrinking: find out what changed at the partner.",
    "sales_cycle_days": "Long sales cycles: offer presales help on open deals.",
    "mdf_utilization": "Marketing funds unused: help plan an MDF-funded activity.",
    "rebate_accrued": "No rebate accrued: explain the rebate programme and how to qualify.",
    "spiff_claims": "No SPIFF claims: promote the current sales incentives.",
    "meetings_held": "Few meetings: book a regular check-in with the partner.",
    "sentiment": "Low sentiment: call the partner's principal to hear what is wrong.",
    "days_since_business_review": "No recent business review: schedule the quarterly business review.",
}
SUGGESTIONS = 3
# Components at or above this normalized score are not weak enough to suggest acting on.
WEAK_BELOW = 70.0


def suggested_actions(components: list[ComponentRow]) -> list[dict]:
    """Advice for the weakest components, the ones whose improvement would lift the score most first."""
    weak = [c for c in components if c.included and c.normalized is not None and c.normalized < WEAK_BELOW]
    weak.sort(key=lambda c: (-c.gain, c.normalized))
    suggestions = []
    for c in weak[:SUGGESTIONS]:
        advice = ADVICE.get(c.kpi, f"{c.label} is weak: discuss it with the partner.")
        suggestions.append({"kpi": c.kpi, "label": c.label, "advice": advice, "gain": c.gain})
    missing = [c for c in components if not c.included]
    for c in missing[: max(0, SUGGESTIONS - len(suggestions))]:
        suggestions.append(
            {
                "kpi": c.kpi,
                "label": c.label,
                "advice": f"No data for {c.label.lower()}: check it is recorded.",
                "gain": 0,
            }
        )
    return suggestions


@dataclass
class NextBand:
    band: str | None  # the next band up, None when already healthy or unscored
    threshold: float | None
    points_needed: float | None
    lifts: list[ComponentRow] = field(default_factory=list)  # biggest gain first
    enough: list[ComponentRow] = field(default_factory=list)  # the fewest top lifts that reach the next band


def next_band(snapshot: ScoreSnapshot | None, model: ScoringModel | None, components: list[ComponentRow]) -> NextBand:
    """Which components would lift the score most, and which of them together reach the next band."""
    lifts = sorted((c for c in components if c.included and c.gain > 0.005), key=lambda c: -c.gain)
    if snapshot is None or model is None or snapshot.score is None:
        return NextBand(band=None, threshold=None, points_needed=None, lifts=lifts)
    if snapshot.score < float(model.at_risk_threshold):
        band, threshold = Partner.Band.WATCH, float(model.at_risk_threshold)
    elif snapshot.score < float(model.healthy_threshold):
        band, threshold = Partner.Band.HEALTHY, float(model.healthy_threshold)
    else:
        return NextBand(band=None, threshold=None, points_needed=None, lifts=lifts)
    needed = threshold - snapshot.score
    enough, total = [], 0.0
    for lift in lifts:
        if total >= needed:
            break
        enough.append(lift)
        total += lift.gain
    return NextBand(
        band=band, threshold=threshold, points_needed=needed, lifts=lifts, enough=enough if total >= needed else []
    )


def partner_change(
    partner: Partner,
    model: ScoringModel | None,
    *,
    since: datetime.datetime,
    latest: ScoreSnapshot | None,
    catalogue: Mapping[str, Kpi] | None = None,
) -> ScoreChange | None:
    """What moved the score between the latest snapshot at `since` and the latest one (already read), as
    health.services.score_change measures it, in one query; each component labelled for display."""
    if model is None:
        return None
    before = ScoreSnapshot.objects.filter(partner=partner, model=model, as_of__lte=since).order_by("-as_of").first()
    change = ScoreChange(before=before, after=latest, components=component_changes(before, latest))
    catalogue = catalogue if catalogue is not None else kpi_catalogue()
    for component in change.components:
        kpi = catalogue.get(component["kpi"])
        component["label"] = kpi.label if kpi else component["kpi"]
        component["unit"] = kpi.unit if kpi else "count"
    return change


@dataclass
class PartnerRecords:
    activities: list[Activity]
    deals: list[Deal]
    certifications: list[Certification]
    alerts: list[Alert]
    action_items: list[ActionItem]


def partner_records(partner: Partner) -> PartnerRecords:
    """The latest records of one partner for its page: one query per list, each bounded."""
    return PartnerRecords(
        activities=list(
            Activity.objects.filter(partner=partner)
            .select_related("kind", "contact")
            .order_by("-occurred_at", "-id")[:TIMELINE_LIMIT]
        ),
        deals=list(Deal.objects.filter(partner=partner).order_by("-registered_at", "-id")[:DEALS_LIMIT]),
        certifications=list(
            Certification.objects.filter(partner=partner)
            .select_related("contact")
            .order_by(F("expires_on").desc(nulls_first=True), "-earned_on", "id")[:CERTIFICATIONS_LIMIT]
        ),
        alerts=list(
            Alert.objects.filter(partner=partner)
            .select_related("model", "acknowledged_by", "follow_up")
            .order_by("-as_of", "-id")[:ALERTS_LIMIT]
        ),
        action_items=list(
            ActionItem.objects.filter(partner=partner)
            .select_related("owner")
            .order_by(
                Case(When(status=ActionItem.Status.OPEN, then=Value(0)), default=Value(1)),
                F("due_on").asc(nulls_last=True),
                "-id",
            )[:ALERTS_LIMIT]
        ),
    )


def alert_for_acknowledgment(*, user, external_id: str, alert_id: int) -> Alert:
    """An alert of a partner the user may read, 404 otherwise."""
    partner = partner_visible(user=user, external_id=external_id)
    return get_object_or_404(Alert.objects.select_related("partner"), pk=alert_id, partner=partner)


# Evidence ------------------------------------------------------------------------------------------

EVIDENCE_SOURCES = {
    "activities": (lambda: Activity.objects.select_related("kind", "contact"), ActivityFilter, ("-occurred_at", "-id")),
    "deals": (lambda: Deal.objects.all(), DealFilter, ("-registered_at", "-id")),
    "certifications": (lambda: Certification.objects.select_related("contact"), CertificationFilter, ("-earned_on",)),
    "reviews": (lambda: BusinessReview.objects.all(), BusinessReviewFilter, ("-held_on", "-id")),
}


@dataclass
class Evidence:
    kpi: Kpi
    resource: str
    api_url: str
    filters: list[tuple[str, str]]
    records: list
    more: bool


def kpi_evidence(
    *, user, partner: Partner, key: str, as_of: datetime.datetime, window_days: int, limit: int = EVIDENCE_LIMIT
) -> Evidence | None:
    """The records behind one KPI's raw value: the API list its evidence link names, read with the API's
    own filters and the same scoping, so the page and the API can never disagree."""
    catalogue = kpi_catalogue()
    if key not in catalogue:
        return None
    url = kpi_evidence_url(
        key, partner_external_id=partner.external_id, as_of=as_of, window_days=window_days, catalogue=catalogue
    )
    if url is None:
        return None
    parts = urlsplit(url)
    resource = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if resource not in EVIDENCE_SOURCES:
        return None
    queryset, filter_class, ordering = EVIDENCE_SOURCES[resource]
    params = parse_qsl(parts.query)
    filterset = filter_class(dict(params), queryset=scope_to_user(queryset(), user))
    if not filterset.is_valid():
        return None
    records = list(filterset.qs.order_by(*ordering)[: limit + 1])
    return Evidence(
        kpi=catalogue[key],
        resource=resource,
        api_url=url,
        filters=[(name, value) for name, value in params if name != "partner"],
        records=records[:limit],
        more=len(records) > limit,
    )


# Today ---------------------------------------------------------------------------------------------


@dataclass
class AttentionRow:
    partner: Partner
    reasons: list[str] = field(default_factory=list)  # e.g. "New alert: dropped fast", "Crossed into at-risk"
    why: str = ""  # e.g. "-14 in 30 days: deals registered fell, active certifications fell"
    rank: int = 9
    alert: Alert | None = None
    mine: bool = False


RANK_ALERT, RANK_CROSSED, RANK_DECLINE, RANK_PERSISTENT = range(4)


CROSSED, DECLINING, PERSISTENT = "crossed", "declining", "persistent"


@dataclass
class Candidate:
    """What ranking needs of a partner before its row is read."""

    owner_id: int | None
    trend: float | None
    name: str
    reasons: set[str] = field(default_factory=set)


def _union_all(members: list[QuerySet]) -> Iterable:
    """The rows of several sliced querysets: one UNION ALL where the database allows each member its own
    LIMIT (PostgreSQL), else one query per member (SQLite, the demo's default): a fixed number either way."""
    if connection.features.supports_slicing_ordering_in_compound:
        first, *rest = members
        return first.union(*rest, all=True)
    return [row for member in members for row in member]


def _attention_candidates(
    *, user, partners: QuerySet[Partner], models: dict[int, ScoringModel], now: datetime.datetime, own_first: bool
) -> dict[int, Candidate]:
    """Partners that crossed into at-risk, declined steeply, or stay at risk despite a done intervention, each
    with why: one query, a UNION ALL of small selects limited separately (the user's own partners' too,
    with own_first), so that none sorts more than it returns and the partner index serves the owner's."""
    crossed = Q(pk__in=[])
    for model in models.values():
        # The score one trend window ago was score - trend: at or above the at-risk line then, below it now.
        crossed |= Q(
            health_model_id=model.pk,
            health_band=Partner.Band.AT_RISK,
            previous_score__gte=float(model.at_risk_threshold),
        )
    intervened = ActionItem.objects.filter(
        partner=OuterRef("pk"), status=ActionItem.Status.DONE, completed_at__lte=now - INTERVENTION_GRACE
    )
    base = partners.exclude(status=Partner.Status.EXITED).order_by()
    selects = {
        CROSSED: base.annotate(previous_score=F("health_score") - F("health_trend"))
        .filter(crossed)
        .order_by("health_trend", "pk"),
        DECLINING: base.filter(health_trend__lte=-STEEP_DECLINE).order_by("health_trend", "pk"),
        PERSISTENT: base.filter(Exists(intervened), health_band=Partner.Band.AT_RISK).order_by("health_score", "pk"),
    }
    members = []
    for reason, queryset in selects.items():
        tagged = queryset.annotate(reason=Value(reason, output_field=CharField())).values_list(
            "pk", "reason", "owner_id", "health_trend", "name"
        )
        if own_first:
            members.append(tagged.filter(owner=user)[:TODAY_LIMIT])
        members.append(tagged[:TODAY_LIMIT])
    found: dict[int, Candidate] = {}
    for pk, reason, owner_id, trend, name in _union_all(members):
        found.setdefault(pk, Candidate(owner_id=owner_id, trend=trend, name=name)).reasons.add(reason)
    return found


def _open_alerts(*, user, own_first: bool) -> list[Alert]:
    """The latest recorded unacknowledged alerts of partners still in the program (the user's own first with
    own_first): ids from the open-alerts index (a UNION ALL when own_first), then the rows with their partner."""
    open_alerts = (
        scope_to_user(Alert.objects.filter(acknowledged_at__isnull=True), user)
        .exclude(partner__status=Partner.Status.EXITED)
        # Newest recorded first: the primary key's order, which its index serves without sorting.
        .order_by("-pk")
        .values_list("pk", flat=True)
    )
    if own_first:
        ids = set(_union_all([open_alerts.filter(partner__owner=user)[:TODAY_LIMIT], open_alerts[:TODAY_LIMIT]]))
    else:
        ids = set(open_alerts[:TODAY_LIMIT])
    alerts = Alert.objects.filter(pk__in=ids).select_related("partner", "partner__owner", "partner__tier", "model")
    ranked = sorted(alerts, key=lambda alert: alert.pk, reverse=True)
    if own_first:
        ranked.sort(key=lambda alert: alert.partner.owner_id != user.pk)
    return ranked[:TODAY_LIMIT]


def _snapshot_pairs(partners: list[Partner], models: dict[int, ScoringModel]) -> dict[int, tuple[list, list]]:
    """For each partner, the components of its current snapshot and of the trend's base snapshot: one query,
    a pair of correlated lookups per listed partner (bounded by the page), answered by the unique index."""
    ids = [p.pk for p in partners if p.health_model_id and p.health_as_of]
    if not ids:
        return {}
    trend_window = Case(
        *(When(health_model_id=m.pk, then=Value(datetime.timedelta(days=m.trend_days))) for m in models.values()),
        default=Value(datetime.timedelta(days=30)),
        output_field=DurationField(),
    )
    snapshots = ScoreSnapshot.objects.filter(partner=OuterRef("pk"), model_id=OuterRef("health_model_id"))
    rows = (
        Partner.objects.filter(pk__in=ids)
        .annotate(base_before=ExpressionWrapper(F("health_as_of") - trend_window, output_field=DateTimeField()))
        .annotate(
            current=Subquery(snapshots.filter(as_of=OuterRef("health_as_of")).values("components")[:1]),
            base=Subquery(
                snapshots.filter(as_of__lte=OuterRef("base_before")).order_by("-as_of").values("components")[:1]
            ),
        )
        .values_list("pk", "current", "base")
    )
    return {pk: (current or [], base or []) for pk, current, base in rows}


def _why(trend: float | None, trend_days: int, reasons: list[dict], catalogue: Mapping[str, Kpi]) -> str:
    """'-14 in 30 days: deals registered fell, active certifications fell' from the biggest movers."""
    movers = [r for r in reasons if (r.get("delta") or 0) < -0.05][:3] or [
        r for r in reasons if abs(r.get("delta") or 0) > 0.05
    ][:3]
    words = []
    for reason in movers:
        kpi = catalogue.get(reason["kpi"])
        label = (kpi.label if kpi else reason["kpi"]).lower()
        before, after = reason.get("raw_before"), reason.get("raw_after")
        if before is not None and after is None:
            words.append(f"no {label} data any more")
        elif (reason.get("delta") or 0) < 0:
            words.append(f"{label} fell")
        else:
            words.append(f"{label} rose")
    head = f"{trend:+.0f} in {trend_days} days" if trend is not None else ""
    return ": ".join(part for part in (head, ", ".join(words)) if part)


def alert_words(alert: Alert, catalogue: Mapping[str, Kpi]) -> str:
    """An alert's reasons in words, e.g. "-14 in 30 days: deals registered fell" (no query: model is joined)."""
    return _why(alert.trend, alert.model.trend_days, alert.reasons or [], catalogue)


@dataclass
class Today:
    rows: list[AttentionRow]
    own_first: bool
    open_alerts: int


def attention_today(*, user, now: datetime.datetime, own_first: bool) -> Today:
    """Partners needing attention now, ranked: new unacknowledged alerts, crossed into at-risk, steepest
    declines, at risk despite an intervention. With own_first, the user's own partners lead.

    A fixed number of queries: models, alert ids and rows, candidates and their rows, snapshot pairs, and
    the custom KPI catalogue.
    """
    partners = visible_partners(user)
    models = {m.pk: m for m in ScoringModel.objects.all()}
    alerts = _open_alerts(user=user, own_first=own_first)
    candidates = _attention_candidates(user=user, partners=partners, models=models, now=now, own_first=own_first)

    # Rank on what the two lists say, then read the rows and explain only the partners that are shown.
    ranking: dict[int, tuple] = {}
    for position, alert in enumerate(alerts):
        mine = alert.partner.owner_id == user.pk
        ranking.setdefault(alert.partner_id, (not mine if own_first else False, RANK_ALERT, position, ""))
    for pk, candidate in candidates.items():
        rank = min(
            RANK_CROSSED if CROSSED in candidate.reasons else 9,
            RANK_DECLINE if DECLINING in candidate.reasons else 9,
            RANK_PERSISTENT if PERSISTENT in candidate.reasons else 9,
        )
        mine = candidate.owner_id == user.pk
        key = (not mine if own_first else False, rank, candidate.trend or 0.0, candidate.name)
        ranking[pk] = min(ranking.get(pk, key), key)
    shown = sorted(ranking, key=ranking.get)[:TODAY_LIMIT]

    alerts_by_partner: dict[int, list[Alert]] = defaultdict(list)
    for alert in alerts:
        alerts_by_partner[alert.partner_id].append(alert)
    unread = set(shown) - set(alerts_by_partner)
    others = {p.pk: p for p in Partner.objects.filter(pk__in=unread).select_related("owner", "tier")} if unread else {}
    rows = []
    for pk in shown:
        partner_alerts = alerts_by_partner.get(pk, [])
        partner = partner_alerts[0].partner if partner_alerts else others[pk]
        row = AttentionRow(partner=partner, alert=partner_alerts[0] if partner_alerts else None, rank=ranking[pk][1])
        row.mine = partner.owner_id == user.pk
        for alert in partner_alerts:
            row.reasons.append(f"New alert: {alert.get_kind_display().lower()} ({alert.as_of:%b %-d})")
        reasons = candidates[pk].reasons if pk in candidates else set()
        if CROSSED in reasons:
            row.reasons.append("Crossed into at-risk")
        if DECLINING in reasons:
            row.reasons.append(f"Declining fast ({partner.health_trend:+.0f})")
        if PERSISTENT in reasons:
            row.reasons.append("Still at risk after an intervention: review tier or exit")
        rows.append(row)

    catalogue = kpi_catalogue()
    pairs = _snapshot_pairs([r.partner for r in rows if r.alert is None or not r.alert.reasons], models)
    for row in rows:
        partner = row.partner
        model = models.get(partner.health_model_id) or (row.alert.model if row.alert else None)
        trend_days = model.trend_days if model else 30
        if row.alert is not None and row.alert.reasons:
            row.why = _why(row.alert.trend, trend_days, row.alert.reasons, catalogue)
        else:
            current, base = pairs.get(partner.pk, ([], []))
            reasons = component_changes(
                SimpleNamespace(components=base) if base else None,
                SimpleNamespace(components=current) if current else None,
            )
            row.why = _why(partner.health_trend, trend_days, reasons if base else [], catalogue)

    return Today(rows=rows, own_first=own_first, open_alerts=len(alerts))
