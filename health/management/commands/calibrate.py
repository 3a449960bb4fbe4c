"""Backtest scoring models against realized revenue, suggest weights and forecast revenue; store the reports."""

from django.core.management.base import BaseCommand, CommandError

from health.calibration import (
    DEFAULT_FALL,
    DEFAULT_QUARTERS,
    DEFAULT_RESAMPLES,
    CalibrationOptions,
    calibration_reports_create,
)
from health.management.options import as_of_option, scoring_model_option


class Command(BaseCommand):
    help = "Calibrate scoring models on the last closed quarters (default: every active model) and store the reports."

    def add_arguments(self, parser):
        parser.add_argument("--model", type=int, help="Only this scoring model (id), active or not")
        parser.add_argument(
            "--quarters",
            type=int,
            default=DEFAULT_QUARTERS,
            help=f"Closed quarters to backtest (default {DEFAULT_QUARTERS})",
        )
        parser.add_argument(
            "--fall",
            type=float,
            default=DEFAULT_FALL,
            help="A revenue fall of this share or more is a 'fall' (default 0.30)",
        )
        parser.add_argument(
            "--at-risk-threshold", type=float, help="Score below which a partner is flagged (default: the model's)"
        )
        parser.add_argument(
            "--resamples",
            type=int,
            default=DEFAULT_RESAMPLES,
            help=f"Bootstrap resamples (default {DEFAULT_RESAMPLES})",
        )
        parser.add_argument("--as-of", help="ISO 8601 instant with offset (default: now); nothing after it is read")

    def handle(self, *args, model=None, quarters=DEFAULT_QUARTERS, fall=DEFAULT_FALL, at_risk_threshold=None,
               resamples=DEFAULT_RESAMPLES, as_of=None, **options):  # fmt: skip
        if quarters < 1:
            raise CommandError("--quarters must be at least 1")
        if not 0 < fall < 1:
            raise CommandError("--fall must be between 0 and 1, e.g. 0.3 for a fall of 30% or more")
        if resamples < 10:
            raise CommandError("--resamples must be at least 10")
        instant = as_of_option(as_of)
        scoring_model = scoring_model_option(model)
        calibration_options = CalibrationOptions(
            quarters=quarters, fall=fall, at_risk_threshold=at_risk_threshold, resamples=resamples
        )
        reports = calibration_reports_create(
            model=scoring_model,
            options=calibration_options,
            trigger="command",
            as_of=instant,
            progress=lambda message: self.stderr.write(message) if options.get("verbosity", 1) > 1 else None,
        )
        if not reports:
            raise CommandError("No active scoring model to calibrate (give --model).")
        for report in reports:
            self.stdout.write(f"Report {report.pk}: {report.model.name} as of {report.as_of:%Y-%m-%d %H:%M}")
            self.stdout.write(f"  {report.verdict}")
            for row in report.results.get("components", []):
                revenue = row.get("revenue") or {}
                if revenue.get("rho") is not None:
                    self.stdout.write(
                        f"  {row['kpi']:<30} rho {revenue['rho']:+.2f} [{revenue['low']:+.2f}, {revenue['high']:+.2f}]"
                    )
