"""The KPI catalogue (built-in and custom), custom KPI validation and evidence URLs."""

import datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from kpis.models import CustomKpi
from kpis.registry import BUILT_IN_KPIS, CATEGORIES, UNITS, kpi_catalogue, kpi_evidence_url
from kpis.services import custom_kpi_create
from tests.factories import kind

# SCORING.md's catalogue table: key -> (category, better, windowed).
SCORING_MD = {
    "portal_logins": ("engagement", "higher", True),
    "content_views": ("engagement", "higher", True),
    "events_attended": ("engagement", "higher", True),
    "campaigns_joined": ("engagement", "higher", True),
    "email_open_rate": ("engagement", "higher", True),
    "activity_intensity": ("engagement", "higher", True),
    "trainings_completed": ("enablement", "higher", True),
    "training_completion_rate": ("enablement", "higher", True),
    "active_certifications": ("enablement", "higher", False),
    "certification_role_coverage": ("enablement", "higher", False),
    "deals_registered": ("pipeline", "higher", True),
    "open_pipeline": ("pipeline", "higher", False),
    "pipeline_coverage": ("pipeline", "higher", False),
    "win_rate": ("pipeline", "higher", True),
    "partner_sourced_revenue": ("pipeline", "higher", True),
    "average_deal_size": ("pipeline", "higher", True),
    "pipeline_trend": ("pipeline", "higher", True),
    "sales_cycle_days": ("pipeline", "lower", True),
    "mdf_utilization": ("incentive", "higher", True),
    "rebate_accrued": ("incentive", "higher", True),
    "spiff_claims": ("incentive", "higher", True),
    "meetings_held": ("relationship", "higher", True),
    "sentiment": ("relationship", "higher", True),
    "days_since_business_review": ("program", "lower", False),
}
A = datetime.datetime(2026, 10, 1, 0, 0, tzinfo=datetime.UTC)


def test_built_ins_are_exactly_the_scoring_md_table():
    assert len(SCORING_MD) == 24
    assert list(BUILT_IN_KPIS) == list(SCORING_MD)
    for key, kpi in BUILT_IN_KPIS.items():
        assert (kpi.category, kpi.better, kpi.windowed) == SCORING_MD[key], key
        assert kpi.key == key and not kpi.custom
        assert kpi.unit in UNITS and kpi.category in CATEGORIES
        assert kpi.label and kpi.formula is not None
        # One plain sentence.
        assert kpi.description.endswith(".") and kpi.description.count(". ") == 0, key


@pytest.mark.django_db
def test_catalogue_adds_active_custom_kpis_in_one_query():
    custom_kpi_create(
        key="webinar_hosts",
        label="Webinars hosted",
        category="engagement",
        numerator_kind=kind("event_attended"),
        numerator_aggregate="count",
    )
    custom_kpi_create(
        key="avg_rebate",
        label="Average rebate",
        category="incentive",
        numerator_kind=kind("rebate_accrued"),
        numerator_aggregate="avg",
        is_active=False,
    )
    custom_kpi_create(
        key="claim_ratio",
        label="Claim ratio",
        category="incentive",
        numerator_kind=kind("mdf_claimed"),
        numerator_aggregate="sum",
        denominator_kind=kind("mdf_allocated"),
        denominator_aggregate="sum",
        description="MDF claimed per MDF allocated.",
    )
    with CaptureQueriesContext(connection) as queries:
        catalogue = kpi_catalogue()
    assert len(queries) == 1
    assert list(catalogue)[:24] == list(SCORING_MD)
    assert set(catalogue) - set(SCORING_MD) == {"webinar_hosts", "claim_ratio"}  # the inactive one is left out

    webinars = catalogue["webinar_hosts"]
    assert (webinars.custom, webinars.unit, webinars.category, webinars.windowed) == (True, "count", "engagement", True)
    assert webinars.description == "Number of 'Event attended' activities in the window."
    ratio = catalogue["claim_ratio"]
    assert (ratio.unit, ratio.description) == ("ratio", "MDF claimed per MDF allocated.")


