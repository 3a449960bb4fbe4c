"""rundemo: the one-command demo, started as a user starts it, in a real process on its own SQLite file."""

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

BASE_DIR = Path(__file__).resolve().parents[2]
# What a developer's shell would pass on; nothing of the test run's own settings (SECRET_KEY, DATABASE_URL, ...).
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Demo:
    """A `manage.py rundemo` process whose merged output is read as it comes."""

    def __init__(self, var_dir: Path, port: int):
        env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
        env |= {
            "DEBUG": "true",
            "DATABASE_URL": f"sqlite:///{var_dir}/demo.sqlite3",
            "CELERY_BROKER_URL": "filesystem://",
            "PRM_VAR_DIR": str(var_dir),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "manage.py", "rundemo", "--port", str(port), "--partners", "10"]
        self.process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.children: dict[str, int] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.output, re.MULTILINE):
                return match
            if self.process.poll() is not None:
                time.sleep(0.5)  # the last lines
                pytest.fail(f"rundemo exited ({self.process.returncode}) before {pattern!r}:\n{self.output}")
            time.sleep(0.2)
        pytest.fail(f"rundemo printed no {pattern!r} within {timeout} s:\n{self.output}")

    def wait_until_running(self) -> tuple[str, str]:
        """The URL and admin password of the banner; records the children's pids."""
        url = self.wait_for(r"^\s+URL:\s+(http://\S+)$").group(1)
        password = self.wait_for(r"^\s+Login:\s+username admin, password (\S+)$").group(1)
        processes = self.wait_for(r"^\s+Processes: web server pid (\d+), worker and beat pid (\d+)$")
        self.children = {"web": int(processes.group(1)), "worker": int(processes.group(2))}
        return url, password

    def kill_all(self) -> None:
        for pid in [*self.children.values(), self.process.pid]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def start_demo():
    started: list[Demo] = []

    def start(var_dir: Path) -> Demo:
        demo = Demo(var_dir, free_port())
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.kill_all()


def log_in(url: str, password: str, opener=None) -> tuple[str, str]:
    """Post the admin login form as a browser does; return the final URL and page."""
    opener = opener or signed_out()
    login_url = url + "admin/login/?next=/admin/"
    with opener.open(login_url, timeout=10) as response:
        form = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": "admin", "password": password, "next": "/admin/"}
    ).encode()
    request = urllib.request.Request(login_url, data=body, headers={"Referer": login_url})
    with opener.open(request, timeout=10) as response:
        return response.url, response.read().decode()


def signed_out():
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def demo_pages(opener, url: str) -> dict[str, int]:
    """Every page a channel admin opens in the demo, and the status it answered (on the demo's SQLite)."""
    with opener.open(url + "api/v1/partners/?ordering=score&page_size=1", timeout=30) as response:
        partner = json.loads(response.read())["results"][0]["external_id"]
    with opener.open(url + "api/v1/scoring-models/?page_size=1", timeout=30) as response:
        model = json.loads(response.read())["results"][0]["id"]
    paths = [
        "",
        "portfolio/",
        "portfolio/?band=at_risk&ordering=-trend",
        "portfolio/export.csv",
        f"partners/{partner}/",
        f"partners/{partner}/evidence/deals_registered/",
        f"partners/{partner}/kpis/",
        f"partners/{partner}/review/",
        f"partners/{partner}/review.pdf",
        "kpis/",
        "tiers/review/",
        "admin/prm/partner/",
        "admin/prm/activity/",
        f"admin/health/scoringmodel/{model}/change/",
        f"api/v1/partners/{partner}/health/",
        "api/v1/docs/",
    ]
    statuses = {}
    for path in paths:
        try:
            with opener.open(url + path, timeout=60) as response:
                statuses[path] = response.status
        except urllib.error.HTTPError as error:
            statuses[path] = error.code
    return statuses


@pytest.mark.slow
def test_first_run_seeds_serves_and_stops_on_ctrl_c(tmp_path, start_demo):
    demo = start_demo(tmp_path)
    url, password = demo.wait_until_running()

    assert "Seeded 10 partners" in demo.output
    assert (tmp_path / "demo-admin-password.txt").read_text().strip() == password
    with urllib.request.urlopen(url + "admin/login/", timeout=10) as response:
        assert response.status == 200
        page = response.read().decode()
    assert 'name="username"' in page and 'name="password"' in page

    final_url, page = log_in(url, "not-" + password)
    assert urllib.parse.urlsplit(final_url).path == "/admin/login/"
    final_url, page = log_in(url, password)
    assert urllib.parse.urlsplit(final_url).path == "/admin/"
    assert 'action="/admin/logout/"' in page
    # The demo runs on SQLite: every page must work there too, not only on the tests' PostgreSQL.
    opener = signed_out()
    log_in(url, password, opener)
    statuses = demo_pages(opener, url)
    assert statuses == dict.fromkeys(statuses, 200), statuses

    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=60) == 0
    assert not alive(demo.children["web"])
    assert not alive(demo.children["worker"])
    assert "Stopped." in demo.output


@pytest.mark.slow
def test_later_run_reuses_data_and_password_and_fails_when_a_child_dies(tmp_path, start_demo):
    first = start_demo(tmp_path)
    _url, password = first.wait_until_running()
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=60) == 0
    assert not alive(first.children["web"]) and not alive(first.children["worker"])

    second = start_demo(tmp_path)
    _url, again = second.wait_until_running()
    assert again == password
    assert "Demo data present (10 partners): not seeding." in second.output
    assert "Seeded" not in second.output

    os.kill(second.children["web"], signal.SIGKILL)
    assert second.process.wait(timeout=60) != 0
    assert not alive(second.children["worker"])
    second.wait_for(r"The web server stopped on its own")


def test_refuses_to_run_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("rundemo")
