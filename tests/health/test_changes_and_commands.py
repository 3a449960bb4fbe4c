"""Why a score changed, the periodic task installation, and the recompute_scores command."""

import datetime
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from health.models import ScoreRun, ScoreSnapshot, ScoringModel
from health.services import score_change, scores_recompute
from tests.factories import ActivityFactory, DealFactory, PartnerFactory, kind

A = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)


def test_score_change_ranks_components_by_contribution_moved(db):
    partner = PartnerFactory()
    ActivityFactory(
        partner=partner, kind=kind("portal_login"), quantity=60, occurred_at=A - datetime.timedelta(days=70)
    )
    DealFactory(partner=partner, registered_at=A - datetime.timedelta(days=80))
    scores_recompute(as_of=A - datetime.timedelta(days=30))
    scores_recompute(as_of=A + datetime.timedelta(days=30))  # the logins and the deal fell out of the window
    model = ScoringModel.objects.get(name="Standard partner health")
    change = score_change(partner=partner, model_id=model.id, since=A - datetime.timedelta(days=30))
    assert change.before.as_of < change.after.as_of
    assert change.delta == pytest.approx(change.after.score - change.before.score) and change.delta < 0
    deltas = [abs(c["delta"]) for c in change.components]
    assert deltas == sorted(deltas, reverse=True)
    movers = {c["kpi"] for c in change.components[:3]}
    assert movers & {"activity_intensity", "deals_registered", "pipeline_coverage"}
    assert sum(c["delta"] for c in change.components) == pytest.approx(change.delta)


def test_setup_periodic_tasks_installs_once_and_keeps_admin_edits(db):
    call_command("setup_periodic_tasks", stdout=StringIO())
    daily = PeriodicTask.objects.get(name="Recompute all health scores")
    assert daily.task == "health.tasks.recompute_scores" and daily.expire_seconds == 6 * 3600
    assert json.loads(daily.kwargs) == {"trigger": "schedule"}
    assert daily.crontab.hour == "2"
    sweep = PeriodicTask.objects.get(name="Rescore partners with new data")
    assert sweep.interval.every == 60
    daily.crontab = type(daily.crontab).objects.create(minute="30", hour="5")
    daily.save()
    out = StringIO()
    call_command("setup_periodic_tasks", stdout=out)
    assert "left as edited" in out.getvalue()
    assert PeriodicTask.objects.get(name="Recompute all health scores").crontab.hour == "5"


def test_recompute_command(db):
    PartnerFactory(external_id="P-1")
    out = StringIO()
    call_command("recompute_scores", "--as-of", "2026-10-01T00:00:00Z", stdout=out)
    assert "1 snapshots" in out.getvalue()
    assert ScoreSnapshot.objects.filter(as_of=A).count() == 1
    call_command("recompute_scores", "--as-of", "2026-10-01T00:00:00Z", "--backfill-weeks", "3", stdout=out)
    assert ScoreSnapshot.objects.count() == 4  # 3 weeks + the instant itself (replaced, not duplicated)
    assert ScoreRun.objects.filter(trigger="backfill").count() == 4
    with pytest.raises(CommandError, match="offset"):
        call_command("recompute_scores", "--as-of", "2026-10-01")
    with pytest.raises(CommandError, match="no scoring model"):
        call_command("recompute_scores", "--model", "999")
    with pytest.raises(CommandError, match="unknown partner"):
        call_command("recompute_scores", "--partner", "P-404")
