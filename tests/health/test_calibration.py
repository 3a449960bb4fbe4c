"""Calibration: backtest figures, suggested weights on known drivers and on noise, the as-of guarantee,
too little history, the forecast, the report page and its permissions, applying weights, API scoping, queries."""

from __future__ import annotations

import datetime
import random
import re
from decimal import Decimal
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from health import calibration
from health.calibration import CalibrationOptions, calibration_compute, calibration_report_create
from health.models import CalibrationReport, ScoringComponent, ScoringModel
from health.periodic import PERIODIC_TASKS
from health.services import model_spec
from kpis.registry import kpi_catalogue
from prm.models import Activity, Deal, Partner
from tests.factories import kind

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
AS_OF = datetime.datetime(2026, 10, 2, tzinfo=UTC)
QUARTER_STARTS = [datetime.datetime(y, m, 1, tzinfo=UTC) for y, m in ((2025, 4), (2025, 7), (2025, 10))] + [
    datetime.datetime(2026, m, 1, tzinfo=UTC) for m in (1, 4, 7, 10)
]
DRIVERS = ("portal_logins", "content_views")
NOISE = ("events_attended", "meetings_held")
KINDS = {"portal_logins": "portal_login", "content_views": "content_view", "events_attended": "event_attended"}
KINDS["meetings_held"] = "meeting_held"
FAST = CalibrationOptions(quarters=8, resamples=300)


def synthetic_model(weights: dict[str, float]) -> ScoringModel:
    """A model of four percentile components; inactive so that nothing else scores with it."""
    model = ScoringModel.objects.create(name="Synthetic", is_active=False, window_days=90)
    for kpi, weight in weights.items():
        ScoringComponent.objects.create(model=model, kpi=kpi, weight=Decimal(str(weight)), method="percentile")
    return model


def build_program(
    *,
    partners: int = 120,
    signal: bool = True,
    seed: int = 7,
    starts: list[datetime.datetime] = QUARTER_STARTS,
    prefix: str = "S",
) -> list[Partner]:
    """Partners whose revenue in a quarter is driven by their logins and content views of the quarter before.

    Each quarter, every partner has a random number of each kind of activity on the 21st day; the next
    quarter, one won deal whose amount is 3,000 per login plus 1,500 per view plus noise (signal), or a
    random amount (no signal). Events and meetings never matter.
    """
    rng = random.Random(seed)
    rows = Partner.objects.bulk_create(
        [
            Partner(
                external_id=f"{prefix}-{n:04d}",
                name=f"Synthetic {n}",
                type=Partner.Type.RESELLER,
                joined_on=datetime.date(2024, 1, 1),
                quarterly_revenue_target=Decimal(100000),
            )
            for n in range(partners)
        ]
    )
    kinds = {key: kind(value) for key, value in KINDS.items()}
    activities, deals = [], []
    for partner in rows:
        for j, start in enumerate(starts[:-1]):
            counts = {key: rng.randint(1, 60) for key in KINDS}
            for key, quantity in counts.items():
                activities.append(
                    Activity(
                        partner=partner,
                        kind=kinds[key],
                        occurred_at=start + datetime.timedelta(days=20),
                        quantity=quantity,
                        source="synthetic",
                        external_id=f"{partner.external_id}-{key}-{j}",
                    )
                )
            following = starts[j + 1]
            if following >= starts[-1]:
                continue
            if signal:
                amount = 3000 * counts["portal_logins"] + 1500 * counts["content_views"] + rng.gauss(0, 40000)
            else:
                amount = rng.uniform(0, 250000)
            deals.append(
                Deal(
                    external_id=f"{partner.external_id}-D{j}",
                    partner=partner,
                    name=f"Deal {j}",
                    amount=Decimal(max(100, round(amount))),
                    stage=Deal.Stage.WON,
                    registered_at=following + datetime.timedelta(days=3),
                    closed_at=following + datetime.timedelta(days=40),
                )
            )
    Activity.objects.bulk_create(activities, batch_size=5000)
    Deal.objects.bulk_create(deals, batch_size=5000)
    return rows


# Statistics ----------------------------------------------------------------------------------------


