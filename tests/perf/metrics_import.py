"""Metric import speed: `.venv/bin/python -m tests.perf.metrics_import` (part of `make bench`).

What it does, start to end (about a minute on 2 cores):

1. drops and recreates a dedicated PostgreSQL database (`steward_bench_import` on 127.0.0.1,
   or `STEWARD_BENCH_IMPORT_DATABASE_URL`; its name must contain "bench") and migrates it;
2. writes a 1,000,000-row CSV (STEWARD_BENCH_IMPORT_ROWS): 8 agents, the 9 importable
   metrics, hourly observations with realistic values and sources, ~1% bad rows (unknown
   agent, not a number, out of range, bad date, derived metric). In the same pass it writes
   the good rows again as the baseline's file: already typed (agent id, metric id, UTC
   timestamp, value, source), ready for COPY;
3. times a bare `COPY` of the baseline's file into a plain, unindexed table with typed
   columns (streamed from disk in 1 MB chunks, as the import reads its file); and, as the
   floor any import keeping the covering natural key pays, the same COPY into a table with
   metrics_observation's indexes, with the natural key alone, and unindexed with the key
   built after;
4. times `metrics.importing.run()` on the CSV, end to end: COPY into the staging table with
   progress updates, checking every row, the write into metrics_observation (periods without
   data: a plain insert, rollups from the file's rows), the rollups and the batch's counts;
   then the same rows again under another header (every row an update: the upsert and a
   refresh from the stored rows); and, for the breakdown, Python's read-and-check loop alone;
5. prints rows/s for both and the ratio against the target (issue 5, point 9: at least 0.5×
   the bare COPY). It never fails on a missed target.
"""

import contextlib
import os
import random
import shutil
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.perf import gate

DATABASE_URL = os.environ.get("STEWARD_BENCH_IMPORT_DATABASE_URL",
                              "postgres://postgres@127.0.0.1:5432/steward_bench_import")
ROWS = int(os.environ.get("STEWARD_BENCH_IMPORT_ROWS", "1000000"))
AGENTS = 8
BAD_SHARE = 0.01
MIN_RATIO = 0.5  # issue 5, point 9
COPY_CHUNK = 1024 * 1024

# key: (low, high, decimals) of realistic values
VALUES = {
    "cycle_time": (0.5, 72, 2), "conversion_rate": (5, 45, 1), "resolution_rate": (40, 98, 1),
    "accuracy": (80, 100, 2), "completeness": (70, 100, 1), "policy_compliance": (90, 100, 2),
    "adoption": (5, 95, 1), "user_feedback": (1, 5, 2), "model_calls": (0, 5000, 0),
}
SOURCES = ["", "crm-export", "qa-sample", "warehouse"]
BAD = [("agent", "ghost-agent"), ("value", "n/a"), ("value", "-5"),
       ("observed_at", "31/12/2025"), ("metric", "acceptance_rate")]


def setup_agents() -> dict[str, int]:
    from agents import services
    from portal.models import User

    owner = User.objects.create_user(username="bench-owner")
    ids = {}
    for n in range(AGENTS):
        agent = services.agent_create(
            actor=None, slug=f"bench-agent-{n}", name=f"Bench agent {n}",
            business_owner=owner, process_owner=owner, technical_owner=owner,
            business_outcome="Measured.", definition_of_done="Measured.")
        ids[agent.slug] = agent.pk
    return ids


def write_files(folder: Path, agents: dict[str, int], metrics: dict[str, int]
                ) -> tuple[Path, Path, int]:
    """The CSV to import and the baseline's typed file of its good rows."""
    rng = random.Random(5)
    keys = list(VALUES)
    per_hour = len(agents) * len(keys)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    csv_path, typed_path = folder / "observations.csv", folder / "typed.txt"
    good = 0
    with open(csv_path, "w") as csv_file, open(typed_path, "w") as typed:
        csv_file.write("agent,metric,observed_at,value,source\n")
        for n in range(ROWS):
            hour, rest = divmod(n, per_hour)
            slug = f"bench-agent-{rest // len(keys)}"
            key = keys[rest % len(keys)]
            low, high, decimals = VALUES[key]
            moment = start + timedelta(hours=hour)
            when = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            value = f"{rng.uniform(low, high):.{decimals}f}"
            source = SOURCES[(hour + rest) % len(SOURCES)]
            if rng.random() < BAD_SHARE:
                column, bad = rng.choice(BAD)
                slug, key, when, value = (bad if column == "agent" else slug,
                                          bad if column == "metric" else key,
                                          bad if column == "observed_at" else when,
                                          bad if column == "value" else value)
            else:
                good += 1
                typed.write(f"{agents[slug]}\t{metrics[key]}\t{moment.isoformat()}\t{value}\t"
                            f"{source}\n")
            csv_file.write(f"{slug},{key},{when},{value},{source}\n")
    return csv_path, typed_path, good


