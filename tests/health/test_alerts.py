"""Alerts (SCORING.md "Alerts"): threshold with hysteresis, drops, recipients, exactly-once email, digests,
acknowledgment, API."""

import datetime
import threading

import pytest
from django.core.management import call_command
from django.db import connections

from health.alerts import PermanentDeliveryError, alert_acknowledge, alert_delivery_send, digests_send
from health.models import Alert, AlertDelivery, AlertPreference, AlertSubscriber
from health.services import scores_recompute
from kpis.models import ActionItem
from tests.factories import PartnerFactory, UserFactory
from tests.health.alert_support import T0, score_at, score_equals_logins_model

DAY = datetime.timedelta(days=1)


def instants(n: int, every=DAY * 10):
    return [T0 + every * i for i in range(n)]


@pytest.fixture
def model(db):
    return score_equals_logins_model()


@pytest.fixture
def owner(db):
    return UserFactory(username="cam", email="cam@vendor.example")


def test_score_oscillating_around_the_threshold_alerts_once_until_rearmed(model, owner):
    partner = PartnerFactory(owner=owner)
    for at, score in zip(instants(6), [39, 41, 39, 44, 46, 39], strict=True):
        score_at(partner, score, at)
    alerts = list(Alert.objects.filter(kind="threshold").order_by("as_of"))
    # 39 alerts; 41 and 44 do not re-arm (need 40 + 5); 46 re-arms; the last 39 alerts again.
    assert [a.as_of for a in alerts] == [instants(6)[0], instants(6)[5]]
    assert alerts[1].previous_score == pytest.approx(46) or alerts[1].score == pytest.approx(39)


def test_recomputing_an_instant_never_records_or_sends_the_alert_again(model, owner):
    partner = PartnerFactory(owner=owner)
    score_at(partner, 30, T0)
    score_at(partner, 30, T0)  # same data, same instant: replaced snapshot, no second alert
    scores_recompute(as_of=T0)
    assert Alert.objects.count() == 1
    assert AlertDelivery.objects.count() == 1


def test_drop_alerts_at_most_once_per_trend_days(db, owner):
    score_equals_logins_model(drop_points=15, trend_days=30, alert_threshold=0)
    partner = PartnerFactory(owner=owner)
    a0, a1 = T0, T0 + DAY * 40
    score_at(partner, 90, a0)
    score_at(partner, 70, a1)  # -20 against a0: drop
    score_at(partner, 50, a1 + DAY * 10)  # -40 against a0, but a drop was raised 10 days ago
    score_at(partner, 45, a1 + DAY * 31)  # -25 against a1, and the last drop is 31 days old: drop
    drops = list(Alert.objects.filter(kind="drop").order_by("as_of").values_list("as_of", "trend"))
    assert [d[0] for d in drops] == [a1, a1 + DAY * 31]
    assert drops[0][1] == pytest.approx(-20)


def test_alert_says_why(model, owner):
    partner = PartnerFactory(owner=owner)
    score_at(partner, 80, T0)
    score_at(partner, 20, T0 + DAY * 40)
    alert = Alert.objects.get(kind="threshold")
    assert alert.previous_score == pytest.approx(80) and alert.score == pytest.approx(20) and alert.band == "at_risk"
    assert alert.reasons[0]["kpi"] == "portal_logins"
    assert alert.reasons[0]["raw_before"] == 80 and alert.reasons[0]["raw_after"] == 20


def test_backfill_and_what_if_runs_raise_no_alerts(model, owner):
    partner = PartnerFactory(owner=owner)
    score_at(partner, 10, T0, trigger="backfill")
    score_at(partner, 10, T0 + DAY, model=model)
    assert not Alert.objects.exists()


