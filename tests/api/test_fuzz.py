"""Schemathesis against the served OpenAPI schema, as a channel admin and as a partner user: no 5xx,
answers that conform to the schema, and no operation that ignores missing or wrong credentials.

Bounded and deterministic (derandomized hypothesis, FUZZ_EXAMPLES cases per operation and role) so that
`make test` runs it every time; set FUZZ_EXAMPLES higher for a longer hunt.
"""

from __future__ import annotations

import atexit
import json
import os
import zlib
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, response_schema_conformance

from tests.api.program import build_program

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# FUZZ_REPORT=file: the number of cases sent per operation and role, written there when the run ends.
CASES: Counter = Counter()
if os.environ.get("FUZZ_REPORT"):
    atexit.register(lambda: Path(os.environ["FUZZ_REPORT"]).write_text(json.dumps(sorted(CASES.items()), indent=1)))
CHECKS = [not_a_server_error, response_schema_conformance, ignored_auth]


# The schema as the server serves it, fetched at collection (pytest-django has set Django up by then);
# the cases are sent to the same app in-process, through WSGI, inside each test's transaction.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())
if os.environ.get("FUZZ_PATHS"):
    # A regex of the paths to fuzz, to hunt one operation's failure faster.
    schema = schema.include(path_regex=os.environ["FUZZ_PATHS"])


@pytest.fixture
def known_ids(partner_a, partner_b) -> dict:
    ids = build_program(partner_a, partner_b)
    return {
        "external_id": ["P-A", "P-B", "a-deal", "b-deal"],
        "id": [str(ids["alert"]), str(ids["review"]), str(ids["model"])],
        "key": ["portal_logins", "deals_registered"],
    }


def with_known_ids(case, known: dict) -> None:
    """Point half of the cases at records that exist, so that detail operations answer more than 404."""
    for name, value in list((case.path_parameters or {}).items()):
        # crc32, not hash(): str hashes change from one process to the next, and the run must not.
        if name in known and zlib.crc32(f"{case.operation.label}{case.body!r}{value}".encode()) % 2 == 0:
            case.path_parameters[name] = known[name][zlib.crc32(str(value).encode()) % len(known[name])]


@pytest.fixture(autouse=True)
def connection_kept_across_requests():
    """Keep the test's database connection (and transaction) open between requests, as Django's test client does."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def fuzz(case, headers: dict, known: dict, role: str) -> None:
    CASES[f"{role} {case.operation.label}"] += 1
    with_known_ids(case, known)
    # The throttle would answer 429 after enough cases; the fuzz is about the answers, not the rate.
    cache.clear()
    case.call_and_validate(headers=headers, checks=CHECKS)


def token_header(user) -> dict:
    token, _ = Token.objects.get_or_create(user=user)
    return {"Authorization": f"Token {token.key}"}


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_as_channel_admin(case, channel_admin, manager, known_ids):
    fuzz(case, token_header(channel_admin), known_ids, "admin")


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_as_partner_user(case, partner_user_a, known_ids):
    fuzz(case, token_header(partner_user_a), known_ids, "partner user")


def test_the_fuzz_reaches_records_that_exist():
    """The id substitution really sends some cases to known records (else detail operations only 404)."""

    class Case:
        class operation:
            label = "GET /api/v1/partners/{external_id}/"

        body = None

        def __init__(self, value):
            self.path_parameters = {"external_id": value}

    known = {"external_id": ["P-A", "P-B"]}
    hit = 0
    for n in range(50):
        case = Case(f"random-{n}")
        with_known_ids(case, known)
        hit += case.path_parameters["external_id"] in known["external_id"]
    assert 10 < hit < 40
