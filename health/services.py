"""Health scoring services: recompute and backfill snapshots, what-if previews, and why a score changed."""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import orjson
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import Max as models_Max
from django.db.models import Min as models_Min
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from health.alerts import alerts_record
from health.models import (
    PendingRecompute,
    RecomputeLock,
    ScoreRun,
    ScoreSnapshot,
    ScoringModel,
)
from health.scoring import ComponentSpec, ModelSpec, PartnerScore, ScoredPopulation
from kpis.registry import kpi_catalogue, kpis_compute
from prm.models import Partner

logger = logging.getLogger(__name__)

LOCK_NAME = "scores"
SNAPSHOT_BATCH = 5000
Progress = Callable[[str], None]


class RecomputeBusy(Exception):
    """Another recompute holds the lock and this one was asked not to wait."""


# Specs and segments --------------------------------------------------------------------------------


def model_spec(model: ScoringModel, components: Iterable | None = None) -> ModelSpec:
    """A scoring model (saved, or unsaved with its components given) as plain values for the math."""
    catalogue = kpi_catalogue()
    components = list(model.components.all()) if components is None else list(components)
    unknown = [c.kpi for c in components if c.kpi not in catalogue]
    if unknown:
        # A custom KPI deactivated or deleted while a model still uses it: score without it, loudly.
        logger.warning("Scoring model %r uses unknown KPI(s) %s: left out", model.name, ", ".join(unknown))
        components = [c for c in components if c.kpi in catalogue]

    def number(value) -> float | None:
        return None if value is None else float(value)

    return ModelSpec(
        id=model.pk,
        name=model.name,
        window_days=model.window_days,
        trend_days=model.trend_days,
        healthy_threshold=float(model.healthy_threshold),
        at_risk_threshold=float(model.at_risk_threshold),
        alert_threshold=float(model.alert_threshold),
        rearm_points=float(model.rearm_points),
        drop_points=float(model.drop_points),
        components=tuple(
            ComponentSpec(
                kpi=c.kpi,
                category=catalogue[c.kpi].category,
                weight=float(c.weight),
                method=c.method,
                direction=c.direction or catalogue[c.kpi].better,
                missing=c.missing,
                target=number(c.target),
                lower=number(c.lower),
                upper=number(c.upper),
            )
            for c in components
        ),
    )


def scored_partners() -> QuerySet[Partner]:
    """Partners that get a health score: everyone but those who have left the program."""
    return Partner.objects.exclude(status=Partner.Status.EXITED)


def segment_filter(types: Collection[str], tier_ids: Collection[int]) -> Q:
    condition = Q()
    if types:
        condition &= Q(type__in=list(types))
    if tier_ids:
        condition &= Q(tier_id__in=list(tier_ids))
    return condition


def model_segment(model: ScoringModel) -> QuerySet[Partner]:
    return scored_partners().filter(
        segment_filter(model.segment_types, [tier.id for tier in model.segment_tiers.all()])
    )


def partners_by_model(partners: QuerySet[Partner], active_models: list[ScoringModel]) -> dict[int, list[int]]:
    """Each partner with the active model that scores it: the matching one with the lowest (priority, id)."""
    segments = [
        (model.id, set(model.segment_types), {tier.id for tier in model.segment_tiers.all()})
        for model in sorted(active_models, key=lambda m: (m.priority, m.id))
    ]
    assignment: dict[int, list[int]] = defaultdict(list)
    for partner_id, partner_type, tier_id in partners.values_list("id", "type", "tier_id").iterator(chunk_size=20000):
        for model_id, types, tiers in segments:
            if (not types or partner_type in types) and (not tiers or tier_id in tiers):
                assignment[model_id].append(partner_id)
                break
    return dict(assignment)


# Raw values -----------------------------------------------------------------------------------------


def raw_values(
    spec: ModelSpec, *, as_of: datetime.datetime, partners: QuerySet[Partner]
) -> dict[str, dict[int, float | None]]:
    return kpis_compute(
        keys={c.kpi for c in spec.components}, as_of=as_of, window_days=spec.window_days, partners=partners
    )