def bare_copy(typed_path: Path) -> float:
    from django.db import connection

    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        cursor.execute("DROP TABLE IF EXISTS bench_plain_copy")
        cursor.execute("CREATE TABLE bench_plain_copy (agent_id bigint, metric_id bigint, "
                       "observed_at timestamptz, value double precision, source varchar(60))")
        started = time.perf_counter()
        with open(typed_path, "rb") as source, cursor.copy(
                "COPY bench_plain_copy FROM STDIN") as copy:
            while chunk := source.read(COPY_CHUNK):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_plain_copy")
    return elapsed


def indexed_copy(typed_path: Path) -> float:
    """The floor for any import: the same COPY into a table with metrics_observation's
    indexes (pk, and the natural key that also covers the time-bucket scans); index upkeep
    is most of an import."""
    from django.db import connection

    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        cursor.execute("DROP TABLE IF EXISTS bench_indexed_copy")
        cursor.execute("CREATE TABLE bench_indexed_copy (LIKE metrics_observation INCLUDING ALL)")
        started = time.perf_counter()
        with open(typed_path, "rb") as source, cursor.copy(
                "COPY bench_indexed_copy (agent_id, metric_id, observed_at, value, source) "
                "FROM STDIN") as copy:
            while chunk := source.read(COPY_CHUNK):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_indexed_copy")
    return elapsed


def floor_copies(typed_path: Path) -> tuple[float, float]:
    """What any design keeping the covering natural key must at least pay: the same COPY into
    a table with that one index, and into an unindexed table with the index built after (the
    cheapest way there is, possible only into an empty table or partition)."""
    from django.db import connection

    times = []
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        for build_after in (False, True):
            cursor.execute("DROP TABLE IF EXISTS bench_floor_copy")
            cursor.execute("CREATE TABLE bench_floor_copy (agent_id bigint, metric_id bigint, "
                           "observed_at timestamptz, value double precision, "
                           "source varchar(60))")
            index = ("CREATE UNIQUE INDEX ON bench_floor_copy "
                     "(agent_id, observed_at, metric_id, source) INCLUDE (value)")
            if not build_after:
                cursor.execute(index)
            started = time.perf_counter()
            with open(typed_path, "rb") as source, cursor.copy(
                    "COPY bench_floor_copy FROM STDIN") as copy:
                while chunk := source.read(COPY_CHUNK):
                    copy.write(chunk)
            if build_after:
                cursor.execute(index)
            times.append(time.perf_counter() - started)
        cursor.execute("DROP TABLE bench_floor_copy")
    return times[0], times[1]


def check_only(csv_path: Path) -> float:
    """The read-and-check loop alone, for the breakdown."""
    from metrics.import_checking import RowChecker, RowError
    from metrics.import_reading import records

    checker = RowChecker.for_user(None)
    check = checker.check
    started = time.perf_counter()
    with open(csv_path, "rb") as raw:
        for record in records(raw, "csv"):
            with contextlib.suppress(RowError):
                check(*record)
    return time.perf_counter() - started


def import_file(csv_path: Path):
    from django.core.files.uploadedfile import UploadedFile

    from metrics import importing
    from metrics.import_services import batch_upload
    from portal.models import User

    admin, _created = User.objects.get_or_create(
        username="bench-admin", defaults={"is_superuser": True, "is_staff": True})
    with open(csv_path, "rb") as handle:
        batch = batch_upload(actor=admin, upload=UploadedFile(
            handle, name=csv_path.name, size=csv_path.stat().st_size))
    started = time.perf_counter()
    importing.run(batch.pk)
    elapsed = time.perf_counter() - started
    batch.refresh_from_db()
    return batch, elapsed


def same_rows_again(csv_path: Path) -> Path:
    """The same rows under a header spelled differently: another file (SHA-256), so it is
    imported, and every good row is an update of a stored observation (the upsert path)."""
    again = csv_path.with_name("again.csv")
    with open(csv_path, "rb") as source, open(again, "wb") as target:
        target.write(source.readline().upper())
        shutil.copyfileobj(source, target)
    return again


