"""Time a full health recompute against its floors: one hand-written SQL query, and a scan of the activities.

`python -m bench.recompute` (100,000 partners, 10,000,000 activities) or `--quick` (10,000 / 1,000,000)
prints (a) a full recompute through `health.services.scores_recompute`, (b) one SQL query computing the
same raw KPI values for every partner, (c) a plain sequential scan of the activity table, the ratios
(a)/(b) and (a)/(c), the process's peak memory, the SQL statements each issued, and the median time of
a single-partner recompute.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import resource
import statistics
import sys
import time
from collections import Counter

from bench import DEFAULT_DATABASE, QUICK_DATABASE
from bench.program import cpu_check, ensure_program, load_average, program_sizes, vacuum_analyze

BENCH_TRIGGER = "bench"
SINGLE_RUNS = 9

# Every built-in KPI for every scored partner, as SCORING.md defines it, in one statement: one pass over
# each table, joined on the partner. Parameters: as_of, start (A - W), previous_start (A - 2W), day (A's date).
FLOOR_SQL = """
WITH activity AS (
    SELECT a.partner_id,
           sum(a.quantity) FILTER (WHERE k.key = 'portal_login') AS portal_logins,
           sum(a.quantity) FILTER (WHERE k.key = 'content_view') AS content_views,
           sum(a.quantity) FILTER (WHERE k.key = 'event_attended') AS events_attended,
           sum(a.quantity) FILTER (WHERE k.key = 'campaign_joined') AS campaigns_joined,
           sum(a.quantity) FILTER (WHERE k.key = 'email_opened') AS emails_opened,
           sum(a.quantity) FILTER (WHERE k.key = 'email_sent') AS emails_sent,
           sum(a.quantity) FILTER (WHERE k.category = 'engagement') AS engagement,
           sum(a.quantity) FILTER (WHERE k.key = 'training_completed') AS trainings_completed,
           sum(a.quantity) FILTER (WHERE k.key = 'training_assigned') AS trainings_assigned,
           sum(a.value) FILTER (WHERE k.key = 'mdf_claimed') AS mdf_claimed,
           sum(a.value) FILTER (WHERE k.key = 'mdf_allocated') AS mdf_allocated,
           sum(a.value) FILTER (WHERE k.key = 'rebate_accrued') AS rebate_accrued,
           sum(a.quantity) FILTER (WHERE k.key = 'spiff_claimed') AS spiff_claims,
           sum(a.quantity) FILTER (WHERE k.key = 'meeting_held') AS meetings_held,
           (array_agg(a.value ORDER BY a.occurred_at DESC, a.id DESC)
                FILTER (WHERE k.key = 'sentiment_recorded'))[1] AS sentiment
      FROM prm_activity a
      JOIN prm_activitykind k ON k.id = a.kind_id
     WHERE a.occurred_at > %(start)s AND a.occurred_at <= %(as_of)s
     GROUP BY a.partner_id
), deal AS (
    SELECT partner_id,
           count(*) FILTER (WHERE registered_at > %(start)s) AS registered,
           sum(amount) FILTER (WHERE stage <> 'rejected' AND (closed_at IS NULL OR closed_at > %(as_of)s))
               AS open_amount,
           count(*) FILTER (WHERE stage = 'won' AND closed_at > %(start)s AND closed_at <= %(as_of)s) AS won,
           count(*) FILTER (WHERE stage IN ('won', 'lost') AND closed_at > %(start)s AND closed_at <= %(as_of)s)
               AS closed,
           sum(amount) FILTER (WHERE stage = 'won' AND closed_at > %(start)s AND closed_at <= %(as_of)s)
               AS won_amount,
           sum(extract(epoch FROM closed_at - registered_at) / 86400)
               FILTER (WHERE stage = 'won' AND closed_at > %(start)s AND closed_at <= %(as_of)s) AS won_days,
           sum(amount) FILTER (WHERE stage <> 'rejected' AND registered_at > %(start)s) AS registered_amount,
           sum(amount) FILTER (WHERE stage <> 'rejected' AND registered_at > %(previous_start)s
                                 AND registered_at <= %(start)s) AS previous_amount
      FROM prm_deal
     WHERE registered_at <= %(as_of)s
     GROUP BY partner_id
), certification AS (
    SELECT partner_id, count(*) AS active, count(DISTINCT role) AS roles
      FROM prm_certification
     WHERE earned_on <= %(day)s AND (expires_on IS NULL OR expires_on > %(day)s)
     GROUP BY partner_id
), review AS (
    SELECT partner_id, max(held_on) AS held_on
      FROM kpis_businessreview
     WHERE held_on <= %(day)s
     GROUP BY partner_id
)
SELECT p.id,
       coalesce(a.portal_logins, 0),
       coalesce(a.content_views, 0),
       coalesce(a.events_attended, 0),
       coalesce(a.campaigns_joined, 0),
       coalesce(a.emails_opened, 0)::float / nullif(a.emails_sent, 0),
       coalesce(a.engagement, 0),
       coalesce(a.trainings_completed, 0),
       coalesce(a.trainings_completed, 0)::float / nullif(a.trainings_assigned, 0),
       coalesce(c.active, 0),
       coalesce(c.roles, 0) / 3.0,
       coalesce(d.registered, 0),
       coalesce(d.open_amount, 0),
       coalesce(d.open_amount, 0) / nullif(p.quarterly_revenue_target, 0),
       d.won::float / nullif(d.closed, 0),
       coalesce(d.won_amount, 0),
       d.won_amount / nullif(d.won, 0),
       (coalesce(d.registered_amount, 0) - d.previous_amount) / nullif(d.previous_amount, 0),
       d.won_days / nullif(d.won, 0),
       coalesce(a.mdf_claimed, 0) / nullif(a.mdf_allocated, 0),
       coalesce(a.rebate_accrued, 0),
       coalesce(a.spiff_claims, 0),
       coalesce(a.meetings_held, 0),
       a.sentiment,
       %(day)s::date - r.held_on
  FROM prm_partner p
  LEFT JOIN activity a ON a.partner_id = p.id
  LEFT JOIN deal d ON d.partner_id = p.id
  LEFT JOIN certification c ON c.partner_id = p.id
  LEFT JOIN review r ON r.partner_id = p.id
 WHERE p.status <> 'exited'
