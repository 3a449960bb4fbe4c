"""Web pages: sign-in and passwords, Today, Portfolio and its CSV, the partner page, evidence, acknowledgment,
the partner portal; who may open what; query counts that do not grow with the number of partners."""

import csv
import datetime
import io
import re

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from health.models import Alert, ScoreSnapshot, ScoringModel
from health.selectors import Distribution, History
from health.templatetags.dashboard import distribution_geometry, history_geometry, sparkline_geometry
from kpis.models import ActionItem
from prm.models import Partner
from tests.e2e.program import NOW, build_program, default_model
from tests.factories import ActivityFactory, DealFactory, PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"


@pytest.fixture
def at_now():
    with time_machine.travel(NOW, tick=False):
        yield NOW


@pytest.fixture
def program(db, manager):
    return build_program(8, owner=manager)


def as_user(client, user):
    client.force_login(user)
    return client


def body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def count_queries(client, url: str) -> int:
    cache.clear()  # the portfolio's region menu is cached: count the request that fills it
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
        body(response)
    assert response.status_code == 200, url
    return len(queries)


def make_alert(partner: Partner, **fields) -> Alert:
    values = {
        "partner": partner,
        "model": default_model(),
        "kind": Alert.Kind.DROP,
        "as_of": partner.health_as_of or NOW,
        "score": partner.health_score,
        "previous_score": 60.0,
        "trend": partner.health_trend,
        "band": partner.health_band,
        "reasons": [
            {"kpi": "deals_registered", "category": "pipeline", "raw_before": 6, "raw_after": 1, "delta": -8.0},
            {"kpi": "active_certifications", "category": "enablement", "raw_before": 1, "raw_after": 0, "delta": -3.5},
        ],
    }
    return Alert.objects.create(**{**values, **fields})


# Sign-in, passwords, throttling ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/portfolio/",
        "/portfolio/export.csv",
        "/partners/P-A/",
        "/partners/P-A/evidence/deals_registered/",
        "/portal/",
    ],
)
def test_every_page_requires_sign_in(client, partner_a, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_sign_in_and_out_through_the_styled_pages(client, manager):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'href="/static/css/prm.css"' in body(page) and "<style" not in body(page)
    # Served under the strict policy the browser tests check for violations of.
    assert "style-src 'self'" in page["Content-Security-Policy"]
    response = client.post("/accounts/login/", {"username": "manager", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    logout = client.post("/accounts/logout/")
    assert logout.status_code == 200 and "You have been signed out" in body(logout)
    assert client.get("/").status_code == 302


def test_admin_sign_out_renders_the_styled_page_without_the_web_pages_mounted(client, channel_admin, settings):
    # The admin renders registration/logged_out.html too: it must not need the web pages' URLs.
    settings.ROOT_URLCONF = "prm.urls"
    as_user(client, channel_admin)
    response = client.post("/admin/logout/")
    assert response.status_code == 200 and "You have been signed out" in body(response)


def test_repeated_failed_sign_ins_are_throttled(client, manager, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post("/accounts/login/", {"username": "manager", "password": "wrong"})
    locked = client.post("/accounts/login/", {"username": "manager", "password": PASSWORD})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_password_change(client, manager):
    as_user(client, manager)
    assert client.get("/accounts/password_change/").status_code == 200
    response = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": "a-New-pass-2026", "new_password2": "a-New-pass-2026"},
    )
    assert response.status_code == 302 and response["Location"] == "/accounts/password_change/done/"
    manager.refresh_from_db()
    assert manager.check_password("a-New-pass-2026")


def test_password_reset_by_email(client, manager):
    response = client.post("/accounts/password_reset/", {"email": manager.email})
    assert response["Location"] == "/accounts/password_reset/done/"
    (message,) = mail.outbox
    assert message.to == [manager.email] and message.subject == "Reset your Partner Health password"
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body).group(1)
    form = client.get(link, follow=True)
    assert "Choose a new password" in body(form)
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "Reset-pass-77", "new_password2": "Reset-pass-77"})
    assert done["Location"] == "/accounts/reset/done/"
    manager.refresh_from_db()
    assert manager.check_password("Reset-pass-77")


