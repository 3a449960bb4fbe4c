"""Alert services: evaluate thresholds and drops with a run, choose recipients, deliver emails once, acknowledge."""

from __future__ import annotations

import datetime
import logging
import smtplib
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, Max, OuterRef, Q, QuerySet, Subquery
from django.template.loader import render_to_string
from django.utils import timezone

from health.models import Alert, AlertDelivery, AlertPreference, AlertSubscriber, ScoreSnapshot
from health.scoring import ModelSpec, PartnerScore
from prm.models import Partner
from prm.roles import CHANNEL_ADMIN

logger = logging.getLogger(__name__)

# A claim older than this is taken to belong to a sender that died mid-send.
STALE_CLAIM = datetime.timedelta(minutes=10)
TOP_REASONS = 3
SEND_CHUNK = 200


class PermanentDeliveryError(Exception):
    """The mail server refused the message for good (e.g. an unknown recipient): do not retry."""


# Evaluation ----------------------------------------------------------------------------------------


def alerts_evaluate(
    *,
    spec: ModelSpec,
    as_of: datetime.datetime,
    scores: dict[int, PartnerScore],
    trends: dict[int, float | None],
) -> list[Alert]:
    """Record the threshold and drop alerts this instant raises (SCORING.md "Alerts"), inside the run's
    transaction. An alert already recorded for (partner, model, kind, as_of) is never recorded again."""
    threshold, rearm_to = spec.alert_threshold, spec.alert_threshold + spec.rearm_points
    below = {pid for pid, result in scores.items() if result.score is not None and result.score < threshold}
    dropped = {pid for pid, trend in trends.items() if trend is not None and trend <= -spec.drop_points}
    candidates = below | dropped
    if not candidates:
        return []

    from health.services import previous_scores

    # Each lookup below names only the partners it is about, as one array: two `= ANY` arrays of tens of
    # thousands of ids on one table (the candidates, then a subset of them) made PostgreSQL estimate each
    # row's filter at their product, choose a parallel scan and compile it (JIT), 2.5 s instead of 50 ms.
    snapshots = ScoreSnapshot.objects.filter(model_id=spec.id)
    # Scores only: the components of a previous snapshot are read below for the alerts recorded, not for
    # every candidate (on a first run, every partner below the threshold is one).
    previous = previous_scores(spec.id, before=as_of, partners=candidates, inclusive=False)
    alerts_so_far = Alert.objects.filter(model_id=spec.id)
    already = set(alerts_so_far.filter(as_of=as_of, partner_id__any=candidates).values_list("partner_id", "kind"))

    threshold_alerts = set()
    crossing = {pid for pid in below if previous.get(pid) is None or previous[pid] >= threshold}
    last_threshold = dict(
        alerts_so_far.filter(kind=Alert.Kind.THRESHOLD, as_of__lt=as_of, partner_id__any=crossing)
        .values("partner_id")
        .annotate(last=Max("as_of"))
        .values_list("partner_id", "last")
    )
    rearmed = set()
    if last_threshold:
        for pid, snapshot_at in snapshots.filter(
            partner_id__any=last_threshold,
            as_of__lt=as_of,
            score__gte=rearm_to,
            as_of__gt=min(last_threshold.values()),
        ).values_list("partner_id", "as_of"):
            if snapshot_at > last_threshold[pid]:
                rearmed.add(pid)
    for pid in crossing:
        if pid not in last_threshold or pid in rearmed:
            threshold_alerts.add(pid)

    recent_drops = set(
        alerts_so_far.filter(
            kind=Alert.Kind.DROP,
            as_of__lt=as_of,
            as_of__gt=as_of - datetime.timedelta(days=spec.trend_days),
            partner_id__any=dropped,
        ).values_list("partner_id", flat=True)
    )
    drop_alerts = dropped - recent_drops

    wanted = [(pid, Alert.Kind.THRESHOLD) for pid in threshold_alerts] + [(pid, Alert.Kind.DROP) for pid in drop_alerts]
    wanted = [(pid, kind) for pid, kind in wanted if (pid, kind) not in already]
    if not wanted:
        return []
    # What moved: against the trend's base snapshot when there is one, else the previous snapshot.
    alerted = {pid for pid, _ in wanted}
    fields = ("partner_id", "score", "components")
    base_before = Q(as_of__lte=as_of - datetime.timedelta(days=spec.trend_days))
    compared_with = {
        s.partner_id: s
        for s in _latest_snapshots(model_id=spec.id, partner_ids=alerted, time_filter=base_before).only(*fields)
    }
    without_base = {pid for pid in alerted if pid not in compared_with and pid in previous}
    if without_base:
        compared_with.update(
            (s.partner_id, s)
            for s in _latest_snapshots(model_id=spec.id, partner_ids=without_base, time_filter=Q(as_of__lt=as_of)).only(
                *fields
            )
        )
    alerts = []
    for pid, kind in sorted(wanted):
        result = scores[pid]
        compared = compared_with.get(pid)
        alerts.append(
            Alert(
                partner_id=pid,
                model_id=spec.id,
                kind=kind,
                as_of=as_of,
                score=result.score,
                previous_score=compared.score if compared else None,
                trend=trends.get(pid),
                band=result.band,
                reasons=_reasons(compared.components if compared else [], result.components),
            )
        )
    return Alert.objects.bulk_create(alerts)


