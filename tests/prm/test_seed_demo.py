"""seed_demo: a whole, believable, deterministic demo program, and its guard against seeding twice."""

import datetime
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from prm.demo import demo_program_create
from prm.models import Activity, ActivityKind, Certification, Contact, Deal, Partner, PartnerMembership, Tier
from prm.roles import ACCOUNT_MANAGER, PARTNER_USER
from tests.factories import PartnerFactory

NOW = datetime.datetime(2026, 11, 20, 15, 30, tzinfo=datetime.UTC)
END = datetime.datetime(2026, 11, 20, tzinfo=datetime.UTC)  # the end of history: today at midnight
SHIPPED_KINDS = {
    "portal_login", "content_view", "email_sent", "email_opened", "event_attended", "campaign_joined",
    "training_assigned", "training_completed", "mdf_allocated", "mdf_claimed", "rebate_accrued",
    "spiff_claimed", "meeting_held", "sentiment_recorded",
}  # fmt: skip

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def fingerprint() -> tuple:
    return (
        sorted(Partner.objects.values_list("external_id", flat=True)),
        dict(Activity.objects.values_list("kind__key").annotate(n=Count("id")).order_by("kind__key")),
        Deal.objects.aggregate(total=Sum("amount"))["total"],
    )


def test_seeds_a_whole_program():
    output = seed("--partners", "20", "--seed", "7")

    assert "Seeded 20 partners" in output
    try:
        from health.services import scores_backfill  # noqa: F401
    except ImportError:
        assert "Health scores computed." not in output
    else:
        # The hook of the scoring stage ran once the data was written.
        assert output.index("Seeded 20 partners") < output.index("Health scores computed.")
    assert Partner.objects.count() == 20
    assert set(Partner.objects.values_list("tier__slug", flat=True)) == {"registered", "silver", "gold", "platinum"}
    assert set(Partner.objects.values_list("type", flat=True)) == {
        "reseller",
        "distributor",
        "msp",
        "referral",
        "alliance",
    }
    assert set(Partner.objects.values_list("region", flat=True)) == {"NA", "EMEA", "APAC", "LATAM"}
    gold = Tier.objects.get(slug="gold")
    platinum = Tier.objects.get(slug="platinum")
    assert platinum.rank > gold.rank
    assert platinum.min_quarterly_revenue > gold.min_quarterly_revenue > 0
    assert platinum.min_health_score > gold.min_health_score
    assert platinum.min_technical_certifications >= gold.min_technical_certifications >= 1

    User = get_user_model()
    managers = User.objects.filter(groups__name=ACCOUNT_MANAGER)
    assert managers.count() == 6
    assert all(manager.is_staff and not manager.has_usable_password() for manager in managers)
    assert Partner.objects.filter(owner__in=managers).count() >= 15
    partner_users = User.objects.filter(groups__name=PARTNER_USER)
    assert partner_users.count() == 2
    assert PartnerMembership.objects.filter(user__in=partner_users).values("partner").distinct().count() == 2
    assert not any(user.is_staff for user in partner_users)

    contacts_per_partner = Contact.objects.values("partner").annotate(n=Count("id"))
    assert len(contacts_per_partner) == 20 and min(row["n"] for row in contacts_per_partner) >= 3

    kinds = set(Activity.objects.values_list("kind__key", flat=True).distinct())
    assert kinds == SHIPPED_KINDS
    history = Activity.objects.order_by("occurred_at").values_list("occurred_at", flat=True)
    assert END - datetime.timedelta(days=366) < history.first() and history.last() < END
    assert Activity.objects.filter(kind__unit=ActivityKind.Unit.COUNT, value__isnull=False).count() == 0
    assert not Activity.objects.filter(kind__unit=ActivityKind.Unit.AMOUNT, value__isnull=True).exists()
    ratings = Activity.objects.filter(kind__key="sentiment_recorded").values_list("value", flat=True)
    assert all(Decimal(0) <= rating <= Decimal(10) for rating in ratings)
    # Daily events are aggregated: quantities above one exist.
    assert Activity.objects.filter(kind__key="portal_login", quantity__gt=1).exists()

    assert set(Deal.objects.values_list("stage", flat=True)) == {"registered", "approved", "rejected", "won", "lost"}
    assert not Deal.objects.filter(stage__in=["won", "lost"], closed_at__isnull=True).exists()
    assert not Deal.objects.filter(stage__in=["registered", "approved", "rejected"], closed_at__isnull=False).exists()
    assert not Deal.objects.filter(closed_at__gt=END).exists()

    today = END.date()
    assert Certification.objects.filter(expires_on__lte=today).exists()
    assert Certification.objects.filter(expires_on__isnull=True).exists()
    assert Certification.objects.filter(
        expires_on__gt=today, expires_on__lte=today + datetime.timedelta(days=60)
    ).exists()
    assert set(Certification.objects.values_list("role", flat=True)) == {"sales", "technical", "delivery"}