def test_recipients_owner_subscribers_and_never_nobody(model, owner, channel_admin):
    channel_admin.email = "admin@vendor.example"
    channel_admin.save()
    watcher = UserFactory(username="vp", email="vp@vendor.example")
    AlertPreference.objects.create(user=watcher, mode="digest", digest_hour=8, time_zone="Europe/Paris")
    AlertSubscriber.objects.create(model=model, user=watcher)
    AlertSubscriber.objects.create(model=model, email="channel-ops@vendor.example")
    owned, orphan = PartnerFactory(owner=owner), PartnerFactory(owner=None)
    score_at(owned, 10, T0)
    score_at(orphan, 10, T0)
    to = {(d.alert.partner_id, d.email, d.mode) for d in AlertDelivery.objects.select_related("alert")}
    assert to == {
        (owned.id, "cam@vendor.example", "immediate"),
        (owned.id, "vp@vendor.example", "digest"),
        (owned.id, "channel-ops@vendor.example", "immediate"),
        (orphan.id, "vp@vendor.example", "digest"),
        (orphan.id, "channel-ops@vendor.example", "immediate"),
    }
    AlertSubscriber.objects.all().delete()
    lonely = PartnerFactory(owner=None)
    score_at(lonely, 10, T0 + DAY * 10)
    assert list(AlertDelivery.objects.filter(alert__partner=lonely).values_list("email", flat=True)) == [
        "admin@vendor.example"
    ]


def test_email_content(model, owner, smtp_server):
    partner = PartnerFactory(owner=owner, name="Alpha Resellers", external_id="P-ALPHA")
    score_at(partner, 80, T0)
    score_at(partner, 20, T0 + DAY * 40)  # below 40 (threshold) and -60 in 30 days (drop): two alerts
    assert set(Alert.objects.values_list("kind", flat=True)) == {"threshold", "drop"}
    delivery = AlertDelivery.objects.get(alert__kind="threshold")
    assert alert_delivery_send(delivery_id=delivery.id) is True
    assert smtp_server.subjects() == ["[Partner Health] Alpha Resellers fell below 40 (20.0, At risk)"]
    body = smtp_server.messages[0].content.decode()
    assert "80.0 -> 20.0" in body and "/partners/P-ALPHA/" in body and "portal_logins" in body
    assert "text/html" in body
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_exactly_one_email_when_the_send_runs_20_times_concurrently(smtp_server):
    score_equals_logins_model()
    partner = PartnerFactory(owner=UserFactory(username="cam", email="cam@vendor.example"))
    score_at(partner, 10, T0)
    delivery = AlertDelivery.objects.get()
    results, start = [], threading.Barrier(20)

    def send():
        try:
            start.wait()
            results.append(alert_delivery_send(delivery_id=delivery.id))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1 and len(results) == 20
    assert len(smtp_server.messages) == 1