def previous_scores(
    model_id: int,
    *,
    before: datetime.datetime,
    partners: QuerySet[Partner] | Collection[int],
    inclusive: bool,
) -> dict[int, float | None]:
    """Each partner's score in its latest snapshot under the model at (or strictly before) an instant;
    partners without one are left out. `partners` is a queryset or a collection of partner ids.

    One query, answered per partner by the (partner, model, as_of) unique index: on PostgreSQL a LATERAL
    join (one index probe a partner), elsewhere correlated subqueries.
    """
    operator = "<=" if inclusive else "<"
    if connection.vendor == "postgresql":
        if isinstance(partners, QuerySet):
            ids_sql, ids_params = partners.order_by().values("pk").query.sql_with_params()
            source = f"({ids_sql}) AS p (id)"
        else:
            source, ids_params = "unnest(%s::bigint[]) AS p (id)", (list(partners),)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""SELECT p.id, s.score FROM {source}
                    CROSS JOIN LATERAL (
                        SELECT score FROM {ScoreSnapshot._meta.db_table}
                         WHERE partner_id = p.id AND model_id = %s AND as_of {operator} %s
                         ORDER BY as_of DESC LIMIT 1
                    ) AS s""",
                [*ids_params, model_id, before],
            )
            return dict(cursor.fetchall())
    if not isinstance(partners, QuerySet):
        partners = Partner.objects.filter(pk__in=list(partners))
    time_filter = {"as_of__lte": before} if inclusive else {"as_of__lt": before}
    latest = ScoreSnapshot.objects.filter(partner=OuterRef("pk"), model_id=model_id, **time_filter).order_by("-as_of")
    rows = partners.annotate(previous=Subquery(latest.values("score")[:1]), has=Subquery(latest.values("id")[:1]))
    return {pid: previous for pid, previous, has in rows.values_list("id", "previous", "has") if has is not None}


@dataclass
class ScoredGroup:
    """One model's partners scored at one instant: scores, bands and trends as columns, and as iterated,
    (partner id, score, trend) with each partner's explanation assembled on the way."""

    population: ScoredPopulation
    trends: list[float | None]

    @property
    def partner_ids(self) -> list[int]:
        return self.population.partner_ids

    def __iter__(self) -> Iterator[tuple[int, PartnerScore, float | None]]:
        return ((pid, result, trend) for (pid, result), trend in zip(self.population, self.trends, strict=True))


def _score_group(
    spec: ModelSpec,
    *,
    as_of: datetime.datetime,
    partner_ids: list[int],
    partners: QuerySet[Partner],
    peers_queryset: QuerySet[Partner] | None,
    raw: dict[str, dict[int, float | None]] | None = None,
) -> ScoredGroup:
    """One model's partners scored at one instant (raw values computed unless given)."""
    if raw is None:
        raw = raw_values(spec, as_of=as_of, partners=partners)
    peers = None
    percentile_kpis = {c.kpi for c in spec.components if c.method == "percentile"}
    if percentile_kpis and peers_queryset is not None:
        # A partial run still ranks partners among the model's whole population at the same instant.
        peer_raw = kpis_compute(
            keys=percentile_kpis, as_of=as_of, window_days=spec.window_days, partners=peers_queryset
        )
        peers = {kpi: peer_raw[kpi].values() for kpi in percentile_kpis}
    elif percentile_kpis:
        wanted = set(partner_ids)
        peers = {kpi: [v for pid, v in raw[kpi].items() if pid in wanted] for kpi in percentile_kpis}
    previous = (
        previous_scores(
            spec.id, before=as_of - datetime.timedelta(days=spec.trend_days), partners=partners, inclusive=True
        )
        if spec.id
        else {}
    )
    population = ScoredPopulation(spec, raw, partner_ids, peers=peers)
    trends = [
        None if score is None or previous.get(pid) is None else score - previous[pid]
        for pid, score in zip(population.partner_ids, population.scores, strict=True)
    ]
    return ScoredGroup(population, trends)


# Recompute -----------------------------------------------------------------------------------------