def test_rank_correlation_with_interval_matches_spearman():
    from scipy import stats

    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    y = x + rng.normal(size=400)
    result = calibration.rank_correlations(
        calibration.within_ranks(x), calibration.within_ranks(y), resamples=500, confidence=0.95
    )[0]
    assert result.rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-3)
    assert result.low < result.rho < result.high and result.high - result.low < 0.2
    # No relationship: the interval straddles zero.
    noise = calibration.rank_correlations(
        calibration.within_ranks(x), calibration.within_ranks(rng.normal(size=400)), resamples=500, confidence=0.95
    )[0]
    assert noise.low < 0 < noise.high


def test_quarters_are_calendar_quarters_closed_by_the_instant():
    quarters = calibration.closed_quarters(datetime.datetime(2026, 11, 15, 12, tzinfo=UTC), 3)
    assert [calibration.quarter_label(start) for start, _ in quarters] == ["2026-Q1", "2026-Q2", "2026-Q3"]
    assert quarters[-1][1] == datetime.datetime(2026, 10, 1, tzinfo=UTC)


def test_blend_with_the_model_weights_is_the_score_of_the_scoring_math():
    build_program(partners=30)
    model = ScoringModel.objects.get(name="Standard partner health")  # components with missing data excluded
    features = calibration.features_at(
        model_spec(model),
        as_of=QUARTER_STARTS[3],
        partners=calibration.population_at(model, QUARTER_STARTS[3]),
        catalogue=kpi_catalogue(),
    )
    weights = np.array([float(c.weight) for c in model.components.all()])
    assert np.isnan(features.components).any()  # some components are excluded for some partners
    np.testing.assert_allclose(calibration.blend(features.components, weights), features.score)


# The backtest and the suggested weights ------------------------------------------------------------


def test_known_drivers_are_found_and_the_calibrated_score_predicts_better_out_of_sample():
    build_program()
    # Today's weights favour the two components that do not matter.
    model = synthetic_model({"portal_logins": 1, "content_views": 1, "events_attended": 5, "meetings_held": 5})
    result = calibration_compute(model=model, as_of=AS_OF, options=FAST)
    results = result.results
    assert [q["quarter"] for q in results["quarters"]] == ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"]
    by_kpi = {c["kpi"]: c for c in results["components"]}
    # The drivers correlate with revenue, clearly above zero; the others' intervals straddle zero.
    assert by_kpi["portal_logins"]["revenue"]["low"] > 0.4
    assert by_kpi["content_views"]["revenue"]["low"] > 0.1
    for kpi in NOISE:
        assert by_kpi[kpi]["revenue"]["low"] < 0 < by_kpi[kpi]["revenue"]["high"]

    weights = results["weights"]
    assert weights["status"] == "fitted"
    assert weights["train"] == ["2025-Q4", "2026-Q1", "2026-Q2"] and weights["test"] == ["2026-Q3"]
    assert [row["kpi"] for row in weights["rows"]][:2] == list(DRIVERS)  # true drivers first, strongest first
    suggested = {row["kpi"]: row["suggested"] for row in weights["rows"]}
    assert suggested["portal_logins"] > suggested["content_views"] > max(suggested[k] for k in NOISE)
    assert sum(suggested.values()) == pytest.approx(12, abs=0.01)  # the current total weight, kept
    oos = weights["out_of_sample"]
    assert oos["suggested"]["rho"] > oos["uniform"]["rho"] > oos["current"]["rho"]
    assert weights["difference_uniform"]["low"] > 0
    assert weights["significant"] is True
    assert "significantly better than the current ones" in result.verdict
    assert f"The at-risk band flagged {results['at_risk']['true_positives']} of the {results['at_risk']['fell']}" in (
        result.verdict
    )

    # The score's deciles: the top tenth brought more revenue than the bottom tenth.
    assert len(results["deciles"]) == 10
    assert results["deciles"][-1]["revenue_mean"] > results["deciles"][0]["revenue_mean"]


def test_no_signal_program_says_the_fit_is_not_better():
    build_program(signal=False)
    model = synthetic_model({"portal_logins": 3, "content_views": 3, "events_attended": 3, "meetings_held": 3})
    result = calibration_compute(model=model, as_of=AS_OF, options=FAST)
    weights = result.results["weights"]
    assert weights["significant"] is False
    assert "not significantly better" in result.verdict or "is not better" in result.verdict
    assert "Keep the current weights" in result.verdict or "keep them" in result.verdict
    assert result.results["score"]["revenue"]["low"] < 0 < result.results["score"]["revenue"]["high"]