def _latest_snapshots(*, model_id: int, partner_ids: Iterable[int], time_filter: Q) -> QuerySet[ScoreSnapshot]:
    """Each partner's latest snapshot under the model among those matching `time_filter`, in one query.

    A correlated lookup per partner that the (partner, model, as_of) unique index answers: the cost follows
    the number of partners, never the length of their history (a year of daily snapshots is 365 rows each).
    """
    latest = (
        ScoreSnapshot.objects.filter(time_filter, partner=OuterRef("pk"), model_id=model_id)
        .order_by("-as_of")
        .values("id")[:1]
    )
    ids = Partner.objects.filter(pk__any=partner_ids).order_by().annotate(latest=Subquery(latest)).values("latest")
    return ScoreSnapshot.objects.filter(pk__in=ids).order_by()


def _reasons(before: list[dict], after: list[dict]) -> list[dict]:
    from health.services import component_changes

    class _Snap:  # component_changes reads .components
        def __init__(self, components):
            self.components = components

    changes = component_changes(_Snap(before) if before else None, _Snap(after))
    return [c for c in changes if abs(c["delta"]) > 0.05][:TOP_REASONS]


# Recipients ----------------------------------------------------------------------------------------


def deliveries_create(*, alerts: Iterable[Alert]) -> list[AlertDelivery]:
    """One delivery per alert and recipient: the partner's owner, the model's subscribers, and when
    there is neither, the channel admins, so that no alert goes to nobody."""
    alerts = list(alerts)
    if not alerts:
        return []
    User = get_user_model()
    partners = {p.id: p for p in Partner.objects.filter(pk__in={a.partner_id for a in alerts}).select_related("owner")}
    subscribers: dict[int, list[AlertSubscriber]] = defaultdict(list)
    for subscriber in AlertSubscriber.objects.filter(model_id__in={a.model_id for a in alerts}).select_related("user"):
        subscribers[subscriber.model_id].append(subscriber)
    admins = list(
        User.objects.filter(Q(is_superuser=True) | Q(groups__name=CHANNEL_ADMIN), is_active=True)
        .exclude(email="")
        .distinct()
    )
    preferences = {p.user_id: p for p in AlertPreference.objects.all()}

    def mode_of(user) -> str:
        preference = preferences.get(user.pk) if user else None
        return preference.mode if preference else AlertDelivery.Mode.IMMEDIATE

    deliveries = []
    for alert in alerts:
        recipients: dict[str, object] = {}
        owner = partners[alert.partner_id].owner
        if owner and owner.is_active and owner.email:
            recipients[owner.email.lower()] = owner
        for subscriber in subscribers[alert.model_id]:
            if subscriber.user and subscriber.user.is_active and subscriber.user.email:
                recipients.setdefault(subscriber.user.email.lower(), subscriber.user)
            elif subscriber.email:
                recipients.setdefault(subscriber.email.lower(), None)
        if not recipients:
            recipients = {admin.email.lower(): admin for admin in admins}
        if not recipients:
            logger.error("Alert %s has no recipient: no owner, subscriber or channel admin with an email", alert.pk)
        for email, user in recipients.items():
            deliveries.append(AlertDelivery(alert=alert, user=user, email=email, mode=mode_of(user)))
    return AlertDelivery.objects.bulk_create(deliveries)


