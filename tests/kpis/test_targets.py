"""KPI targets: precedence (partner over tier), attainment with direction and edge cases, CSV import."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from kpis.models import KpiTarget
from kpis.periods import Period
from kpis.targets import Target, attainment, attainment_class, target_met, targets_for
from prm.importing import ImportInvalid, import_csv
from tests.factories import PartnerFactory, TierFactory

Q3 = Period.parse("2026-Q3")


# Attainment ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, target, better, expected",
    [
        (80, 100, "higher", 0.8),
        (120, 100, "higher", 1.2),
        (0, 100, "higher", 0.0),
        (-20, 100, "higher", -0.2),  # a shrinking pipeline trend against a growth target
        (5, 0, "higher", None),  # a zero target: any value meets it, the ratio says nothing
        (5, -1, "higher", None),
        (None, 100, "higher", None),
        (80, None, "higher", None),
        # Lower is better: target / value.
        (60, 45, "lower", 0.75),  # 60 days of sales cycle against 45: three quarters of the way
        (30, 45, "lower", 1.5),
        (45, 45, "lower", 1.0),
        (0, 45, "lower", None),  # nothing to divide by: better than any target, `met` says so
        (10, 0, "lower", 0.0),
        (10, -5, "lower", None),
        (None, 45, "lower", None),
    ],
)
def test_attainment(value, target, better, expected):
    result = attainment(value, target, better)
    assert result == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    "value, target, better, expected",
    [
        (100, 100, "higher", True),
        (99, 100, "higher", False),
        (5, 0, "higher", True),
        (45, 45, "lower", True),
        (46, 45, "lower", False),
        (0, 45, "lower", True),
        (None, 45, "lower", None),
        (5, None, "higher", None),
    ],
)
def test_target_met(value, target, better, expected):
    assert target_met(value, target, better) is expected


def test_attainment_classes():
    assert attainment_class(1.1, True) == "att-met"
    assert attainment_class(0.95, False) == "att-near"
    assert attainment_class(0.5, False) == "att-below"
    assert attainment_class(None, False) == "att-below"  # e.g. a lower-is-better KPI at a negative target
    assert attainment_class(None, None) == "att-none"


# Precedence --------------------------------------------------------------------------------------


@pytest.fixture
def gold(db):
    return TierFactory(slug="gold", name="Gold", rank=3)


def _target(kpi, value, *, tier=None, partner=None, period="2026-Q3"):
    return KpiTarget.objects.create(kpi=kpi, period=period, tier=tier, partner=partner, value=Decimal(value))


def test_partner_target_overrides_the_tier_default(gold, django_assert_num_queries):
    own = PartnerFactory(tier=gold)
    plain = PartnerFactory(tier=gold)
    untiered = PartnerFactory(tier=None)
    _target("win_rate", "0.4", tier=gold)
    _target("deals_registered", "10", tier=gold)
    _target("win_rate", "0.6", partner=own)
    _target("win_rate", "0.9", partner=own, period="2026-Q2")  # another period: ignored
    _target("sentiment", "8", partner=untiered)
    tiers = {p.pk: p.tier_id for p in (own, plain, untiered)}
    with django_assert_num_queries(1):
        found = targets_for(period=Q3, keys=["win_rate", "deals_registered", "sentiment"], partner_tiers=tiers)
    assert found[own.pk] == {"win_rate": Target(0.6, "partner"), "deals_registered": Target(10.0, "tier")}
    assert found[plain.pk] == {"win_rate": Target(0.4, "tier"), "deals_registered": Target(10.0, "tier")}
    assert found[untiered.pk] == {"sentiment": Target(8.0, "partner")}


def test_targets_for_a_queryset_of_partners(gold):
    from prm.models import Partner

    partners = [PartnerFactory(tier=gold) for _ in range(3)]
    _target("win_rate", "0.5", tier=gold)
    tiers = dict(Partner.objects.values_list("pk", "tier_id"))
    found = targets_for(period="2026-Q3", keys=["win_rate"], partner_tiers=tiers, partners=Partner.objects.all())
    assert {found[p.pk]["win_rate"].value for p in partners} == {0.5}


def test_a_target_names_a_tier_or_a_partner_never_both(gold):
    partner = PartnerFactory(tier=gold)
    with pytest.raises(ValidationError) as both:
        KpiTarget(kpi="win_rate", period="2026-Q3", tier=gold, partner=partner, value=1).full_clean()
    assert "partner" in both.value.message_dict
    with pytest.raises(ValidationError) as unknown:
        KpiTarget(kpi="vibes", period="2026-Q5", tier=gold, value=1).full_clean()
    assert set(unknown.value.message_dict) == {"kpi", "period"}
    with pytest.raises(IntegrityError), transaction.atomic():
        KpiTarget.objects.create(kpi="win_rate", period="2026-Q3", value=1)


def test_one_target_per_kpi_period_and_tier_or_partner(gold):
    partner = PartnerFactory()
    _target("win_rate", "0.4", tier=gold)
    _target("win_rate", "0.4", partner=partner)
    _target("win_rate", "0.4", tier=gold, period="2026-07")  # a month is another period
    with pytest.raises(IntegrityError), transaction.atomic():
        _target("win_rate", "0.5", tier=gold)
    with pytest.raises(IntegrityError), transaction.atomic():
        _target("win_rate", "0.5", partner=partner)


# CSV import --------------------------------------------------------------------------------------


CSV_OK = (
    "kpi,period,tier,partner,value\n"
    "win_rate,2026-Q3,gold,,0.4\n"
    "win_rate,2026-Q3,,P-1,0.55\n"
    "sales_cycle_days,2026-07,gold,,45\n"
)


def test_import_targets_command_writes_and_then_updates(gold, tmp_path):
    partner = PartnerFactory(external_id="P-1")
    path = tmp_path / "targets.csv"
    path.write_text(CSV_OK)
    out = StringIO()
    call_command("import_targets", str(path), stdout=out)
    assert "targets: 3 rows read; created 3, updated 0, unchanged 0" in out.getvalue()
    assert KpiTarget.objects.get(kpi="win_rate", partner=partner).value == Decimal("0.55")
    assert KpiTarget.objects.get(kpi="sales_cycle_days", tier=gold).period == "2026-07"
    # Again with one value changed: an update, the rest unchanged; each change is in the history.
    path.write_text(CSV_OK.replace("0.55", "0.6"))
    out = StringIO()
    call_command("import_targets", str(path), stdout=out)
    assert "created 0, updated 1, unchanged 2" in out.getvalue()
    target = KpiTarget.objects.get(kpi="win_rate", partner=partner)
    assert target.value == Decimal("0.6")
    assert [h.value for h in target.history.order_by("history_date")] == [Decimal("0.55"), Decimal("0.6")]


def test_a_bad_file_writes_nothing_and_reports_every_line(gold, tmp_path):
    PartnerFactory(external_id="P-1")
    path = tmp_path / "targets.csv"
    path.write_text(
        "kpi,period,tier,partner,value\n"
        "win_rate,2026-Q3,gold,,0.4\n"
        "vibes,2026-Q3,gold,,1\n"
        "win_rate,2026-Q9,gold,,1\n"
        "win_rate,2026-Q4,gold,P-1,1\n"
        "win_rate,2026-Q4,silver,,1\n"
        "win_rate,2026-Q4,,P-404,1\n"
        "win_rate,2026-Q4,,P-1,lots\n"
        "win_rate,2026-Q3,gold,,0.5\n"
    )
    err = StringIO()
    with pytest.raises(CommandError, match="7 error"):
        call_command("import_targets", str(path), stderr=err)
    assert err.getvalue().splitlines() == [
        "line 3, column kpi: Unknown KPI 'vibes'.",
        "line 4, column period: Use a year and quarter (2026-Q3) or a year and month (2026-07).",
        "line 5, column partner: Give a tier or a partner, not both and not neither.",
        "line 6, column tier: Unknown tier 'silver'.",
        "line 7, column partner: Unknown partner 'P-404'.",
        "line 8, column value: A valid number is required.",
        "line 9, column partner: Same kpi, period, tier, partner as line 2 (win_rate, 2026-Q3, gold, None).",
    ]
    assert not KpiTarget.objects.exists()


def test_import_is_scoped_like_every_import(gold):
    PartnerFactory(external_id="P-1")
    from prm.models import Partner

    with pytest.raises(ImportInvalid) as refused:
        import_csv(
            "targets",
            b"kpi,period,tier,partner,value\nwin_rate,2026-Q3,,P-1,0.5\n",
            partners_queryset=Partner.objects.none(),
        )
    assert [str(error) for error in refused.value.errors] == ["line 2, column partner: Unknown partner 'P-1'."]


def test_dry_run_counts_without_writing(gold):
    result = import_csv("targets", b"kpi,period,tier,value\nwin_rate,2026-Q3,gold,0.5\n", dry_run=True)
    assert result.counts == {"created": 1, "updated": 0, "unchanged": 0} and not KpiTarget.objects.exists()


def test_targets_of_a_custom_kpi_import(gold):
    from kpis.services import custom_kpi_create
    from tests.factories import kind

    custom_kpi_create(key="webinars", label="Webinars", category="engagement", numerator_kind=kind("event_attended"))
    import_csv("targets", b"kpi,period,tier,value\nwebinars,2026-Q3,gold,4\n")
    assert KpiTarget.objects.get().kpi == "webinars"
