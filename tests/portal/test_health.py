"""`/healthz` tells a load balancer whether the database and the broker answer."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def test_healthy_portal_answers_200_without_a_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_dead_redis_answers_503_naming_the_broker(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] != "ok"
    assert "Connection" in body["broker"]


@pytest.fixture
def filesystem_broker(settings, tmp_path):
    settings.REDIS_URL = ""
    folders = {key: tmp_path / name for key, name in (
        ("data_folder_in", "queue"), ("data_folder_out", "queue"),
        ("processed_folder", "processed"), ("control_folder", "control"))}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {key: str(path) for key, path in folders.items()}
    return folders


def test_embedded_broker_is_healthy_when_its_folders_are_there(client, filesystem_broker):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["broker"] == "ok"


def test_embedded_broker_without_its_queue_folder_answers_503(client, filesystem_broker):
    filesystem_broker["data_folder_in"].rmdir()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "does not exist" in response.json()["broker"]
    assert str(filesystem_broker["data_folder_in"]) in response.json()["broker"]


def test_unreachable_database_answers_503(tmp_path):
    """A separate process whose database is a PostgreSQL port where nothing listens."""
    script = (
        "import django, json; django.setup()\n"
        "from django.test import Client\n"
        "r = Client().get('/healthz')\n"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", DJANGO_DEBUG="1",
               DJANGO_ALLOWED_HOSTS="testserver",
               DATABASE_URL="postgres://postgres@127.0.0.1:1/steward", REDIS_URL="",
               STEWARD_VAR_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503
    assert answer["body"]["database"] != "ok"
    assert answer["body"]["broker"] == "ok"


def test_health_check_is_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True  # as in production
    assert client.get("/healthz").status_code == 200
    assert client.get("/accounts/login/").status_code == 301
