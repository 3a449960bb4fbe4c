"""Partner Health PRM: project package and core domain (partners, tiers, contacts, signals)."""

from .celery import app as celery_app

__all__ = ("celery_app",)