@pytest.mark.django_db
def test_custom_kpi_unit_follows_its_kind():
    sentiment = custom_kpi_create(
        key="mood",
        label="Mood",
        category="relationship",
        numerator_kind=kind("sentiment_recorded"),
        numerator_aggregate="latest",
    )
    rebate = custom_kpi_create(
        key="top_rebate",
        label="Top rebate",
        category="incentive",
        numerator_kind=kind("rebate_accrued"),
        numerator_aggregate="max",
    )
    catalogue = kpi_catalogue()
    assert catalogue[sentiment.key].unit == "rating"
    assert catalogue[rebate.key].unit == "amount"


@pytest.mark.django_db
def test_custom_kpi_key_must_not_clash_with_a_built_in():
    with pytest.raises(ValidationError) as exc:
        custom_kpi_create(key="win_rate", label="Mine", category="pipeline", numerator_kind=kind("meeting_held"))
    assert exc.value.message_dict["key"] == ["'win_rate' is a built-in KPI; choose another key."]
    assert not CustomKpi.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "denominator, field",
    [
        ({"denominator_kind": "email_sent"}, "denominator_aggregate"),
        ({"denominator_aggregate": "count"}, "denominator_kind"),
    ],
)
def test_custom_kpi_denominator_needs_kind_and_aggregate(denominator, field):
    if "denominator_kind" in denominator:
        denominator = {"denominator_kind": kind(denominator["denominator_kind"])}
    with pytest.raises(ValidationError) as exc:
        custom_kpi_create(
            key="half", label="Half", category="engagement", numerator_kind=kind("email_opened"), **denominator
        )
    assert exc.value.message_dict[field] == ["Give both the denominator kind and its aggregate, or neither."]


@pytest.mark.django_db
def test_database_refuses_half_a_denominator():
    with pytest.raises(IntegrityError), transaction.atomic():
        CustomKpi.objects.create(
            key="half",
            label="Half",
            category="engagement",
            numerator_kind=kind("email_opened"),
            denominator_kind=kind("email_sent"),
        )


@pytest.mark.django_db
def test_custom_kpi_changes_are_in_its_history():
    custom = custom_kpi_create(key="mood", label="Mood", category="relationship", numerator_kind=kind("meeting_held"))
    custom.label = "Meetings"
    custom.save()
    assert [h.label for h in custom.history.order_by("history_id")] == ["Mood", "Meetings"]


# Evidence ------------------------------------------------------------------------------------------


def _query(url: str) -> tuple[str, dict]:
    parts = urlsplit(url)
    return parts.path, dict(parse_qsl(parts.query))