"""
FLOOR_KPIS = (
    "portal_logins",
    "content_views",
    "events_attended",
    "campaigns_joined",
    "email_open_rate",
    "activity_intensity",
    "trainings_completed",
    "training_completion_rate",
    "active_certifications",
    "certification_role_coverage",
    "deals_registered",
    "open_pipeline",
    "pipeline_coverage",
    "win_rate",
    "partner_sourced_revenue",
    "average_deal_size",
    "pipeline_trend",
    "sales_cycle_days",
    "mdf_utilization",
    "rebate_accrued",
    "spiff_claims",
    "meetings_held",
    "sentiment",
    "days_since_business_review",
)
# Planner switches that leave a sequential scan as the only way to read the table.
SEQUENTIAL_ONLY = ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan")


class QueryCounter:
    """Counts the SQL statements a block sends, COPY included (psycopg's copy() bypasses Django's cursor)."""

    def __init__(self):
        self.statements: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.statements.values())

    def _execute(self, execute, sql, params, many, context):
        self.statements[sql.split(None, 1)[0].upper()] += 1
        return execute(sql, params, many, context)

    @contextlib.contextmanager
    def __call__(self):
        import psycopg
        from django.db import connection

        original_copy = psycopg.Cursor.copy
        counter = self

        def copy(cursor, statement, *args, **kwargs):
            counter.statements["COPY"] += 1
            return original_copy(cursor, statement, *args, **kwargs)

        psycopg.Cursor.copy = copy
        try:
            with connection.execute_wrapper(self._execute):
                yield self
        finally:
            psycopg.Cursor.copy = original_copy


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kilobytes


def _forget_bench_runs() -> None:
    """Remove what earlier runs of this benchmark wrote, so each run scores an instant for the first time
    (a backfilled history, which the dashboards benchmark needs, is kept)."""
    from health.models import Alert, ScoreRun, ScoreSnapshot

    runs = ScoreRun.objects.filter(trigger=BENCH_TRIGGER)
    instants = list(runs.values_list("as_of", flat=True).distinct())
    ScoreSnapshot.objects.filter(run__in=runs).delete()
    Alert.objects.filter(as_of__in=instants).delete()
    runs.delete()


def time_recompute(as_of: datetime.datetime) -> tuple[float, QueryCounter, int, int]:
    """One full recompute: seconds, statements, snapshots written and alerts recorded."""
    from health.models import Alert
    from health.services import scores_recompute

    counter = QueryCounter()
    with counter():
        started = time.perf_counter()
        result = scores_recompute(as_of=as_of, trigger=BENCH_TRIGGER)
        seconds = time.perf_counter() - started
    return seconds, counter, result.snapshots, Alert.objects.filter(as_of=as_of).count()


def time_floor(as_of: datetime.datetime, window_days: int) -> tuple[float, int]:
    from django.db import connection
    from django.utils import timezone

    params = {
        "as_of": as_of,
        "start": as_of - datetime.timedelta(days=window_days),
        "previous_start": as_of - datetime.timedelta(days=2 * window_days),
        "day": timezone.localtime(as_of, timezone.get_default_timezone()).date(),
    }
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(FLOOR_SQL, params)
        rows = cursor.fetchall()
        seconds = time.perf_counter() - started
    return seconds, len(rows)


def floor_values(as_of: datetime.datetime, window_days: int) -> dict[str, dict[int, float | None]]:
    """The floor query's values by KPI, to check that it computes what the recompute computes."""
    from django.db import connection
    from django.utils import timezone

    params = {
        "as_of": as_of,
        "start": as_of - datetime.timedelta(days=window_days),
        "previous_start": as_of - datetime.timedelta(days=2 * window_days),
        "day": timezone.localtime(as_of, timezone.get_default_timezone()).date(),
    }
    with connection.cursor() as cursor:
        cursor.execute(FLOOR_SQL, params)
        rows = cursor.fetchall()
    values: dict[str, dict[int, float | None]] = {key: {} for key in FLOOR_KPIS}
    for row in rows:
        for key, value in zip(FLOOR_KPIS, row[1:], strict=True):
            values[key][row[0]] = None if value is None else float(value)
    return values