def test_same_seed_same_program_and_another_seed_another():
    seed("--partners", "20", "--seed", "7")
    first = fingerprint()
    seed("--partners", "20", "--seed", "7", "--reset")
    assert fingerprint() == first
    seed("--partners", "20", "--seed", "8", "--reset")
    other = fingerprint()
    assert other[0] != first[0]
    assert other[1] != first[1]
    assert other[2] != first[2]


def test_refuses_a_database_with_partners_unless_reset():
    PartnerFactory(external_id="REAL-1")
    with pytest.raises(CommandError, match="already has partners"):
        seed("--partners", "5")
    assert list(Partner.objects.values_list("external_id", flat=True)) == ["REAL-1"]

    seed("--partners", "5", "--reset")
    assert Partner.objects.count() == 5
    assert not Partner.objects.filter(external_id="REAL-1").exists()
    with pytest.raises(CommandError, match="already has partners"):
        seed("--partners", "5")
    assert Partner.objects.count() == 5


def test_reset_removes_partner_users_and_keeps_managers():
    seed("--partners", "10", "--seed", "3")
    User = get_user_model()
    first_partner_users = set(User.objects.filter(groups__name=PARTNER_USER).values_list("username", flat=True))
    seed("--partners", "10", "--seed", "4", "--reset")
    assert not User.objects.filter(username__in=first_partner_users).exists()
    assert User.objects.filter(groups__name=ACCOUNT_MANAGER).count() == 6
    assert User.objects.filter(groups__name=PARTNER_USER).count() == 2


def engagement(partner_ids, since: datetime.datetime, until: datetime.datetime) -> dict[int, int]:
    rows = (
        Activity.objects.filter(
            partner_id__in=partner_ids, kind__category="engagement", occurred_at__gt=since, occurred_at__lte=until
        )
        .values_list("partner_id")
        .annotate(total=Sum("quantity"))
    )
    return dict(rows)


def test_declining_partners_fade_and_recovering_partners_come_back():
    summary = demo_program_create(partners=20, seed=7, now=NOW)
    assert summary.history_end == END
    ids = dict(Partner.objects.values_list("external_id", "id"))
    declining = [ids[external_id] for external_id in summary.declining]
    recovering = [ids[external_id] for external_id in summary.recovering]
    assert len(declining) >= 2 and recovering

    quarter = datetime.timedelta(days=91)
    last = engagement(declining, END - quarter, END)
    before = engagement(declining, END - 2 * quarter, END - quarter)
    for partner_id in declining:
        assert last[partner_id] < 0.8 * before[partner_id]
    # Their pipeline fades too.
    registered_last = Deal.objects.filter(partner_id__in=declining, registered_at__gt=END - quarter).count()
    registered_before = Deal.objects.filter(
        partner_id__in=declining, registered_at__gt=END - 2 * quarter, registered_at__lte=END - quarter
    ).count()
    assert registered_last < registered_before

    last = engagement(recovering, END - quarter, END)
    earlier = engagement(recovering, END - 3 * quarter, END - 2 * quarter)
    for partner_id in recovering:
        assert last[partner_id] > 1.5 * earlier[partner_id]


def test_engagement_in_a_quarter_goes_with_revenue_in_the_next():
    demo_program_create(partners=60, seed=11, now=NOW)
    quarter = datetime.timedelta(days=91)
    engaged = engagement(Partner.objects.values("id"), END - 2 * quarter, END - quarter)
    revenue = dict(
        Deal.objects.filter(stage="won", closed_at__gt=END - quarter, closed_at__lte=END)
        .values_list("partner_id")
        .annotate(total=Sum("amount"))
    )
    ranked = sorted(engaged, key=engaged.get)
    third = len(ranked) // 3
    least, most = ranked[:third], ranked[-third:]
    mean_least = sum(revenue.get(p, 0) for p in least) / len(least)
    mean_most = sum(revenue.get(p, 0) for p in most) / len(most)
    assert mean_most > 2 * mean_least


# PostgreSQL only: SQLite splits every bulk insert into statements of at most 999 parameters.
@pytest.mark.postgres
@pytest.mark.parametrize("partners", [3, 30])
def test_queries_do_not_grow_with_partners(partners, django_assert_max_num_queries):
    with django_assert_max_num_queries(50):
        summary = demo_program_create(partners=partners, seed=5, now=NOW)
    assert Activity.objects.count() == summary.activities > partners * 100
