"""The periodic tasks of the application, declared once and installed into django-celery-beat."""

from __future__ import annotations

import json

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from kpis.periodic import PERIODIC_TASKS as KPI_PERIODIC_TASKS

# name -> (task, schedule, expires in seconds, kwargs). Schedules are only the defaults: once installed,
# admins edit them in the admin (Periodic tasks) and installing again leaves their edits alone.
PERIODIC_TASKS = {
    "Recompute all health scores": {
        "task": "health.tasks.recompute_scores",
        "crontab": {"minute": "0", "hour": "2"},
        "expire_seconds": 6 * 3600,
        "kwargs": {"trigger": "schedule"},
    },
    "Send alert digests": {
        "task": "health.tasks.send_alert_digests",
        "crontab": {"minute": "0", "hour": "*"},
        "expire_seconds": 3000,
        "kwargs": {},
    },
    "Send pending alert emails": {
        "task": "health.tasks.send_pending_alerts",
        "every_seconds": 300,
        "expire_seconds": 290,
        "kwargs": {},
    },
    "Calibrate scoring models against revenue": {
        "task": "health.tasks.calibrate_models",
        # Monthly, after the nightly recompute of the 1st: a new quarter's outcome is in on the 1st of
        # January, April, July and October.
        "crontab": {"minute": "30", "hour": "4", "day_of_month": "1"},
        "expire_seconds": 12 * 3600,
        "kwargs": {"trigger": "schedule"},
    },
    "Rescore partners with new data": {
        "task": "health.tasks.recompute_pending",
        "every_seconds": 60,
        "expire_seconds": 55,
        "kwargs": {},
    },
}


# Health sits at the top of the data flow, so it gathers every app's periodic tasks in one place.
PERIODIC_TASKS.update(KPI_PERIODIC_TASKS)


@transaction.atomic
def periodic_tasks_install(*, timezone: str) -> list[str]:
    """Create the periodic tasks that do not exist yet; return the names created."""
    created = []
    for name, spec in PERIODIC_TASKS.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        schedule = {}
        if "crontab" in spec:
            crontab = {"day_of_week": "*", "day_of_month": "*", "month_of_year": "*", **spec["crontab"]}
            schedule["crontab"], _ = CrontabSchedule.objects.get_or_create(timezone=timezone, **crontab)
        else:
            schedule["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=spec["every_seconds"], period=IntervalSchedule.SECONDS
            )
        PeriodicTask.objects.create(
            name=name,
            task=spec["task"],
            kwargs=json.dumps(spec["kwargs"]),
            expire_seconds=spec["expire_seconds"],
            **schedule,
        )
        created.append(name)
    return created
