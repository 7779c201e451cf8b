"""`/healthz`: can this process reach its database and its Celery broker?

For load balancers and uptime checks, so it answers without a login and is never cached.
Each check reports "ok" or the error's text; any failure makes the whole answer a 503.
"""

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

BROKER_TIMEOUT_SECONDS = 2.0


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure is the answer, not a 500
        return _error(exc)
    return "ok"


def broker_status() -> str:
    """Redis answers PING; or, for the embedded filesystem broker, its folders are writable."""
    if settings.REDIS_URL:
        import redis

        try:
            client = redis.Redis.from_url(
                settings.REDIS_URL,
                socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
                socket_timeout=BROKER_TIMEOUT_SECONDS,
            )
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return _error(exc)
        return "ok"
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    keys = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")
    folders = {options[key] for key in keys if options.get(key)}
    for folder in sorted(folders):
        path = Path(folder)
        if not path.is_dir():
            return f"broker folder {path} does not exist"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"broker folder {path} is not writable"
    return "ok"


@login_not_required
@never_cache
@require_safe
def healthz(request):
    checks = {"database": database_status(), "broker": broker_status()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
