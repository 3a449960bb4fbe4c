"""`manage.py import_deals FILE [--progress] [--dry-run]`: CSV import of deals, all or nothing."""

from prm.importing import ImportCommand


class Command(ImportCommand):
    kind = "deals"