@dataclass
class RecomputeResult:
    run: ScoreRun
    snapshots: int


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a recompute's duration.

    A recompute creates millions of small tuples and lists (rows, scores, explanations) that it keeps until
    it ends, none of them in reference cycles; the collector would walk all of them again each time its
    allocation count fills up, which cost a third of the Python time of a 100,000-partner run
    (docs/benchmarks.md). Whatever a run leaves unreachable is collected as soon as the collector resumes.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _acquire_lock(*, wait: bool) -> None:
    RecomputeLock.objects.get_or_create(name=LOCK_NAME)  # idempotent; outside any lock on first use
    try:
        RecomputeLock.objects.select_for_update(nowait=not wait).get(name=LOCK_NAME)
    except DatabaseError as exc:
        raise RecomputeBusy("another recompute is running") from exc


def scores_recompute(
    *,
    as_of: datetime.datetime | None = None,
    model: ScoringModel | None = None,
    partners: QuerySet[Partner] | None = None,
    trigger: str = "command",
    wait: bool = True,
    progress: Progress | None = None,
    precomputed: dict[int, dict[str, dict[int, float | None]]] | None = None,
) -> RecomputeResult:
    """Score partners at one instant and store one snapshot each, all or nothing.

    Without `model`, every scored partner (or those of `partners`) gets the active model chosen for it,
    and its current score on the partner row is updated. With `model`, every partner of that model's
    segment is scored with it (active or not, chosen or not) and current scores are left alone.
    Re-running the same (model, as_of) replaces its snapshots. Runs never overlap: with `wait`, a run
    waits for the one in progress; without, it is recorded as skipped. `precomputed` holds raw KPI
    values per model id already computed elsewhere (the partitioned run's workers).
    """
    as_of = as_of or timezone.now()
    if timezone.is_naive(as_of):
        raise ValueError("as_of must be timezone-aware")
    run = ScoreRun.objects.create(as_of=as_of, model=model, trigger=trigger, partial=partners is not None)
    try:
        with transaction.atomic():
            try:
                _acquire_lock(wait=wait)
            except RecomputeBusy:
                raise
            # Runs left "running" by a worker that died hold no lock: they ended without finishing.
            ScoreRun.objects.filter(status=ScoreRun.Status.RUNNING).exclude(pk=run.pk).update(
                status=ScoreRun.Status.FAILED,
                error="Interrupted (the process running it stopped).",
                finished_at=timezone.now(),
            )
            with _collector_paused():
                count = _recompute_locked(
                    run=run,
                    as_of=as_of,
                    model=model,
                    partners=partners,
                    progress=progress,
                    precomputed=precomputed or {},
                )
    except RecomputeBusy:
        run.status, run.error, run.finished_at = (
            ScoreRun.Status.SKIPPED,
            "Skipped: another recompute was running.",
            timezone.now(),
        )
        run.save(update_fields=["status", "error", "finished_at"])
        logger.warning("Recompute as of %s skipped: another recompute was running", as_of)
        raise
    except Exception as exc:
        run.status, run.error, run.finished_at = ScoreRun.Status.FAILED, f"{type(exc).__name__}: {exc}", timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    run.status, run.partners_scored, run.finished_at = ScoreRun.Status.SUCCEEDED, count, timezone.now()
    run.save(update_fields=["status", "partners_scored", "finished_at"])
    return RecomputeResult(run=run, snapshots=count)