# Who may open what -----------------------------------------------------------------------------------


def test_partner_user_is_sent_to_the_portal_and_staff_to_today(client, partner_user_a, manager):
    assert as_user(client, partner_user_a).get("/")["Location"] == "/portal/"
    assert as_user(client, manager).get("/portal/")["Location"] == "/"


def test_partner_user_cannot_reach_another_partner_or_any_manager_page(client, partner_a, partner_b, partner_user_a):
    alert = make_alert(partner_b)
    as_user(client, partner_user_a)
    for url in (
        "/portfolio/",
        "/portfolio/export.csv",
        f"/partners/{partner_b.external_id}/",
        f"/partners/{partner_b.external_id}/evidence/deals_registered/",
        # Even its own partner page is a manager page: partners read the portal.
        f"/partners/{partner_a.external_id}/",
    ):
        assert client.get(url).status_code == 404, url
    response = client.post(f"/partners/{partner_b.external_id}/alerts/{alert.pk}/acknowledge/", {"note": "x"})
    assert response.status_code == 404
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    # Its own evidence is readable: the portal links to it.
    assert client.get(f"/partners/{partner_a.external_id}/evidence/deals_registered/").status_code == 200


def test_signed_in_user_without_a_role_is_refused(client, partner_a):
    nobody = UserFactory(username="nobody")
    as_user(client, nobody)
    assert client.get("/").status_code == 403
    assert client.get("/portfolio/").status_code == 403
    assert client.get(f"/partners/{partner_a.external_id}/").status_code == 403


# Today -----------------------------------------------------------------------------------------------


def attention_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-partner="([^"]+)"', html)


def test_today_ranks_alerts_then_crossings_with_reasons_in_words(client, program, manager, at_now):
    faded = [p for p in program if p.name.startswith("Faded")]
    weak_unowned = next(p for p in program if p.name.startswith("Weak") and p.owner_id is None)
    make_alert(faded[1])
    html = body(as_user(client, manager).get("/"))
    rows = attention_rows(html)
    # The alerted partner first, then the other partner that crossed into at-risk; weak partners were always
    # at risk and had no intervention: not listed.
    assert rows == [faded[1].external_id, faded[0].external_id]
    assert weak_unowned.external_id not in rows
    assert "New alert: dropped fast" in html
    assert re.search(r"-\d+ in 30 days: deals registered fell, active certifications fell", html)
    assert "Crossed into at-risk" in html and "Declining fast" in html


def test_today_lists_partners_still_at_risk_after_an_intervention(client, program, manager, at_now):
    weak = next(p for p in program if p.name.startswith("Weak"))
    ActionItem.objects.create(
        partner=weak, description="Enablement plan", status="done", completed_at=NOW - datetime.timedelta(days=45)
    )
    html = body(as_user(client, manager).get("/"))
    assert weak.external_id in attention_rows(html)
    assert "Still at risk after an intervention" in html


def test_today_puts_a_managers_own_partners_first_and_shows_admins_everyone(client, program, manager, channel_admin):
    with time_machine.travel(NOW, tick=False):
        theirs = PartnerFactory(external_id="Z-1", name="Zulu Unowned")
        mine = next(p for p in program if p.owner_id == manager.pk and p.name.startswith("Faded"))
        make_alert(mine, as_of=NOW - datetime.timedelta(days=2))
        make_alert(theirs, as_of=NOW)  # recorded after the manager's partner's alert
        manager_rows = attention_rows(body(as_user(client, manager).get("/")))
        admin_rows = attention_rows(body(as_user(client, channel_admin).get("/")))
    assert manager_rows.index(mine.external_id) < manager_rows.index("Z-1")
    assert admin_rows[0] == "Z-1"  # no owner preference: the latest alert leads
    assert set(manager_rows) == set(admin_rows)


