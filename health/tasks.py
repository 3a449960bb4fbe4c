"""Celery tasks of health scoring: thin shells that take ids and call services."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils.dateparse import parse_datetime

from health.alerts import PermanentDeliveryError, alert_delivery_send, alerts_send_pending, digests_send
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


@shared_task(**RETRY)
def recompute_partition(model_id: int, as_of: str, low: int, high: int) -> dict:
    """One worker's share of a partitioned run: raw KPI values of a partner id range."""
    from health.services import raw_partition

    model = ScoringModel.objects.get(pk=model_id)
    raw = raw_partition(model=model, as_of=parse_datetime(as_of), low=low, high=high)
    return {"model": model_id, "raw": raw}


@shared_task(**RETRY)
def recompute_finalize(parts: list[dict], as_of: str, model_id: int | None = None, trigger: str = "schedule") -> dict:
    """Join the partitions' raw values, then normalize (percentiles need everyone) and write the snapshots."""
    precomputed: dict[int, dict[str, dict[int, float | None]]] = {}
    for part in parts:
        merged = precomputed.setdefault(int(part["model"]), {})
        for kpi, values in part["raw"].items():
            # JSON turned partner ids into strings on the way through the result backend.
            merged.setdefault(kpi, {}).update({int(pid): value for pid, value in values.items()})
    model = ScoringModel.objects.get(pk=model_id) if model_id else None
    try:
        result = scores_recompute(
            as_of=parse_datetime(as_of), model=model, trigger=trigger, wait=False, precomputed=precomputed
        )
    except RecomputeBusy:
        return {"status": "skipped", "reason": "another recompute was running"}
    return {"status": "succeeded", "run": result.run.pk, "snapshots": result.snapshots}


@shared_task
def recompute_partitioned(
    as_of: str | None = None, model_id: int | None = None, partitions: int = 4, trigger: str = "schedule"
) -> str:
    """Fan the raw-KPI phase out over workers by partner id range, then finalize in one task (a chord)."""
    from celery import chord
    from django.utils import timezone

    from health.services import partition_bounds

    as_of = as_of or timezone.now().isoformat()
    models = [ScoringModel.objects.get(pk=model_id)] if model_id else list(ScoringModel.objects.filter(is_active=True))
    header = [
        recompute_partition.s(model.pk, as_of, low, high)
        for model in models
        for low, high in partition_bounds(partitions=partitions)
    ]
    result = chord(header)(recompute_finalize.s(as_of=as_of, model_id=model_id, trigger=trigger))
    return result.id


@shared_task(
    bind=True,
    autoretry_for=(OSError, smtplib.SMTPException),
    dont_autoretry_for=(PermanentDeliveryError,),
    retry_backoff=settings.ALERT_RETRY_BACKOFF,
    retry_backoff_max=3600,
    retry_jitter=False,
    max_retries=8,
)
def send_alert_delivery(self, delivery_id: int) -> bool:
    """Send one alert email; only the caller that claims the delivery sends it, however often this runs."""
    return alert_delivery_send(delivery_id=delivery_id)


@shared_task(**RETRY)
def send_alert_deliveries(delivery_ids: list[int]) -> dict:
    """Send a chunk of alert emails; one that fails for now is retried on its own, with backoff."""
    sent = retried = failed = 0
    for delivery_id in delivery_ids:
        try:
            sent += alert_delivery_send(delivery_id=delivery_id)
        except PermanentDeliveryError:
            failed += 1
        except (OSError, smtplib.SMTPException):
            send_alert_delivery.apply_async(args=[delivery_id], countdown=settings.ALERT_RETRY_BACKOFF)
            retried += 1
    return {"sent": sent, "retried": retried, "failed": failed}


@shared_task(**RETRY)
def send_pending_alerts() -> dict:
    """Safety net: send immediate deliveries left pending (e.g. queued while the mail server was down)."""
    return alerts_send_pending()


@shared_task(**RETRY)
def send_alert_digests() -> dict:
    """Hourly: the daily digest of every user whose local digest hour it is."""
    return digests_send()


@shared_task(**RETRY)
def calibrate_models(model_id: int | None = None, user_id: int | None = None, trigger: str = "schedule") -> dict:
    """Calibration reports: every active model monthly, or one model on demand from its report page."""
    from django.contrib.auth import get_user_model

    from health.calibration import calibration_reports_create

    model = ScoringModel.objects.get(pk=model_id) if model_id else None
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    reports = calibration_reports_create(model=model, user=user, trigger=trigger)
    return {"status": "succeeded", "reports": [report.pk for report in reports]}
