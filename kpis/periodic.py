"""The kpis app's periodic tasks, in the shape of health.periodic.PERIODIC_TASKS (merged there to be installed)."""

# name -> (task, schedule, expires in seconds, kwargs); installed by `setup_periodic_tasks`.
PERIODIC_TASKS = {
    "Store KPI values of closed periods": {
        "task": "kpis.tasks.snapshot_kpi_periods",
        # Daily, so a period is stored the night after it closes and a missed night catches up.
        "crontab": {"minute": "30", "hour": "1"},
        "expire_seconds": 6 * 3600,
        "kwargs": {},
    },
    "Remind owners of overdue business reviews": {
        "task": "kpis.tasks.send_review_reminders",
        "crontab": {"minute": "0", "hour": "7"},
        "expire_seconds": 3 * 3600,
        "kwargs": {},
    },
}
