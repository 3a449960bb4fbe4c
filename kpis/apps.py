"""App configuration of the KPI catalogue."""

from django.apps import AppConfig


class KpisConfig(AppConfig):
    name = "kpis"
    verbose_name = "KPIs"

    def ready(self) -> None:
        # Targets are one more kind of CSV import, through the same machinery as partners and activities.
        from kpis.targets import register_csv_import

        register_csv_import()
