"""Admin of targets (form, CSV import with confirmation), closed periods, tier changes and reminders."""

import datetime
import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from kpis.models import KpiPeriodSnapshot, KpiTarget, ReviewReminder, TierChange
from kpis.periods import Period
from kpis.services import kpi_period_snapshots_store, tier_change_approve
from tests.factories import PartnerFactory, TierFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged(client, channel_admin):
    client.force_login(channel_admin)
    return client


def _rows(n: int, approver) -> None:
    tiers = [TierFactory(slug="silver", rank=1), TierFactory(slug="gold", rank=2)]
    for index in range(n):
        partner = PartnerFactory(tier=tiers[0], owner=approver)
        KpiTarget.objects.create(kpi="win_rate", period="2026-Q3", partner=partner, value=Decimal("0.5"))
        tier_change_approve(partner=partner, to_tier=tiers[1], user=approver, reason=f"Row {index}")
        ReviewReminder.objects.create(partner=partner, owner=approver, due_since=datetime.date(2026, 10, 1))
    kpi_period_snapshots_store(period=Period.parse("2026-Q3"), now=datetime.datetime(2026, 10, 2, tzinfo=datetime.UTC))


@pytest.mark.parametrize("rows", [3, 30])
@pytest.mark.parametrize("model", ["kpitarget", "kpiperiodsnapshot", "tierchange", "reviewreminder"])
def test_changelists_do_not_query_per_row(
    admin_client_logged, channel_admin, django_assert_max_num_queries, rows, model
):
    _rows(rows, channel_admin)
    # Session, user, groups, permissions, counts, the page; filters by tier or period read their choices.
    with django_assert_max_num_queries(12):
        response = admin_client_logged.get(reverse(f"admin:kpis_{model}_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == rows


def test_target_form_offers_the_catalogue_and_validates(admin_client_logged):
    gold = TierFactory(slug="gold")
    url = reverse("admin:kpis_kpitarget_add")
    page = admin_client_logged.get(url).content.decode()
    assert '<option value="sales_cycle_days">Sales cycle (sales_cycle_days)</option>' in page
    refused = admin_client_logged.post(url, {"kpi": "win_rate", "period": "2026-Q3", "value": "0.5"})
    assert refused.status_code == 200 and "Give a tier or a partner" in refused.content.decode()
    response = admin_client_logged.post(url, {"kpi": "win_rate", "period": "2026-Q3", "tier": gold.pk, "value": "0.5"})
    assert response.status_code == 302
    target = KpiTarget.objects.get()
    assert (target.tier, target.value) == (gold, Decimal("0.5"))
    assert target.history.count() == 1


def test_targets_import_from_the_admin_with_a_preview(admin_client_logged):
    TierFactory(slug="gold")
    url = reverse("admin:kpis_kpitarget_import")
    upload = SimpleUploadedFile("t.csv", b"kpi,period,tier,value\nwin_rate,2026-Q3,gold,0.4\n", "text/csv")
    preview = admin_client_logged.post(url, {"file": upload})
    assert preview.status_code == 200 and not KpiTarget.objects.exists()
    token = re.search(r'name="token" value="([^"]+)"', preview.content.decode()).group(1)
    confirmed = admin_client_logged.post(url, {"token": token, "confirm": "1"})
    assert confirmed.status_code == 302
    assert KpiTarget.objects.get().value == Decimal("0.4")


def test_tier_changes_and_snapshots_are_read_only(admin_client_logged, channel_admin):
    _rows(1, channel_admin)
    change = TierChange.objects.get()
    snapshot = KpiPeriodSnapshot.objects.get()
    assert admin_client_logged.get(reverse("admin:kpis_tierchange_add")).status_code == 403
    assert admin_client_logged.get(reverse("admin:kpis_kpiperiodsnapshot_add")).status_code == 403
    assert admin_client_logged.get(reverse("admin:kpis_tierchange_delete", args=[change.pk])).status_code == 403
    page = admin_client_logged.get(reverse("admin:kpis_tierchange_change", args=[change.pk]))
    assert page.status_code == 200 and "Row 0" in page.content.decode()
    assert (
        admin_client_logged.get(reverse("admin:kpis_kpiperiodsnapshot_change", args=[snapshot.pk])).status_code == 200
    )


def test_managers_read_targets_but_do_not_set_them(client, manager):
    client.force_login(manager)
    assert client.get(reverse("admin:kpis_kpitarget_changelist")).status_code == 200
    assert client.get(reverse("admin:kpis_kpitarget_add")).status_code == 403
    assert client.get(reverse("admin:kpis_kpitarget_import")).status_code == 403