def main() -> int:
    gate.DATABASE_URL = DATABASE_URL
    var_dir = tempfile.mkdtemp(prefix="steward-bench-import-")
    env = gate.bench_environment(var_dir)
    env["STEWARD_IMPORT_MAX_BYTES"] = str(10 ** 10)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    print(f"Recreating {DATABASE_URL.rsplit('/', 1)[-1]}…", flush=True)
    gate.recreate_database()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    settings.STEWARD_IMPORT_MAX_BYTES = 10 ** 10
    call_command("migrate", interactive=False, verbosity=0)
    from metrics.models import Metric, Observation

    agents = setup_agents()
    metrics = dict(Metric.objects.filter(key__in=VALUES).values_list("key", "id"))
    print(f"Writing {ROWS:,} rows…", flush=True)
    csv_path, typed_path, good = write_files(Path(var_dir), agents, metrics)
    print("Timing a bare COPY of the good rows…", flush=True)
    copy_s = bare_copy(typed_path)
    print("Timing the same COPY into a table indexed like metrics_observation…", flush=True)
    indexed_s = indexed_copy(typed_path)
    print("Timing the floor: COPY with the natural key alone, and with it built after…",
          flush=True)
    key_s, key_after_s = floor_copies(typed_path)
    print("Timing the read-and-check loop alone…", flush=True)
    check_s = check_only(csv_path)
    print("Timing importing.run() end to end…", flush=True)
    batch, import_s = import_file(csv_path)
    stored = Observation.objects.count()
    print("Timing importing.run() again: the same rows, now all updates…", flush=True)
    again, again_s = import_file(same_rows_again(csv_path))
    connections.close_all()
    size_mb = csv_path.stat().st_size / 1e6
    shutil.rmtree(var_dir, ignore_errors=True)

    import_rps, copy_rps = ROWS / import_s, good / copy_s
    ratio = import_rps / copy_rps
    print()
    print(textwrap.dedent(f"""\
        Steward metric import benchmark: {ROWS:,} CSV rows ({size_mb:,.1f} MB, {AGENTS} agents,
        {len(VALUES)} metrics, {ROWS - good:,} bad rows), PostgreSQL
        {DATABASE_URL.rsplit('/', 1)[-1]}; {os.cpu_count()} CPUs shared with whatever else runs.
        """))
    print(f"  bare COPY of the {good:,} good rows (typed, unindexed table)  "
          f"{copy_s:7.2f} s  {copy_rps:>10,.0f} rows/s")
    print(f"  the same COPY into a table with metrics_observation's indexes "
          f"{indexed_s:7.2f} s  {good / indexed_s:>10,.0f} rows/s  ({copy_s / indexed_s:.2f}×)")
    print(f"  the same COPY with the natural key's index alone            "
          f"{key_s:7.2f} s  {good / key_s:>10,.0f} rows/s  ({copy_s / key_s:.2f}×)")
    print(f"  the same COPY unindexed, the natural key built after        "
          f"{key_after_s:7.2f} s  {good / key_after_s:>10,.0f} rows/s  "
          f"({copy_s / key_after_s:.2f}×)")
    print(f"  importing.run() end to end (validation included)       "
          f"{import_s:7.2f} s  {import_rps:>10,.0f} rows/s")
    print(f"    of which reading and checking every row ~             {check_s:7.2f} s")
    print(f"  batch: {batch.status}, {batch.rows_total:,} rows, {batch.rows_imported:,} new, "
          f"{batch.rows_updated:,} updated, {batch.rows_rejected:,} rejected; "
          f"{stored:,} observations stored")
    print(f"  the same rows again, into periods that hold them (the upsert) "
          f"{again_s:7.2f} s  {ROWS / again_s:>10,.0f} rows/s  ({ROWS / again_s / copy_rps:.2f}×)")
    print(f"  batch: {again.status}, {again.rows_imported:,} new, {again.rows_updated:,} "
          f"updated, {again.rows_rejected:,} rejected")
    print()
    print("Target (issue 5, point 9):")
    print(f"  import / bare COPY  {ratio:5.2f}×   target ≥ {MIN_RATIO}×   "
          f"{gate.mark(ratio >= MIN_RATIO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
