"""Steward settings: everything that differs between machines comes from the environment.

See the README's "Configuration" table for every variable and its default.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("STEWARD_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production needs a long random secret, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`; "
            "for local development set DJANGO_DEBUG=1 instead."
        )
    SECRET_KEY = "django-insecure-steward-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "guardian",
    "ninja",  # its docs page then uses its bundled static files, not a CDN
    "portal",
    "agents",
    "reviews",
    "metrics",
    "axes",  # login throttling; last, so its admin sits after ours
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.middleware.SessionActivityMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.middleware.LoginRequiredMiddleware",
    "portal.middleware.ApiBodyLimitMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a lockout into the login page's answer (429)
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context_processors.navigation",
            ],
        },
    },
]

# --- Database: PostgreSQL via DATABASE_URL, SQLite under var/ for a first run ----------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    # Server-side binding lets psycopg prepare a statement after it has run this many times
    # on a connection: the gate and the inbox run the same few queries all day, and skipping
    # PostgreSQL's parse and plan is most of their database time. 0 turns it off (client-side
    # binding, nothing prepared), which a transaction-pooling PgBouncer needs.
    PREPARE_THRESHOLD = env_int("STEWARD_DB_PREPARE_THRESHOLD", 2)
    if PREPARE_THRESHOLD > 0 and DATABASES["default"]["ENGINE"].endswith("postgresql"):
        DATABASES["default"]["OPTIONS"] = {
            **DATABASES["default"].get("OPTIONS", {}),
            "server_side_binding": True,
            "prepare_threshold": PREPARE_THRESHOLD,
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "steward.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
    # The observations' natural key carries INCLUDE columns, a PostgreSQL speed-up: SQLite
    # gets a plain unique index instead (migration metrics 0004), fine for a first run.
    SILENCED_SYSTEM_CHECKS = ["models.W039"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker and cache; without it, an embedded filesystem broker -------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth ----------------------------------------------------------------------------------
AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
    "portal.lockout.LockoutBackend",  # first: refuses locked-out logins before any other
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
ANONYMOUS_USER_NAME = None  # guardian: no anonymous permissions
GUARDIAN_RAISE_403 = False

SESSION_COOKIE_AGE = env_int("STEWARD_SESSION_SECONDS", 8 * 3600)
# Expiry after inactivity: portal.middleware.SessionActivityMiddleware refreshes the session
# at most once a minute instead of saving it on every request.
SESSION_COOKIE_HTTPONLY = True

# --- Internationalisation --------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("STEWARD_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files: vendored assets served by WhiteNoise -----------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = VAR_DIR / "media"

# --- E-mail ----------------------------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "steward@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Security (production) -------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The old keys after a rotation, comma-separated: sessions and signatures made with them stay
# valid until they expire (README, "Security").
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS")
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # htmx sends the token from the page (hx-headers), not the cookie
# portal.middleware.ContentSecurityPolicyMiddleware: only our own static scripts and styles,
# no inline script or style, no eval, no plugins, never framed. data: images are Pico's
# inline SVG icons (checkboxes, selects) in its stylesheet.
STEWARD_CSP = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "font-src 'self'", "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
    "form-action 'self'", "frame-ancestors 'none'",
])
# Agent API: calls a minute per token (portal.ratelimit, counted in Redis); 0 turns it off.
STEWARD_API_RATE_LIMIT = env_int("STEWARD_API_RATE_LIMIT", 600)
# Outgoing callbacks and webhooks (portal.url_safety) go to public https addresses only;
# true also allows http and private, loopback and link-local addresses (as DEBUG does).
STEWARD_ALLOW_PRIVATE_WEBHOOKS = env_bool("STEWARD_ALLOW_PRIVATE_WEBHOOKS", False)

# --- Login throttling (django-axes) ------------------------------------------------------------
# After AXES_FAILURE_LIMIT failed logins for one username from one address, that pair is
# locked out for the cool-off; each further try restarts it. A success clears the count.
AXES_FAILURE_LIMIT = env_int("STEWARD_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("STEWARD_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "portal.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "portal.lockout.client_ip"
AXES_VERBOSE = False

# --- The gate and reviews -----------------------------------------------------------------
# An item's due time comes from its agent's review SLA (Agent.review_sla_hours); past it the
# `review-sla` beat task escalates the item, and this long after the proposal it expires.
STEWARD_REVIEW_EXPIRE_HOURS = env_int("STEWARD_REVIEW_EXPIRE_HOURS", 72)
# Metric imports: the largest file accepted; derived metrics recount this many past days on
# each run, so decisions taken a day or two after the proposal are counted.
STEWARD_IMPORT_MAX_BYTES = env_int("STEWARD_IMPORT_MAX_BYTES", 200 * 1024 * 1024)
STEWARD_DERIVED_LOOKBACK_DAYS = env_int("STEWARD_DERIVED_LOOKBACK_DAYS", 3)
STEWARD_REVIEW_CLAIM_MINUTES = env_int("STEWARD_REVIEW_CLAIM_MINUTES", 15)
# Decision callbacks to agents (reviews.callbacks): attempts, backoff base and timeout.
STEWARD_CALLBACK_MAX_ATTEMPTS = env_int("STEWARD_CALLBACK_MAX_ATTEMPTS", 6)
STEWARD_CALLBACK_BACKOFF_SECONDS = env_int("STEWARD_CALLBACK_BACKOFF_SECONDS", 30)
STEWARD_CALLBACK_TIMEOUT_SECONDS = 5
STEWARD_API_MAX_BODY_BYTES = 256 * 1024
# The benchmark's baseline endpoint (portal/bench_views.py); only `make bench` turns it on.
STEWARD_BENCH_ENDPOINTS = env_bool("STEWARD_BENCH_ENDPOINTS", False)
# How people reach the portal: the links in e-mails (incidents, reviewer digests).
STEWARD_BASE_URL = env_str(  # `make run` serves on STEWARD_PORT
    "STEWARD_BASE_URL", f"http://127.0.0.1:{env_str('STEWARD_PORT', '8000')}")

# --- Alerts (metrics.detectors, metrics.alerts, metrics.notifications) ----------------------
# Thresholds of the warning signs (metrics.detectors.base explains each; README "Alerts").
# Shares are fractions (0.2 = 20%); override rates are percent (0-100).
STEWARD_ALERTS = {
    "speed_quality_min_change": 0.05,   # cycle time and a quality metric each move 5%
    "cost_drift_ratio": 0.20,           # cost 20% above its baseline
    "cost_baseline_weeks": 4,           # ...the mean of the 4 weeks before
    "cost_projection_min_days": 3,      # budget projection from the 3rd day of a month
    "override_spike_ratio": 2.0,        # override rate twice its 4-week average
    "override_spike_min_points": 10.0,  # ...and 10 points above it
    "override_hard_limit": 50.0,        # at 50% the spike is critical
    "override_min_decisions": 10,       # decisions in 7 days before the rate counts
    "blast_radius_hours": 24,           # a write-limit hit this recent fires
    "backlog_min_overdue": 1,           # pending items past due
    "backlog_latency_rise": 0.5,        # median review latency up 50% on the week before
    "backlog_latency_min_hours": 4.0,   # ...and above 4 hours
    "incident_open_hours": 48,          # open incidents nobody investigates
    "rubber_stamp_min_items": 50,       # a reviewer's decisions in the window
    "rubber_stamp_approval_share": 0.98,
    "rubber_stamp_max_median_seconds": 30,
    "rubber_stamp_days": 7,
    "sample_overdue_hours": 0,          # sampled items unchecked past due
    "budget_warning_share": 0.8,
    "budget_critical_share": 1.0,
}
STEWARD_ALERT_DIGEST_MINUTES = env_int("STEWARD_ALERT_DIGEST_MINUTES", 60)
STEWARD_ALERT_WEBHOOK_URL = env_str("STEWARD_ALERT_WEBHOOK_URL")
STEWARD_ALERT_WEBHOOK_MAX_ATTEMPTS = env_int("STEWARD_ALERT_WEBHOOK_MAX_ATTEMPTS", 6)
STEWARD_ALERT_WEBHOOK_BACKOFF_SECONDS = env_int("STEWARD_ALERT_WEBHOOK_BACKOFF_SECONDS", 30)
STEWARD_ALERT_EMAIL_MAX_ATTEMPTS = 5

# --- Audit trail -----------------------------------------------------------------------------
# The chain head is exported outside the database after every seal, with an HMAC keyed by a
# secret that the database never sees (CloudTrail-style digest).
AUDIT_HEAD_PATH = Path(env_str("STEWARD_AUDIT_HEAD_PATH", str(VAR_DIR / "audit-head.json")))
AUDIT_HMAC_KEY = env_str("STEWARD_AUDIT_HMAC_KEY") or f"audit-head:{SECRET_KEY}"

# --- Celery ----------------------------------------------------------------------------------
# Nothing may be lost: late acks, redelivery when a worker dies, one message at a time,
# a visibility timeout longer than any task may run, JSON only, and enqueue after commit.
CELERY_TASK_TIME_LIMIT = env_int("STEWARD_TASK_TIME_LIMIT", 30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_MAX_DELIVERIES = env_int("STEWARD_TASK_MAX_DELIVERIES", 5)
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_RESULT_EXPIRES = 24 * 3600
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 2}
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS
else:
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # default is ./control in the cwd
        "store_processed": False,
        "visibility_timeout": CELERY_TASK_TIME_LIMIT * 2,
    }
    CELERY_RESULT_BACKEND = None
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "seal-audit-trail": {
        "task": "portal.tasks.audit_seal",
        "schedule": env_int("STEWARD_AUDIT_SEAL_SECONDS", 60),
    },
    "budget-warnings": {
        "task": "reviews.tasks.budget_warnings_send",
        "schedule": 3600,
    },
    # At most one digest an hour per person is the service's rule; checking every 10 minutes
    # tells people soon after the hour is up (an hourly run would skip hours on jitter).
    "reviewer-digests": {
        "task": "reviews.tasks.reviewer_digests_send",
        "schedule": 600,
    },
    "review-sla": {
        "task": "reviews.tasks.review_sla_enforce",
        "schedule": env_int("STEWARD_REVIEW_SLA_SECONDS", 300),
    },
    "derived-metrics": {
        "task": "metrics.tasks.derived_metrics_compute",
        "schedule": env_int("STEWARD_DERIVED_METRICS_SECONDS", 3600),
    },
    "alerts-detect": {
        "task": "metrics.tasks.alerts_detect",
        "schedule": env_int("STEWARD_ALERTS_SECONDS", 3600),
    },
    "alert-notifications": {
        "task": "metrics.tasks.alert_notifications_send",
        "schedule": 600,
    },
    "purge-task-deliveries": {
        "task": "portal.tasks.task_deliveries_purge",
        "schedule": 24 * 3600,
    },
}
STEWARD_TASK_DELIVERY_RETENTION_DAYS = env_int("STEWARD_TASK_DELIVERY_RETENTION_DAYS", 7)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("STEWARD_LOG_LEVEL", "INFO")},
    # axes logs every login at INFO; lockouts come at WARNING.
    "loggers": {"axes": {"level": "WARNING"}},
}
