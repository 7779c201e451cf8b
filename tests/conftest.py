"""Shared fixtures. Tests marked `postgres`, `redis` or `browser` need that service: they are
skipped with a reason when it is missing, and fail instead when CI=true."""

import functools
import os
import shutil

import pytest
from django.conf import settings

from tests import factories

CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
CHROMIUM = os.environ.get("STEWARD_CHROMIUM", "/usr/bin/chromium")


@functools.cache
def postgres_available() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


@functools.cache
def redis_available() -> bool:
    if not settings.REDIS_URL:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@functools.cache
def chromium_available() -> bool:
    return os.path.exists(CHROMIUM) or shutil.which("chromium") is not None


SERVICES = {
    "postgres": (postgres_available, "PostgreSQL is not configured or not answering "
                 "(set DATABASE_URL or start it on 127.0.0.1:5432)"),
    "redis": (redis_available, "Redis is not configured or not answering "
              "(set REDIS_URL or start it on 127.0.0.1:6379)"),
    "browser": (chromium_available, f"Chromium is not installed at {CHROMIUM} "
                "(apt-get install -y chromium)"),
}


def pytest_runtest_setup(item):
    for marker, (available, reason) in SERVICES.items():
        if item.get_closest_marker(marker) and not available():
            if CI:
                pytest.fail(f"{reason}; CI=true, so a missing service fails the run.")
            pytest.skip(reason)


def pytest_report_header(config):
    from django.conf import settings as s

    return (f"steward: database={s.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} "
            f"redis={'yes' if s.REDIS_URL else 'no'} CI={CI}")


@pytest.fixture(scope="session", autouse=True)
def _flush_past_audit_triggers():
    """`transaction=True` tests end with a TRUNCATE of every table, which the append-only audit
    trail refuses (portal migration 0002); let that test-only flush, and nothing else, through."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        if any("portal_auditevent" in sql for sql in sql_list):
            sql_list = ['ALTER TABLE "portal_auditevent" DISABLE TRIGGER USER', *sql_list,
                        'ALTER TABLE "portal_auditevent" ENABLE TRIGGER USER']
        return original(self, sql_list)

    DatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    DatabaseOperations.execute_sql_flush = original


@pytest.fixture(autouse=True)
def _audit_head_path(tmp_path, settings):
    """Each test exports the audit chain head to its own file."""
    settings.AUDIT_HEAD_PATH = tmp_path / "audit-head.json"


@pytest.fixture(autouse=True)
def _fresh_gate_caches():
    """Databases are rebuilt per test and ids may repeat: never reuse another test's policy."""
    from reviews import gate

    gate.clear_caches()
    yield
    gate.clear_caches()


@pytest.fixture
def roles(db):
    """One user per role, around two agents: `agent` (theirs) and `other` (not theirs)."""
    return factories.make_roles()
