"""Server time of the Today, Portfolio and Partner pages on a program of 100,000 partners.

`python -m bench.dashboards` (or `--quick` for 10,000 partners) makes sure the program has current scores
and weekly history (a backfill of --weeks weeks, once), then requests each page through Django's test
client, as a channel admin and as an account manager, --runs times after --warmups, and prints p50, p95
and max of the time the server spent, with the SQL statements each page issued.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

from bench import DEFAULT_DATABASE, QUICK_DATABASE
from bench.program import ADMIN_USERNAME, ensure_program, load_average, program_sizes, vacuum_analyze

TARGET_P95_MS = 150.0
BACKFILL_WEEKS = 12
# Partners whose pages are requested in turn: busy ones (the skew puts the most activity at low ids) and
# ordinary ones, so that no single partner's rows stay hot in the cache.
PARTNER_PAGES = 10


@dataclass
class Page:
    name: str
    user: str
    urls: list[str]


def ensure_history(*, weeks: int) -> None:
    """Weekly snapshots, current scores and the alerts of a daily run for every partner, once: what the
    dashboards show."""
    from django.utils import timezone

    from health.models import ScoreRun
    from health.services import scores_backfill, scores_recompute

    backfilled = ScoreRun.objects.filter(trigger="backfill", status=ScoreRun.Status.SUCCEEDED).count()
    if backfilled >= weeks + 1:
        return
    started = time.monotonic()
    print(f"backfilling {weeks} weeks of scores (once per program)", flush=True)
    scores_backfill(weeks=weeks, now=timezone.now(), progress=lambda line: print(f"  {line}", flush=True))
    # A backfill records no alerts; the daily run after it does, and Today lists them.
    scores_recompute(trigger="schedule")
    print(f"backfilled in {time.monotonic() - started:.0f} s", flush=True)


def pages(*, manager: str) -> list[Page]:
    from prm.models import Partner

    count = Partner.objects.count()
    step = max(1, count // PARTNER_PAGES)
    external_ids = list(
        Partner.objects.exclude(status=Partner.Status.EXITED)
        .filter(pk__in=[1, 2, 3, *range(step // 2, count, step)])
        .order_by("pk")
        .values_list("external_id", flat=True)[:PARTNER_PAGES]
    )
    partner_urls = [f"/partners/{external_id}/" for external_id in external_ids]
    return [
        Page("Today", ADMIN_USERNAME, ["/"]),
        Page("Today (own partners first)", manager, ["/"]),
        Page("Portfolio", ADMIN_USERNAME, ["/portfolio/"]),
        Page(
            "Portfolio: at risk, Gold, by trend", ADMIN_USERNAME, ["/portfolio/?band=at_risk&tier=gold&ordering=trend"]
        ),
        Page("Portfolio: DACH MSPs by name", ADMIN_USERNAME, ["/portfolio/?region=DACH&type=msp&ordering=name"]),
        Page("Portfolio: search, by score desc", ADMIN_USERNAME, ["/portfolio/?search=Partner+00042&ordering=-score"]),
        Page("Portfolio: own, by band, page 3", manager, [f"/portfolio/?owner={manager}&ordering=band&page=3"]),
        Page("Partner page", ADMIN_USERNAME, partner_urls),
        Page("Partner page (manager)", manager, partner_urls),
    ]


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def measure(page: Page, *, runs: int, warmups: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username=page.user))
    for index in range(warmups):
        response = client.get(page.urls[index % len(page.urls)])
        if response.status_code != 200:
            raise SystemExit(f"{page.name}: {page.urls[index % len(page.urls)]} answered {response.status_code}")
    timings, cpu = [], []
    for index in range(runs):
        url = page.urls[index % len(page.urls)]
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        # This process's CPU alone (not PostgreSQL's): what a busy machine cannot inflate.
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    # Queries counted apart from the timed requests: capturing them costs time of its own.
    queries = []
    for url in page.urls[:3]:
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        queries.append(len(captured))
    return {
        "page": page.name,
        "p50": statistics.median(timings),
        "p95": percentile(timings, 0.95),
        "max": max(timings),
        "cpu": statistics.median(cpu),
        "queries": "/".join(str(count) for count in sorted(set(queries))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 partners and 1,000,000 activities")
    parser.add_argument("--partners", type=int)
    parser.add_argument("--activities", type=int)
    parser.add_argument("--deals", type=int)
    parser.add_argument("--certifications", type=int)
    parser.add_argument("--database", help=f"default: {DEFAULT_DATABASE}, or {QUICK_DATABASE} with --quick")
    parser.add_argument("--rebuild", action="store_true", help="generate the program even if it exists")
    parser.add_argument("--weeks", type=int, default=BACKFILL_WEEKS, help="weeks of score history to backfill")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmups", type=int, default=3)
    args = parser.parse_args(argv)
    database = args.database or (QUICK_DATABASE if args.quick else DEFAULT_DATABASE)
    program = ensure_program(**program_sizes(args), database=database, rebuild=args.rebuild)
    print(f"program: {program.partners:,} partners, {program.activities:,} activities ({database})")
    ensure_history(weeks=args.weeks)
    print(f"vacuum analyze: {vacuum_analyze():.1f} s")

    from django.conf import settings
    from django.core.management import call_command

    # As a deployment does: the pages name their static files through the hashed manifest.
    call_command("collectstatic", interactive=False, verbosity=0)

    from health.models import Alert, ScoreSnapshot

    print(
        f"DEBUG={settings.DEBUG}; {ScoreSnapshot.objects.count():,} snapshots, {Alert.objects.count():,} alerts; "
        f"{args.runs} requests per page after {args.warmups} warm-ups"
    )
    print(f"load average at the start: {load_average()}")
    manager = "bench-am-01"
    results = [measure(page, runs=args.runs, warmups=args.warmups) for page in pages(manager=manager)]
    width = max(len(result["page"]) for result in results)
    print(f"{'page':<{width}}  {'p50 ms':>7}  {'p95 ms':>7}  {'max ms':>7}  {'cpu ms':>7}  queries  target")
    for result in results:
        verdict = "met" if result["p95"] < TARGET_P95_MS else "MISSED"
        print(
            f"{result['page']:<{width}}  {result['p50']:7.1f}  {result['p95']:7.1f}  {result['max']:7.1f}  "
            f"{result['cpu']:7.1f}  {result['queries']:>7}  {verdict}"
        )
    print(f"(cpu ms: median Python CPU time of a request) load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
