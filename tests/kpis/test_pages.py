"""KPI pages: the business-review summary (content, print, PDF), the portfolio comparison (sort, colouring,
CSV), the partner KPI table, the tier review with its approval; scoping and query counts."""

import csv
import datetime
import io
import re
import zlib
from decimal import Decimal

import pytest
import time_machine
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.urls import reverse

from kpis.models import KpiTarget, TierChange
from kpis.periods import Period
from kpis.summary import review_summary
from prm.models import Partner
from tests.factories import PartnerFactory, TierFactory, UserFactory
from tests.kpis import program
from tests.kpis.support import activity, deal

pytestmark = pytest.mark.django_db

NOW = program.NOW


@pytest.fixture
def alpha(partner_a, manager):
    return {"partner": partner_a, **program.build(partner_a, manager)}


@pytest.fixture
def staff(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def travel():
    with time_machine.travel(NOW, tick=False):
        yield


# The review summary ----------------------------------------------------------------------------


def test_summary_content_on_the_fixture_program(alpha, travel):
    partner = Partner.objects.select_related("tier", "owner").get(pk=alpha["partner"].pk)
    summary = review_summary(partner=partner, period=program.Q3)
    lines = {line.kpi.key: line for line in summary.table.lines}
    assert (lines["deals_registered"].value, lines["deals_registered"].previous) == (4, 1)
    assert lines["win_rate"].value == 0.5 and lines["win_rate"].attainment == pytest.approx(1.25)
    assert (lines["sales_cycle_days"].target.value, lines["sales_cycle_days"].target.source) == (45, "partner")
    assert lines["sales_cycle_days"].attainment == pytest.approx(0.75)
    # Ranked: best attainment first above, worst first below.
    assert [line.kpi.key for line in summary.above] == ["trainings_completed", "win_rate"]
    assert [line.kpi.key for line in summary.below] == ["deals_registered", "sales_cycle_days"]
    assert [(r.role, r.actual, r.required, r.met) for r in summary.roles] == [
        ("sales", 1, 1, True),
        ("technical", 1, 2, False),
        ("delivery", 0, 0, True),
    ]
    assert [line.kpi.key for line in summary.enablement] == [
        "trainings_completed",
        "training_completion_rate",
        "active_certifications",
    ]
    coverage = summary.coverage
    assert (coverage.quarterly_target, coverage.open_pipeline, coverage.coverage) == (100000, 150000, 1.5)
    assert (coverage.revenue, coverage.revenue_attainment, coverage.tier_minimum) == (30000, 0.3, 50000)
    assert [score for _, score in summary.health.points] == [52.0, 55.0, 58.0, 61.0, 64.0]
    assert summary.health.score == 64.0 and summary.health.chart["points"].count(",") == 5
    assert [c["kpi"] for c in summary.health.components] == ["pipeline_coverage", "deals_registered", "sentiment"]
    assert summary.previous_review == alpha["previous_review"]
    follow = {f.item.kpi: f for f in summary.follow_ups}
    assert (follow["deals_registered"].then, follow["deals_registered"].now) == (1, 4)
    assert (follow["deals_registered"].moved, follow["deals_registered"].target_reached) == ("improving", True)
    assert (follow["trainings_completed"].then, follow["trainings_completed"].now) == (1, 3)
    assert follow["trainings_completed"].target_reached is False
    assert summary.draft


def test_draft_page_shows_every_section(staff, alpha, travel):
    response = staff.get(reverse("review-draft", args=["P-A"]))
    assert response.status_code == 200
    page = response.content.decode()
    for section in ("summary-kpis", "above", "below", "enablement", "pipeline", "health", "actions"):
        assert f'id="{section}"' in page
    assert "Alpha Resellers" in page and "Q3 2026" in page and "Draft" in page
    assert '<tr data-kpi="sales_cycle_days">' in page
    assert 'class="num att-below">75%</td>' in page  # sales cycle: 45 / 60
    assert '<polyline class="line" points="' in page
    assert "Register every opportunity" in page and "target reached" in page
    assert 'id="coverage">1.50× the target' in page
    assert 'href="/partners/P-A/review.pdf?period=2026-Q3"' in page
    # Print styles come with the page (no inline style: the CSP forbids them) and hide the site's chrome.
    assert "kpis/kpis.css" in page and "style=" not in page and "<script" not in page
    stylesheet = open(finders.find("kpis/kpis.css")).read()
    print_rules = stylesheet[stylesheet.index("@media print") :]
    assert ".topbar, .footer, .no-print" in print_rules and "@page { size: A4" in stylesheet


def test_a_recorded_review_has_its_notes_and_the_review_before_it(staff, alpha, partner_a, manager, travel):
    from kpis.services import review_create

    review = review_create(
        partner=partner_a,
        period="2026-Q3",
        held_on=datetime.date(2026, 10, 5),
        attendees="Alice, Bob",
        notes="Agreed a joint campaign.",
        created_by=manager,
    )
    page = staff.get(reverse("review-summary", args=[review.pk])).content.decode()
    assert "Agreed a joint campaign." in page and "Alice, Bob" in page and "Draft" not in page
    assert "Register every opportunity" in page  # the previous review's actions


def test_pdf_is_generated_with_the_partner_name(staff, alpha, travel):
    response = staff.get(reverse("review-draft-pdf", args=["P-A"]), {"period": "2026-Q3"})
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="review-P-A-2026-Q3.pdf"'
    pdf = response.content
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5000
    # The document's title (its metadata, in a compressed object stream) names the partner and the period.
    assert "Alpha Resellers — business review Q3 2026" in _pdf_titles(pdf)


def _pdf_titles(pdf: bytes) -> list[str]:
    """The /Title strings of a PDF, read from its (possibly compressed) objects without a PDF library."""
    titles = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            data = zlib.decompress(match.group(1))
        except zlib.error:
            continue
        for hex_title in re.findall(rb"/Title\s*<([0-9a-fA-F]+)>", data):
            titles.append(bytes.fromhex(hex_title.decode()).decode("utf-16"))
        titles += [text.decode("latin-1") for text in re.findall(rb"/Title\s*\(([^)]*)\)", data)]
    return titles


def test_pdf_document_names_the_partner(alpha, travel, rf, manager):
    from weasyprint import HTML

    from kpis.pdf import pdf_from_template
    from kpis.views import _summary_context

    partner = Partner.objects.select_related("tier", "owner").get(pk=alpha["partner"].pk)
    summary = review_summary(partner=partner, period=program.Q3)
    request = rf.get("/")
    request.user = manager
    html_text = render_to_string("kpis/review_summary_pdf.html", _summary_context(request, summary), request=request)
    document = HTML(string=html_text).render()
    assert document.metadata.title == "Alpha Resellers — business review Q3 2026"
    assert len(document.pages) >= 1
    assert pdf_from_template("kpis/review_summary_pdf.html", _summary_context(request, summary)).startswith(b"%PDF")


def test_summary_pages_are_staff_only_and_scoped(client, alpha, partner_user_a, travel):
    client.force_login(partner_user_a)
    assert client.get(reverse("review-draft", args=["P-A"])).status_code == 404
    assert client.get(reverse("review-summary", args=[alpha["previous_review"].pk])).status_code == 404
    assert client.get(reverse("review-draft-pdf", args=["P-A"])).status_code == 404
    client.logout()
    assert client.get(reverse("review-draft", args=["P-A"])).status_code == 302  # to sign in


def test_summary_queries_do_not_grow_with_the_partner_data(
    staff, alpha, partner_a, django_assert_max_num_queries, travel
):
    def more(n):
        for index in range(n):
            activity(partner_a, "portal_login", program.Q3.start + datetime.timedelta(days=index))
            deal(partner_a, amount=1000, registered_at=program.Q3.start + datetime.timedelta(days=index))

    # Session and user, the partner, the KPI table (two periods of the registry's tables, targets),
    # certifications by role, reviews with their items, health snapshots; the same with ten times the data.
    more(2)
    with django_assert_max_num_queries(33):
        assert staff.get(reverse("review-draft", args=["P-A"])).status_code == 200
    more(20)
    with django_assert_max_num_queries(33):
        assert staff.get(reverse("review-draft", args=["P-A"])).status_code == 200


# Portfolio comparison --------------------------------------------------------------------------


@pytest.fixture
def portfolio(partner_a, partner_b):
    gold = TierFactory(slug="gold", name="Gold", rank=2)
    q3 = program.Q3
    Partner.objects.update(tier=gold)
    for partner, logins in ((partner_a, 6), (partner_b, 2)):
        for day in range(logins):
            activity(partner, "portal_login", q3.start + datetime.timedelta(days=day))
    PartnerFactory(external_id="P-C", name="Gamma Networks", tier=gold)  # no logins at all
    KpiTarget.objects.create(kpi="portal_logins", period="2026-Q3", tier=gold, value=Decimal("5"))
    KpiTarget.objects.create(kpi="portal_logins", period="2026-Q3", partner=partner_b, value=Decimal("2"))
    return gold


def _comparison(staff, **params):
    return staff.get(reverse("kpi-portfolio"), {"period": "2026-Q3", "kpi": ["portal_logins", "win_rate"], **params})


def test_comparison_colours_attainment_and_sorts_by_a_kpi(staff, portfolio, travel):
    response = _comparison(staff, sort="-portal_logins")
    assert response.status_code == 200
    rows = [(row["partner"].external_id, [cell.value for cell, _ in row["cells"]]) for row in response.context["rows"]]
    assert rows == [("P-A", [6, None]), ("P-B", [2, None]), ("P-C", [0, None])]
    page = response.content.decode()
    # P-A met its tier's 5; P-B met its own 2; P-C is at 0 of 5.
    assert '<td class="num att-met">6<span class="target-note">120% of 5</span></td>' in page
    assert '<td class="num att-met">2<span class="target-note">100% of 2</span></td>' in page
    assert '<td class="num att-below">0<span class="target-note">0% of 5</span></td>' in page
    ascending = _comparison(staff, sort="portal_logins").context["rows"]
    assert [row["partner"].external_id for row in ascending] == ["P-C", "P-B", "P-A"]
    by_name = _comparison(staff, sort="-name").context["rows"]
    assert [row["partner"].name for row in by_name] == ["Gamma Networks", "Beta Systems", "Alpha Resellers"]


def test_comparison_filters(staff, portfolio, travel):
    response = _comparison(staff, search="gamma")
    assert '<a href="/kpis/" class="active" aria-current="page">KPIs</a>' in response.content.decode()
    rows = response.context["rows"]
    assert [row["partner"].external_id for row in rows] == ["P-C"]
    assert _comparison(staff, owner="manager").context["page"].paginator.count == 1


def test_comparison_csv(staff, portfolio, travel):
    response = _comparison(staff, sort="-portal_logins")
    export = staff.get(
        reverse("kpi-portfolio-export"), {"period": "2026-Q3", "kpi": ["portal_logins"], "sort": "-portal_logins"}
    )
    assert response.status_code == export.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0] == [
        "period",
        "external_id",
        "name",
        "tier",
        "owner",
        "portal_logins",
        "portal_logins_target",
        "portal_logins_attainment",
    ]
    assert rows[1:] == [
        ["2026-Q3", "P-A", "Alpha Resellers", "gold", "manager", "6", "5", "1.2"],
        ["2026-Q3", "P-B", "Beta Systems", "gold", "", "2", "2", "1"],
        ["2026-Q3", "P-C", "Gamma Networks", "gold", "", "0", "5", "0"],
    ]