def _recompute_locked(
    *,
    run: ScoreRun,
    as_of: datetime.datetime,
    model: ScoringModel | None,
    partners: QuerySet[Partner] | None,
    progress: Progress | None,
    precomputed: dict[int, dict[str, dict[int, float | None]]],
) -> int:
    population = scored_partners()
    if model is not None:
        groups = {model.id: None}  # None: the whole segment
        models = {model.id: model}
        segment = model_segment(model)
        scoped = {model.id: segment if partners is None else segment.filter(pk__in=partners.values("pk"))}
        peers = {model.id: segment if partners is not None else None}
    else:
        active = list(ScoringModel.objects.filter(is_active=True).prefetch_related("segment_tiers", "components"))
        models = {m.id: m for m in active}
        target = population if partners is None else population.filter(pk__in=partners.values("pk"))
        groups = partners_by_model(target, active)
        scoped = {
            mid: target.filter(pk__in=ids) if partners is not None else model_segment(models[mid])
            for mid, ids in groups.items()
        }
        # Percentile peers of a partial run: the model's whole population, as a scheduled run would see it.
        peers = {}
        for mid in groups:
            if partners is not None and any(c.method == "percentile" for c in models[mid].components.all()):
                everyone = partners_by_model(population, active).get(mid, [])
                peers[mid] = population.filter(pk__in=everyone)
            else:
                peers[mid] = None

    written = 0
    for model_id, partner_ids in groups.items():
        scoring_model = models[model_id]
        spec = model_spec(scoring_model)
        if not spec.components:
            continue
        queryset = scoped[model_id]
        if partner_ids is None:
            partner_ids = list(queryset.values_list("id", flat=True))
        if progress:
            progress(f"{scoring_model.name}: computing {len(partner_ids)} partners")
        scored = _score_group(
            spec,
            as_of=as_of,
            partner_ids=partner_ids,
            partners=queryset,
            peers_queryset=peers.get(model_id),
            raw=precomputed.get(model_id),
        )
        if progress:
            progress(f"{scoring_model.name}: scoring and writing {len(partner_ids)} snapshots")
        existing = ScoreSnapshot.objects.filter(model_id=model_id, as_of=as_of)
        if partners is not None:
            existing = existing.filter(partner_id__in=partner_ids)
        existing.delete()
        scores: dict[int, PartnerScore] = {}
        _snapshots_write(
            scored,
            scores=scores,
            model_id=model_id,
            as_of=as_of,
            run=run,
            window_days=spec.window_days,
            denormalize=model is None,
        )
        written += len(scores)
        if model is None and run.trigger != "backfill":
            # In the snapshot's transaction: an alert exists exactly when its snapshot does.
            trends = dict(zip(scored.partner_ids, scored.trends, strict=True))
            alerts_record(spec=spec, as_of=as_of, scores=scores, trends=trends)
    return written


_SNAPSHOT_COLUMNS = (
    "partner_id",
    "model_id",
    "as_of",
    "score",
    "band",
    "trend",
    "category_scores",
    "components",
    "window_days",
    "run_id",
    "created_at",
)
COPY_CHUNK = 1000  # snapshot lines per write to the COPY stream


def _snapshots_write(
    scored: ScoredGroup,
    *,
    scores: dict[int, PartnerScore],
    model_id: int,
    as_of: datetime.datetime,
    run: ScoreRun,
    window_days: int,
    denormalize: bool,
) -> None:
    """Store one snapshot per scored partner (filling `scores`), and with `denormalize`, copy the scores
    onto the partner rows.

    On PostgreSQL the partner rows are updated from the score columns on the run's connection by a helper
    thread, while this one assembles the explanations and the COPY text (Python only); then COPY stores
    the snapshots. At 100,000 partners the update is several seconds of the database's time, which the
    Python work no longer waits for (docs/benchmarks.md). Elsewhere, batched INSERTs, then the update.
    """
    now = timezone.now()
    if connection.vendor != "postgresql":
        snapshots = []
        for pid, result, trend in scored:
            scores[pid] = result
            snapshots.append(
                ScoreSnapshot(
                    partner_id=pid,
                    model_id=model_id,
                    as_of=as_of,
                    score=result.score,
                    band=result.band,
                    trend=trend,
                    category_scores=result.category_scores,
                    components=result.rows,
                    window_days=window_days,
                    run_id=run.pk,
                    created_at=now,
                )
            )
        ScoreSnapshot.objects.bulk_create(snapshots, batch_size=SNAPSHOT_BATCH)
        if denormalize:
            _denormalize_from_snapshots(model_id=model_id, as_of=as_of, run=run)
        return

    database = connections[DEFAULT_DB_ALIAS]  # this thread's: the helper thread shares it, not its own
    population = scored.population
    update = (
        functools.partial(
            _denormalize,
            database,
            model_id=model_id,
            as_of=as_of,
            ids=population.partner_ids,
            scores=population.scores,
            bands=population.bands,
            trends=scored.trends,
        )
        if denormalize
        else None
    )
    with _alongside(database, update):
        constant = {
            "model": str(model_id),
            "as_of": as_of.isoformat(),
            "window": str(window_days),
            "run": str(run.pk),
            "now": now.isoformat(),
        }
        chunks, lines = [], []
        for pid, result, trend in scored:
            scores[pid] = result
            lines.append(
                f"{pid}\t{constant['model']}\t{constant['as_of']}\t{_copy_number(result.score)}\t{result.band}\t"
                f"{_copy_number(trend)}\t{_copy_json(result.category_scores)}\t{_copy_json(result.rows)}\t"
                f"{constant['window']}\t{constant['run']}\t{constant['now']}\n"
            )
            if len(lines) == COPY_CHUNK:
                chunks.append("".join(lines))
                lines = []
        chunks.append("".join(lines))
    statement = f"COPY {ScoreSnapshot._meta.db_table} ({', '.join(_SNAPSHOT_COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for chunk in chunks:
            copy.write(chunk)


