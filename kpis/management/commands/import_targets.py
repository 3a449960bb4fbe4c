"""`manage.py import_targets FILE [--progress] [--dry-run]`: CSV import of KPI targets, all or nothing.

Columns: kpi, period (2026-Q3 or 2026-07), tier (slug) or partner (external_id), value. A line whose
(kpi, period, tier or partner) already has a target changes its value.
"""

from prm.importing import ImportCommand


class Command(ImportCommand):
    kind = "targets"
