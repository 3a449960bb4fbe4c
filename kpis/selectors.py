"""Reads of the kpis app with their query shape: business reviews as the API and pages show them."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from kpis.models import ActionItem, BusinessReview
from prm.roles import scope_to_user


def reviews_visible_to(user) -> QuerySet[BusinessReview]:
    """Business reviews the user may read, with partner, author and action items (and their owners)."""
    items = ActionItem.objects.select_related("owner").order_by("id")
    reviews = BusinessReview.objects.select_related("partner", "created_by").prefetch_related(
        Prefetch("action_items", queryset=items)
    )
    return scope_to_user(reviews, user)