def _copy_number(value: float | None) -> str:
    """A float in COPY's text format (repr: the shortest text that reads back as the same float)."""
    return "\\N" if value is None else repr(value)


def _copy_json(value) -> str:
    """JSON in COPY's text format. orjson escapes every control character inside strings, so a backslash
    is the only character COPY's text format would read as special; it is doubled.

    orjson: encoding 100,000 component lists took longer than scoring them with the standard library.
    """
    text = orjson.dumps(value).decode()
    return text.replace("\\", "\\\\") if "\\" in text else text


@contextlib.contextmanager
def _alongside(database, work: Callable[[], object] | None) -> Iterator[None]:
    """Run `work` (statements on `database`, this thread's connection) in a helper thread while the block
    runs; the block must not use the connection. The helper's error, if any, is raised after the block.

    The statements go through Django's connection wrapper, so they count like any other (execute
    wrappers, assertNumQueries) and run inside the caller's transaction.
    """
    if work is None:
        yield
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    database.inc_thread_sharing()
    helper = threading.Thread(target=target, name="recompute-partners", daemon=True)
    helper.start()
    try:
        yield
    finally:
        helper.join()
        database.dec_thread_sharing()
    if errors:
        raise errors[0]


def _denormalize(
    database,
    *,
    model_id: int,
    as_of: datetime.datetime,
    ids: list[int],
    scores: list[float | None],
    bands: list[str],
    trends: list[float | None],
) -> None:
    """Copy a run's scores onto the partner rows (PostgreSQL), unless a partner already shows a later score.

    One UPDATE from the values, sent as arrays: no correlated subqueries, and no read of the snapshot table.
    """
    with database.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {Partner._meta.db_table} AS p
                   SET health_score = u.score, health_band = u.band, health_trend = u.trend,
                       health_as_of = %s, health_model_id = %s
                  FROM unnest(%s::bigint[], %s::float8[], %s::text[], %s::float8[]) AS u(id, score, band, trend)
                 WHERE p.id = u.id AND (p.health_as_of IS NULL OR p.health_as_of <= %s)""",
            [as_of, model_id, ids, scores, bands, trends, as_of],
        )


def _denormalize_from_snapshots(*, model_id: int, as_of: datetime.datetime, run: ScoreRun) -> None:
    """Copy this run's snapshots onto the partner rows (other databases), unless a partner already shows a
    later score."""
    snapshot = ScoreSnapshot.objects.filter(partner=OuterRef("pk"), model_id=model_id, as_of=as_of)
    Partner.objects.filter(pk__in=ScoreSnapshot.objects.filter(run=run, model_id=model_id).values("partner_id")).filter(
        Q(health_as_of__isnull=True) | Q(health_as_of__lte=as_of)
    ).update(
        health_score=Subquery(snapshot.values("score")[:1]),
        health_band=Subquery(snapshot.values("band")[:1]),
        health_trend=Subquery(snapshot.values("trend")[:1]),
        health_as_of=as_of,
        health_model_id=model_id,
    )


def partition_bounds(*, partitions: int) -> list[tuple[int, int]]:
    """Split the partner id space into contiguous half-open ranges [low, high) of similar size."""
    ids = scored_partners().aggregate(low=models_Min("id"), high=models_Max("id"))
    if ids["low"] is None:
        return []
    low, high = ids["low"], ids["high"] + 1
    step = max(1, -(-(high - low) // max(1, partitions)))
    return [(start, min(start + step, high)) for start in range(low, high, step)]


def raw_partition(*, model: ScoringModel, as_of: datetime.datetime, low: int, high: int) -> dict:
    """Raw KPI values of one model's segment within a partner id range (one worker's share of a run)."""
    return raw_values(model_spec(model), as_of=as_of, partners=model_segment(model).filter(id__gte=low, id__lt=high))


def scores_backfill(
    *,
    weeks: int,
    model: ScoringModel | None = None,
    now: datetime.datetime | None = None,
    progress: Progress | None = None,
) -> list[RecomputeResult]:
    """Weekly snapshots for the past `weeks` weeks and one now, so trends and charts work from day one."""
    now = now or timezone.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    instants = [midnight - datetime.timedelta(weeks=w) for w in range(weeks, 0, -1)] + [now]
    results = []
    for index, instant in enumerate(instants, start=1):
        results.append(scores_recompute(as_of=instant, model=model, trigger="backfill"))
        _snapshot_statistics_refresh()
        if progress:
            progress(f"{index}/{len(instants)} {instant:%Y-%m-%d}")
    return results


def _snapshot_statistics_refresh() -> None:
    """ANALYZE the snapshot table (PostgreSQL), as a backfill adds a week of history at a time.

    Each step looks up every partner's score of a month before (its trend). Planned with statistics that
    know nothing of the instants just written (autovacuum analyzes after a minute at best, or never when
    it is off), that lookup read the (model, as_of) index backward, past every other partner's snapshot of
    the instant, for each partner: minutes, not the second it takes through the (partner, model, as_of)
    key (measured at 100,000 partners, docs/benchmarks.md). Sampling the table takes well under a second.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {ScoreSnapshot._meta.db_table}")


