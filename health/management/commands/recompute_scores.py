"""Compute and store health snapshots now, without a broker (optionally a weekly backfill first)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from health.management.options import as_of_option, scoring_model_option
from health.services import RecomputeBusy, scores_backfill, scores_recompute
from prm.models import Partner


class Command(BaseCommand):
    help = "Recompute partner health scores as of an instant (default now), optionally backfilling weekly history."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="ISO 8601 instant with offset, e.g. 2026-10-01T00:00:00Z (default: now)")
        parser.add_argument("--model", type=int, help="Score that model's whole segment with it (what-if, comparison)")
        parser.add_argument(
            "--backfill-weeks", type=int, default=0, help="Also store weekly snapshots for N weeks back"
        )
        parser.add_argument(
            "--partner", action="append", default=[], help="Only this partner (external id); repeatable"
        )
        parser.add_argument("--progress", action="store_true", help="Show a progress bar even when not on a terminal")

    def handle(self, *args, as_of=None, model=None, backfill_weeks=0, partner=(), progress=False, **options):
        instant = as_of_option(as_of) or timezone.now()
        scoring_model = scoring_model_option(model)
        partners = None
        if partner:
            partners = Partner.objects.filter(external_id__in=partner)
            missing = set(partner) - set(partners.values_list("external_id", flat=True))
            if missing:
                raise CommandError(f"--partner: unknown partner(s) {', '.join(sorted(missing))}")
        show = progress or self.stdout.isatty()
        try:
            if backfill_weeks:
                with tqdm(total=backfill_weeks + 1, desc="backfill", disable=not show, file=self.stderr) as bar:
                    results = scores_backfill(
                        weeks=backfill_weeks, model=scoring_model, now=instant, progress=lambda _: bar.update(1)
                    )
                self.stdout.write(f"Backfilled {len(results)} instants, {sum(r.snapshots for r in results)} snapshots.")
            else:
                with tqdm(desc="recompute", disable=not show, file=self.stderr) as bar:
                    result = scores_recompute(
                        as_of=instant,
                        model=scoring_model,
                        partners=partners,
                        progress=lambda msg: bar.set_postfix_str(msg),
                    )
                self.stdout.write(
                    f"Run {result.run.pk}: {result.snapshots} snapshots as of {instant.isoformat()} "
                    f"in {(result.run.finished_at - result.run.started_at).total_seconds():.1f} s."
                )
        except RecomputeBusy as exc:
            raise CommandError(str(exc))