def test_at_risk_precision_and_recall_of_revenue_falls():
    flagged = np.array([True, True, False, False, True, False])
    before = np.array([100.0, 100.0, 100.0, 100.0, 0.0, 100.0])
    after = np.array([50.0, 90.0, 60.0, 100.0, 0.0, 20.0])
    figures = calibration.fall_prediction(flagged, before, after, fall=0.3)
    # Fell by 30% or more: partners 0, 2 (exactly 40%) and 5; partner 4 had no revenue to lose.
    assert figures == {
        "partners": 5,
        "fell": 3,
        "flagged": 2,
        "true_positives": 1,
        "precision": 0.5,
        "recall": pytest.approx(0.3333),
        "base_rate": 0.6,
    }
    stricter = calibration.fall_prediction(flagged, before, after, fall=0.5)
    assert stricter["fell"] == 2  # the threshold is configurable


def test_data_after_the_instant_changes_nothing():
    partners = build_program(partners=60)
    model = synthetic_model({"portal_logins": 1, "content_views": 1, "events_attended": 5, "meetings_held": 5})
    before = calibration_compute(model=model, as_of=AS_OF, options=FAST)
    later = AS_OF + datetime.timedelta(hours=1)
    # Future activities and deals of existing partners, and a partner that joins later.
    newcomer = Partner.objects.create(
        external_id="S-late", name="Latecomer", type=Partner.Type.RESELLER, joined_on=datetime.date(2026, 11, 1)
    )
    Activity.objects.bulk_create(
        Activity(partner=p, kind=kind("portal_login"), occurred_at=later, quantity=500, source="s", external_id=f"f{i}")
        for i, p in enumerate([*partners, newcomer])
    )
    Deal.objects.bulk_create(
        Deal(
            external_id=f"future-{i}",
            partner=p,
            name="Future",
            amount=Decimal(900000),
            stage=Deal.Stage.WON,
            registered_at=later,
            closed_at=later + datetime.timedelta(days=1),
        )
        for i, p in enumerate(partners)
    )
    after = calibration_compute(model=model, as_of=AS_OF, options=FAST)
    assert after.results == before.results
    assert after.verdict == before.verdict
    assert after.forecasts == before.forecasts
    assert newcomer.pk not in {row[0] for row in after.forecasts}


def test_too_little_history_is_said_plainly():
    # Data from January 2026 only: 2026-Q3 is the one quarter with a full window before it.
    build_program(partners=40, starts=[datetime.datetime(2026, m, 1, tzinfo=UTC) for m in (1, 4, 7, 10)])
    model = synthetic_model({"portal_logins": 1, "content_views": 1})
    report = calibration_report_create(model=model, as_of=AS_OF, options=FAST)
    assert [q["quarter"] for q in report.results["quarters"]] == ["2026-Q3"]
    assert "Too little history to suggest weights or forecast: 1 usable closed quarter(s)" in report.verdict
    assert report.results["weights"] == {"status": "too_little_history"}
    assert not report.forecasts.exists()

    nothing = calibration_report_create(model=model, as_of=datetime.datetime(2026, 3, 1, tzinfo=UTC), options=FAST)
    assert nothing.verdict.startswith("Too little history: no closed quarter")


# The forecast --------------------------------------------------------------------------------------


def test_forecast_is_stored_per_partner_with_an_interval_and_its_holdout_error():
    build_program()
    model = synthetic_model({"portal_logins": 1, "content_views": 1, "events_attended": 1, "meetings_held": 1})
    report = calibration_report_create(model=model, as_of=AS_OF, options=FAST)
    forecast = report.results["forecast"]
    assert forecast["status"] == "fitted" and forecast["holdout"]["quarters"] == ["2026-Q3"]
    # Revenue is driven by the components: the forecast ranks partners well on the held-out quarter, far
    # better than last quarter's revenue (which carries no information here).
    assert forecast["holdout"]["spearman"] > 0.6
    assert forecast["holdout"]["spearman"] > (forecast["holdout"]["naive_spearman"] or 0) + 0.3
    # MAPE is reported (tiny actuals make it large here); the total miss is well under the revenue.
    assert forecast["holdout"]["mape"] > 0
    assert forecast["holdout"]["wape"] < 0.4 < forecast["holdout"]["naive_wape"]
    assert 0.6 <= forecast["holdout"]["coverage"] <= 1
    rows = list(report.forecasts.all())
    assert len(rows) == 120
    assert all(row.low <= row.predicted <= row.high for row in rows)
    # At AS_OF, partners' 2026-Q3 activity predicts 2026-Q4: the busiest have the highest forecasts.
    logins = dict(
        Activity.objects.filter(kind__key="portal_login", occurred_at__gt=QUARTER_STARTS[-2]).values_list(
            "partner_id", "quantity"
        )
    )
    top = sorted(rows, key=lambda r: r.predicted)[-10:]
    bottom = sorted(rows, key=lambda r: r.predicted)[:10]
    assert np.mean([logins[r.partner_id] for r in top]) > np.mean([logins[r.partner_id] for r in bottom])


