"""`manage.py import_activities FILE [--progress] [--dry-run]`: CSV import of activities, all or nothing."""

from prm.importing import ImportCommand


class Command(ImportCommand):
    kind = "activities"
