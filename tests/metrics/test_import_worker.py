"""A worker SIGKILLed in the middle of an import: the task is delivered again and the
result is exactly what one clean import gives, with nothing lost and nothing doubled."""

import os
import random
import signal
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from metrics import importing
from metrics.models import ImportBatch, ImportRowError, Observation
from metrics.tasks import import_batch_run
from portal.models import TaskDelivery
from tests.factories import make_agent
from tests.portal.test_celery import real_worker

ROWS = 80_000
QUEUE = "steward-test-import-kill"


def generated_csv(slugs: list[str]) -> tuple[bytes, int]:
    rng = random.Random(11)
    lines, bad = ["agent,metric,observed_at,value,source"], 0
    for n in range(ROWS):
        slug = slugs[n % len(slugs)]
        day, hour = divmod(n // len(slugs), 24)
        value = f"{rng.uniform(0, 100):.2f}"
        if n % 97 == 0:
            value, bad = "n/a", bad + 1
        lines.append(f"{slug},accuracy,2025-01-01T{hour:02d}:00:00Z,{value},day{day}")
    return ("\n".join(lines) + "\n").encode(), bad


def pool_children(parent_pid: int) -> list[int]:
    """Processes whose parent is `parent_pid` (read from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent_pid:
                children.append(int(entry.name))
    return children


def worker_pool_process() -> int:
    """The prefork pool's child that runs the task (the worker is our child process)."""
    for pid in pool_children(os.getpid()):
        try:
            if b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pool = pool_children(pid)
                if pool:
                    return pool[0]
        except OSError:
            continue
    raise AssertionError("no celery pool process found")


def observations() -> set[tuple]:
    return set(Observation.objects.values_list("agent_id", "metric_id", "observed_at", "value",
                                               "source"))


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_import_loses_and_duplicates_nothing(tmp_path, settings, roles):
    settings.MEDIA_ROOT = tmp_path / "media"  # the worker's STEWARD_VAR_DIR is tmp_path
    slugs = [roles.agent.slug, roles.other.slug, make_agent(slug="third").slug]
    content, bad = generated_csv(slugs)
    batch = ImportBatch(format="csv", sha256="killed", size_bytes=len(content),
                        original_name="big.csv", created_by=roles.admin)
    batch.file.save("big.csv", ContentFile(content))

    with real_worker(tmp_path, queue=QUEUE, pool="prefork") as log_path:
        result = import_batch_run.apply_async(args=[batch.pk], queue=QUEUE)
        deadline = time.monotonic() + 120
        while True:  # wait until the import is under way: the first block is committed
            batch.refresh_from_db()
            if batch.status == "running" and batch.bytes_read > 0:
                break
            assert batch.status in ("queued", "running"), "finished before it could be killed"
            if time.monotonic() > deadline:
                pytest.fail(f"the import never started; worker log:\n{log_path.read_text()}")
            time.sleep(0.02)
        os.kill(worker_pool_process(), signal.SIGKILL)
        # the final transaction sets `done`: still running means the kill came before it
        assert ImportBatch.objects.get(pk=batch.pk).status == "running"
        while not ImportBatch.objects.filter(pk=batch.pk, status__in=["done", "failed"]
                                             ).exists():
            if time.monotonic() > deadline:
                pytest.fail(f"the import never finished; worker log:\n{log_path.read_text()}")
            time.sleep(0.2)

    assert TaskDelivery.objects.get(task_id=result.id).deliveries == 2  # redelivered once
    batch.refresh_from_db()
    assert (batch.status, batch.rows_total, batch.rows_rejected) == ("done", ROWS, bad)
    assert batch.rows_imported == ROWS - bad and batch.rows_updated == 0
    rows = list(ImportRowError.objects.filter(batch=batch).values_list("row", flat=True))
    assert len(rows) == len(set(rows)) == bad  # no row error twice
    after_kill = observations()
    assert len(after_kill) == ROWS - bad

    # The same file imported directly, in one go, on a clean table gives the same rows.
    Observation.objects.all().delete()
    direct = ImportBatch(format="csv", sha256="direct", size_bytes=len(content),
                         original_name="big.csv", created_by=roles.admin)
    direct.file.save("direct.csv", ContentFile(content))
    importing.run(direct.pk)
    direct.refresh_from_db()
    assert observations() == after_kill
    assert (direct.rows_imported, direct.rows_rejected) == (batch.rows_imported,
                                                            batch.rows_rejected)