def time_scan() -> tuple[float, int]:
    from django.db import connection

    from prm.models import Activity

    with connection.cursor() as cursor:
        for setting in SEQUENTIAL_ONLY:
            cursor.execute(f"SET {setting} = off")
        try:
            started = time.perf_counter()
            # Summing a column makes every row be read, not just counted from the visibility map.
            cursor.execute(f"SELECT count(*), sum(quantity) FROM {Activity._meta.db_table}")
            rows, _ = cursor.fetchone()
            seconds = time.perf_counter() - started
        finally:
            for setting in SEQUENTIAL_ONLY:
                cursor.execute(f"RESET {setting}")
    return seconds, rows


def time_single_partner(as_of: datetime.datetime, runs: int = SINGLE_RUNS) -> tuple[list[float], int]:
    """A single partner's recompute (what ingestion triggers): each run scores a new instant."""
    from health.services import scored_partners, scores_recompute

    partner = scored_partners().order_by("id")[scored_partners().count() // 2]
    timings = []
    counter = QueryCounter()
    for run in range(runs):
        instant = as_of + datetime.timedelta(seconds=run + 1)
        counter = QueryCounter()
        with counter():
            started = time.perf_counter()
            scores_recompute(as_of=instant, partners=type(partner).objects.filter(pk=partner.pk), trigger=BENCH_TRIGGER)
            timings.append(time.perf_counter() - started)
    return timings, counter.total


def check_floor(as_of: datetime.datetime) -> str:
    """Compare the floor query with the registry on every KPI (the floor must compute the same numbers)."""
    from health.services import scored_partners
    from kpis.registry import kpis_compute

    window_days = 90
    expected = kpis_compute(keys=FLOOR_KPIS, as_of=as_of, window_days=window_days, partners=scored_partners())
    found = floor_values(as_of, window_days)
    mismatches = 0
    for key in FLOOR_KPIS:
        for partner_id, value in expected[key].items():
            other = found[key].get(partner_id)
            if (value is None) != (other is None) or (
                value is not None and abs(value - other) > 1e-6 * max(1, abs(value))
            ):
                mismatches += 1
    return "floor query matches the registry on every KPI" if not mismatches else f"{mismatches} MISMATCHES"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 partners and 1,000,000 activities")
    parser.add_argument("--partners", type=int)
    parser.add_argument("--activities", type=int)
    parser.add_argument("--deals", type=int)
    parser.add_argument("--certifications", type=int)
    parser.add_argument("--database", help=f"default: {DEFAULT_DATABASE}, or {QUICK_DATABASE} with --quick")
    parser.add_argument("--rebuild", action="store_true", help="generate the program even if it exists")
    parser.add_argument("--check", action="store_true", help="also check the floor query against the registry")
    args = parser.parse_args(argv)
    database = args.database or (QUICK_DATABASE if args.quick else DEFAULT_DATABASE)
    program = ensure_program(**program_sizes(args), database=database, rebuild=args.rebuild)
    print(
        f"program: {program.partners:,} partners, {program.activities:,} activities, {program.deals:,} deals, "
        f"{program.certifications:,} certifications ({'reused' if program.reused else 'generated'}; "
        f"generation took {program.seconds:.1f} s)"
    )

    from django.utils import timezone

    from health.models import ScoringModel

    _forget_bench_runs()
    window_days = ScoringModel.objects.filter(is_active=True).order_by("priority", "id").first().window_days
    as_of = timezone.now()
    print(
        f"peak RSS before: {peak_rss_mb():.0f} MB; load average at the start: {load_average()}; "
        f"CPU check (a fixed Python loop): {cpu_check()}"
    )

    from health.models import ScoreSnapshot

    earlier = ScoreSnapshot.objects.count()
    print(f"vacuum analyze: {vacuum_analyze():.1f} s (untimed; again between the runs)")
    # The scan first, untimed: every run then starts with the tables in the operating system's cache.
    time_scan()
    # Two runs a day apart: the first may be the program's first ever (no earlier snapshot, so every
    # partner below the alert threshold raises an alert); the second is what the daily run does.
    first_seconds, first_queries, _, first_alerts = time_recompute(as_of - datetime.timedelta(days=1))
    vacuum_analyze()
    # The floor just before and just after (a), and (a) against their mean: on a shared machine whose speed
    # drifts from one minute to the next, (a) is then compared with the floor at the same moment.
    floor_before, floor_rows = time_floor(as_of, window_days)
    recompute_seconds, queries, snapshots, alerts = time_recompute(as_of)
    recompute_rss = peak_rss_mb()
    floor_after, _ = time_floor(as_of, window_days)
    floor_seconds = (floor_before + floor_after) / 2
    scan_seconds, scanned = time_scan()
    single, single_queries = time_single_partner(as_of)

    def statements(counter: QueryCounter) -> str:
        return f"{counter.total} ({', '.join(f'{name} {count}' for name, count in sorted(counter.statements.items()))})"

    print(
        f"snapshots before the runs: {earlier:,}; load average at the end: {load_average()}; CPU check: {cpu_check()}"
    )
    print(
        f"    recompute, run 1 (A - 1 day): {first_seconds:8.2f} s   {first_alerts:,} alerts recorded; "
        f"SQL statements {statements(first_queries)}"
    )
    print(f"(a) recompute, run 2 (A):       {recompute_seconds:8.2f} s   {snapshots:,} snapshots, {alerts:,} alerts")
    print(
        f"(b) floor, one SQL query:       {floor_seconds:8.2f} s   {floor_rows:,} partners x {len(FLOOR_KPIS)} KPIs "
        f"(mean of {floor_before:.2f} s just before (a) and {floor_after:.2f} s just after)"
    )
    print(f"(c) sequential scan:            {scan_seconds:8.2f} s   {scanned:,} activities")
    print(f"(a)/(b) = {recompute_seconds / floor_seconds:.2f}   (a)/(c) = {recompute_seconds / scan_seconds:.2f}")
    print(f"peak RSS after the recomputes: {recompute_rss:.0f} MB; at the end: {peak_rss_mb():.0f} MB")
    print(f"SQL statements of run 2: {statements(queries)}")
    print(
        f"single-partner recompute: median {statistics.median(single) * 1000:.1f} ms, "
        f"min {min(single) * 1000:.1f} ms, max {max(single) * 1000:.1f} ms over {len(single)} runs; "
        f"{single_queries} SQL statements"
    )
    if args.check:
        print(check_floor(as_of))
    _forget_bench_runs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
