"""Time `manage.py calibrate` over 8 closed quarters of a 10,000-partner program (target: under 2 minutes).

`flock /tmp/prm-bench.lock .venv/bin/python -m bench.calibrate` builds (once) a program with two and a half
years of history in its own database, prm_bench_cal, with bench.program's generator, then runs the
command on the default scoring model and prints the time, the queries and what the report found.
"""

from __future__ import annotations

import argparse
import time

from bench import program as bench_program

DATABASE = "prm_bench_cal"
# Eight closed quarters and the 90-day scoring window before the first of them, plus the quarter in progress.
HISTORY_DAYS = 8 * 92 + 90 + 92
TARGET_SECONDS = 120


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--activities", type=int, default=2_500_000, help="about 100 per partner a year")
    parser.add_argument("--quarters", type=int, default=8)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)

    # The generator's history is a module setting; the calibration program needs a longer one than the
    # recompute benchmarks, in a database of its own.
    bench_program.HISTORY_DAYS = HISTORY_DAYS
    program = bench_program.ensure_program(
        args.partners,
        args.activities,
        args.partners * 25,
        args.partners * 3,
        database=args.database,
        rebuild=args.rebuild,
    )
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from health.models import CalibrationReport, ScoringModel

    model = ScoringModel.objects.filter(is_active=True).order_by("priority", "id").first()
    as_of = program.anchor
    print(
        f"program: {program.partners:,} partners, {program.activities:,} activities, {program.deals:,} deals "
        f"up to {as_of:%Y-%m-%d %H:%M} UTC ({'reused' if program.reused else 'generated'})"
    )
    with CaptureQueriesContext(connection) as queries:
        started = time.monotonic()
        call_command(
            "calibrate", "--model", str(model.pk), "--quarters", str(args.quarters), "--as-of", as_of.isoformat()
        )
        seconds = time.monotonic() - started
    report = CalibrationReport.objects.filter(model=model).latest("created_at")
    results = report.results
    quarters = results.get("quarters", [])
    print(
        f"calibrate --quarters {args.quarters}: {seconds:.1f} s, {len(queries)} queries; "
        f"{len(quarters)} quarters used ({', '.join(q['quarter'] for q in quarters)}), "
        f"{sum(q['partners'] for q in quarters):,} partner-quarters, {report.forecasts.count():,} forecasts"
    )
    print(f"target under {TARGET_SECONDS} s: {'met' if seconds < TARGET_SECONDS else 'MISSED'}")
    return 0 if seconds < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
