"""Settings for Partner Health PRM, read from environment variables (see docs/operations.md)."""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime files of the embedded default (SQLite file, filesystem broker, uploads): never committed.
VAR_DIR = Path(environ.Env().str("PRM_VAR_DIR", default=str(BASE_DIR / ".var")))

env = environ.Env()


_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _read(name: str, cast: str, **kwargs):
    """Read one variable; a malformed value stops start-up with a message naming the variable."""
    try:
        if cast == "bool":
            raw = env.str(name, default="").strip().lower()
            if not raw:
                return kwargs["default"]
            if raw not in _BOOLEANS:
                raise ValueError("expected one of true, false, 1, 0, yes, no, on, off")
            return _BOOLEANS[raw]
        return getattr(env, cast)(name, **kwargs)
    except ImproperlyConfigured:
        raise
    except Exception as exc:  # environ raises ValueError, KeyError, ... depending on the cast
        raise ImproperlyConfigured(
            f"Environment variable {name} has a malformed value {env.str(name, default='')!r}: {exc}"
        ) from exc


DEBUG = _read("DEBUG", "bool", default=False)

if DEBUG:
    SECRET_KEY = _read("SECRET_KEY", "str", default="insecure-demo-key-only-for-debug")
else:
    SECRET_KEY = _read("SECRET_KEY", "str", default="")
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "Environment variable SECRET_KEY must be set to a random string of at least 32 characters "
            "when DEBUG is off."
        )

ALLOWED_HOSTS = _read("ALLOWED_HOSTS", "list", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = _read("CSRF_TRUSTED_ORIGINS", "list", default=[])
TIME_ZONE = _read("TIME_ZONE", "str", default="UTC")
try:
    import zoneinfo

    zoneinfo.ZoneInfo(TIME_ZONE)
except Exception as exc:
    raise ImproperlyConfigured(f"Environment variable TIME_ZONE names no known time zone: {TIME_ZONE!r}") from exc
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_celery_results",
    "simple_history",
    "axes",
    "csp",
    "prm",
    "kpis",
    "health",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks, so that it sees the outcome of authentication.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "prm.urls"
WSGI_APPLICATION = "prm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
            ],
        },
    },
]

# Database: SQLite file by default (the demo); PostgreSQL in production and tests.
DATABASES = {"default": _read("DATABASE_URL", "db_url", default=f"sqlite:///{VAR_DIR / 'prm.sqlite3'}")}
if DATABASES["default"].get("ENGINE") not in {"django.db.backends.postgresql", "django.db.backends.sqlite3"}:
    raise ImproperlyConfigured(
        "Environment variable DATABASE_URL must be a postgres:// or sqlite:/// URL, "
        f"got {env.str('DATABASE_URL', default='')!r}"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    if _read("DATABASE_POOL", "bool", default=True):
        # One pool per process: size it as (gunicorn workers + celery concurrency) x max_size.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": _read("DATABASE_POOL_MIN_SIZE", "int", default=1),
            "max_size": _read("DATABASE_POOL_MAX_SIZE", "int", default=8),
            "timeout": 10,
        }
        DATABASES["default"]["CONN_MAX_AGE"] = 0
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = _read("CONN_MAX_AGE", "int", default=0)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Web, worker and beat share the demo's SQLite file: wait for locks rather than fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": _read("CACHE_URL", "cache_url", default="locmemcache://")}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

