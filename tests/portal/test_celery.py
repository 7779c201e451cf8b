"""The Celery app is configured so that no task is lost, and a real worker runs our tasks."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from portal import audit
from portal.celery import app
from portal.models import AuditEvent, TaskDelivery
from portal.tasking import GuardedTask

BASE_DIR = settings.BASE_DIR
runs: list[str] = []


@app.task(name="tests.portal.test_celery.count_run")
def count_run(label: str) -> str:
    runs.append(label)
    return label


def test_tasks_are_acknowledged_only_after_they_ran():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True


def test_a_worker_reserves_one_message_at_a_time():
    assert app.conf.worker_prefetch_multiplier == 1


def test_only_json_goes_over_the_wire():
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    assert list(app.conf.result_accept_content) == ["json"]


def test_broker_does_not_redeliver_a_task_that_is_still_allowed_to_run():
    time_limit = app.conf.task_time_limit
    assert time_limit
    assert app.conf.task_soft_time_limit < time_limit
    assert app.conf.broker_transport_options["visibility_timeout"] > time_limit


def test_tasks_are_guarded_and_can_wait_for_the_commit():
    assert issubclass(app.Task, GuardedTask)
    assert isinstance(count_run, GuardedTask)
    assert callable(count_run.delay_on_commit)


@pytest.mark.django_db
def test_delay_on_commit_sends_nothing_before_the_transaction_commits(
        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        count_run.delay_on_commit("later")
    assert len(callbacks) == 1  # queued for the commit, not sent


@pytest.mark.django_db
def test_a_task_delivered_too_often_is_dropped_instead_of_run_again():
    limit = settings.CELERY_TASK_MAX_DELIVERIES
    task_id = str(uuid.uuid4())
    runs.clear()

    for _ in range(limit):
        assert count_run.apply(args=["again"], task_id=task_id).get() == "again"
    assert len(runs) == limit
    assert not TaskDelivery.objects.get(task_id=task_id).gave_up

    assert count_run.apply(args=["again"], task_id=task_id).get() is None
    assert len(runs) == limit  # the body did not run
    delivery = TaskDelivery.objects.get(task_id=task_id)
    assert delivery.deliveries == limit + 1
    assert delivery.gave_up
    assert delivery.task_name == count_run.name


@pytest.mark.django_db
def test_purge_forgets_only_deliveries_that_finished_long_ago():
    from datetime import timedelta

    from django.utils import timezone

    from portal.tasks import task_deliveries_purge

    old, recent, running = (str(uuid.uuid4()) for _ in range(3))
    for task_id in (old, recent, running):
        count_run.apply(args=["x"], task_id=task_id)
    TaskDelivery.objects.filter(task_id=old).update(
        finished_at=timezone.now() - timedelta(days=settings.STEWARD_TASK_DELIVERY_RETENTION_DAYS,
                                               minutes=1))
    TaskDelivery.objects.filter(task_id=running).update(finished_at=None)
    assert task_deliveries_purge.apply().get() == 1
    left = TaskDelivery.objects.filter(task_id__in=[old, recent, running])
    assert set(left.values_list("task_id", flat=True)) == {recent, running}


@pytest.mark.django_db
def test_a_direct_call_is_not_counted_as_a_delivery():
    assert count_run("inline") == "inline"
    assert not TaskDelivery.objects.exists()


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def real_worker(tmp_path: Path, *, queue: str, pool: str = "solo") -> Iterator[Path]:
    """A `celery worker` process on the test database and Redis; yields its log file.

    It listens on a queue of its own, so a developer's running worker cannot take our messages.
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_DEBUG": "0",
        "DATABASE_URL": _database_url(),  # the test database
        "REDIS_URL": settings.REDIS_URL,
        "STEWARD_VAR_DIR": str(tmp_path),
        "STEWARD_AUDIT_HEAD_PATH": str(tmp_path / "audit-head.json"),
        "STEWARD_AUDIT_HMAC_KEY": settings.AUDIT_HMAC_KEY,
    }
    log_path = tmp_path / f"worker-{queue}.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", f"--pool={pool}",
             "--concurrency=1", "--queues", queue, "--include", __name__,
             "--without-heartbeat", "--without-gossip", "--without-mingle",
             "--loglevel=INFO", "--hostname", f"{queue}@%h"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            yield log_path
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_seals_the_audit_trail(tmp_path):
    from portal.tasks import audit_seal

    events = [audit.record(actor=None, verb="test.event", data={"n": n}) for n in range(3)]
    with real_worker(tmp_path, queue="steward-test-worker") as log_path:
        try:
            result = audit_seal.apply_async(queue="steward-test-worker")
            sealed_by_worker = result.get(timeout=60)
        except Exception:
            pytest.fail(f"the worker did not run the task; its log:\n{log_path.read_text()}")

    assert sealed_by_worker == len(events)
    sealed = AuditEvent.objects.filter(pk__in=[e.pk for e in events], seq__isnull=False)
    assert sealed.count() == len(events)
    delivery = TaskDelivery.objects.get(task_id=result.id)
    assert delivery.task_name == "portal.tasks.audit_seal"
    assert delivery.deliveries == 1
    assert delivery.finished_at is not None


@app.task(name="tests.portal.test_celery.kill_the_worker")
def kill_the_worker() -> None:
    os._exit(1)  # like an out-of-memory kill: no exception, no acknowledgement


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_task_that_kills_its_worker_is_redelivered_then_given_up(tmp_path):
    limit = settings.CELERY_TASK_MAX_DELIVERIES
    with real_worker(tmp_path, queue="steward-test-crash", pool="prefork") as log_path:
        result = kill_the_worker.apply_async(queue="steward-test-crash")
        deadline = time.monotonic() + 90
        while not TaskDelivery.objects.filter(task_id=result.id, gave_up=True).exists():
            if time.monotonic() > deadline:
                pytest.fail(f"the task was never given up; worker log:\n{log_path.read_text()}")
            time.sleep(0.5)

    delivery = TaskDelivery.objects.get(task_id=result.id)
    assert delivery.deliveries == limit + 1  # redelivered after each crash, then dropped
    assert delivery.task_name == kill_the_worker.name
