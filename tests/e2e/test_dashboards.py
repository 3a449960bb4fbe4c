"""In a real browser: sign in, Today, filter and sort the portfolio, open a partner, acknowledge an alert,
the partner portal; every page free of console errors and CSP violations, with a screenshot of each."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from health.models import Alert
from prm.models import Partner
from tests.e2e.program import build_program, default_model

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "pw-for-tests-1"


def test_manager_walks_through_the_dashboards(live_server, pages_site, page, problems, screenshot, manager):
    now = timezone.now()
    partners = build_program(8, owner=manager, now=now)
    faded = next(p for p in partners if p.name.startswith("Faded"))
    alert = Alert.objects.create(
        partner=faded,
        model=default_model(),
        kind=Alert.Kind.DROP,
        as_of=faded.health_as_of,
        score=faded.health_score,
        previous_score=faded.health_score - faded.health_trend,
        trend=faded.health_trend,
        band=faded.health_band,
        reasons=[{"kpi": "deals_registered", "category": "pipeline", "raw_before": 5, "raw_after": 1, "delta": -9.5}],
    )
    base = live_server.url

    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    screenshot("01-login")
    problems.checkpoint()
    page.get_by_label("Username").fill(manager.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # Today: the faded partner leads, with its new alert and the reason in words.
    expect(page.get_by_role("heading", name="Needs attention today")).to_be_visible()
    first = page.locator("#attention tbody tr").first
    expect(first).to_have_attribute("data-partner", faded.external_id)
    expect(first).to_contain_text("New alert")
    expect(first).to_contain_text("deals registered fell")
    screenshot("02-today")
    problems.checkpoint()

    # Portfolio: filter by band through the form, then sort by trend; the state lives in the URL.
    page.get_by_role("link", name="Portfolio").click()
    expect(page.locator("#portfolio tbody tr")).to_have_count(len(partners))
    expect(page.locator("#portfolio svg.sparkline polyline").first).to_be_attached()
    page.locator("#filters select[name=band]").select_option("at_risk")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"band=at_risk"))
    at_risk = Partner.objects.filter(health_band=Partner.Band.AT_RISK).count()
    assert at_risk > 0
    expect(page.locator("#portfolio tbody tr")).to_have_count(at_risk)
    page.locator("#portfolio thead").get_by_role("link", name="Trend").click()
    expect(page).to_have_url(re.compile(r"band=at_risk.*ordering=trend|ordering=trend.*band=at_risk"))
    trends = page.locator("#portfolio tbody tr td:nth-child(4)").all_inner_texts()
    values = [float(t.split()[-1]) for t in trends if t.split() and t.split()[-1] != "–"]
    assert values == sorted(values)
    screenshot("03-portfolio-at-risk-by-trend")
    problems.checkpoint()

    # Partner page: history chart with thresholds, components with evidence links.
    page.locator(f"#portfolio tr[data-partner={faded.external_id}] a").first.click()
    expect(page.get_by_role("heading", name=faded.name)).to_be_visible()
    expect(page.locator("svg.history-chart polyline.line")).to_be_attached()
    expect(page.locator("svg.history-chart line.threshold")).to_have_count(2)
    expect(page.locator("#components tbody tr")).to_have_count(len(default_model().components.all()))
    screenshot("04-partner")
    problems.checkpoint()

    # Evidence of a component, then back.
    page.locator("#components tr[data-kpi=deals_registered] a").click()
    expect(page.get_by_role("heading", name=re.compile("Deals registered"))).to_be_visible()
    screenshot("05-evidence")
    problems.checkpoint()
    page.go_back()

    # Acknowledge the alert.
    form = page.locator(f"#alerts [data-alert='{alert.pk}'] form")
    form.locator("textarea[name=note]").fill("Called them; pipeline review booked.")
    form.locator("input[name=follow_up]").fill("Joint pipeline review")
    form.get_by_role("button", name="Acknowledge").click()
    expect(page.locator(".messages")).to_contain_text("acknowledged")
    expect(page.locator(f"#alerts [data-alert='{alert.pk}'] .ack")).to_contain_text("pipeline review booked")
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None and alert.acknowledged_by == manager
    assert alert.follow_up is not None and alert.follow_up.description == "Joint pipeline review"
    screenshot("06-partner-alert-acknowledged")

    # On a phone: the pages fit the screen's width (wide tables scroll inside their card).
    page.set_viewport_size({"width": 390, "height": 844})
    for name, path in (("08-phone-today", "/"), ("09-phone-portfolio", "/portfolio/"), ("10-phone-partner", "")):
        if path:
            page.goto(f"{base}{path}")
        else:
            page.goto(f"{base}/partners/{faded.external_id}/")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        screenshot(name)
        problems.checkpoint()

    problems.assert_clean()


def test_partner_user_sees_only_the_portal(live_server, pages_site, page, problems, screenshot, partner_user_a):
    now = timezone.now()
    others = build_program(4, now=now)
    partner_a = Partner.objects.get(external_id="P-A")
    page.goto(f"{live_server.url}/")
    page.get_by_label("Username").fill(partner_user_a.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/portal/")
    expect(page.get_by_role("heading", name=partner_a.name)).to_be_visible()
    expect(page.locator("#how")).to_contain_text("How your score is computed")
    expect(page.get_by_role("link", name="Portfolio")).to_have_count(0)
    screenshot("07-portal")
    problems.assert_clean()
    # Another partner's page, a manager page and another partner's evidence: all 404 (not via the page,
    # whose console would log the failed load).
    for path in (
        f"/partners/{others[0].external_id}/",
        "/portfolio/",
        "/portfolio/export.csv",
        f"/partners/{others[0].external_id}/evidence/deals_registered/",
    ):
        assert page.request.get(f"{live_server.url}{path}").status == 404, path
