"""`manage.py import_partners FILE [--progress] [--dry-run]`: CSV import of partners, all or nothing."""

from prm.importing import ImportCommand


class Command(ImportCommand):
    kind = "partners"
