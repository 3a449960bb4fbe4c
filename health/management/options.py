"""Options shared by the health commands: an instant with an offset, and a scoring model by id."""

from __future__ import annotations

import datetime

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from health.models import ScoringModel


def as_of_option(value: str | None) -> datetime.datetime | None:
    """--as-of: an ISO 8601 instant with an offset (None when not given)."""
    if not value:
        return None
    instant = parse_datetime(value)
    if instant is None or timezone.is_naive(instant):
        raise CommandError(f"--as-of {value!r}: give an ISO 8601 instant with an offset, e.g. 2026-10-01T00:00:00Z")
    return instant


def scoring_model_option(pk: int | None) -> ScoringModel | None:
    """--model: the scoring model with that id (None when not given)."""
    if pk is None:
        return None
    scoring_model = ScoringModel.objects.filter(pk=pk).first()
    if scoring_model is None:
        raise CommandError(f"--model {pk}: no scoring model with that id")
    return scoring_model
