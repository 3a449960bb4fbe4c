"""Reminders to account managers of partners that have had no business review for too long.

A partner is overdue once settings.KPI_REVIEW_REMINDER_DAYS (default 100) have passed since its latest
business review (or, never reviewed, since it joined). Each overdue stretch gets one ReviewReminder row
(unique per partner and day it became overdue), so the daily task reminds once per stretch however often
it runs. The sender claims pending rows with a conditional update and sends each owner one email
listing their overdue partners; a temporary SMTP failure releases the claim for the next run, a
permanent refusal marks the rows failed.
"""

from __future__ import annotations

import datetime
import logging
import smtplib
import uuid
from collections import defaultdict

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import F, Max, Q
from django.template.loader import render_to_string
from django.utils import timezone

from kpis.models import ReviewReminder
from prm.models import Partner

logger = logging.getLogger(__name__)

# A claim older than this belongs to a sender that died mid-send.
STALE_CLAIM = datetime.timedelta(minutes=10)
MAX_ATTEMPTS = 5


def reminder_days() -> int:
    return max(1, int(getattr(settings, "KPI_REVIEW_REMINDER_DAYS", 100)))


def review_reminders_queue(*, now: datetime.datetime | None = None) -> int:
    """Record a reminder for each partner that became overdue and has none for this stretch; return how many.

    One query finds the overdue partners (latest review per partner by aggregate), one inserts.
    """
    now = now or timezone.now()
    today = timezone.localtime(now, timezone.get_default_timezone()).date()
    days = reminder_days()
    cutoff = today - datetime.timedelta(days=days)
    overdue = (
        Partner.objects.exclude(status=Partner.Status.EXITED)
        .filter(owner__isnull=False, owner__is_active=True)
        .annotate(last_review=Max("business_reviews__held_on", filter=Q(business_reviews__held_on__lte=today)))
        .filter(
            Q(last_review__lte=cutoff)
            | Q(last_review__isnull=True, joined_on__lte=cutoff)
            | Q(last_review__isnull=True, joined_on__isnull=True, created_at__date__lte=cutoff)
        )
        .order_by()
        .values_list("pk", "owner_id", "last_review", "joined_on", "created_at")
    )
    rows = []
    for partner_id, owner_id, last_review, joined_on, created_at in overdue:
        since = last_review or joined_on or timezone.localtime(created_at, timezone.get_default_timezone()).date()
        rows.append(
            ReviewReminder(
                partner_id=partner_id,
                owner_id=owner_id,
                due_since=since + datetime.timedelta(days=days),
                last_review_on=last_review,
            )
        )
    if not rows:
        return 0
    known = set(
        ReviewReminder.objects.filter(partner_id__in=[row.partner_id for row in rows]).values_list(
            "partner_id", "due_since"
        )
    )
    new = [row for row in rows if (row.partner_id, row.due_since) not in known]
    # A concurrent run may insert the same rows meanwhile: the unique constraint keeps one.
    ReviewReminder.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def _is_permanent(exc: Exception) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)):
        return exc.smtp_code >= 500
    return False


def review_reminders_send(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Send every owner with pending reminders one email; return counts of emails sent and failed."""
    now = now or timezone.now()
    claimer = uuid.uuid4().hex
    # One conditional UPDATE: a row another sender claimed meanwhile no longer matches and stays theirs.
    ReviewReminder.objects.filter(status=ReviewReminder.Status.PENDING).filter(
        Q(claim="") | Q(claimed_at__lt=now - STALE_CLAIM)
    ).update(claim=claimer, claimed_at=now, attempts=F("attempts") + 1)
    mine = (
        ReviewReminder.objects.filter(claim=claimer)
        .select_related("partner", "owner")
        .order_by("owner_id", "due_since")
    )
    by_owner: dict[int, list[ReviewReminder]] = defaultdict(list)
    for reminder in mine:
        by_owner[reminder.owner_id].append(reminder)

    today = timezone.localtime(now, timezone.get_default_timezone()).date()
    sent = failed = 0
    connection = get_connection()
    for reminders in by_owner.values():
        owner = reminders[0].owner
        ids = [reminder.pk for reminder in reminders]
        if not owner.email:
            ReviewReminder.objects.filter(pk__in=ids, claim=claimer).update(
                status=ReviewReminder.Status.FAILED, claim="", last_error="The owner has no email address."
            )
            failed += 1
            continue
        try:
            _send(owner=owner, reminders=reminders, today=today, connection=connection)
        except (smtplib.SMTPException, OSError) as exc:
            permanent = _is_permanent(exc)
            gave_up = permanent or reminders[0].attempts >= MAX_ATTEMPTS
            ReviewReminder.objects.filter(pk__in=ids, claim=claimer).update(
                claim="",
                claimed_at=None,
                last_error=f"{type(exc).__name__}: {exc}",
                status=ReviewReminder.Status.FAILED if gave_up else ReviewReminder.Status.PENDING,
            )
            logger.warning("Review reminder to %s failed: %s", owner.email, exc)
            failed += 1
            continue
        ReviewReminder.objects.filter(pk__in=ids, claim=claimer).update(
            status=ReviewReminder.Status.SENT, sent_at=timezone.now(), claim="", last_error=""
        )
        sent += 1
    return {"sent": sent, "failed": failed}


def _send(*, owner, reminders: list[ReviewReminder], today: datetime.date, connection) -> None:
    lines = [
        {
            "partner": reminder.partner,
            "last_review_on": reminder.last_review_on,
            "days": (today - reminder.last_review_on).days if reminder.last_review_on else None,
        }
        for reminder in sorted(reminders, key=lambda r: r.partner.name)
    ]
    context = {
        "owner": owner,
        "lines": lines,
        "threshold_days": reminder_days(),
        "site_url": settings.SITE_URL.rstrip("/"),
    }
    count = len(lines)
    if count == 1:
        subject = f"[Partner Health] Business review due: {lines[0]['partner'].name}"
    else:
        subject = f"[Partner Health] Business reviews due for {count} partners"
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("emails/review_reminder.txt", context),
        to=[owner.email],
        connection=connection,
    )
    message.attach_alternative(render_to_string("emails/review_reminder.html", context), "text/html")
    message.send()
