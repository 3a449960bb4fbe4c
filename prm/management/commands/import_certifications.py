"""`manage.py import_certifications FILE [--progress] [--dry-run]`: CSV import of certifications, all or nothing."""

from prm.importing import ImportCommand


class Command(ImportCommand):
    kind = "certifications"