@pytest.mark.parametrize("extra", [0, 27])
def test_comparison_queries_do_not_grow_with_partners(staff, portfolio, extra, django_assert_max_num_queries, travel):
    for _ in range(extra):
        PartnerFactory(tier=portfolio)
    with django_assert_max_num_queries(14):
        response = _comparison(staff)
    assert response.context["page"].paginator.count == 3 + extra


def test_comparison_is_for_staff(client, partner_user_a, portfolio):
    client.force_login(partner_user_a)
    assert client.get(reverse("kpi-portfolio")).status_code == 404
    assert client.get(reverse("kpi-portfolio-export")).status_code == 404


# The partner KPI table -------------------------------------------------------------------------


def test_partner_table_for_its_own_users(client, partner_user_a, portfolio, travel):
    client.force_login(partner_user_a)
    response = client.get(reverse("partner-kpi-table", args=["P-A"]), {"period": "2026-Q3"})
    assert response.status_code == 200
    page = response.content.decode()
    assert '<tr data-kpi="portal_logins">' in page and "120%" in page
    assert client.get(reverse("partner-kpi-table", args=["P-B"])).status_code == 404


def test_partner_table_reports_a_bad_period(staff, portfolio, travel):
    response = staff.get(reverse("partner-kpi-table", args=["P-A"]), {"period": "2031-Q1"})
    assert response.status_code == 200 and "2031-Q1 has not started yet." in response.content.decode()
    assert response.context["table"].period == Period.parse("2026-Q4")


