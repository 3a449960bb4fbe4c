"""The demo program's first calibration report finds its engagement-to-revenue link (seed_demo runs it)."""

import datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from health.models import CalibrationReport

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 12, 1, 6, 0, tzinfo=datetime.UTC)


def test_seed_demo_ends_with_a_report_showing_engagement_predicts_revenue():
    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--partners", "150", "--seed", "42", stdout=out)
    report = CalibrationReport.objects.get(trigger="demo")
    assert report.verdict in out.getvalue()
    results = report.results
    # A year of history: two quarters with a full scoring window before them, one to fit and one to test.
    assert [q["quarter"] for q in results["quarters"]] == ["2026-Q2", "2026-Q3"]
    assert results["score"]["revenue"]["low"] > 0.4
    engagement = {c["kpi"]: c for c in results["components"] if c["category"] == "engagement"}
    clearly_positive = [kpi for kpi, c in engagement.items() if (c["revenue"]["low"] or 0) > 0]
    assert {"events_attended", "email_open_rate"} <= set(clearly_positive)
    assert all(c["revenue"]["rho"] > 0 for c in engagement.values())
    assert results["weights"]["status"] == "fitted" and results["forecast"]["status"] == "fitted"
    assert report.forecasts.exists()
