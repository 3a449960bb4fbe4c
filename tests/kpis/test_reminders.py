"""Business-review reminders by email (a real SMTP server), the beat tasks and their declarations, overdue actions."""

import datetime
import email

import pytest
import time_machine

from kpis.models import ActionItem, KpiPeriodSnapshot, ReviewReminder
from kpis.periodic import PERIODIC_TASKS
from kpis.reminders import review_reminders_queue, review_reminders_send
from kpis.selectors import overdue_action_items
from kpis.services import review_create
from kpis.tasks import send_review_reminders, snapshot_kpi_periods
from prm.models import Partner
from tests.factories import PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
NOW = datetime.datetime(2026, 10, 15, 7, 0, tzinfo=UTC)
TODAY = NOW.date()


@pytest.fixture
def owners(manager):
    other = UserFactory(username="olga", first_name="Olga", is_staff=True)
    reviewed_long_ago = PartnerFactory(external_id="OLD", name="Old Review Ltd", owner=manager)
    review_create(partner=reviewed_long_ago, period="2026-Q2", held_on=TODAY - datetime.timedelta(days=120))
    never = PartnerFactory(
        external_id="NEVER", name="Never Reviewed", owner=manager, joined_on=datetime.date(2025, 1, 1)
    )
    fresh = PartnerFactory(external_id="FRESH", owner=manager)
    review_create(partner=fresh, period="2026-Q3", held_on=TODAY - datetime.timedelta(days=10))
    olgas = PartnerFactory(
        external_id="OLGA-1", name="Olga's Partner", owner=other, joined_on=datetime.date(2025, 3, 1)
    )
    PartnerFactory(external_id="GONE", owner=manager, status=Partner.Status.EXITED, joined_on=datetime.date(2020, 1, 1))
    PartnerFactory(external_id="NOBODY", owner=None, joined_on=datetime.date(2020, 1, 1))
    return {"old": reviewed_long_ago, "never": never, "fresh": fresh, "olga": olgas, "other": other}


def _messages(smtp_server):
    return {message.rcpt_tos[0]: email.message_from_bytes(message.content) for message in smtp_server.messages}


def _text(message) -> str:
    return (
        next(part for part in message.walk() if part.get_content_type() == "text/plain")
        .get_payload(decode=True)
        .decode()
    )


def test_owners_get_one_email_listing_their_overdue_partners(smtp_server, owners, manager):
    with time_machine.travel(NOW, tick=False):
        result = send_review_reminders()
    assert result == {"queued": 3, "sent": 2, "failed": 0}
    received = _messages(smtp_server)
    assert set(received) == {"manager@vendor.example", "olga@vendor.example"}
    mine = received["manager@vendor.example"]
    assert mine["Subject"] == "[Partner Health] Business reviews due for 2 partners"
    body = _text(mine)
    assert "- Never Reviewed (NEVER): never reviewed" in body
    assert "- Old Review Ltd (OLD): last review 17 June 2026, 120 days ago" in body
    assert "http://127.0.0.1:8000/partners/OLD/review/" in body
    assert "FRESH" not in body and "GONE" not in body
    html = next(part for part in mine.walk() if part.get_content_type() == "text/html").get_payload(decode=True)
    assert b'<a href="http://127.0.0.1:8000/partners/NEVER/review/">Never Reviewed</a>' in html
    assert received["olga@vendor.example"]["Subject"] == "[Partner Health] Business review due: Olga's Partner"
    assert set(ReviewReminder.objects.values_list("status", flat=True)) == {"sent"}


def test_a_stretch_is_reminded_once_and_a_new_review_starts_a_new_one(smtp_server, owners, manager):
    with time_machine.travel(NOW, tick=False):
        send_review_reminders()
    with time_machine.travel(NOW + datetime.timedelta(days=1), tick=False):
        assert send_review_reminders() == {"queued": 0, "sent": 0, "failed": 0}
    assert len(smtp_server.messages) == 2
    # A review is held, then time passes beyond the threshold again: a new stretch, a new reminder.
    review_create(partner=owners["old"], period="2026-Q3", held_on=TODAY)
    later = NOW + datetime.timedelta(days=101)
    with time_machine.travel(later, tick=False):
        assert review_reminders_queue() >= 1
    due = ReviewReminder.objects.filter(partner=owners["old"]).order_by("due_since")
    assert [r.due_since for r in due] == [TODAY - datetime.timedelta(days=20), TODAY + datetime.timedelta(days=100)]


