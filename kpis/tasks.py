"""Celery tasks of the kpis app: thin shells over services, with their retry policy."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from kpis.reminders import review_reminders_queue, review_reminders_send
from kpis.services import kpi_periods_snapshot_closed

RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(**RETRY)
def snapshot_kpi_periods() -> dict:
    """Store the latest closed quarter and month for partners that have no snapshot of them yet."""
    return {"stored": kpi_periods_snapshot_closed()}


@shared_task(**RETRY)
def send_review_reminders() -> dict:
    """Record newly overdue business reviews and email each owner once about theirs."""
    queued = review_reminders_queue()
    return {"queued": queued, **review_reminders_send()}