def test_today_query_count_does_not_grow_with_partners(client, manager, django_assert_max_num_queries):
    with time_machine.travel(NOW, tick=False):
        partners = build_program(3, owner=manager)
        # An alert without reasons and a crossing without alert: every query Today can make.
        make_alert(partners[0], reasons=[])
        as_user(client, manager)
        with django_assert_max_num_queries(11):
            small = count_queries(client, "/")
        more = build_program(27, owner=manager, prefix="Y")
        for partner in more[:10]:
            make_alert(partner)
        with django_assert_max_num_queries(11):
            large = count_queries(client, "/")
    assert large == small


# Portfolio -------------------------------------------------------------------------------------------


def portfolio_rows(html: str) -> list[str]:
    table = html.split('id="portfolio"', 1)[1]
    return re.findall(r'<tr data-partner="([^"]+)"', table)


def test_portfolio_lists_every_partner_with_sparkline_and_distribution(client, program, manager, at_now):
    html = body(as_user(client, manager).get("/portfolio/"))
    assert len(portfolio_rows(html)) == len(program) == 8
    # 12 weekly points (13 weekly snapshots minus the one just outside 12 weeks) on every scored row.
    lines = re.findall(r'<polyline class="line" points="([^"]+)"', html)
    assert len(lines) == 8 and all(len(points.split()) >= 12 for points in lines)
    bands = {band: Partner.objects.filter(health_band=band).count() for band in ("healthy", "watch", "at_risk")}
    for band, count in bands.items():
        assert re.search(rf'data-band="{band}"><span class="band band-{band}">[^<]+</span> {count}<', html)
    # The distribution chart stacks one rect per (bucket, band) with its count.
    chart_counts = [int(n) for n in re.findall(r'data-count="(\d+)"', html)]
    assert sum(chart_counts) == sum(bands.values())


def test_portfolio_default_sort_is_worst_score_first(client, program, manager, at_now):
    rows = portfolio_rows(body(as_user(client, manager).get("/portfolio/")))
    scores = [Partner.objects.get(external_id=e).health_score for e in rows]
    assert scores == sorted(scores)


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"band": "at_risk"}, lambda p: p.health_band == "at_risk"),
        ({"tier": "gold"}, lambda p: p.tier and p.tier.slug == "gold"),
        ({"type": "msp"}, lambda p: p.type == "msp"),
        ({"region": "APAC"}, lambda p: p.region == "APAC"),
        ({"owner": "manager"}, lambda p: p.owner and p.owner.username == "manager"),
        ({"status": "active"}, lambda p: p.status == "active"),
        ({"search": "faded"}, lambda p: "Faded" in p.name),
        ({"search": "X-00"}, lambda p: p.external_id.startswith("X-00")),
        ({"band": "at_risk", "region": "APAC"}, lambda p: p.health_band == "at_risk" and p.region == "APAC"),
    ],
)
def test_portfolio_filters(client, program, manager, at_now, params, expected):
    rows = portfolio_rows(body(as_user(client, manager).get("/portfolio/", params)))
    wanted = {p.external_id for p in Partner.objects.select_related("tier", "owner") if expected(p)}
    assert wanted and set(rows) == wanted


@pytest.mark.parametrize(
    "column,key",
    [
        ("name", lambda p: p.name),
        ("score", lambda p: p.health_score),
        ("trend", lambda p: p.health_trend),
        ("tier", lambda p: p.tier.rank),
        ("type", lambda p: p.type),
        ("region", lambda p: p.region),
        ("band", lambda p: ["at_risk", "watch", "healthy"].index(p.health_band)),
    ],
)
def test_portfolio_sorts_by_any_column_both_ways(client, program, manager, at_now, column, key):
    as_user(client, manager)
    for ordering, reverse in ((column, False), (f"-{column}", True)):
        rows = portfolio_rows(body(client.get("/portfolio/", {"ordering": ordering})))
        values = [key(Partner.objects.select_related("tier").get(external_id=e)) for e in rows]
        assert values == sorted(values, reverse=reverse), ordering


def test_portfolio_sort_by_owner_keeps_unowned_last(client, program, manager, at_now):
    rows = portfolio_rows(body(as_user(client, manager).get("/portfolio/", {"ordering": "owner"})))
    owners = [Partner.objects.get(external_id=e).owner_id for e in rows]
    assert owners == sorted(owners, key=lambda o: o is None)