def test_the_threshold_is_a_setting(settings, smtp_server, owners):
    settings.KPI_REVIEW_REMINDER_DAYS = 5
    with time_machine.travel(NOW, tick=False):
        review_reminders_queue()
    assert ReviewReminder.objects.filter(partner=owners["fresh"]).exists()


def test_a_temporary_failure_is_retried_and_recorded(smtp_server, owners):
    smtp_server.refuse = ["451 Try again later", "451 Try again later"]
    with time_machine.travel(NOW, tick=False):
        first = send_review_reminders()
    assert first == {"queued": 3, "sent": 0, "failed": 2}
    pending = ReviewReminder.objects.get(partner=owners["olga"])
    assert (pending.status, pending.claim, pending.attempts) == ("pending", "", 1)
    assert "451" in pending.last_error
    with time_machine.travel(NOW + datetime.timedelta(hours=1), tick=False):
        assert review_reminders_send() == {"sent": 2, "failed": 0}
    assert len(smtp_server.messages) == 2
    assert set(ReviewReminder.objects.values_list("status", flat=True)) == {"sent"}


def test_a_permanent_refusal_stops_retries(smtp_server, owners):
    smtp_server.refuse = ["550 No such user", "550 No such user"]
    with time_machine.travel(NOW, tick=False):
        send_review_reminders()
        assert review_reminders_send() == {"sent": 0, "failed": 0}
    assert set(ReviewReminder.objects.values_list("status", flat=True)) == {"failed"}
    assert not smtp_server.messages


def test_a_claimed_reminder_is_not_sent_twice(smtp_server, owners):
    with time_machine.travel(NOW, tick=False):
        review_reminders_queue()
        # Another sender claimed Olga's reminder a minute ago and is still sending it.
        ReviewReminder.objects.filter(partner=owners["olga"]).update(
            claim="someone-else", claimed_at=NOW - datetime.timedelta(minutes=1)
        )
        assert review_reminders_send() == {"sent": 1, "failed": 0}
    assert list(_messages(smtp_server)) == ["manager@vendor.example"]


@pytest.mark.parametrize("partners", [3, 30])
def test_queueing_takes_constant_queries(owners, manager, partners, django_assert_max_num_queries):
    for _ in range(partners):
        PartnerFactory(owner=manager, joined_on=datetime.date(2024, 1, 1))
    with time_machine.travel(NOW, tick=False), django_assert_max_num_queries(3):
        assert review_reminders_queue() == 3 + partners


# Beat --------------------------------------------------------------------------------------------


def test_periodic_tasks_are_declared_and_installed_with_health_s():
    from health.periodic import PERIODIC_TASKS as HEALTH_TASKS

    assert set(PERIODIC_TASKS) == {"Store KPI values of closed periods", "Remind owners of overdue business reviews"}
    for name, spec in PERIODIC_TASKS.items():
        assert set(spec) == {"task", "crontab", "expire_seconds", "kwargs"} and HEALTH_TASKS[name] == spec
        module, task = spec["task"].rsplit(".", 1)
        assert module == "kpis.tasks" and getattr(__import__(module, fromlist=[task]), task).name == spec["task"]
        assert 0 < spec["expire_seconds"] < 24 * 3600


def test_snapshot_task_stores_the_latest_closed_periods():
    PartnerFactory()
    with time_machine.travel(NOW, tick=False):
        assert snapshot_kpi_periods() == {"stored": {"2026-Q3": 1, "2026-09": 1}}
        assert snapshot_kpi_periods() == {"stored": {"2026-Q3": 0, "2026-09": 0}}
    assert KpiPeriodSnapshot.objects.count() == 2


# Overdue actions (the account manager's Today page) -------------------------------------------------


def test_overdue_action_items_are_scoped_and_can_be_the_owner_s(manager, partner_a, partner_b, partner_user_a):
    late = ActionItem.objects.create(
        partner=partner_a, description="Late", owner=manager, due_on=TODAY - datetime.timedelta(days=1)
    )
    ActionItem.objects.create(partner=partner_a, description="Due today", owner=manager, due_on=TODAY)
    ActionItem.objects.create(
        partner=partner_a,
        description="Done late",
        owner=manager,
        due_on=TODAY - datetime.timedelta(days=9),
        status=ActionItem.Status.DONE,
        completed_at=NOW,
    )
    others = ActionItem.objects.create(partner=partner_b, description="B's", due_on=TODAY - datetime.timedelta(days=2))
    assert list(overdue_action_items(user=manager, today=TODAY)) == [others, late]
    assert list(overdue_action_items(user=manager, today=TODAY, owned_by=manager)) == [late]
    assert list(overdue_action_items(user=partner_user_a, today=TODAY)) == [late]