# Tier review -----------------------------------------------------------------------------------


@pytest.fixture
def tiering(partner_a, partner_b):
    silver = TierFactory(slug="silver", name="Silver", rank=1, min_quarterly_revenue=Decimal("10000"))
    gold = TierFactory(slug="gold", name="Gold", rank=2, min_quarterly_revenue=Decimal("50000"))
    Partner.objects.filter(pk=partner_a.pk).update(tier=silver)
    Partner.objects.filter(pk=partner_b.pk).update(tier=gold)
    q3, q2 = program.Q3, program.Q2
    for period, amount in ((q3, 60000), (q2, 60000)):
        start = period.start + datetime.timedelta(days=3)
        deal(partner_a, amount=amount, stage="won", registered_at=start, closed_at=start + datetime.timedelta(days=5))
    for period in (q3, q2):
        start = period.start + datetime.timedelta(days=3)
        deal(partner_b, amount=20000, stage="won", registered_at=start, closed_at=start + datetime.timedelta(days=5))
    return silver, gold


def test_tier_review_lists_upgrades_and_downgrades(client, channel_admin, tiering, travel):
    client.force_login(channel_admin)
    response = client.get(reverse("tier-review"))
    assert response.status_code == 200
    groups = response.context["groups"]
    assert [a.partner.external_id for a in groups["upgrade"]] == ["P-A"]
    assert [a.partner.external_id for a in groups["downgrade"]] == ["P-B"]
    page = response.content.decode()
    assert 'action="/tiers/review/P-A/change/"' in page and "Move to Gold" in page
    assert "Move to Silver" in page
    assert '<a href="/tiers/review/" class="active" aria-current="page">Tiers</a>' in page


