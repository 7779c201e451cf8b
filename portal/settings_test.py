"""Test settings: PostgreSQL and Redis when they answer, SQLite and no Redis otherwise.

`DATABASE_URL`/`REDIS_URL` win when set. Otherwise we probe 127.0.0.1; tests marked
`postgres`/`redis` are skipped with a reason when a service is missing, and fail when CI=true
(see tests/conftest.py).
"""

import os
import socket


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production-" + "x" * 20)
os.environ.setdefault("STEWARD_AUDIT_HMAC_KEY", "test-audit-hmac-key")
if "DATABASE_URL" not in os.environ and _answers(5432):
    os.environ["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/steward"
if "REDIS_URL" not in os.environ and _answers(6379):
    os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/9"

from portal.settings import *  # noqa: E402,F403
from portal.settings import VAR_DIR  # noqa: E402

SECURE_SSL_REDIRECT = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
AUDIT_HEAD_PATH = VAR_DIR / "test" / f"audit-head-{os.getpid()}.json"
CELERY_TASK_ALWAYS_EAGER = False
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
WHITENOISE_AUTOREFRESH = True  # no collectstatic needed for tests
