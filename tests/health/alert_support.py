"""Shared by the health tests: a program whose scores the tests set exactly, and a real Celery worker."""

import datetime
import os
import subprocess
import sys
from decimal import Decimal

from django.db import connection

from health.models import ScoringComponent, ScoringModel
from health.services import scores_recompute
from tests.factories import ActivityFactory, kind

T0 = datetime.datetime(2026, 1, 5, 9, 0, tzinfo=datetime.UTC)


def score_equals_logins_model(**settings) -> ScoringModel:
    ScoringModel.objects.update(is_active=False)
    model = ScoringModel.objects.create(name="Logins score", priority=1, window_days=5, **settings)
    ScoringComponent.objects.create(
        model=model, kpi="portal_logins", weight=Decimal(1), method="target", target=Decimal(100), missing="zero"
    )
    return model


def score_at(partner, score: int, at: datetime.datetime, **recompute):
    """Give the partner exactly `score` logins in the 5 days before `at`, then recompute at `at`."""
    if score:
        ActivityFactory(
            partner=partner, kind=kind("portal_login"), quantity=score, occurred_at=at - datetime.timedelta(hours=1)
        )
    return scores_recompute(as_of=at, **recompute)


def start_worker(log_dir, queue: str, **env) -> subprocess.Popen:
    """A real Celery worker process on Redis and the test database, consuming only `queue`."""
    log = open(log_dir / f"worker-{queue}.log", "a")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "prm",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ],
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
            "CELERY_BROKER_URL": os.environ["PRM_TEST_REDIS"],
            **env,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