def test_approving_from_the_page_records_the_change(client, channel_admin, tiering, partner_b, travel):
    silver, gold = tiering
    client.force_login(channel_admin)
    url = reverse("tier-change", args=["P-B"])
    refused = client.post(url, {"to_tier": silver.pk, "reason": ""}, follow=True)
    assert "Say why the tier changes." in refused.content.decode()
    response = client.post(url, {"to_tier": silver.pk, "reason": "Two quarters at 20,000."})
    assert response.status_code == 302
    partner_b.refresh_from_db()
    assert partner_b.tier == silver
    change = TierChange.objects.get()
    assert (change.from_tier, change.to_tier, change.approved_by, change.reason) == (
        gold,
        silver,
        channel_admin,
        "Two quarters at 20,000.",
    )
    assert change.assessment["status"] == "downgrade_due" and change.assessment["quarters_below"] == 2
    assert "Two quarters at 20,000." in client.get(reverse("tier-review")).content.decode()


def test_only_channel_admins_approve(client, manager, tiering, partner_b, travel):
    silver, gold = tiering
    client.force_login(manager)
    page = client.get(reverse("tier-review"))
    assert page.status_code == 200 and "Move to" not in page.content.decode()
    assert client.post(reverse("tier-change", args=["P-B"]), {"to_tier": silver.pk, "reason": "x"}).status_code == 403
    partner_b.refresh_from_db()
    assert partner_b.tier == gold and not TierChange.objects.exists()


def test_tier_review_is_not_for_partner_users(client, partner_user_a, tiering):
    client.force_login(partner_user_a)
    assert client.get(reverse("tier-review")).status_code == 404


@pytest.mark.parametrize("extra", [0, 20])
def test_tier_review_queries_do_not_grow(client, channel_admin, tiering, extra, django_assert_max_num_queries, travel):
    for _ in range(extra):
        PartnerFactory(tier=tiering[1], owner=UserFactory())
    client.force_login(channel_admin)
    with django_assert_max_num_queries(22):
        response = client.get(reverse("tier-review"))
    assert response.context["reviewed"] == 2 + extra
