"""Production settings: no start without a secret, and Django's deploy checks pass."""

import os
import secrets
import subprocess
import sys

from django.conf import settings


def manage(*args: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py with the production settings and only the environment we give it."""
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "STEWARD_")) and key != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120,
        env={**base, "DJANGO_SETTINGS_MODULE": "portal.settings",
             "STEWARD_VAR_DIR": str(tmp_path), **env},
    )


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = manage("check", tmp_path=tmp_path, DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_debug_runs_without_a_secret_key(tmp_path):
    result = manage("check", tmp_path=tmp_path, DJANGO_DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_deploy_checks_pass_with_a_real_secret(tmp_path):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="steward.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://steward.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_a_malformed_boolean_is_refused_with_its_name(tmp_path):
    result = manage("check", tmp_path=tmp_path, DJANGO_DEBUG="maybe")
    assert result.returncode != 0
    assert "DJANGO_DEBUG='maybe'" in result.stderr