def test_reading_a_quarter_takes_the_same_queries_for_twice_the_partners():
    model = synthetic_model({"portal_logins": 1, "content_views": 1, "events_attended": 1, "meetings_held": 1})
    spec = model_spec(model)
    catalogue = kpi_catalogue()
    counts = []
    for prefix in ("A", "B"):
        build_program(partners=20, prefix=prefix)
        with CaptureQueriesContext(connection) as queries:
            quarter = calibration.quarter_read(
                model, spec, start=QUARTER_STARTS[4], end=QUARTER_STARTS[5], catalogue=catalogue
            )
        counts.append(len(queries))
    assert len(quarter.revenue) == 40
    assert counts[0] == counts[1]


# The command and the beat task ---------------------------------------------------------------------


def test_calibrate_command_stores_a_report_and_prints_the_verdict():
    build_program(partners=60)
    model = synthetic_model({"portal_logins": 1, "content_views": 1, "events_attended": 5, "meetings_held": 5})
    out = StringIO()
    call_command(
        "calibrate",
        "--model",
        str(model.pk),
        "--quarters",
        "4",
        "--resamples",
        "200",
        "--as-of",
        AS_OF.isoformat(),
        stdout=out,
    )
    report = CalibrationReport.objects.get(model=model)
    assert report.quarters == 4 and report.parameters["resamples"] == 200 and report.trigger == "command"
    assert report.verdict in out.getvalue()
    assert re.search(r"portal_logins\s+rho \+0\.\d\d", out.getvalue())
    with pytest.raises(CommandError, match="no scoring model"):
        call_command("calibrate", "--model", "999999", stdout=StringIO())
    with pytest.raises(CommandError, match="--fall"):
        call_command("calibrate", "--fall", "30", stdout=StringIO())


def test_monthly_beat_task_is_declared_and_calibrates_every_active_model():
    from django_celery_beat.models import PeriodicTask

    from health.tasks import calibrate_models

    spec = PERIODIC_TASKS["Calibrate scoring models against revenue"]
    assert spec["task"] == "health.tasks.calibrate_models" and spec["crontab"]["day_of_month"] == "1"
    call_command("setup_periodic_tasks", stdout=StringIO())
    task = PeriodicTask.objects.get(name="Calibrate scoring models against revenue")
    assert task.crontab.day_of_month == "1" and task.crontab.hour == "4"

    build_program(partners=30)
    outcome = calibrate_models.apply().get()
    active = list(ScoringModel.objects.filter(is_active=True).values_list("pk", flat=True))
    assert (
        sorted(CalibrationReport.objects.filter(pk__in=outcome["reports"]).values_list("model_id", flat=True)) == active
    )


def test_a_saturated_component_keeps_its_weight_and_is_flagged():
    build_program(partners=80)
    model = synthetic_model({"portal_logins": 1, "content_views": 1, "events_attended": 1})
    # Every partner has more than one engagement event: a target of 1 gives everyone full marks.
    ScoringComponent.objects.create(model=model, kpi="activity_intensity", weight=Decimal(4), method="target", target=1)
    result = calibration_compute(model=model, as_of=AS_OF, options=FAST)
    intensity = next(c for c in result.results["components"] if c["kpi"] == "activity_intensity")
    assert intensity["full_marks"] == 1.0 and intensity["saturated"] is True
    rows = {row["kpi"]: row for row in result.results["weights"]["rows"]}
    assert rows["activity_intensity"]["suggested"] == 4 and rows["activity_intensity"]["kept"] is True
    assert sum(row["suggested"] for row in rows.values()) == pytest.approx(7, abs=0.01)
    assert rows["portal_logins"]["suggested"] > rows["events_attended"]["suggested"]
