"""`manage.py rundemo` (`make run`): the whole application on one machine with no other service.

Migrates the embedded SQLite database, seeds the demo program once, makes sure an `admin` superuser
exists, installs the periodic tasks, then runs the development web server and one Celery process
(worker and beat together, on the filesystem broker) until Ctrl-C or SIGTERM. If either child stops
on its own, the other is stopped too and the command fails.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError

from prm.models import Partner

ADMIN_USERNAME = "admin"
START_TIMEOUT = 90  # seconds for the web server to answer
STOP_TIMEOUT = 20  # seconds for a child to stop before it is killed


class Command(BaseCommand):
    help = "Run the demo: migrate, seed once, then the web server and a Celery worker with beat, until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address the web server listens on.")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--partners", type=int, default=200, help="Partners of the demo program (first run).")
        parser.add_argument("--no-worker", action="store_true", help="Run the web server only (no worker, no beat).")

    def handle(self, *args, host: str, port: int, partners: int, no_worker: bool, **options):
        if not settings.DEBUG:
            raise CommandError("rundemo runs the development server and serves static files: set DEBUG=true.")
        self._stop_requested = False

        self.say("Migrating the database...")
        call_command("migrate", interactive=False, verbosity=0)
        if Partner.objects.exists():
            self.say(f"Demo data present ({Partner.objects.count()} partners): not seeding.")
        else:
            self.say(f"Seeding the demo program ({partners} partners)...")
            call_command("seed_demo", partners=partners, stdout=self.stdout, stderr=self.stderr)
        password, password_note = self._admin_ensure()
        if "setup_periodic_tasks" in get_commands():
            call_command("setup_periodic_tasks", stdout=self.stdout, stderr=self.stderr)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._request_stop)
        children = self._start(host, port, no_worker)
        try:
            self._wait_until_serving(host, port, children)
            if self._stop_requested:
                return
            url = f"http://{_url_host(host)}:{port}/"
            lines = [
                "",
                "=" * 72,
                "Partner Health PRM demo is running.",
                f"  URL:      {url}",
                f"  Login:    username {ADMIN_USERNAME}, password {password}",
                f"            {password_note}",
                "  Processes: " + ", ".join(f"{name} pid {process.pid}" for name, process in children.items()),
                "Press Ctrl-C to stop.",
                "=" * 72,
                "",
            ]
            self.say("\n".join(lines))
            while not self._stop_requested:
                self._check_children(children)
                time.sleep(0.3)
            self.say("Stopping...")
        finally:
            _stop(children)
        self.say("Stopped.")

    def say(self, text: str) -> None:
        # Flushed at once: the children write to the same stream.
        self.stdout.write(text)
        self.stdout.flush()

    def _request_stop(self, signum, frame) -> None:
        self._stop_requested = True

    def _admin_ensure(self) -> tuple[str, str]:
        """The admin's password, generated on the first run and kept in the var directory."""
        path = Path(settings.VAR_DIR) / "demo-admin-password.txt"
        if path.exists():
            password = path.read_text().strip()
        else:
            password = secrets.token_urlsafe(12)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(password + "\n")
        User = get_user_model()
        user = User.objects.filter(username=ADMIN_USERNAME).first()
        if user is None:
            User.objects.create_superuser(ADMIN_USERNAME, "admin@localhost", password)
            return password, f"(created; saved in {path})"
        if user.check_password(password):
            return password, f"(saved in {path})"
        # Someone changed it (or made the user): their choice stands.
        return password, f"(from {path}; the admin user's password was changed since and is left as it is)"

    def _start(self, host: str, port: int, no_worker: bool) -> dict[str, subprocess.Popen]:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        commands = {"web server": [sys.executable, manage, "runserver", "--noreload", address]}
        if not no_worker:
            commands["worker and beat"] = [
                sys.executable,
                *("-m", "celery", "-A", "prm", "worker", "-B", "--pool=solo", "--loglevel=INFO"),
                *("--hostname", f"demo-{port}@%h"),
            ]
        # Same environment (settings come from it); unbuffered so that logs show up as they happen.
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        children = {}
        try:
            for name, command in commands.items():
                children[name] = subprocess.Popen(command, cwd=settings.BASE_DIR, env=environment)
        except OSError as exc:
            _stop(children)
            raise CommandError(f"Could not start the {name}: {exc}") from exc
        return children

    def _wait_until_serving(self, host: str, port: int, children: dict[str, subprocess.Popen]) -> None:
        url = f"http://{_url_host(host)}:{port}/healthz"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._stop_requested:
                return
            self._check_children(children)
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise CommandError(f"The web server did not answer at {url} within {START_TIMEOUT} s.")

    def _check_children(self, children: dict[str, subprocess.Popen]) -> None:
        for name, process in children.items():
            code = process.poll()
            if code is not None:
                raise CommandError(f"The {name} stopped on its own (exit code {code}); stopping the rest.")


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _stop(children: dict[str, subprocess.Popen]) -> None:
    """Ask every child still running to stop (SIGTERM: Celery finishes its task), then kill stragglers."""
    for process in children.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in children.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
