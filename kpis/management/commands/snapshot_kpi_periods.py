"""`manage.py snapshot_kpi_periods [--period P ...] [--quarters N] [--months N] [--replace]`: store closed periods.

Without --period: the latest closed quarters and months (one of each by default) that are not stored
yet, as the daily beat task does. Stored periods never change unless --replace is given (e.g. after
correcting data that arrived late).
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from kpis.periods import MONTH, QUARTER, Period, PeriodError, latest_closed
from kpis.services import kpi_period_snapshots_store


class Command(BaseCommand):
    help = "Store the KPI values of closed quarters and months so that past periods stay fixed."

    def add_arguments(self, parser):
        parser.add_argument(
            "--period", action="append", default=[], help="A closed quarter (2026-Q3) or month (2026-07); repeatable."
        )
        parser.add_argument("--quarters", type=int, default=1, help="How many latest closed quarters (default 1).")
        parser.add_argument("--months", type=int, default=1, help="How many latest closed months (default 1).")
        parser.add_argument("--replace", action="store_true", help="Recompute and overwrite stored values.")

    def handle(self, *args, **options):
        now = timezone.now()
        try:
            periods = [Period.parse(text) for text in options["period"]]
        except PeriodError as exc:
            raise CommandError(str(exc)) from None
        if not periods:
            if options["quarters"] < 0 or options["months"] < 0:
                raise CommandError("--quarters and --months must not be negative.")
            periods = [
                *latest_closed(QUARTER, now).back(options["quarters"]),
                *latest_closed(MONTH, now).back(options["months"]),
            ]
        open_periods = [str(period) for period in periods if not period.is_closed(now)]
        if open_periods:
            raise CommandError(f"Not closed yet: {', '.join(open_periods)}. Only closed periods are stored.")
        for period in periods:
            written = kpi_period_snapshots_store(period=period, replace=options["replace"], now=now)
            self.stdout.write(f"{period}: {written} partner(s) stored")
