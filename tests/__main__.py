"""`python -m tests [pytest args]`: find PostgreSQL and Redis, set the environment, run pytest.

In CI (CI=true) both services are required and an unreachable one fails the run. Elsewhere the run
falls back to SQLite and the in-memory broker, says so, and the tests that need the real service skip.
"""

import os
import socket
import sys
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/prm"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    database_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    redis_url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    problems = []

    if reachable(database_url):
        os.environ["DATABASE_URL"] = database_url
        os.environ["PRM_TEST_POSTGRES"] = "1"
        print(f"tests: PostgreSQL at {urlsplit(database_url).netloc}")
    elif in_ci:
        problems.append(f"PostgreSQL is unreachable at {urlsplit(database_url).netloc}")
    else:
        os.environ["DATABASE_URL"] = "sqlite:///:memory:"
        os.environ["PRM_TEST_POSTGRES"] = "0"
        print("tests: PostgreSQL unreachable; FALLING BACK to SQLite. PostgreSQL-only tests will skip.")

    if reachable(redis_url):
        os.environ["CELERY_BROKER_URL"] = redis_url
        os.environ["PRM_TEST_REDIS"] = redis_url
        print(f"tests: Redis at {urlsplit(redis_url).netloc}")
    elif in_ci:
        problems.append(f"Redis is unreachable at {urlsplit(redis_url).netloc}")
    else:
        os.environ["CELERY_BROKER_URL"] = "memory://"
        os.environ["PRM_TEST_REDIS"] = ""
        print("tests: Redis unreachable; FALLING BACK to the in-memory broker. Worker tests will skip.")

    if problems:
        print("tests: CI=true and " + "; ".join(problems) + ". Refusing to fall back.", file=sys.stderr)
        return 2

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
    os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 32)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
    os.environ.setdefault("CELERY_RESULT_BACKEND", "django-db")
    os.environ.setdefault("EMAIL_URL", "smtp://127.0.0.1:1")
    os.environ.setdefault("PRM_VAR_DIR", os.path.join(os.getcwd(), ".var", "test"))
    # One pool per process does not mix with pytest-django's test database switch; tests use plain connections.
    os.environ.setdefault("DATABASE_POOL", "false")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    import pytest

    return pytest.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