def test_evidence_of_an_activity_count_is_its_kind_in_the_window():
    url = kpi_evidence_url("portal_logins", partner_external_id="P-7", as_of=A, window_days=90)
    assert url == (
        "/api/v1/activities/?partner=P-7&kind=portal_login&since=2026-07-03T00:00:00Z&until=2026-10-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    "key, path, params",
    [
        ("email_open_rate", "/api/v1/activities/", {"kind": "email_opened,email_sent"}),
        ("activity_intensity", "/api/v1/activities/", {"category": "engagement"}),
        ("mdf_utilization", "/api/v1/activities/", {"kind": "mdf_claimed,mdf_allocated"}),
        ("sentiment", "/api/v1/activities/", {"kind": "sentiment_recorded"}),
        (
            "deals_registered",
            "/api/v1/deals/",
            {"registered_after": "2026-07-03T00:00:00Z", "registered_before": "2026-10-01T00:00:00Z"},
        ),
        ("open_pipeline", "/api/v1/deals/", {"open_at": "2026-10-01T00:00:00Z"}),
        ("pipeline_coverage", "/api/v1/deals/", {"open_at": "2026-10-01T00:00:00Z"}),
        (
            "win_rate",
            "/api/v1/deals/",
            {"stage": "won,lost", "closed_after": "2026-07-03T00:00:00Z", "closed_before": "2026-10-01T00:00:00Z"},
        ),
        (
            "sales_cycle_days",
            "/api/v1/deals/",
            {"stage": "won", "closed_after": "2026-07-03T00:00:00Z", "closed_before": "2026-10-01T00:00:00Z"},
        ),
        (
            "pipeline_trend",
            "/api/v1/deals/",
            {
                "stage": "registered,approved,won,lost",
                "registered_after": "2026-04-04T00:00:00Z",
                "registered_before": "2026-10-01T00:00:00Z",
            },
        ),
        ("active_certifications", "/api/v1/certifications/", {"active_on": "2026-10-01"}),
        ("certification_role_coverage", "/api/v1/certifications/", {"active_on": "2026-10-01"}),
        ("days_since_business_review", "/api/v1/reviews/", {"held_before": "2026-10-01"}),
    ],
)
def test_evidence_urls(key, path, params):
    url = kpi_evidence_url(key, partner_external_id="P-7", as_of=A, window_days=90)
    got_path, got_params = _query(url)
    assert got_path == path
    assert got_params.pop("partner") == "P-7"
    if path == "/api/v1/activities/":
        assert got_params.pop("since") == "2026-07-03T00:00:00Z"
        assert got_params.pop("until") == "2026-10-01T00:00:00Z"
    assert got_params == params


def test_every_built_in_has_evidence():
    for key in BUILT_IN_KPIS:
        url = kpi_evidence_url(key, partner_external_id="P-7", as_of=A, window_days=30)
        assert url and url.startswith("/api/v1/") and "partner=P-7" in url, key


def test_evidence_dates_are_in_the_project_time_zone():
    late_evening_in_new_york = datetime.datetime(2026, 10, 1, 3, 0, tzinfo=datetime.UTC)
    with override_settings(TIME_ZONE="America/New_York"):
        url = kpi_evidence_url(
            "active_certifications", partner_external_id="P-7", as_of=late_evening_in_new_york, window_days=90
        )
    assert _query(url)[1]["active_on"] == "2026-09-30"


def test_evidence_times_are_utc_and_encoded():
    as_of = datetime.datetime(2026, 10, 1, 2, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    url = kpi_evidence_url("meetings_held", partner_external_id="P.7_x", as_of=as_of, window_days=1)
    assert url.endswith("?partner=P.7_x&kind=meeting_held&since=2026-09-30T00:00:00Z&until=2026-10-01T00:00:00Z")


@pytest.mark.django_db
def test_evidence_of_a_custom_kpi_lists_its_kinds():
    custom_kpi_create(
        key="claim_ratio",
        label="Claim ratio",
        category="incentive",
        numerator_kind=kind("spiff_claimed"),
        numerator_aggregate="sum",
        denominator_kind=kind("rebate_accrued"),
        denominator_aggregate="sum",
    )
    url = kpi_evidence_url("claim_ratio", partner_external_id="P-7", as_of=A, window_days=90)
    assert _query(url) == (
        "/api/v1/activities/",
        {
            "partner": "P-7",
            "kind": "spiff_claimed,rebate_accrued",
            "since": "2026-07-03T00:00:00Z",
            "until": "2026-10-01T00:00:00Z",
        },
    )
    # With the catalogue at hand, no query per URL.
    catalogue = kpi_catalogue()
    with CaptureQueriesContext(connection) as queries:
        again = kpi_evidence_url("claim_ratio", partner_external_id="P-7", as_of=A, window_days=90, catalogue=catalogue)
    assert again == url and len(queries) == 0


@pytest.mark.django_db
def test_evidence_of_an_unknown_kpi_is_none():
    assert kpi_evidence_url("nope", partner_external_id="P-7", as_of=A, window_days=90) is None
