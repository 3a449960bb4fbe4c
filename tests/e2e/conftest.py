"""Browser tests: Playwright driving Debian's chromium against pytest-django's live server."""

import os
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db.backends.base.creation import BaseDatabaseCreation

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(django_settings.BASE_DIR) / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Report every CSP violation on the page, whatever the console shows; init scripts are not subject to the CSP.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


def _serialized_on_the_connection_class() -> None:
    """Let serialized_rollback restore the migrations' data under Playwright too.

    Playwright's sync API runs the test under an event loop, and Django keeps one connection object per
    asyncio context: the one the browser tests use is not the one the test database's contents were
    serialized on, so TransactionTestCase would find nothing to restore. Kept on the connection class as
    well, the contents are found from any context. (This module is imported at collection, before the
    test database is set up.)
    """
    original = BaseDatabaseCreation.serialize_db_to_string
    if getattr(original, "keeps_on_class", False):
        return

    def serialize_db_to_string(self):
        contents = original(self)
        type(self.connection)._test_serialized_contents = contents
        return contents

    serialize_db_to_string.keeps_on_class = True
    BaseDatabaseCreation.serialize_db_to_string = serialize_db_to_string


_serialized_on_the_connection_class()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium (make browser) to run the browser tests"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture
def pages_site(settings):
    """The web pages mounted at the site root, and their stylesheet served by the live server."""
    return settings


class PageProblems:
    """Console errors, uncaught exceptions, CSP violations and failed responses seen by a page."""

    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        self.failed: list[str] = []
        self.csp: list[str] = []
        page.add_init_script(CSP_LISTENER)
        page.on("console", lambda message: message.type == "error" and self.console.append(message.text))
        page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))
        page.on(
            "response",
            lambda response: response.status >= 400 and self.failed.append(f"{response.status} {response.url}"),
        )

    def checkpoint(self) -> None:
        """Collect the current document's CSP violations (call before leaving a page)."""
        self.csp += self.page.evaluate("window.__cspViolations || []")

    def assert_clean(self) -> None:
        self.checkpoint()
        assert self.console == [], self.console
        assert self.failed == [], self.failed
        assert self.csp == [], self.csp


@pytest.fixture
def problems(page):
    return PageProblems(page)


@pytest.fixture
def screenshot(page):
    """screenshot(name): save a full-page PNG under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
