"""Reproducible benchmarks on a synthetic program in a dedicated PostgreSQL database (not tests)."""

import os

DEFAULT_DATABASE = "prm_bench"
QUICK_DATABASE = "prm_bench_quick"  # the quick (10,000-partner) program, so that it never replaces the full one
LOCK_FILE = "/tmp/prm-bench.lock"


def database_url(database: str = DEFAULT_DATABASE) -> str:
    """The bench database's URL; BENCH_DATABASE_URL overrides the local default."""
    return os.environ.get("BENCH_DATABASE_URL") or f"postgres://postgres@127.0.0.1:5432/{database}"


def django_setup(database: str = DEFAULT_DATABASE) -> None:
    """Configure Django as production runs it (DEBUG off, pooled connections), pointed at the bench database.

    Only what a local run lacks is relaxed: no HTTPS redirect or secure cookies (the test client speaks
    plain HTTP to "testserver"), and an in-memory broker so alert emails queued by a recompute go nowhere.
    The bench database is always set explicitly: a DATABASE_URL left in the shell must never be rebuilt.
    """
    os.environ["DATABASE_URL"] = database_url(database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ.setdefault("EMAIL_URL", "smtp://127.0.0.1:1")
    os.environ.setdefault("PRM_VAR_DIR", "/tmp/prm-var-bench")

    import django

    django.setup()
