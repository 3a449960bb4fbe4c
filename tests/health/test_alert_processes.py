"""Alerts with real processes: a worker killed mid-recompute, overlapping scheduled runs, and a worker
retrying an email after a temporary SMTP failure."""

import datetime
import os
import signal
import threading
import time
import uuid

import pytest
from django.db import connection, connections

from health.models import Alert, AlertDelivery, ScoreRun, ScoreSnapshot
from health.services import scores_recompute
from health.tasks import recompute_scores, send_alert_delivery
from tests.factories import ActivityFactory, PartnerFactory, UserFactory, kind
from tests.health.alert_support import T0, score_at, score_equals_logins_model, start_worker

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def slow_snapshot_inserts(seconds: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""CREATE OR REPLACE FUNCTION slow_snapshot() RETURNS trigger AS $$
                BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$ LANGUAGE plpgsql;
                CREATE TRIGGER slow_snapshot BEFORE INSERT ON health_scoresnapshot
                  FOR EACH STATEMENT EXECUTE FUNCTION slow_snapshot();"""
        )


def fast_snapshot_inserts() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER IF EXISTS slow_snapshot ON health_scoresnapshot; DROP FUNCTION IF EXISTS slow_snapshot();"
        )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def sleeping_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def test_worker_killed_mid_recompute_leaves_nothing_half_done(tmp_path):
    score_equals_logins_model()
    partner = PartnerFactory(owner=UserFactory(username="cam", email="cam@vendor.example"))
    score_at(partner, 80, T0)
    A = T0 + datetime.timedelta(days=40)
    ActivityFactory(
        partner=partner, kind=kind("portal_login"), quantity=20, occurred_at=A - datetime.timedelta(hours=1)
    )
    slow_snapshot_inserts(4)
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    worker = start_worker(tmp_path, queue)
    try:
        recompute_scores.apply_async(kwargs={"as_of": A.isoformat(), "trigger": "schedule"}, queue=queue)
        wait_for(lambda: sleeping_backends() > 0, 90, "the worker to be writing snapshots")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        # PostgreSQL rolls the dead worker's transaction back once its statement ends.
        wait_for(lambda: sleeping_backends() == 0, 30, "the dead worker's statement to end")
        time.sleep(1)
        assert not ScoreSnapshot.objects.filter(as_of=A).exists()
        assert not Alert.objects.filter(as_of=A).exists() and not AlertDelivery.objects.filter(alert__as_of=A).exists()
        assert ScoreRun.objects.get(as_of=A).status == "running"
    finally:
        if worker.poll() is None:
            worker.kill()
        fast_snapshot_inserts()
    worker = start_worker(tmp_path, queue)
    try:
        result = recompute_scores.apply_async(kwargs={"as_of": A.isoformat(), "trigger": "schedule"}, queue=queue)
        assert result.get(timeout=120)["status"] == "succeeded"
    finally:
        worker.terminate()
        worker.wait(30)
    assert ScoreSnapshot.objects.filter(as_of=A).count() == 1
    assert list(Alert.objects.filter(as_of=A).values_list("kind", flat=True).order_by("kind")) == ["drop", "threshold"]
    assert AlertDelivery.objects.filter(alert__as_of=A).count() == 2
    runs = dict(ScoreRun.objects.filter(as_of=A).values_list("status", "error"))
    assert "succeeded" in runs and "Interrupted" in runs["failed"]


def test_overlapping_scheduled_runs_produce_one_set_of_alerts():
    score_equals_logins_model()
    partners = [PartnerFactory(owner=UserFactory(username=f"cam{i}", email=f"cam{i}@vendor.example")) for i in range(3)]
    A = T0 + datetime.timedelta(days=1)
    for partner in partners:  # 10 logins: a score of 10, below the threshold of 40, first snapshot
        ActivityFactory(
            partner=partner, kind=kind("portal_login"), quantity=10, occurred_at=A - datetime.timedelta(hours=1)
        )
    slow_snapshot_inserts(2)
    outcomes = []

    def scheduled_run():
        try:
            outcomes.append(recompute_scores(as_of=A.isoformat(), trigger="schedule")["status"])
        finally:
            connections.close_all()

    try:
        first = threading.Thread(target=scheduled_run)
        first.start()
        wait_for(lambda: sleeping_backends() > 0, 30, "the first run to hold the lock")
        second = threading.Thread(target=scheduled_run)
        second.start()
        first.join()
        second.join()
    finally:
        fast_snapshot_inserts()
    assert sorted(outcomes) == ["skipped", "succeeded"]
    assert Alert.objects.filter(as_of=A).count() == 3
    assert AlertDelivery.objects.count() == 3
    assert dict(ScoreRun.objects.filter(as_of=A).values_list("status", "trigger")) == {
        "succeeded": "schedule",
        "skipped": "schedule",
    }
    scores_recompute(as_of=A)  # and once more, after the fact: still one set
    assert Alert.objects.filter(as_of=A).count() == 3


def test_worker_retries_an_email_after_a_temporary_smtp_failure_and_sends_once(tmp_path, smtp_server):
    score_equals_logins_model()
    score_at(PartnerFactory(owner=UserFactory(username="cam", email="cam@vendor.example")), 10, T0)
    delivery = AlertDelivery.objects.get()
    smtp_server.refuse.append("451 4.3.0 Mailbox busy, try again")
    queue = f"mail-{uuid.uuid4().hex[:8]}"
    worker = start_worker(tmp_path, queue, EMAIL_URL=f"smtp://127.0.0.1:{smtp_server.port}", ALERT_RETRY_BACKOFF="1")
    try:
        send_alert_delivery.apply_async(args=[delivery.id], queue=queue)
        send_alert_delivery.apply_async(args=[delivery.id], queue=queue)  # a duplicate message, as after a redelivery
        wait_for(lambda: AlertDelivery.objects.get(pk=delivery.id).status == "sent", 60, "the retried email")
        time.sleep(2)
    finally:
        worker.terminate()
        worker.wait(30)
    delivery.refresh_from_db()
    assert len(smtp_server.messages) == 1
    assert delivery.attempts == 2 and delivery.last_error == ""
