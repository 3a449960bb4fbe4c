"""Who a user is in the program (channel admin, account manager, partner user) and what they may see."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from prm.models import Partner, PartnerMembership

CHANNEL_ADMIN = "Channel admin"
ACCOUNT_MANAGER = "Account manager"
PARTNER_USER = "Partner user"


def _group_names(user) -> set[str]:
    # Cached on the user object: one query per request, not one per check.
    if not hasattr(user, "_prm_group_names"):
        user._prm_group_names = set(user.groups.values_list("name", flat=True)) if user.is_authenticated else set()
    return user._prm_group_names


def is_channel_admin(user) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or CHANNEL_ADMIN in _group_names(user)))


def is_account_manager(user) -> bool:
    return bool(user.is_authenticated and ACCOUNT_MANAGER in _group_names(user))


def partner_id_of(user) -> int | None:
    """The partner a partner user belongs to, or None for vendor staff."""
    if not user.is_authenticated:
        return None
    if not hasattr(user, "_prm_partner_id"):
        user._prm_partner_id = (
            PartnerMembership.objects.filter(user_id=user.pk).values_list("partner_id", flat=True).first()
        )
    return user._prm_partner_id


def is_partner_user(user) -> bool:
    return partner_id_of(user) is not None and not is_channel_admin(user)


# ACCOUNT_MANAGER_SCOPE (a setting): what an account manager reads and writes.
MANAGER_SCOPES = {
    "all": "read every partner, write every partner's data",
    "write-own": "read every partner, write only the data of the partners they own",
    "own": "read and write only the partners they own",
}


def manager_owns_only(user, *, for_write: bool) -> bool:
    """Whether this user is an account manager held to the partners they own, for reads or for writes."""
    scope = settings.ACCOUNT_MANAGER_SCOPE
    if scope == "all" or not is_account_manager(user) or is_channel_admin(user):
        return False
    return scope == "own" or (for_write and scope == "write-own")


def scope_to_user(queryset: QuerySet, user, partner_field: str = "partner", *, for_write: bool = False) -> QuerySet:
    """Restrict any queryset of partner-owned rows to what the user may read (or, `for_write`, change).

    Staff (channel admins and account managers) read every partner; a partner user reads only its own
    partner; anyone else reads nothing. ACCOUNT_MANAGER_SCOPE may hold account managers to the partners
    they own, for writes ("write-own") or for everything ("own"). Partner users write nothing; whether
    other staff may write at all is their permissions' business (prm/api/permissions.py, model permissions).
    `partner_field` is the lookup path to the partner ("" when the queryset is of partners themselves).
    """
    if not user.is_authenticated:
        return queryset.none()
    prefix = f"{partner_field}__" if partner_field else ""
    if (
        is_channel_admin(user)
        or (is_account_manager(user) and partner_id_of(user) is None)
        or (user.is_staff and partner_id_of(user) is None)
    ):
        if manager_owns_only(user, for_write=for_write):
            return queryset.filter(**{f"{prefix}owner_id": user.pk})
        return queryset
    partner_id = partner_id_of(user)
    if partner_id is None or for_write:
        return queryset.none()
    lookup = f"{partner_field}_id" if partner_field else "pk"
    return queryset.filter(**{lookup: partner_id})


def visible_partners(user) -> QuerySet[Partner]:
    return scope_to_user(Partner.objects.all(), user, partner_field="")


def writable_partners(user) -> QuerySet[Partner]:
    """The partners whose data (and whose own record) the user may change."""
    return scope_to_user(Partner.objects.all(), user, partner_field="", for_write=True)


def may_write_partner(user, partner_id: int) -> bool:
    return writable_partners(user).filter(pk=partner_id).exists()


def is_vendor_staff(user) -> bool:
    return not is_partner_user(user) and (is_channel_admin(user) or is_account_manager(user) or user.is_staff)


def _page_for(allowed: Callable[[object], bool], refusal: str):
    """A view decorator: signed in, and `allowed`; partner users get 404 (no such page for them), others 403."""

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if is_partner_user(request.user):
                raise Http404("No such page.")
            if not allowed(request.user):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


staff_page = _page_for(is_vendor_staff, "Vendor staff only.")
admin_page = _page_for(is_channel_admin, "Channel admins only.")