# Login throttling (django-axes): lock a username+address after repeated failures.
AXES_FAILURE_LIMIT = _read("AXES_FAILURE_LIMIT", "int", default=10)
AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = _read("AXES_ENABLED", "bool", default=True)
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(_read("STATIC_ROOT", "str", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = Path(_read("MEDIA_ROOT", "str", default=str(VAR_DIR / "media")))
WHITENOISE_USE_FINDERS = DEBUG

# Email: console in the demo, SMTP (smtp://, smtp+tls://) in production.
EMAIL_CONFIG = _read("EMAIL_URL", "email_url", default="consolemail://" if DEBUG else "smtp://localhost:25")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = _read("DEFAULT_FROM_EMAIL", "str", default="Partner Health <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Absolute links in emails (alerts, password reset).
SITE_URL = _read("SITE_URL", "str", default="http://127.0.0.1:8000")
# Tier reviews: closed quarters in a row below a tier before a downgrade is suggested.
KPI_TIER_GRACE_PERIODS = _read("KPI_TIER_GRACE_PERIODS", "int", default=2)
# Days without a business review before the partner's owner is reminded.
KPI_REVIEW_REMINDER_DAYS = _read("KPI_REVIEW_REMINDER_DAYS", "int", default=100)
# First retry delay (seconds, doubling each time) of an alert email after a temporary SMTP failure.
ALERT_RETRY_BACKOFF = _read("ALERT_RETRY_BACKOFF", "int", default=30)

# Security headers; `manage.py check --deploy` passes with DEBUG off.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = _read("SECURE_SSL_REDIRECT", "bool", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = _read("SESSION_COOKIE_SECURE", "bool", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = _read("SECURE_HSTS_SECONDS", "int", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
# The preload directive alone submits nothing; listing the domain stays the operator's decision.
SECURE_HSTS_PRELOAD = _read("SECURE_HSTS_PRELOAD", "bool", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Content Security Policy: no inline scripts, nothing from other origins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "prm.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "prm.api.permissions.exception_handler",
    # JSON only, as API.md says; text PostgreSQL cannot store (NUL, unpaired surrogates) is a 400.
    "DEFAULT_PARSER_CLASSES": ["prm.api.parsers.StrictJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["prm.api.permissions.PerUserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": _read("API_THROTTLE_USER", "str", default="6000/minute"),
        "bulk": _read("API_THROTTLE_BULK", "str", default="600/minute"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # Times with an offset, as API.md says.
    "DATETIME_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": False,
}
# What account managers read and write: "all" partners (the default), "write-own" (read all, write only
# the partners they own) or "own" (read and write only the partners they own). See prm/roles.py.
ACCOUNT_MANAGER_SCOPE = _read("ACCOUNT_MANAGER_SCOPE", "str", default="all")
if ACCOUNT_MANAGER_SCOPE not in {"all", "write-own", "own"}:
    raise ImproperlyConfigured(
        f"Environment variable ACCOUNT_MANAGER_SCOPE must be all, write-own or own, got {ACCOUNT_MANAGER_SCOPE!r}"
    )
# API list bodies: the largest list accepted in one request.
API_MAX_LIST_ITEMS = 5000
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024

SPECTACULAR_SETTINGS = {
    "TITLE": "Partner Health PRM API",
    "DESCRIPTION": "Partners, their signals, KPIs and health scores. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have fields named type, status, category or unit with different choices.
    "ENUM_NAME_OVERRIDES": {
        "PartnerTypeEnum": "prm.models.Partner.Type",
        "PartnerStatusEnum": "prm.models.Partner.Status",
        "ActivityKindCategoryEnum": "prm.models.ActivityKind.Category",
        "ActivityKindUnitEnum": "prm.models.ActivityKind.Unit",
        "KpiBetterEnum": "kpis.models.Better",
        "ActionItemStatusEnum": "kpis.models.ActionItem.Status",
        "KpiCategoryEnum": "kpis.models.KpiCategory",
        "KpiUnitEnum": "kpis.models.KpiUnit",
    },
}

# Celery: the filesystem transport by default (no broker server for the demo); Redis in production.
CELERY_BROKER_URL = _read("CELERY_BROKER_URL", "str", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "broker-processed"),
        # Broadcast (pidbox) messages; kombu's default is a "control" folder in the working directory.
        "control_folder": str(VAR_DIR / "broker-control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.split("://", 1)[0] not in {"redis", "rediss", "amqp", "pyamqp", "memory"}:
    raise ImproperlyConfigured(
        f"Environment variable CELERY_BROKER_URL has an unsupported scheme: {CELERY_BROKER_URL!r}"
    )
CELERY_RESULT_BACKEND = _read("CELERY_RESULT_BACKEND", "str", default="django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = _read("CELERY_TASK_ALWAYS_EAGER", "bool", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _read("LOG_LEVEL", "str", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
