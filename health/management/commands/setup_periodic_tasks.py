"""Install the application's periodic tasks into django-celery-beat's database scheduler."""

from django.conf import settings
from django.core.management.base import BaseCommand

from health.periodic import PERIODIC_TASKS, periodic_tasks_install


class Command(BaseCommand):
    help = "Create the periodic tasks (daily recompute, ingestion sweep, ...) that do not exist yet."

    def handle(self, *args, **options):
        created = periodic_tasks_install(timezone=settings.TIME_ZONE)
        for name in PERIODIC_TASKS:
            state = "created" if name in created else "already installed (left as edited)"
            self.stdout.write(f"{name}: {state}")