def pending_recompute(*, limit: int = 5000) -> RecomputeResult | None:
    """Recompute the partners whose data changed since the last sweep (the debounce of ingestion)."""
    with transaction.atomic():
        claimed = list(
            PendingRecompute.objects.select_for_update(
                skip_locked=connection.features.has_select_for_update_skip_locked
            )
            .order_by("requested_at")
            .values_list("partner_id", flat=True)[:limit]
        )
        if not claimed:
            return None
        PendingRecompute.objects.filter(partner_id__in=claimed).delete()
    return scores_recompute(partners=Partner.objects.filter(pk__in=claimed), trigger="ingest", wait=True)


def recompute_request(*, partner_ids: Collection[int]) -> None:
    """Note that these partners' data changed; the next sweep rescores them."""
    if connection.vendor == "postgresql":
        # One array, not a model instance and a parameter group per partner (a 1,000-event body names ~1,000).
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {PendingRecompute._meta.db_table} (partner_id, requested_at) "
                "SELECT unnest(%s::bigint[]), now() ON CONFLICT DO NOTHING",
                [list(partner_ids)],
            )
        return
    PendingRecompute.objects.bulk_create(
        [PendingRecompute(partner_id=pid) for pid in partner_ids], ignore_conflicts=True
    )


# What-if preview -----------------------------------------------------------------------------------


@dataclass
class Preview:
    partners: int
    band_changes: int
    current_bands: dict[str, int]
    preview_bands: dict[str, int]
    distribution: list[dict]
    movers: list[dict]
    scores: dict[int, PartnerScore]


BANDS = ("healthy", "watch", "at_risk", "no_data")