def test_temporary_smtp_failure_is_retried_and_sends_once(model, owner, smtp_server):
    score_at(PartnerFactory(owner=owner), 10, T0)
    delivery = AlertDelivery.objects.get()
    smtp_server.refuse.append("451 4.3.0 Try again later")
    with pytest.raises(Exception, match="451"):
        alert_delivery_send(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and "451" in delivery.last_error and delivery.attempts == 1
    assert alert_delivery_send(delivery_id=delivery.id) is True
    assert alert_delivery_send(delivery_id=delivery.id) is False  # a further retry sends nothing
    assert len(smtp_server.messages) == 1
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.last_error == "" and delivery.attempts == 2


def test_permanent_smtp_failure_stops_retries(model, owner, smtp_server):
    score_at(PartnerFactory(owner=owner), 10, T0)
    delivery = AlertDelivery.objects.get()
    smtp_server.refuse.append("550 5.1.1 No such user")
    with pytest.raises(PermanentDeliveryError):
        alert_delivery_send(delivery_id=delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "550" in delivery.last_error
    assert alert_delivery_send(delivery_id=delivery.id) is False
    assert smtp_server.messages == []


def test_digest_groups_alerts_per_user_in_their_time_zone(model, smtp_server):
    paris = UserFactory(username="paris", email="paris@vendor.example")
    tokyo = UserFactory(username="tokyo", email="tokyo@vendor.example")
    AlertPreference.objects.create(user=paris, mode="digest", digest_hour=8, time_zone="Europe/Paris")
    AlertPreference.objects.create(user=tokyo, mode="digest", digest_hour=8, time_zone="Asia/Tokyo")
    for name in ("Alpha", "Beta"):
        score_at(PartnerFactory(owner=paris, name=name), 10, T0)
    score_at(PartnerFactory(owner=tokyo, name="Gamma"), 10, T0)
    # 07:00 UTC in January is 08:00 in Paris and 16:00 in Tokyo: only Paris gets its digest.
    assert digests_send(now=datetime.datetime(2026, 1, 6, 7, 0, tzinfo=datetime.UTC)) == {"digests": 1}
    assert smtp_server.subjects() == ["[Partner Health] 2 partner alerts for 06 Jan 2026"]
    body = smtp_server.messages[0].content.decode()
    assert "Alpha" in body and "Beta" in body and "Gamma" not in body
    # The same hour again sends nothing more; 23:00 UTC is 08:00 in Tokyo.
    assert digests_send(now=datetime.datetime(2026, 1, 6, 7, 30, tzinfo=datetime.UTC)) == {"digests": 0}
    assert digests_send(now=datetime.datetime(2026, 1, 6, 23, 0, tzinfo=datetime.UTC)) == {"digests": 1}
    assert smtp_server.subjects()[1] == "[Partner Health] 1 partner alert for 07 Jan 2026"
    assert not AlertDelivery.objects.exclude(status="sent").exists()


def test_send_alerts_command(model, owner, smtp_server):
    score_at(PartnerFactory(owner=owner), 10, T0)
    call_command("send_alerts")
    call_command("send_alerts")
    assert len(smtp_server.messages) == 1


def test_acknowledge_with_follow_up(model, owner, manager):
    score_at(PartnerFactory(owner=owner), 10, T0)
    alert = Alert.objects.get()
    alert_acknowledge(
        alert=alert,
        user=manager,
        note="Called them",
        follow_up={"description": "QBR", "due_on": datetime.date(2026, 2, 1)},
    )
    alert_acknowledge(alert=alert, user=owner, note="second")
    alert.refresh_from_db()
    assert alert.acknowledged_by == manager and alert.acknowledgment_note == "Called them"
    action = ActionItem.objects.get()
    assert alert.follow_up == action and action.owner == manager and action.partner_id == alert.partner_id


def test_alerts_api(api_client_for, model, owner, manager, partner_user_a, partner_a):
    score_at(partner_a, 10, T0)
    score_at(PartnerFactory(owner=owner), 90, T0)
    client = api_client_for(manager)
    listing = client.get("/api/v1/alerts/", {"partner": "P-A", "acknowledged": "false"}).json()
    assert listing["count"] == 1
    alert_id = listing["results"][0]["id"]
    response = client.post(
        f"/api/v1/alerts/{alert_id}/acknowledge/",
        {"note": "on it", "follow_up": {"description": "Enablement plan", "owner": "cam", "due_on": "2026-02-01"}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["acknowledged"] is True and response.json()["acknowledged_by"] == "manager"
    assert ActionItem.objects.get().owner == owner
    assert client.get("/api/v1/alerts/", {"acknowledged": "true"}).json()["count"] == 1
    partner_client = api_client_for(partner_user_a)
    assert partner_client.get(f"/api/v1/alerts/{alert_id}/").status_code == 404
    assert partner_client.post(f"/api/v1/alerts/{alert_id}/acknowledge/", {}, format="json").status_code == 404


def test_chunked_sending_sends_each_once_and_retries_a_failure_alone(model, smtp_server):
    from health.tasks import send_alert_deliveries

    for i in range(3):
        score_at(PartnerFactory(owner=UserFactory(username=f"o{i}", email=f"o{i}@vendor.example")), 10, T0)
    ids = list(AlertDelivery.objects.order_by("id").values_list("id", flat=True))
    smtp_server.refuse.append("451 4.3.0 Try again later")
    assert send_alert_deliveries(ids) == {"sent": 2, "retried": 1, "failed": 0}
    assert send_alert_deliveries(ids) == {"sent": 1, "retried": 0, "failed": 0}  # the retry, and no duplicate
    assert len(smtp_server.messages) == 3
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}
