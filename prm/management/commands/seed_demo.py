"""`manage.py seed_demo`: write a realistic demo partner program with a year of history (prm.demo)."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from prm.demo import DemoError, demo_program_create, demo_program_reset


class Command(BaseCommand):
    help = "Create a demo partner program with a year of history. Refuses a database that has partners unless --reset."

    def add_arguments(self, parser):
        parser.add_argument("--partners", type=int, default=200, help="How many partners (default 200).")
        parser.add_argument("--seed", type=int, default=42, help="The same seed gives the same program (default 42).")
        parser.add_argument(
            "--reset", action="store_true", help="Delete the partner program (partners and their data) first."
        )

    def handle(self, *args, partners: int, seed: int, reset: bool, **options):
        started = time.monotonic()
        try:
            # Reset and seed together: a failed seed leaves the previous program in place.
            with transaction.atomic():
                if reset:
                    deleted = demo_program_reset()
                    self.stdout.write(f"Deleted the previous program ({deleted} partners).")
                summary = demo_program_create(partners=partners, seed=seed)
        except DemoError as exc:
            raise CommandError(str(exc)) from exc
        for line in summary.as_lines():
            self.stdout.write(line)
        self.stdout.write(
            self.style.SUCCESS(f"Seeded {summary.partners} partners in {time.monotonic() - started:.1f} s.")
        )
        self.stdout.flush()

        # The layers above the core domain add their part of the demo; prm itself never depends on them.
        try:
            from kpis.demo import demo_reviews_and_targets_create
        except ImportError:
            return
        for line in demo_reviews_and_targets_create(seed=seed).as_lines():
            self.stdout.write(line)

        try:
            from health.services import scores_backfill
        except ImportError:
            return
        self.stdout.write("Computing a year of weekly health scores...")
        self.stdout.flush()
        scores_backfill(weeks=52)
        self.stdout.write(self.style.SUCCESS("Health scores computed."))

        # A first calibration report, so the Calibration page shows what the year of history says from the start.
        from health.calibration import calibration_reports_create

        self.stdout.write("Calibrating the scoring model against the revenue that followed...")
        self.stdout.flush()
        for report in calibration_reports_create(trigger="demo"):
            self.stdout.write(report.verdict)