def scores_preview(
    *, spec: ModelSpec, segment: QuerySet[Partner], as_of: datetime.datetime | None = None, movers: int = 10
) -> Preview:
    """Score a model's segment with an unsaved configuration, beside today's scores. Writes nothing."""
    as_of = as_of or timezone.now()
    rows = list(segment.values_list("id", "external_id", "name", "health_score", "health_band"))
    partner_ids = [row[0] for row in rows]
    scores = {
        pid: result
        for pid, result, _ in _score_group(
            spec, as_of=as_of, partner_ids=partner_ids, partners=segment, peers_queryset=None
        )
    }
    current_bands = dict.fromkeys(BANDS, 0)
    preview_bands = dict.fromkeys(BANDS, 0)
    changes = []
    for pid, external_id, name, current_score, current_band in rows:
        new = scores[pid]
        current_bands[current_band or "no_data"] += 1
        preview_bands[new.band] += 1
        delta = None if new.score is None or current_score is None else new.score - current_score
        changes.append(
            {
                "partner": external_id,
                "name": name,
                "current_score": current_score,
                "current_band": current_band,
                "score": new.score,
                "band": new.band,
                "delta": delta,
            }
        )
    buckets = [{"from": low, "to": low + 10, "current": 0, "preview": 0} for low in range(0, 100, 10)]
    for change in changes:
        for key, value in (("current", change["current_score"]), ("preview", change["score"])):
            if value is not None:
                buckets[min(int(value // 10), 9)][key] += 1
    return Preview(
        partners=len(rows),
        band_changes=sum(1 for c in changes if c["band"] != (c["current_band"] or "no_data")),
        current_bands=current_bands,
        preview_bands=preview_bands,
        distribution=buckets,
        movers=sorted((c for c in changes if c["delta"] is not None), key=lambda c: abs(c["delta"]), reverse=True)[
            :movers
        ],
        scores=scores,
    )


# Why did it change ---------------------------------------------------------------------------------


@dataclass
class ScoreChange:
    before: ScoreSnapshot | None
    after: ScoreSnapshot | None
    components: list[dict]

    @property
    def delta(self) -> float | None:
        if not self.before or not self.after or self.before.score is None or self.after.score is None:
            return None
        return self.after.score - self.before.score


def score_change(
    *, partner: Partner, model_id: int, since: datetime.datetime, until: datetime.datetime | None = None
) -> ScoreChange:
    """The difference between two snapshots of a partner, by component contribution, biggest movers first."""
    snapshots = ScoreSnapshot.objects.filter(partner=partner, model_id=model_id)
    after = (snapshots.filter(as_of__lte=until) if until else snapshots).order_by("-as_of").first()
    before = snapshots.filter(as_of__lte=since).order_by("-as_of").first()
    return ScoreChange(before=before, after=after, components=component_changes(before, after))


def component_changes(before: ScoreSnapshot | None, after: ScoreSnapshot | None) -> list[dict]:
    old = {c["kpi"]: c for c in (before.components if before else [])}
    new = {c["kpi"]: c for c in (after.components if after else [])}
    changes = []
    for kpi in list(new) + [k for k in old if k not in new]:
        o, n = old.get(kpi, {}), new.get(kpi, {})
        changes.append(
            {
                "kpi": kpi,
                "category": n.get("category") or o.get("category"),
                "raw_before": o.get("raw"),
                "raw_after": n.get("raw"),
                "contribution_before": o.get("contribution", 0.0),
                "contribution_after": n.get("contribution", 0.0),
                "delta": (n.get("contribution") or 0.0) - (o.get("contribution") or 0.0),
            }
        )
    return sorted(changes, key=lambda c: abs(c["delta"]), reverse=True)


# Scoring model configuration -----------------------------------------------------------------------


@transaction.atomic
def scoring_model_save(*, model: ScoringModel | None, data: dict) -> ScoringModel:
    """Create or change a scoring model and its components (matched by KPI), keeping the audit history."""
    from health.models import ScoringComponent

    data = dict(data)
    components = data.pop("components", None)
    segment = data.pop("segment", None)
    model = model or ScoringModel()
    for name, value in data.items():
        setattr(model, name, value)
    if segment is not None:
        model.segment_types = list(segment.get("types", []))
    model.full_clean(exclude=["name"] if model.pk else None)
    model.save()
    if segment is not None:
        model.segment_tiers.set(segment.get("tiers", []))
    if components is not None:
        existing = {c.kpi: c for c in model.components.all()}
        wanted = {c["kpi"] for c in components}
        for stale in [c for kpi, c in existing.items() if kpi not in wanted]:
            stale.delete()
        for values in components:
            component = existing.get(values["kpi"]) or ScoringComponent(model=model, kpi=values["kpi"])
            for name in ("weight", "method", "target", "lower", "upper", "direction", "missing"):
                setattr(component, name, values.get(name, ScoringComponent._meta.get_field(name).get_default()))
            component.full_clean(exclude=["model"])
            component.save()
    return model
