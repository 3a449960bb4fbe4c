"""Celery tasks of health scoring: thin shells that take ids and call services."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils.dateparse import parse_datetime

from health.models import ScoringModel
from health.services import RecomputeBusy, pending_recompute, scores_recompute

RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(**RETRY)
def recompute_scores(as_of: str | None = None, model_id: int | None = None, trigger: str = "schedule") -> dict:
    """Recompute every partner's score (or one model's segment); skips when another run is in progress."""
    model = ScoringModel.objects.get(pk=model_id) if model_id else None
    try:
        result = scores_recompute(
            as_of=parse_datetime(as_of) if as_of else None, model=model, trigger=trigger, wait=False
        )
    except RecomputeBusy:
        return {"status": "skipped", "reason": "another recompute was running"}
    return {"status": "succeeded", "run": result.run.pk, "snapshots": result.snapshots}


@shared_task(**RETRY)
def recompute_pending() -> dict:
    """Rescore the partners whose data changed since the last sweep (runs every minute)."""
    result = pending_recompute()
    if result is None:
        return {"status": "nothing to do"}
    return {"status": "succeeded", "run": result.run.pk, "snapshots": result.snapshots}
