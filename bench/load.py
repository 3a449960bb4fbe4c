"""Load benchmark: locust (headless) against gunicorn on PostgreSQL with a 100,000-partner program.

`python -m bench.load` builds or reuses the bench program (bench.program, database prm_bench), starts
gunicorn on 127.0.0.1 as production runs it (DEBUG off, pooled connections), then runs two phases:

1. reads at a fixed rate (default 50 requests/s for 60 s): the partner list and one partner's health;
2. ingestion: lists of 1,000 new events posted back to back (default 60 s).

It prints p50/p95/p99 of each request, errors, and events per second, and deletes the events it wrote.
Run it under the bench lock so that no other benchmark measures at the same time:

    flock /tmp/prm-bench.lock .venv/bin/python -m bench.load
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import DEFAULT_DATABASE, database_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(database: str) -> dict[str, str]:
    """Production settings pointed at the bench database; only what a local HTTP run lacks is relaxed."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(database),
        "DJANGO_SETTINGS_MODULE": "prm.settings",
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-secret-key-" + "x" * 40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CELERY_BROKER_URL": "memory://",
        "EMAIL_URL": "smtp://127.0.0.1:1",
        "PRM_VAR_DIR": "/tmp/prm-var-bench",
        "LOG_LEVEL": "WARNING",
        # The load is one integration user: the benchmark measures the server, not the throttle.
        "API_THROTTLE_USER": "1000000/minute",
        "API_THROTTLE_BULK": "1000000/minute",
    }


def start_gunicorn(database: str, port: int, workers: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "prm.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=server_environment(database),
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def run_locust(user_class: str, users: int, seconds: int, port: int, environment: dict, prefix: str) -> list[dict]:
    """Run locust headless; its per-request statistics (the _stats.csv rows)."""
    subprocess.run(
        [
            str(BIN / "locust"),
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "--only-summary",
            "--users",
            str(users),
            "--spawn-rate",
            str(users),
            "--run-time",
            f"{seconds}s",
            "--host",
            f"http://127.0.0.1:{port}",
            "--csv",
            prefix,
            "--loglevel",
            "WARNING",
            user_class,
        ],
        cwd=ROOT,
        env={**os.environ, **environment},
        check=False,
    )
    with open(f"{prefix}_stats.csv") as stats:
        return list(csv.DictReader(stats))


def report(rows: list[dict], seconds: int) -> None:
    for row in rows:
        requests = int(row["Request Count"])
        print(
            f"  {row['Name']:<40} {requests:>6} requests  {requests / seconds:7.1f}/s  "
            f"p50 {row['50%']:>5} ms  p95 {row['95%']:>5} ms  p99 {row['99%']:>5} ms  "
            f"errors {row['Failure Count']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--partners", type=int, default=100_000)
    parser.add_argument("--read-rate", type=float, default=50.0, help="requests per second in the read phase")
    parser.add_argument("--read-seconds", type=int, default=60)
    parser.add_argument("--ingest-seconds", type=int, default=60)
    parser.add_argument("--ingest-users", type=int, default=4, help="clients posting bodies concurrently")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    args = parser.parse_args(argv)

    from bench.program import FULL, ensure_program

    sizes = {key: value * args.partners // FULL["partners"] for key, value in FULL.items()}
    program = ensure_program(**sizes, database=args.database)
    print(
        f"program: {program.partners:,} partners, {program.activities:,} activities ({'reused' if program.reused else 'generated'})"
    )

    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from bench.program import ADMIN_USERNAME
    from prm.models import Activity, Partner

    token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username=ADMIN_USERNAME))
    work = Path(tempfile.mkdtemp(prefix="prm-load-"))
    partners_file = work / "partners.txt"
    scored = (
        Partner.objects.filter(health_model_id__isnull=False).order_by("?").values_list("external_id", flat=True)[:5000]
    )
    partners_file.write_text("\n".join(scored))
    with connection.cursor() as cursor:
        # Other benchmarks rewrite every partner row and snapshot (a recompute); vacuumed, as autovacuum
        # would have by then, the reads measure the API rather than the dead rows they left.
        cursor.execute("VACUUM ANALYZE prm_partner, health_scoresnapshot, prm_activity")
    connection.close()

    reading_users = 10
    environment = {
        "LOAD_TOKEN": token.key,
        "LOAD_PARTNERS": str(partners_file),
        "LOAD_READ_RATE": str(args.read_rate / reading_users),
        "LOAD_BATCH": "1000",
    }
    port = free_port()
    server = start_gunicorn(args.database, port, args.workers)
    try:
        # A few requests first, so that the workers' connections and caches are warm before timing.
        run_locust("ApiReader", 2, 5, port, environment, str(work / "warm"))
        print(f"reads: {reading_users} users at {args.read_rate:g} requests/s in all, {args.read_seconds} s")
        reads = run_locust("ApiReader", reading_users, args.read_seconds, port, environment, str(work / "reads"))
        report(reads, args.read_seconds)
        print(f"ingestion: {args.ingest_users} clients posting 1,000-event lists back to back, {args.ingest_seconds} s")
        ingest = run_locust("Ingester", args.ingest_users, args.ingest_seconds, port, environment, str(work / "ingest"))
        report(ingest, args.ingest_seconds)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    aggregated = next(row for row in reads if row["Name"] == "Aggregated")
    ingested = next(row for row in ingest if row["Name"] == "Aggregated")
    events = (int(ingested["Request Count"]) - int(ingested["Failure Count"])) * 1000
    written = Activity.objects.filter(source="bench-load").count()
    print(
        f"RESULT reads p95 {aggregated['95%']} ms at {int(aggregated['Request Count']) / args.read_seconds:.1f} requests/s, "
        f"{aggregated['Failure Count']} errors; ingestion {events / args.ingest_seconds:,.0f} events/s "
        f"({written:,} events stored), {ingested['Failure Count']} errors, p95 {ingested['95%']} ms per 1,000-event body"
    )
    # The program stays as bench.program built it, for the other benchmarks.
    deleted, _ = Activity.objects.filter(source="bench-load").delete()
    with connection.cursor() as cursor:
        # Else autovacuum clears the dead rows during the next benchmark and skews it.
        cursor.execute(f"VACUUM ANALYZE {Activity._meta.db_table}")
    print(f"cleaned up: {deleted:,} load-test events deleted, activities vacuumed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
