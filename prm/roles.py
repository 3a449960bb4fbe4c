"""Who a user is in the program (channel admin, account manager, partner user) and what they may see."""

from __future__ import annotations

from django.db.models import QuerySet

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


def scope_to_user(queryset: QuerySet, user, partner_field: str = "partner") -> QuerySet:
    """Restrict any queryset of partner-owned rows to what the user may read.

    Staff (channel admins and account managers) read every partner; a partner user reads only its own
    partner; anyone else reads nothing. `partner_field` is the lookup path to the partner ("" when the
    queryset is of partners themselves).
    """
    if not user.is_authenticated:
        return queryset.none()
    if (
        is_channel_admin(user)
        or (is_account_manager(user) and partner_id_of(user) is None)
        or (user.is_staff and partner_id_of(user) is None)
    ):
        return queryset
    partner_id = partner_id_of(user)
    if partner_id is None:
        return queryset.none()
    lookup = f"{partner_field}_id" if partner_field else "pk"
    return queryset.filter(**{lookup: partner_id})


def visible_partners(user) -> QuerySet[Partner]:
    return scope_to_user(Partner.objects.all(), user, partner_field="")
