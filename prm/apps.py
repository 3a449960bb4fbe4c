"""App configuration of the core domain."""

from django.apps import AppConfig


class PrmConfig(AppConfig):
    name = "prm"
    verbose_name = "Partner program"

    def ready(self):
        from prm import lookups  # noqa: F401  (registers field__any)