def test_portfolio_pages_keep_the_filters_in_the_url(client, program, manager, at_now, monkeypatch):
    monkeypatch.setattr("health.selectors.PAGE_SIZE", 3)
    as_user(client, manager)
    first = body(client.get("/portfolio/", {"region": "EMEA", "ordering": "name"}))
    emea = sorted(p.name for p in program if p.region == "EMEA")
    assert len(emea) == 3 and "Page 1 of 1" not in first
    all_rows = body(client.get("/portfolio/", {"ordering": "name"}))
    assert 'href="?ordering=name&amp;page=2" rel="next"' in all_rows
    page2 = body(client.get("/portfolio/", {"ordering": "name", "page": 2}))
    names = sorted(p.name for p in program)
    assert [Partner.objects.get(external_id=e).name for e in portfolio_rows(page2)] == names[3:6]
    # Sort links keep the filters and drop the page.
    filtered = body(client.get("/portfolio/", {"band": "watch", "page": 2, "ordering": "name"}))
    assert 'href="?band=watch&amp;ordering=-name"' in filtered


def test_portfolio_ignores_invalid_filter_values_and_says_so(client, program, manager, at_now):
    response = as_user(client, manager).get("/portfolio/", {"band": "splendid", "ordering": "nonsense"})
    assert response.status_code == 200
    assert len(portfolio_rows(body(response))) == len(program)
    assert "band:" in body(response)


@pytest.mark.parametrize(
    "url,most",
    [
        ("/portfolio/?ordering=-trend&status=active", 11),
        # A search first reads the matching ids once, then the partners by primary key.
        ("/portfolio/?search=partner&ordering=owner", 12),
    ],
)
def test_portfolio_query_count_does_not_grow_with_partners(client, manager, django_assert_max_num_queries, url, most):
    with time_machine.travel(NOW, tick=False):
        build_program(3, owner=manager)
        as_user(client, manager)
        with django_assert_max_num_queries(most):
            small = count_queries(client, url)
        build_program(27, owner=manager, prefix="Y")
        with django_assert_max_num_queries(most):
            large = count_queries(client, url)
        html = body(client.get(url))
    assert large == small
    assert len(portfolio_rows(html)) == 30


