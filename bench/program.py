"""Build a synthetic partner program of any size directly in PostgreSQL, for the benchmarks.

`python -m bench.program --partners 100000 --activities 10000000` (or `ensure_program(...)`) migrates the
bench database, then writes partners, activities, deals, certifications and business reviews with
INSERT ... SELECT FROM generate_series: no Python row loop, so 10 million activities take minutes.
A database that already holds the requested sizes is reused; --rebuild forces a new program.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from dataclasses import dataclass

from bench import DEFAULT_DATABASE, QUICK_DATABASE, django_setup

FULL = {"partners": 100_000, "activities": 10_000_000, "deals": 1_000_000, "certifications": 300_000}
QUICK = {"partners": 10_000, "activities": 1_000_000, "deals": 100_000, "certifications": 30_000}
MARKER = "bench_program"
# The history spans a little over a year so that every window (90 days and the one before it for the
# pipeline trend, a year of score history) has data.
HISTORY_DAYS = 395
ACCOUNT_MANAGERS = 10
ADMIN_USERNAME = "bench-admin"

# Share of activities per shipped kind, in thousandths: engagement dominates as in real programs.
KIND_SHARES = {
    "portal_login": 260,
    "content_view": 300,
    "email_sent": 160,
    "email_opened": 90,
    "event_attended": 25,
    "campaign_joined": 25,
    "training_assigned": 30,
    "training_completed": 22,
    "mdf_allocated": 8,
    "mdf_claimed": 6,
    "rebate_accrued": 8,
    "spiff_claimed": 10,
    "meeting_held": 36,
    "sentiment_recorded": 20,
}
# Value of each valued kind: low + random() * spread (ratings are whole numbers 0-10).
KIND_VALUES = {
    "mdf_allocated": "round((1000 + random() * 19000)::numeric, 2)",
    "mdf_claimed": "round((500 + random() * 14500)::numeric, 2)",
    "rebate_accrued": "round((100 + random() * 4900)::numeric, 2)",
    "spiff_claimed": "round((250 + random() * 1250)::numeric, 2)",
    "sentiment_recorded": "floor(random() * 11)::numeric",
}


@dataclass(frozen=True)
class Program:
    partners: int
    activities: int
    deals: int
    certifications: int
    reviews: int
    anchor: datetime.datetime  # the "now" of the generated history
    seconds: float  # how long generation took
    reused: bool


def _say(message: str) -> None:
    print(message, flush=True)


def database_create(database: str = DEFAULT_DATABASE) -> None:
    """Create the bench database when it does not exist (from the maintenance database)."""
    import psycopg

    from bench import database_url

    url = database_url(database)
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as maintenance:
        exists = maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            maintenance.execute(f'CREATE DATABASE "{name}"')
            _say(f"created database {name}")


def _marker(cursor) -> dict | None:
    cursor.execute("SELECT to_regclass(%s)", [MARKER])
    if cursor.fetchone()[0] is None:
        return None
    cursor.execute(f"SELECT partners, activities, deals, certifications, reviews, anchor, seconds FROM {MARKER}")
    row = cursor.fetchone()
    if row is None:
        return None
    keys = ("partners", "activities", "deals", "certifications", "reviews", "anchor", "seconds")
    return dict(zip(keys, row, strict=True))


def _refuse_foreign_database(cursor) -> None:
    """Never wipe a database that holds partners the bench did not write (a developer's, say)."""
    from prm.models import Partner

    cursor.execute(f"SELECT to_regclass('{MARKER}') IS NULL AND EXISTS (SELECT 1 FROM {Partner._meta.db_table})")
    if cursor.fetchone()[0]:
        sys.exit("bench: this database holds partners that the bench did not generate; refusing to replace them")


def _secondary_indexes(cursor, table: str) -> list[str]:
    """Statements that recreate a table's indexes and unique constraints (its primary key stays)."""
    cursor.execute(
        """SELECT 'ALTER TABLE ' || %(table)s || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' '
                  || pg_get_constraintdef(c.oid)
             FROM pg_constraint c
            WHERE c.conrelid = %(table)s::regclass AND c.contype = 'u'
           UNION ALL
           SELECT pg_get_indexdef(i.indexrelid)
             FROM pg_index i
            WHERE i.indrelid = %(table)s::regclass AND NOT i.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        {"table": table},
    )
    return [row[0] for row in cursor.fetchall()]


def _drop_secondary_indexes(cursor, table: str) -> None:
    cursor.execute(
        """SELECT c.conname FROM pg_constraint c WHERE c.conrelid = %(table)s::regclass AND c.contype = 'u'""",
        {"table": table},
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    cursor.execute(
        """SELECT i.indexrelid::regclass::text FROM pg_index i
            WHERE i.indrelid = %(table)s::regclass AND NOT i.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        {"table": table},
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f"DROP INDEX {name}")


def _users_ensure() -> tuple[int, list[int]]:
    """A channel admin and a few account managers (no usable password: the benchmarks log in directly)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from prm.roles import ACCOUNT_MANAGER, CHANNEL_ADMIN

    User = get_user_model()

    def user(username: str, group: str, **extra) -> int:
        found, created = User.objects.get_or_create(
            username=username, defaults={"email": f"{username}@vendor.example", "is_staff": True, **extra}
        )
        if created:
            found.set_unusable_password()
            found.save(update_fields=["password"])
        found.groups.add(Group.objects.get(name=group))
        return found.pk

    admin = user(ADMIN_USERNAME, CHANNEL_ADMIN)
    managers = [user(f"bench-am-{number:02d}", ACCOUNT_MANAGER) for number in range(1, ACCOUNT_MANAGERS + 1)]
    return admin, managers


def _generate(cursor, *, partners: int, activities: int, deals: int, certifications: int, anchor) -> int:
    """Write the program's rows; returns the number of business reviews."""
    from health.models import ScoreRun
    from kpis.models import BusinessReview
    from prm.demo import _tiers_ensure
    from prm.models import Activity, ActivityKind, Certification, Deal, Partner

    tiers = _tiers_ensure()
    tier_ids = [tiers[rank].pk for rank in sorted(tiers)]
    _, managers = _users_ensure()
    kinds = dict(ActivityKind.objects.filter(key__in=list(KIND_SHARES)).values_list("key", "id"))
    missing = set(KIND_SHARES) - set(kinds)
    if missing:
        sys.exit(f"bench: shipped activity kinds missing from the database: {', '.join(sorted(missing))}")

    partner_table, activity_table = Partner._meta.db_table, Activity._meta.db_table
    deal_table, certification_table = Deal._meta.db_table, Certification._meta.db_table
    review_table = BusinessReview._meta.db_table
    # Everything that references a partner (snapshots, alerts, action items, ...) goes with it.
    cursor.execute(f"TRUNCATE {partner_table} RESTART IDENTITY CASCADE")
    cursor.execute(f"TRUNCATE {ScoreRun._meta.db_table} RESTART IDENTITY CASCADE")
    # A bulk load builds each index once at the end, and skips per-row foreign key triggers (the generated
    # keys are valid by construction): many times faster than maintaining them row by row.
    rebuild = []
    for table in (activity_table, deal_table, certification_table, review_table, partner_table):
        rebuild += _secondary_indexes(cursor, table)
        _drop_secondary_indexes(cursor, table)
    cursor.execute("SET session_replication_role = replica")
    cursor.execute("SELECT setseed(0.2026)")
    params = {"anchor": anchor, "days": HISTORY_DAYS}

    started = time.monotonic()
    # Tiers: 40% Registered, 30% Silver, 20% Gold, 10% Platinum; 60% of partners owned by an account manager.
    cursor.execute(
        f"""INSERT INTO {partner_table}
                (id, external_id, name, type, tier_id, region, status, owner_id, quarterly_revenue_target,
                 joined_on, agreement_start, agreement_end, created_at, updated_at, health_band)
            SELECT g, 'P' || lpad(g::text, 7, '0'), 'Partner ' || lpad(g::text, 7, '0'),
                   (ARRAY['reseller', 'distributor', 'msp', 'referral', 'alliance'])[1 + g %% 5],
                   (%(tiers)s::int[])[CASE WHEN r < 0.4 THEN 1 WHEN r < 0.7 THEN 2 WHEN r < 0.9 THEN 3 ELSE 4 END],
                   (ARRAY['North America', 'Latin America', 'UK and Ireland', 'DACH', 'Nordics', 'Southern Europe',
                          'Middle East', 'India', 'ANZ', 'Japan'])[1 + (g * 7) %% 10],
                   CASE WHEN g %% 50 = 0 THEN 'exited' WHEN g %% 20 = 1 THEN 'onboarding'
                        WHEN g %% 20 = 2 THEN 'probation' ELSE 'active' END,
                   CASE WHEN g %% 10 < 6 THEN (%(managers)s::int[])[1 + (g / 10) %% %(manager_count)s] END,
                   CASE WHEN g %% 10 <> 9 THEN round((20000 + random() * 480000)::numeric, -3) END,
                   joined, joined, joined + 1095, %(anchor)s, %(anchor)s, 'no_data'
              FROM (SELECT g, random() AS r, (%(anchor)s::date - floor(random() * 2000)::int) AS joined
                      FROM generate_series(1, %(partners)s) AS g) AS p""",
        {**params, "partners": partners, "tiers": tier_ids, "managers": managers, "manager_count": len(managers)},
    )
    cursor.execute(f"SELECT setval(pg_get_serial_sequence('{partner_table}', 'id'), %s)", [partners])
    _say(f"  partners: {partners:,} in {time.monotonic() - started:.1f} s")

    # Activities arrive in time order (the heap is ordered by occurred_at, as an append-only event log is),
    # each of a partner drawn with a skew: a few partners are very active, many are quiet.
    started = time.monotonic()
    shares, low = [], 0
    for key, share in KIND_SHARES.items():
        shares.append(f"({kinds[key]}, {low}, {low + share})")
        low += share
    value = "CASE b.kind_id " + " ".join(f"WHEN {kinds[key]} THEN {sql}" for key, sql in KIND_VALUES.items()) + " END"
    cursor.execute(
        f"""INSERT INTO {activity_table}
                (partner_id, kind_id, occurred_at, quantity, value, source, external_id, metadata, created_at)
            SELECT a.partner_id, b.kind_id, a.occurred_at,
                   CASE WHEN b.kind_id = %(login)s THEN 1 + floor(random() * 4)::int ELSE 1 END,
                   {value}, 'bench', 'a' || a.g, '{{}}'::jsonb, a.occurred_at
              FROM (SELECT g, 1 + floor(%(partners)s * power(random(), 1.5))::int AS partner_id,
                           floor(random() * 1000)::int AS bucket,
                           %(anchor)s::timestamptz - make_interval(days => %(days)s)
                               + make_interval(secs => (g - random()) * %(days)s * 86400.0 / %(activities)s)
                               AS occurred_at
                      FROM generate_series(1, %(activities)s) AS g) AS a
              JOIN (SELECT bucket, kind_id
                      FROM generate_series(0, 999) AS bucket
                      JOIN (VALUES {", ".join(shares)}) AS s (kind_id, low, high)
                        ON bucket >= low AND bucket < high) AS b USING (bucket)""",
        {**params, "partners": partners, "activities": activities, "login": kinds["portal_login"]},
    )
    _say(f"  activities: {activities:,} in {time.monotonic() - started:.1f} s")

    # Deals in every stage; closed_at is set exactly for won and lost ones (the table's constraint).
    started = time.monotonic()
    cursor.execute(
        f"""INSERT INTO {deal_table}
                (external_id, partner_id, name, amount, stage, registered_at, closed_at, updated_at)
            SELECT 'D' || g, partner_id, 'Deal ' || g, amount, stage, registered_at, closed_at,
                   coalesce(closed_at, registered_at)
              FROM (SELECT g, partner_id, amount, registered_at, stage,
                           CASE WHEN stage IN ('won', 'lost')
                                THEN least(registered_at + make_interval(days => 5 + floor(random() * 115)::int),
                                           %(anchor)s::timestamptz) END AS closed_at
                      FROM (SELECT g, 1 + floor(%(partners)s * power(random(), 1.3))::int AS partner_id,
                                   round((1000 + power(random(), 2) * 149000)::numeric, 2) AS amount,
                                   %(anchor)s::timestamptz
                                       - make_interval(secs => random() * %(days)s * 86400.0) AS registered_at,
                                   (ARRAY['registered', 'registered', 'approved', 'approved', 'approved',
                                          'rejected', 'won', 'won', 'won', 'lost'])[1 + floor(random() * 10)::int]
                                       AS stage
                              FROM generate_series(1, %(deals)s) AS g) AS d) AS d""",
        {**params, "partners": partners, "deals": deals},
    )
    _say(f"  deals: {deals:,} in {time.monotonic() - started:.1f} s")

    # Certifications of the three roles, earned over three years; most expire after two.
    started = time.monotonic()
    cursor.execute(
        f"""INSERT INTO {certification_table} (partner_id, name, role, earned_on, expires_on)
            SELECT partner_id, 'Certification ' || g, role, earned_on,
                   CASE WHEN random() < 0.8 THEN earned_on + 730 END
              FROM (SELECT g, 1 + floor(random() * %(partners)s)::int AS partner_id,
                           (ARRAY['sales', 'technical', 'delivery'])[1 + floor(random() * 3)::int] AS role,
                           %(anchor)s::date - floor(random() * 1095)::int AS earned_on
                      FROM generate_series(1, %(certifications)s) AS g) AS c""",
        {**params, "partners": partners, "certifications": certifications},
    )
    _say(f"  certifications: {certifications:,} in {time.monotonic() - started:.1f} s")

    # A business review in the last 200 days for about 60% of partners.
    started = time.monotonic()
    cursor.execute(
        f"""INSERT INTO {review_table} (partner_id, period, held_on, attendees, notes, created_at)
            SELECT id, to_char(held_on, 'YYYY') || '-Q' || to_char(held_on, 'Q'), held_on, '', '', held_on
              FROM (SELECT id, %(anchor)s::date - floor(random() * 200)::int AS held_on
                      FROM {partner_table} WHERE random() < 0.6) AS r""",
        params,
    )
    reviews = cursor.rowcount
    _say(f"  business reviews: {reviews:,} in {time.monotonic() - started:.1f} s")

    cursor.execute("SET session_replication_role = DEFAULT")
    started = time.monotonic()
    for statement in rebuild:
        cursor.execute(statement)
    _say(f"  indexes and unique constraints: {len(rebuild)} in {time.monotonic() - started:.1f} s")
    return reviews


def ensure_program(
    partners: int = FULL["partners"],
    activities: int = FULL["activities"],
    deals: int = FULL["deals"],
    certifications: int = FULL["certifications"],
    *,
    database: str = DEFAULT_DATABASE,
    rebuild: bool = False,
) -> Program:
    """The bench database holding a program of exactly these sizes: reused when it does, generated otherwise.

    Sets Django up on the bench database (callers then use the ORM as usual).
    """
    database_create(database)
    django_setup(database)
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    wanted = {"partners": partners, "activities": activities, "deals": deals, "certifications": certifications}
    with connection.cursor() as cursor:
        found = _marker(cursor)
        if found and not rebuild and all(found[key] == value for key, value in wanted.items()):
            _users_ensure()
            return Program(**found, reused=True)
        _refuse_foreign_database(cursor)

    anchor = timezone.now().replace(minute=0, second=0, microsecond=0)
    _say(
        f"generating {partners:,} partners, {activities:,} activities, {deals:,} deals, "
        f"{certifications:,} certifications in {connection.settings_dict['NAME']}"
    )
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute(f"DROP TABLE IF EXISTS {MARKER}")
        reviews = _generate(
            cursor, partners=partners, activities=activities, deals=deals, certifications=certifications, anchor=anchor
        )
        cursor.execute(
            f"""CREATE TABLE {MARKER} (partners int, activities bigint, deals int, certifications int, reviews int,
                                       anchor timestamptz, seconds double precision)"""
        )
        seconds = time.monotonic() - started
        cursor.execute(
            f"INSERT INTO {MARKER} VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [partners, activities, deals, certifications, reviews, anchor, seconds],
        )
    # Fresh statistics, as autovacuum would have after a real load; VACUUM also sets the visibility map
    # that index-only scans rely on.
    analyzed = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    _say(f"  vacuum analyze in {time.monotonic() - analyzed:.1f} s")
    seconds = time.monotonic() - started
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {MARKER} SET seconds = %s", [seconds])
    _say(f"generated in {seconds:.1f} s")
    return Program(partners, activities, deals, certifications, reviews, anchor, seconds, reused=False)


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages: a benchmark on a shared machine says how shared."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_check() -> str:
    """Seconds of a fixed pure-Python loop (10 million additions): how fast this machine's core is right now.

    On a shared virtual machine the same benchmark ran up to 2x slower from one hour to the next, with a
    low load average; this loop slowed down with it (1.75 to 3.55 s), so it tells a slow machine from
    slow code.
    """
    started = time.perf_counter()
    total = 0
    for number in range(10_000_000):
        total += number
    return f"{time.perf_counter() - started:.2f} s"


def vacuum_analyze() -> float:
    """VACUUM ANALYZE the bench database, as autovacuum would between daily recomputes; returns seconds.

    A recompute rewrites every partner row and adds a snapshot each; the benchmark server may run with
    autovacuum off (this machine's does), and then dead rows pile up and every later scan reads them.
    """
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 partners and 1,000,000 activities")
    parser.add_argument("--partners", type=int)
    parser.add_argument("--activities", type=int)
    parser.add_argument("--deals", type=int, help="default: 10 per partner")
    parser.add_argument("--certifications", type=int, help="default: 3 per partner")
    parser.add_argument("--database", help=f"default: {DEFAULT_DATABASE}, or {QUICK_DATABASE} with --quick")
    parser.add_argument("--rebuild", action="store_true", help="generate even if the database holds this size")
    args = parser.parse_args(argv)
    sizes = program_sizes(args)
    database = args.database or (QUICK_DATABASE if args.quick else DEFAULT_DATABASE)
    program = ensure_program(**sizes, database=database, rebuild=args.rebuild)
    state = "reused" if program.reused else "generated"
    print(
        f"program {state}: {program.partners:,} partners, {program.activities:,} activities, {program.deals:,} deals, "
        f"{program.certifications:,} certifications, {program.reviews:,} business reviews; "
        f"history up to {program.anchor:%Y-%m-%d %H:%M} UTC; generation took {program.seconds:.1f} s"
    )
    return 0


def program_sizes(args: argparse.Namespace) -> dict[str, int]:
    """Sizes from --quick / --partners / ...: deals and certifications follow the partners unless given."""
    base = QUICK if getattr(args, "quick", False) else FULL
    partners = args.partners or base["partners"]
    return {
        "partners": partners,
        "activities": args.activities or (base["activities"] if not args.partners else partners * 100),
        "deals": args.deals or partners * 10,
        "certifications": args.certifications or partners * 3,
    }


if __name__ == "__main__":
    sys.exit(main())
