"""Who may call what in the API, and how often: role permissions, the per-user and bulk-write throttles, and
the API's answer to a body too large to read."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle, UserRateThrottle

from prm.roles import is_account_manager, is_channel_admin, may_write_partner, partner_id_of


def may_write_partner_data(user) -> bool:
    """Channel admins, and account managers who are not tied to one partner (so they see every partner)."""
    return is_channel_admin(user) or (is_account_manager(user) and partner_id_of(user) is None)


class RolePermission(BasePermission):
    """Reads: any signed-in user (the base viewset scopes the rows). Writes: see may_write_partner_data.

    Actions named in the view's `admin_only_actions` (creating activity kinds, deleting a partner) are for
    channel admins alone.
    """

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        if getattr(view, "action", None) in getattr(view, "admin_only_actions", ()):
            return is_channel_admin(user)
        return may_write_partner_data(user)

    def has_object_permission(self, request, view, obj) -> bool:
        # A write to one record also needs its partner within the caller's write scope (ACCOUNT_MANAGER_SCOPE).
        if request.method in SAFE_METHODS or is_channel_admin(request.user):
            return True
        partner_id = obj.pk if view.partner_field == "" else getattr(obj, f"{view.partner_field}_id", None)
        return partner_id is None or may_write_partner(request.user, partner_id)


class PerUserThrottle(UserRateThrottle):
    """Every request of a signed-in user (anonymous ones by address) against API_THROTTLE_USER."""

    def get_rate(self):
        # DRF's own reads the rate once, at import: read it per request, so a changed setting takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


class BulkWriteThrottle(ScopedRateThrottle):
    """POSTs to a collection (one object or up to 5,000) also count against the view's `throttle_scope` rate."""

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)

    def get_rate(self):
        # Read at request time, not import time, so that a changed setting takes effect.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


def exception_handler(exc, context):
    """DRF's handler, plus a JSON 413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE.

    Django raises RequestDataTooBig (a SuspiciousOperation) when the body is read, which DRF leaves to
    Django's HTML 400 page: an API client gets a JSON answer that says what is wrong instead.
    """
    from django.core.exceptions import RequestDataTooBig
    from rest_framework import status
    from rest_framework.response import Response
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"The body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes accepted."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return drf_exception_handler(exc, context)