def alerts_record(
    *, spec: ModelSpec, as_of: datetime.datetime, scores: dict[int, PartnerScore], trends: dict[int, float | None]
) -> list[Alert]:
    """Evaluate and record alerts with their deliveries (inside the run's transaction); queue the
    immediate emails once the transaction commits."""
    alerts = alerts_evaluate(spec=spec, as_of=as_of, scores=scores, trends=trends)
    deliveries = deliveries_create(alerts=alerts)
    immediate = [d.pk for d in deliveries if d.mode == AlertDelivery.Mode.IMMEDIATE]
    if immediate:

        def queue():
            from health.tasks import send_alert_deliveries

            # One message per chunk: a first run can raise tens of thousands of alerts at once.
            for start in range(0, len(immediate), SEND_CHUNK):
                send_alert_deliveries.delay(immediate[start : start + SEND_CHUNK])

        transaction.on_commit(queue)
    return alerts


# Delivery ------------------------------------------------------------------------------------------


def _claim(deliveries, claimer: str) -> int:
    now = timezone.now()
    return (
        deliveries.filter(status=AlertDelivery.Status.PENDING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - STALE_CLAIM))
        .update(claimed_at=now, claimed_by=claimer, attempts=F("attempts") + 1)
    )


def _is_permanent(exc: Exception) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)):
        return exc.smtp_code >= 500
    return False


def _send(*, to: str, subject: str, template: str, context: dict) -> None:
    context = {**context, "site_url": settings.SITE_URL.rstrip("/")}
    message = EmailMultiAlternatives(
        subject=subject.strip(), body=render_to_string(f"emails/{template}.txt", context), to=[to]
    )
    message.attach_alternative(render_to_string(f"emails/{template}.html", context), "text/html")
    message.send()


def _alert_context(alert: Alert) -> dict:
    return {"alert": alert, "partner": alert.partner, "model": alert.model}


def alert_subject(alert: Alert) -> str:
    score = "no score" if alert.score is None else f"{alert.score:.1f}"
    if alert.kind == Alert.Kind.THRESHOLD:
        return f"[Partner Health] {alert.partner.name} fell below {float(alert.model.alert_threshold):g} ({score}, {alert.get_band_display()})"
    return f"[Partner Health] {alert.partner.name} dropped {abs(alert.trend or 0):.1f} points ({score}, {alert.get_band_display()})"


def alert_delivery_send(*, delivery_id: int) -> bool:
    """Send one immediate alert email if this caller claims it; True when this call sent it.

    A failed attempt releases the claim and records the error for the retry; a permanent refusal
    marks the delivery failed and stops retries.
    """
    claimer = uuid.uuid4().hex
    if _claim(AlertDelivery.objects.filter(pk=delivery_id, mode=AlertDelivery.Mode.IMMEDIATE), claimer) != 1:
        return False
    delivery = AlertDelivery.objects.select_related("alert__partner", "alert__model").get(pk=delivery_id)
    try:
        _send(
            to=delivery.email,
            subject=alert_subject(delivery.alert),
            template="alert",
            context=_alert_context(delivery.alert),
        )
    except (smtplib.SMTPException, OSError) as exc:
        permanent = _is_permanent(exc)
        AlertDelivery.objects.filter(pk=delivery_id, claimed_by=claimer).update(
            claimed_at=None,
            claimed_by="",
            last_error=f"{type(exc).__name__}: {exc}",
            status=AlertDelivery.Status.FAILED if permanent else AlertDelivery.Status.PENDING,
        )
        if permanent:
            raise PermanentDeliveryError(str(exc)) from exc
        raise
    AlertDelivery.objects.filter(pk=delivery_id, claimed_by=claimer).update(
        status=AlertDelivery.Status.SENT, sent_at=timezone.now(), last_error=""
    )
    return True


