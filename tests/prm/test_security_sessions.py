"""Sessions and secrets: CSRF on session writes, 429 with Retry-After, and secrets that never reach the logs."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from health.models import Alert, ScoringModel
from prm.models import Activity, Partner

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"  # tests/factories.py gives every user this password
EVENT = {
    "partner": "P-A",
    "kind": "meeting_held",
    "occurred_at": "2026-10-01T00:00:00Z",
    "source": "crm",
    "external_id": "csrf-1",
}


# CSRF ------------------------------------------------------------------------------------------------


@pytest.fixture
def csrf_client(manager):
    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)
    return client


def csrf_token(client: Client) -> str:
    client.get("/accounts/password_change/")  # a page with a form sets the cookie
    return client.cookies[settings.CSRF_COOKIE_NAME].value


def test_session_writes_to_the_api_need_the_csrf_token(csrf_client, partner_a):
    refused = csrf_client.post("/api/v1/activities/", [EVENT], content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not Activity.objects.exists()
    refused = csrf_client.patch("/api/v1/partners/P-A/", {"region": "APAC"}, content_type="application/json")
    assert refused.status_code == 403
    assert Partner.objects.get(external_id="P-A").region == "EMEA"

    token = csrf_token(csrf_client)
    accepted = csrf_client.post(
        "/api/v1/activities/", [EVENT], content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 201
    assert Activity.objects.count() == 1


def test_session_writes_to_pages_need_the_csrf_token(csrf_client, partner_a):
    from health.services import scores_recompute

    scores_recompute()
    alert = Alert.objects.create(
        partner=partner_a,
        model=ScoringModel.objects.filter(is_active=True).first(),
        kind=Alert.Kind.DROP,
        as_of=partner_a.created_at,
        score=10.0,
        previous_score=60.0,
        trend=-5.0,
        band="at_risk",
        reasons=[],
    )
    url = f"/partners/P-A/alerts/{alert.pk}/acknowledge/"
    assert csrf_client.post(url, {"note": "seen"}).status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert csrf_client.post(url, {"note": "seen", "csrfmiddlewaretoken": csrf_token(csrf_client)}).status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None


def test_token_writes_need_no_csrf_token(manager, partner_a):
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=manager).key}")
    assert client.post("/api/v1/activities/", [EVENT], format="json").status_code == 201


# Throttling ------------------------------------------------------------------------------------------


def rates(**changed) -> dict:
    return {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **changed},
    }


def test_over_the_user_rate_answers_429_with_retry_after(api_client_for, manager, partner_a, partner_user_a):
    cache.clear()
    client = api_client_for(manager)
    with override_settings(REST_FRAMEWORK=rates(user="3/minute")):
        for _ in range(3):
            assert client.get("/api/v1/partners/").status_code == 200
        throttled = client.get("/api/v1/partners/P-A/health/")
        assert throttled.status_code == 429
        assert 0 < int(throttled["Retry-After"]) <= 60
        assert "throttled" in throttled.json()["detail"].lower()
        # The rate is per user: another user is not held back by the first one's requests.
        assert api_client_for(partner_user_a).get("/api/v1/partners/").status_code == 200
    cache.clear()


def test_over_the_bulk_rate_answers_429_with_retry_after_and_writes_nothing(api_client_for, manager, partner_a):
    cache.clear()
    client = api_client_for(manager)
    with override_settings(REST_FRAMEWORK=rates(bulk="1/hour")):
        assert client.post("/api/v1/activities/", [EVENT]).status_code == 201
        throttled = client.post("/api/v1/activities/", [{**EVENT, "external_id": "csrf-2"}])
        assert throttled.status_code == 429
        assert 60 < int(throttled["Retry-After"]) <= 3600
        assert Activity.objects.count() == 1
    cache.clear()


# Secrets in logs -------------------------------------------------------------------------------------


class Everything(logging.Handler):
    """Every record of every logger, formatted with its traceback and extra attributes."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record):
        if record.name.startswith("factory"):
            return  # the test's own factories, which set the users' passwords
        self.texts.append(self.format(record) + " " + " ".join(repr(value) for value in vars(record).values()))


@pytest.fixture
def every_log_record():
    handler = Everything()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Loggers the settings quiet down are opened up too: whatever they would say must be clean.
    quiet = {name: logging.getLogger(name).level for name in ("django.db.backends", "axes", "django.request")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


def test_secrets_never_reach_the_logs(every_log_record, manager, partner_a, monkeypatch):
    client = Client(raise_request_exception=False)
    # Sign-in pages: a wrong password, then the right one.
    client.post("/accounts/login/", {"username": "manager", "password": "wrong-" + PASSWORD})
    client.post("/accounts/login/", {"username": "manager", "password": PASSWORD})
    session_key = client.session.session_key
    # The token endpoint, right and wrong.
    api = APIClient(raise_request_exception=False)
    assert api.post("/api/v1/auth/token/", {"username": "manager", "password": "bad-" + PASSWORD}).status_code == 400
    token = api.post("/api/v1/auth/token/", {"username": "manager", "password": PASSWORD}).json()["token"]
    # A bad token, a refused body, and a request that fails inside the server.
    api.credentials(HTTP_AUTHORIZATION="Token wrong-" + token)
    assert api.get("/api/v1/partners/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.post("/api/v1/activities/", [{**EVENT, "quantity": "lots"}]).status_code == 400

    def broken(**kwargs):
        raise RuntimeError("ingest failed")

    monkeypatch.setattr("prm.api.views.activities_ingest", broken)
    assert api.post("/api/v1/activities/", [EVENT]).status_code == 500

    logged = "\n".join(every_log_record.texts)
    # The failure itself was logged: the capture works, and it saw the request that failed.
    assert "ingest failed" in logged and "/api/v1/activities/" in logged
    for secret in (PASSWORD, token, settings.SECRET_KEY, session_key):
        assert secret not in logged
