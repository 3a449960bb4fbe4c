"""A real Celery worker process consumes a recompute from Redis, exactly once."""

import datetime
import time
import uuid

import pytest

from health.models import ScoreRun, ScoreSnapshot
from health.tasks import recompute_scores
from tests.factories import PartnerFactory
from tests.health.alert_support import start_worker

A = datetime.datetime(2026, 10, 1, tzinfo=datetime.UTC)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_worker_consumes_recompute_from_redis_once(tmp_path):
    partners = [PartnerFactory() for _ in range(3)]
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = start_worker(tmp_path, queue)
    try:
        result = recompute_scores.apply_async(kwargs={"as_of": A.isoformat(), "trigger": "api"}, queue=queue)
        payload = result.get(timeout=120)
        assert payload["status"] == "succeeded" and payload["snapshots"] == len(partners)
        time.sleep(2)  # an unacknowledged or duplicated message would run again here
        assert ScoreRun.objects.filter(as_of=A).count() == 1
        assert ScoreSnapshot.objects.filter(as_of=A).count() == len(partners)
    finally:
        worker.terminate()
        worker.wait(30)
    assert "succeeded" in (tmp_path / f"worker-{queue}.log").read_text()
