"""Settings come from the environment; a malformed value stops start-up naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "-production-secret-" + "z" * 20,
    "ALLOWED_HOSTS": "prm.example.com",
    "DATABASE_URL": "postgres://prm:secret@127.0.0.1:5432/prm",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "EMAIL_URL": "smtp+tls://user:pass@smtp.example.com:587",
}


def start(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run manage.py with only these variables (plus PATH), as a fresh process would start."""
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PRM_VAR_DIR": os.environ["PRM_VAR_DIR"]}
    return subprocess.run(
        [sys.executable, "manage.py", *(args or ("check",))],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "variable,value",
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "not a url"),
        ("TIME_ZONE", "Mars/Olympus"),
        ("CELERY_BROKER_URL", "ftp://nowhere"),
        ("AXES_FAILURE_LIMIT", "ten"),
    ],
)
def test_malformed_value_names_the_variable(variable, value):
    result = start({"DEBUG": "true", variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


def test_no_secret_default_outside_debug():
    result = start({"DEBUG": "false", "ALLOWED_HOSTS": "x"})
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


def test_debug_demo_starts_with_no_variables():
    result = start({"DEBUG": "true"})
    assert result.returncode == 0, result.stderr


def test_check_deploy_passes_with_production_settings():
    result = start(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
