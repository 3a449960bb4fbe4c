"""Access control across the whole site: every URL pattern walked anonymously, and a role x endpoint matrix."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.authtoken.models import Token

from tests.api.program import build_program

pytestmark = pytest.mark.django_db

# The URLs that answer an anonymous caller: signing in, resetting a password, the health check, and
# the API's token endpoint, schema and docs page (API.md: "No anonymous access anywhere except ...").
PUBLIC_URL_NAMES = {
    "api-token",
    "api-schema",
    "api-docs",
    "healthz",
    "login",
    "logout",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "admin:login",
    "admin:logout",
}

# Sample values for each URL parameter name (the first that fits is used); a parameter named nowhere here fails the walk, so that a
# new URL pattern cannot slip past it unchecked.
SAMPLE_VALUES = {
    "external_id": "P-A",
    "format": ("json", ".json"),  # DRF's format suffix: with or without its dot, by pattern
    "pk": "1",
    "id": "1",
    "object_id": "1",
    "content_type_id": "1",
    "review_id": "1",
    "alert_id": "1",
    "report_id": "1",
    "task_id": "0b6f7c1e-8e0a-4d55-9d7e-1f2a3b4c5d6e",
    "key": "portal_logins",
    "kpi": "portal_logins",
    "uidb64": "MQ",
    "token": "set-password",
    "url": "nowhere/",
    "app_label": "prm",
}


@dataclass(frozen=True)
class Route:
    """One leaf URL pattern: its full regex, its name (with namespace) and the route string Django reports."""

    regex: str
    name: str | None
    route: str


def _strip_anchors(regex: str) -> str:
    return regex.removeprefix("^").removesuffix("\\Z").removesuffix("$")


def all_routes(patterns=None, regex: str = "", namespace: str = "", route: str = "") -> list[Route]:
    routes = []
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        part = _strip_anchors(pattern.pattern.regex.pattern)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            routes += all_routes(pattern.url_patterns, regex + part, inner, route + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}{pattern.name}" if pattern.name else None
            routes.append(Route(regex + part, name, route + str(pattern.pattern)))
    return routes


def _group_end(regex: str, start: int) -> int:
    """Index just past the parenthesis that closes the group opening at `start`."""
    depth, index = 0, start
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            index += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise ValueError(f"unbalanced group in {regex!r}")


def sample_url(route: Route) -> str:
    """A URL that the route matches, with every group filled with a sample value."""
    regex, url = route.regex, ""
    # A named group, or a positional one (django-simple-history's admin URLs): the object and record ids.
    while (match := re.search(r"(?<!\\)\((?:\?P<(\w+)>)?", regex)) is not None:
        end = _group_end(regex, match.start())
        group_regex = regex[match.end() : end - 1]
        candidates = SAMPLE_VALUES[match.group(1)] if match.group(1) else "1"
        fitting = [
            v for v in ([candidates] if isinstance(candidates, str) else candidates) if re.fullmatch(group_regex, v)
        ]
        assert fitting, f"no sample value fits {route.route}"
        value = fitting[0]
        url += regex[: match.start()] + value
        regex = regex[end:]
    url += regex
    # What is left is literal text with a few regex marks: escaped dots and optional trailing slashes.
    url = url.replace("\\.", ".").replace("/?", "/").replace("\\-", "-")
    url = "/" + url.lstrip("^")
    match = resolve(url)
    if route.name:
        # A format-suffix URL may resolve to its plain twin (external ids may hold dots): the same view.
        assert match.view_name == route.name, f"{url} is not {route.route}"
    else:
        # Django drops the inner patterns' "^" from the route it reports.
        assert match.route.replace("^", "") == route.route.replace("^", ""), f"{url} is not {route.route}"
    return url


def refused(response) -> bool:
    """A redirect to a sign-in page, or 401: the two ways the site turns an anonymous caller away."""
    if response.status_code == 401:
        return True
    if response.status_code == 302:
        location = response["Location"]
        return location.startswith(settings.LOGIN_URL) or location.startswith("/admin/login/")
    return False


def test_every_url_pattern_is_walked():
    routes = all_routes()
    # The walk covers the whole URL map (admin included), not a hand-kept list.
    assert len(routes) > 200
    names = {route.name for route in routes}
    assert PUBLIC_URL_NAMES <= names, PUBLIC_URL_NAMES - names
    assert {"partner-list", "partner-evidence", "portfolio-export", "kpi-portfolio-export", "admin:index"} <= names


def test_anonymous_callers_reach_only_the_public_urls(client, partner_a):
    answered = []
    for route in all_routes():
        if route.name in PUBLIC_URL_NAMES:
            continue
        url = sample_url(route)
        statuses = {}
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            statuses[method] = response.status_code
            # 405 for the method a view does not take tells nothing; the method it takes must refuse.
            if not (refused(response) or response.status_code == 405):
                answered.append(f"{method.upper()} {url} ({route.route}) -> {response.status_code}")
        if set(statuses.values()) == {405}:
            answered.append(f"{url} ({route.route}) takes neither GET nor POST: walk it with its method")
    assert answered == []


def test_the_public_urls_answer_anonymously(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/schema/").status_code == 200
    assert client.get("/api/v1/docs/").status_code == 200
    assert client.get("/accounts/login/").status_code == 200
    assert client.post("/api/v1/auth/token/", {"username": "x", "password": "y"}).status_code == 400


# Role x endpoint matrix ------------------------------------------------------------------------------


@pytest.fixture
def world(partner_a, partner_b, manager, channel_admin, partner_user_a, partner_user_b):
    return build_program(partner_a, partner_b)


ROLES = ["admin", "manager", "user_a", "user_b"]


def user_for(role: str, request):
    fixture = {"admin": "channel_admin", "manager": "manager", "user_a": "partner_user_a", "user_b": "partner_user_b"}
    return request.getfixturevalue(fixture[role])


def expect(admin, manager, user_a, user_b) -> dict[str, int]:
    return dict(zip(ROLES, (admin, manager, user_a, user_b), strict=True))


OWN = expect(200, 200, 200, 404)  # partner A's records: staff and A's users read them, B's users get 404
STAFF_PAGE = expect(200, 200, 404, 404)  # manager pages do not exist for partner users
VENDOR_API = expect(200, 200, 404, 404)  # alerts: internal to the vendor, so none exist for a partner user
WRITE = expect(201, 201, 403, 403)

EVENT = {
    "partner": "P-A",
    "kind": "meeting_held",
    "occurred_at": "2026-10-01T00:00:00Z",
    "source": "crm",
    "external_id": "matrix-1",
}
DEAL = {
    "external_id": "D-NEW",
    "partner": "P-A",
    "name": "New",
    "amount": 10,
    "stage": "registered",
    "registered_at": "2026-10-01T00:00:00Z",
}
MODEL = {
    "name": "Matrix",
    "is_active": False,
    "priority": 50,
    "segment": {"types": [], "tiers": []},
    "window_days": 90,
    "trend_days": 30,
    "healthy_threshold": 70,
    "at_risk_threshold": 40,
    "alert_threshold": 40,
    "rearm_points": 5,
    "drop_points": 15,
    "components": [{"kpi": "portal_logins", "weight": 1, "method": "target", "target": 10, "missing": "zero"}],
}

# (kind of client, method, URL template, body, expected status by role)
MATRIX = [
    # API reads of partner A's records.
    ("api", "get", "/api/v1/partners/P-A/", None, OWN),
    ("api", "get", "/api/v1/partners/P-A/health/", None, OWN),
    ("api", "get", "/api/v1/partners/P-A/scores/", None, OWN),
    ("api", "get", "/api/v1/partners/P-A/kpis/?period=2026-Q3", None, OWN),
    ("api", "get", "/api/v1/deals/a-deal/", None, OWN),
    ("api", "get", "/api/v1/reviews/{review}/", None, OWN),
    ("api", "get", "/api/v1/alerts/{alert}/", None, VENDOR_API),
    ("api", "get", "/api/v1/alerts/", None, VENDOR_API),
    # API writes.
    ("api", "post", "/api/v1/activities/", [EVENT], WRITE),
    ("api", "post", "/api/v1/deals/", DEAL, WRITE),
    ("api", "patch", "/api/v1/deals/a-deal/", {"stage": "approved"}, expect(200, 200, 403, 403)),
    (
        "api",
        "post",
        "/api/v1/certifications/",
        {"partner": "P-A", "name": "New", "role": "sales", "earned_on": "2026-01-01"},
        expect(200, 200, 403, 403),
    ),
    ("api", "post", "/api/v1/partners/", {"external_id": "P-N", "name": "N", "type": "msp"}, WRITE),
    ("api", "patch", "/api/v1/partners/P-A/", {"region": "APAC"}, expect(200, 200, 403, 403)),
    ("api", "delete", "/api/v1/partners/P-A/", None, expect(204, 403, 403, 403)),
    (
        "api",
        "post",
        "/api/v1/activity-kinds/",
        {"key": "k", "label": "K", "category": "engagement"},
        expect(201, 403, 403, 403),
    ),
    ("api", "post", "/api/v1/reviews/", {"partner": "P-A", "period": "2026-Q4", "held_on": "2026-10-02"}, WRITE),
    ("api", "patch", "/api/v1/reviews/{review}/", {"notes": "n"}, expect(200, 200, 403, 403)),
    ("api", "post", "/api/v1/alerts/{alert}/acknowledge/", {"note": "seen"}, VENDOR_API),
    ("api", "post", "/api/v1/scores/recompute/", {}, expect(202, 403, 403, 403)),
    ("api", "post", "/api/v1/scoring-models/", MODEL, expect(201, 403, 403, 403)),
    ("api", "patch", "/api/v1/scoring-models/{model}/", {"priority": 7}, expect(200, 403, 403, 403)),
    ("api", "post", "/api/v1/scoring-models/{model}/preview/", MODEL, expect(200, 200, 403, 403)),
    # Pages, exports and evidence.
    ("page", "get", "/partners/P-A/", None, STAFF_PAGE),
    ("page", "get", "/partners/P-A/evidence/portal_logins/", None, OWN),
    ("page", "get", "/partners/P-A/evidence/deals_registered/", None, OWN),
    ("page", "get", "/partners/P-A/kpis/", None, OWN),
    ("page", "get", "/partners/P-A/review/", None, STAFF_PAGE),
    ("page", "get", "/reviews/{review}/", None, STAFF_PAGE),
    ("page", "get", "/portfolio/", None, STAFF_PAGE),
    ("page", "get", "/portfolio/export.csv", None, STAFF_PAGE),
    ("page", "get", "/kpis/", None, STAFF_PAGE),
    ("page", "get", "/kpis/export.csv", None, STAFF_PAGE),
    ("page", "get", "/tiers/review/", None, STAFF_PAGE),
    ("page", "post", "/partners/P-A/alerts/{alert}/acknowledge/", {"note": "seen"}, expect(302, 302, 404, 404)),
    ("page", "post", "/tiers/review/P-A/change/", {"to_tier": ""}, expect(302, 403, 404, 404)),
]


def client_for(kind_of_client: str, user) -> Client:
    if kind_of_client == "api":
        from rest_framework.test import APIClient

        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "kind_of_client, method, url, body, expected",
    MATRIX,
    ids=[f"{method.upper()} {url}" for _, method, url, _, _ in MATRIX],
)
def test_role_endpoint_matrix(request, world, role, kind_of_client, method, url, body, expected):
    client = client_for(kind_of_client, user_for(role, request))
    path = url.format(**world)
    if kind_of_client == "api":
        response = getattr(client, method)(path, body, format="json")
    else:
        response = getattr(client, method)(path, body or {})
    assert response.status_code == expected[role], (role, path, response.content[:300])
    if expected[role] == 404 and kind_of_client == "api" and method == "get":
        # Out of scope reads exactly as missing: nothing tells that partner A's record exists.
        missing = re.sub(r"P-A|a-deal|/\d+/", lambda m: "/999999/" if m.group().startswith("/") else "NOPE", path)
        assert getattr(client, method)(missing).json() == response.json()


LISTS = [
    "/api/v1/partners/",
    "/api/v1/activities/",
    "/api/v1/deals/",
    "/api/v1/certifications/",
    "/api/v1/reviews/",
]


@pytest.mark.parametrize("path", LISTS)
def test_lists_hold_only_what_the_role_may_read(request, world, path):
    seen = {}
    for role in ROLES:
        response = client_for("api", user_for(role, request)).get(path)
        assert response.status_code == 200
        seen[role] = {row.get("partner", row.get("external_id")) for row in response.json()["results"]}
    everything = {"P-A"} if path == "/api/v1/reviews/" else {"P-A", "P-B"}  # only partner A has a review
    assert seen["admin"] == seen["manager"] == everything
    assert seen["user_a"] == {"P-A"}
    assert seen["user_b"] == everything - {"P-A"}


def test_exports_hold_every_partner_for_staff(request, world):
    for role in ("admin", "manager"):
        client = client_for("page", user_for(role, request))
        for path in ("/portfolio/export.csv", "/kpis/export.csv"):
            response = client.get(path)
            text = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
            assert "P-A" in text and "P-B" in text, (role, path)


def test_evidence_links_of_the_health_api_are_scoped(request, world):
    health = client_for("api", user_for("admin", request)).get("/api/v1/partners/P-A/health/").json()
    links = [component["evidence"] for component in health["components"] if component["evidence"]]
    assert links
    for role in ROLES:
        client = client_for("api", user_for(role, request))
        for link in links:
            response = client.get(link)
            assert response.status_code == 200, (role, link)
            partners = {row["partner"] for row in response.json()["results"]}
            assert partners <= ({"P-A"} if role != "user_b" else set()), (role, link)
    # Partner B's users get the answer of a partner that does not exist.
    client = client_for("api", user_for("user_b", request))
    assert client.get(links[0]).json() == client.get(links[0].replace("P-A", "NOPE")).json()