def test_portfolio_csv_export_is_the_filtered_list(client, program, manager, at_now):
    response = as_user(client, manager).get("/portfolio/export.csv", {"band": "at_risk", "ordering": "name"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="partners-')
    rows = list(csv.reader(io.StringIO(body(response))))
    assert rows[0] == [
        "external_id",
        "name",
        "score",
        "band",
        "trend",
        "tier",
        "type",
        "region",
        "status",
        "owner",
        "scored_at",
    ]
    expected = Partner.objects.filter(health_band="at_risk").select_related("tier", "owner").order_by("name")
    assert [row[0] for row in rows[1:]] == [p.external_id for p in expected]
    first = expected[0]
    assert rows[1][1:4] == [first.name, f"{first.health_score:.2f}", "at_risk"]
    assert rows[1][5] == first.tier.name and rows[1][9] == (first.owner.username if first.owner else "")


def test_portfolio_csv_query_count_does_not_grow(client, manager, django_assert_max_num_queries):
    with time_machine.travel(NOW, tick=False):
        build_program(3, owner=manager)
        as_user(client, manager)
        with django_assert_max_num_queries(5):
            small = count_queries(client, "/portfolio/export.csv")
        build_program(27, prefix="Y")
        with django_assert_max_num_queries(5):
            large = count_queries(client, "/portfolio/export.csv")
    assert large == small


# Partner page ----------------------------------------------------------------------------------------


def test_partner_page_shows_health_history_components_and_records(client, program, manager, at_now):
    faded = next(p for p in program if p.name.startswith("Faded"))
    model = default_model()
    with time_machine.travel(NOW - datetime.timedelta(days=20), tick=False):
        model.description = "Reviewed"
        model.save()  # a change of the model's settings, drawn on the history chart
    make_alert(faded)
    response = as_user(client, manager).get(f"/partners/{faded.external_id}/")
    html = body(response)
    assert response.status_code == 200
    # History: a line, both band thresholds, and the model change.
    assert re.search(r'<polyline class="line" points="[^"]+"', html)
    assert 'data-threshold="70.0"' in html and 'data-threshold="40.0"' in html
    assert f'data-date="{(NOW - datetime.timedelta(days=20)).date():%Y-%m-%d}"' in html
    # Components: one row per component, each with raw, weight and a link to its evidence.
    snapshot = ScoreSnapshot.objects.filter(partner=faded).order_by("-as_of").first()
    section = html.split('id="components"', 1)[1].split("</section>", 1)[0]
    assert section.count("<tr data-kpi=") == len(snapshot.components)
    assert f"/partners/{faded.external_id}/evidence/deals_registered/?as_of=" in section
    # Category sub-scores, the KPI table, what changed, suggested actions, alerts, deals, certifications.
    for category in snapshot.category_scores:
        assert f"<td>{category.capitalize()}</td>" in html
    assert 'data-kpi="portal_logins"' in html.split('id="kpis"', 1)[1]
    assert 'id="change-summary"' in html and "Deals registered" in html.split('id="changes"', 1)[1]
    assert "Suggested actions" in html and "pipeline" in html.split('id="suggestions"', 1)[1].lower()
    assert 'action="/partners/' in html and "Acknowledge" in html
    assert "deals registered fell" in html.split('id="alerts"', 1)[1].split("</section>", 1)[0]
    assert "Deal 2-" in html and "Sales certified" in html and "(expired)" in html


def test_partner_page_what_changed_since_a_chosen_date(client, program, manager, at_now):
    faded = next(p for p in program if p.name.startswith("Faded"))
    as_user(client, manager)
    week_ago = body(client.get(f"/partners/{faded.external_id}/", {"since": "2026-09-24"}))
    assert 'value="2026-09-24"' in week_ago
    long_ago = body(client.get(f"/partners/{faded.external_id}/", {"since": "2026-07-09"}))
    summary = re.search(r'id="change-summary">From <strong>([\d.]+)</strong> on (\S+)', long_ago)
    before = (
        ScoreSnapshot.objects.filter(partner=faded, as_of__lte=datetime.datetime(2026, 7, 10, tzinfo=datetime.UTC))
        .order_by("-as_of")
        .first()
    )
    assert summary.group(2) == f"{before.as_of:%Y-%m-%d}" and float(summary.group(1)) == round(before.score, 1)
    early = body(client.get(f"/partners/{faded.external_id}/", {"since": "2025-01-01"}))
    assert "No score on or before 2025-01-01" in early


def test_partner_page_of_an_unscored_partner(client, manager, partner_a, at_now):
    response = as_user(client, manager).get(f"/partners/{partner_a.external_id}/")
    assert response.status_code == 200
    assert "No score yet" in body(response)


def test_unknown_partner_is_404(client, manager):
    assert as_user(client, manager).get("/partners/NOPE/").status_code == 404


def test_partner_page_query_count_does_not_grow(client, manager, django_assert_max_num_queries):
    with time_machine.travel(NOW, tick=False):
        partners = build_program(3, owner=manager)
        target = partners[2]
        make_alert(target)
        url = f"/partners/{target.external_id}/"
        as_user(client, manager)
        # 24: the partner's latest revenue forecast is one more read.
        with django_assert_max_num_queries(24):
            small = count_queries(client, url)
        build_program(27, prefix="Y")
        for n in range(30):
            ActivityFactory(partner=target, occurred_at=NOW - datetime.timedelta(days=n))
            DealFactory(partner=target, registered_at=NOW - datetime.timedelta(days=n))
        make_alert(target, kind=Alert.Kind.THRESHOLD)
        # 24: the partner's latest revenue forecast is one more read.
        with django_assert_max_num_queries(24):
            large = count_queries(client, url)
    assert large == small


# Acknowledging an alert ------------------------------------------------------------------------------


def test_acknowledge_an_alert_with_a_follow_up(client, program, manager, at_now):
    faded = next(p for p in program if p.name.startswith("Faded"))
    alert = make_alert(faded)
    response = as_user(client, manager).post(
        f"/partners/{faded.external_id}/alerts/{alert.pk}/acknowledge/",
        {"note": "Called the partner", "follow_up": "Book a pipeline review", "due_on": "2026-10-15"},
    )
    assert response.status_code == 302 and response["Location"] == f"/partners/{faded.external_id}/#alerts"
    alert.refresh_from_db()
    assert alert.acknowledged_by == manager and alert.acknowledgment_note == "Called the partner"
    assert alert.follow_up.description == "Book a pipeline review"
    assert alert.follow_up.due_on == datetime.date(2026, 10, 15)
    page = body(client.get(response["Location"]))
    assert "acknowledged." in page and "Acknowledged by manager" in page
    # A second acknowledgment changes nothing; Today no longer lists the alert.
    client.post(f"/partners/{faded.external_id}/alerts/{alert.pk}/acknowledge/", {"note": "again"})
    alert.refresh_from_db()
    assert alert.acknowledgment_note == "Called the partner"
    assert "New alert" not in body(client.get("/"))


def test_acknowledge_needs_post_and_the_alert_of_that_partner(client, program, manager, at_now):
    faded, other = [p for p in program if p.name.startswith("Faded")][:2]
    alert = make_alert(faded)
    as_user(client, manager)
    assert client.get(f"/partners/{faded.external_id}/alerts/{alert.pk}/acknowledge/").status_code == 405
    assert client.post(f"/partners/{other.external_id}/alerts/{alert.pk}/acknowledge/").status_code == 404


# Evidence --------------------------------------------------------------------------------------------


def test_evidence_lists_the_records_behind_a_kpi(client, program, manager, at_now):
    strong = next(p for p in program if p.name.startswith("Strong"))
    snapshot = ScoreSnapshot.objects.filter(partner=strong).order_by("-as_of").first()
    deals_registered = next(c for c in snapshot.components if c["kpi"] == "deals_registered")
    as_user(client, manager)
    html = body(client.get(f"/partners/{strong.external_id}/evidence/deals_registered/"))
    table = html.split('id="evidence"', 1)[1]
    assert table.count("<tr><td>") == deals_registered["raw"]
    assert "/api/v1/deals/?partner=" in html
    certs = body(client.get(f"/partners/{strong.external_id}/evidence/active_certifications/"))
    assert certs.split('id="evidence"', 1)[1].count("<tr><td>") == 3
    assert client.get(f"/partners/{strong.external_id}/evidence/no_such_kpi/").status_code == 404


# Partner portal --------------------------------------------------------------------------------------


def test_portal_explains_the_score_and_the_path_to_the_next_band(client, program, at_now):
    middling = next(p for p in program if p.name.startswith("Middling"))
    user = UserFactory(username="mia-at-middling", groups=["Partner user"])
    from tests.factories import membership

    membership(user, middling)
    html = body(as_user(client, user).get("/portal/"))
    assert middling.name in html and "Portfolio" not in html
    snapshot = ScoreSnapshot.objects.filter(partner=middling).order_by("-as_of").first()
    included = [c for c in snapshot.components if c["included"]]
    total = sum(c["weight"] for c in included)
    gains = sorted((c["weight"] * (100 - c["normalized"]) / total for c in included), reverse=True)
    shown = [float(g) for g in re.findall(r"\+([\d.]+) points", html.split('id="lifts"', 1)[1])]
    assert shown == [round(g, 1) for g in gains if g > 0.005][:6]
    needed = 70 - snapshot.score
    assert f"You need <strong>{needed:.1f} more points</strong>" in html
    # How the score is computed: every component, its share of the weight and its rule in words.
    weights = sum(c["weight"] for c in snapshot.components)
    how = html.split('id="how"', 1)[1]
    assert how.count("<tr data-kpi=") == len(snapshot.components)
    assert f"{round(100 * 15 / weights)}%" in how and "Full marks at 6 or more" in how


def test_portal_shows_kpis_against_this_quarters_targets(client, partner_user_a, partner_b, at_now):
    from kpis.models import KpiTarget
    from kpis.periods import Period

    quarter = Period.containing(NOW).key
    partner_a = partner_user_a.partner_membership.partner
    as_user(client, partner_user_a)
    assert "No targets are set for" in body(client.get("/portal/"))

    for hours in (1, 2, 3):  # NOW is early on the quarter's first day
        DealFactory(partner=partner_a, registered_at=NOW - datetime.timedelta(hours=hours))
    KpiTarget.objects.create(kpi="deals_registered", period=quarter, partner=partner_a, value=6)
    KpiTarget.objects.create(kpi="win_rate", period=quarter, partner=partner_b, value="0.5")
    html = body(client.get("/portal/"))
    targets = html.split('id="targets"', 1)[1].split("</section>", 1)[0]
    # Only what this partner is measured against: its own target, not the other partner's.
    assert re.findall(r'<tr data-kpi="([a-z_]+)"', targets) == ["deals_registered"]
    row = targets.split('data-kpi="deals_registered"', 1)[1].split("</tr>", 1)[0]
    assert ">6<" in row and "50%" in row  # 3 of 6 registered so far this quarter
    assert f'href="/partners/{partner_a.external_id}/kpis/"' in targets


def test_portal_query_count_does_not_grow(client, partner_user_a, django_assert_max_num_queries):
    with time_machine.travel(NOW, tick=False):
        build_program(3)
        from kpis.models import KpiTarget
        from kpis.periods import Period

        KpiTarget.objects.create(
            kpi="deals_registered",
            period=Period.containing(NOW).key,
            partner=partner_user_a.partner_membership.partner,
            value=6,
        )
        as_user(client, partner_user_a)
        with django_assert_max_num_queries(20):
            small = count_queries(client, "/portal/")
        build_program(27, prefix="Y")
        with django_assert_max_num_queries(20):
            large = count_queries(client, "/portal/")
    assert large == small


# Charts ----------------------------------------------------------------------------------------------


def test_sparkline_points_scale_scores_to_the_box():
    chart = sparkline_geometry([0.0, 50.0, 100.0], width=100, height=24, pad=2)
    assert chart["points"] == "2.0,22.0 50.0,12.0 98.0,2.0"
    assert sparkline_geometry([])["points"] == ""
    assert len(sparkline_geometry([40.0])["points"].split()) == 2  # a flat segment, not an invisible dot


def test_history_chart_draws_thresholds_where_the_model_puts_them():
    model = ScoringModel(healthy_threshold=80, at_risk_threshold=30)
    start = datetime.date(2026, 1, 1)
    history = History(
        points=[(start, 20.0), (datetime.date(2026, 7, 2), 90.0)],
        model_changes=[datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)],
        start=start,
        end=datetime.date(2026, 12, 31),
    )
    chart = history_geometry(history, model, width=400, height=126)
    top, height = chart["top"], chart["bottom"] - chart["top"]
    assert [t["y"] for t in chart["thresholds"]] == [top + 0.2 * height, top + 0.7 * height]
    first, second = chart["points"].split()
    assert first == f"{chart['left']:.1f},{top + 0.8 * height}"
    assert len(chart["changes"]) == 1 and chart["left"] < chart["changes"][0]["x"] < chart["right"]


def test_distribution_chart_stacks_bands_per_bucket():
    buckets = [dict.fromkeys(("healthy", "watch", "at_risk"), 0) for _ in range(10)]
    buckets[3]["at_risk"], buckets[4]["watch"], buckets[4]["at_risk"] = 2, 4, 1
    chart = distribution_geometry(Distribution(bands={}, buckets=buckets))
    bars = {(bar["range"], bar["band"]): bar for bar in chart["bars"]}
    assert set(bars) == {("30–40", "at_risk"), ("40–50", "watch"), ("40–50", "at_risk")}
    tallest = bars[("40–50", "watch")]["h"] + bars[("40–50", "at_risk")]["h"]
    assert tallest == pytest.approx(chart["axis_y"] - 8, abs=0.2)
    assert bars[("40–50", "watch")]["y"] < bars[("40–50", "at_risk")]["y"]