def alerts_send_pending() -> dict:
    """Send every pending immediate delivery now (the `send_alerts` command; no broker needed)."""
    sent = failed = 0
    for delivery_id in AlertDelivery.objects.filter(
        status=AlertDelivery.Status.PENDING, mode=AlertDelivery.Mode.IMMEDIATE
    ).values_list("pk", flat=True):
        try:
            sent += alert_delivery_send(delivery_id=delivery_id)
        except Exception as exc:  # recorded on the delivery; go on with the others
            logger.warning("Alert delivery %s failed: %s", delivery_id, exc)
            failed += 1
    return {"sent": sent, "failed": failed}


def digests_send(*, now: datetime.datetime | None = None) -> dict:
    """Send each digest user whose local hour is their digest hour one email listing their pending alerts."""
    now = now or timezone.now()
    due = []
    for preference in AlertPreference.objects.filter(mode=AlertDelivery.Mode.DIGEST).select_related("user"):
        local = now.astimezone(zoneinfo.ZoneInfo(preference.time_zone))
        if local.hour == preference.digest_hour:
            due.append((preference, local.date()))
    sent = 0
    for preference, local_day in due:
        claimer = f"digest-{preference.user_id}-{local_day.isoformat()}-{uuid.uuid4().hex[:8]}"
        pending = AlertDelivery.objects.filter(user=preference.user, mode=AlertDelivery.Mode.DIGEST)
        if not _claim(pending, claimer):
            continue
        claimed = list(
            AlertDelivery.objects.filter(claimed_by=claimer)
            .select_related("alert__partner", "alert__model")
            .order_by("alert__partner__name", "alert__as_of")
        )
        try:
            _send(
                to=claimed[0].email,
                subject=f"[Partner Health] {len(claimed)} partner alert{'s' if len(claimed) != 1 else ''} for {local_day:%d %b %Y}",
                template="digest",
                context={"alerts": [d.alert for d in claimed], "user": preference.user, "day": local_day},
            )
        except (smtplib.SMTPException, OSError) as exc:
            AlertDelivery.objects.filter(claimed_by=claimer).update(
                claimed_at=None, claimed_by="", last_error=f"{type(exc).__name__}: {exc}"
            )
            raise
        AlertDelivery.objects.filter(claimed_by=claimer).update(
            status=AlertDelivery.Status.SENT, sent_at=timezone.now()
        )
        sent += 1
    return {"digests": sent}


# Acknowledgment ------------------------------------------------------------------------------------


@transaction.atomic
def alert_acknowledge(*, alert: Alert, user, note: str = "", follow_up: dict | None = None) -> Alert:
    """Acknowledge an alert (the first acknowledgment stands); optionally create a follow-up action."""
    from kpis.models import ActionItem

    action = None
    if follow_up:
        action = ActionItem.objects.create(
            partner_id=alert.partner_id,
            description=follow_up["description"],
            owner=follow_up.get("owner") or user,
            due_on=follow_up.get("due_on"),
            kpi=follow_up.get("kpi", ""),
        )
    Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=user, acknowledgment_note=note
    )
    if action:
        Alert.objects.filter(pk=alert.pk, follow_up__isnull=True).update(follow_up=action)
    alert.refresh_from_db()
    return alert
