"""The import task's work: `run(batch_id)` validates a stored file and loads its good rows.

On PostgreSQL a CSV file's bytes go with COPY into a TEMP table and are checked there
(metrics.import_sql; each COPY block commits with the progress, so the batch page moves);
then ONE transaction upserts the good rows into metrics_observation on the natural key,
stores the rejections, refreshes the rollups, stores the counts and marks the batch done.
A CSV file COPY cannot read as Python does, and every JSON file, take the Python reader and
checker instead, whose checked rows go with COPY into a TEMP staging table in chunks and
then the same kind of final transaction. Elsewhere (SQLite) the same check runs and the
rows go through metrics.observations.upsert inside one transaction.

Kill-safety (the task runs with late acks and is redelivered if its worker dies): every
delivery starts again from scratch. The staging table is TEMP, so it dies with a killed
worker's connection; the row errors of an earlier attempt are deleted first; and nothing
reaches metrics_observation except in the final transaction, which also marks the batch
done, so a redelivery after that commit finds the batch finished and does nothing. A
session advisory lock per batch keeps two deliveries from working the same batch at once.
"""

import logging
import time
from collections.abc import Iterable

from django.db import connection, transaction
from django.utils import timezone

from metrics import import_sql, observations, rollups
from metrics.import_checking import RowChecker, RowError
from metrics.import_reading import CsvRecords, FatalImportError, records
from metrics.models import ImportBatch, ImportRowError
from portal import audit

logger = logging.getLogger(__name__)

Status = ImportBatch.Status
CHUNK_ROWS = 25_000  # rows per COPY and per progress update
BATCH_LOCK_CLASS = 4205  # per-batch advisory lock (4201 blast radius, 4202 agents, 4203 rollups)
STAGE = "metrics_import_stage"
LOST_CLIENT_CHECK = "2s"  # how soon a killed worker's running statement is cancelled
TEMP_BUFFERS = "256MB"  # a session's memory for its staging tables (see _size_temp_buffers)
LOCK_WAIT = 120  # seconds a redelivery waits for a killed delivery's backend to let go
INTERNAL_ERROR = ("Steward could not finish this import because of an internal error (it is "
                  "logged). Upload the file again; if it fails again, tell an admin.")

_UPSERT_SQL = f"""
WITH written AS (
    INSERT INTO metrics_observation (agent_id, metric_id, observed_at, value, source, batch_id)
    SELECT DISTINCT ON (agent_id, observed_at, metric_id, source)
           agent_id, metric_id, observed_at, value, source, %s
      FROM {STAGE}
     ORDER BY agent_id, observed_at, metric_id, source, row DESC  -- the last row wins;
        -- in the natural key's index order, so its pages fill one after another
    ON CONFLICT (agent_id, metric_id, observed_at, source) DO UPDATE
       SET value = EXCLUDED.value, batch_id = EXCLUDED.batch_id
    RETURNING (xmax = 0) AS fresh  -- xmax is 0 on a newly inserted row version
)
SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM written"""
_RANGES_SQL = f"""SELECT agent_id, metric_id, min(observed_at), max(observed_at)
                    FROM {STAGE} GROUP BY agent_id, metric_id"""


def run(batch_id: int) -> None:
    with _worked_alone(batch_id) as alone:
        if not alone:
            logger.info("Import batch %s is being worked by another delivery.", batch_id)
            return
        batch = _start(batch_id)
        if batch is None:
            return
        try:
            checker = RowChecker.for_user(batch.created_by)
            if (connection.vendor == "postgresql" and batch.format == ImportBatch.Format.CSV
                    and _load_csv_sql(batch, checker)):
                return
            with batch.file.storage.open(batch.file.name, "rb") as raw:
                stream = records(raw, batch.format)
                if connection.vendor == "postgresql":
                    _load_postgresql(batch, stream, checker)
                else:
                    _load_portable(batch, stream, checker)
        except FileNotFoundError:
            _fail(batch, "The uploaded file is no longer in storage: upload it again.")
        except FatalImportError as exc:
            _fail(batch, str(exc))
        except Exception:
            logger.exception("Import batch %s failed.", batch_id)
            _fail(batch, INTERNAL_ERROR)


class _worked_alone:
    """A session advisory lock on the batch (PostgreSQL): released on exit, or by the server
    when a killed worker's connection goes away. A killed worker's backend may still be
    running a long statement (the server notices the dead client only between statements,
    or every LOST_CLIENT_CHECK): a redelivery waits for it, up to LOCK_WAIT, rather than
    leaving the batch `running` for ever."""

    def __init__(self, batch_id: int):
        self.batch_id, self.held = batch_id, False

    def __enter__(self) -> bool:
        if connection.vendor != "postgresql":
            return True
        with connection.cursor() as cursor:
            cursor.execute(f"SET client_connection_check_interval = '{LOST_CLIENT_CHECK}'")
            _size_temp_buffers(cursor)
            deadline = time.monotonic() + LOCK_WAIT
            while not self.held and time.monotonic() < deadline:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)",
                               [BATCH_LOCK_CLASS, self.batch_id])
                self.held = cursor.fetchone()[0]
                if not self.held:
                    time.sleep(0.5)
        return self.held

    def __exit__(self, *exc) -> None:
        if self.held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)",
                               [BATCH_LOCK_CLASS, self.batch_id])


def _size_temp_buffers(cursor) -> None:
    """Room for the staging tables in this session's memory (the default 8 MB sends a large
    file's staged rows to disk and back on every pass). PostgreSQL takes the setting only
    before the session's first temp table, so a worker's later imports keep what it has."""
    cursor.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't' "
                   "AND relnamespace = pg_my_temp_schema()")
    if cursor.fetchone()[0] == 0:
        cursor.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")


def _start(batch_id: int) -> ImportBatch | None:
    """Mark the batch running and forget an earlier attempt's errors; None if there is
    nothing to do (no such batch, or finished already: a redelivery after the commit)."""
    with transaction.atomic():
        batch = (ImportBatch.objects.select_for_update(of=("self",))
                 .select_related("created_by").filter(pk=batch_id).first())
        if batch is None or batch.finished:
            return None
        batch.row_errors.all().delete()
        batch.status, batch.started_at, batch.message = Status.RUNNING, timezone.now(), ""
        batch.bytes_read = batch.rows_total = batch.rows_rejected = 0
        batch.rows_imported = batch.rows_updated = 0
        batch.save(update_fields=["status", "started_at", "message", "bytes_read", "rows_total",
                                  "rows_rejected", "rows_imported", "rows_updated"])
    return batch


def _progress(batch: ImportBatch, *, bytes_read: int, rows: int, rejected: int,
              errors: list[ImportRowError]) -> None:
    """One small committed write, so the batch page shows how far the task got."""
    with transaction.atomic():
        ImportRowError.objects.bulk_create(errors)
        ImportBatch.objects.filter(pk=batch.pk).update(
            bytes_read=bytes_read, rows_total=rows, rows_rejected=rejected)
    errors.clear()


def _finish(batch: ImportBatch, *, rows: int, rejected: int, inserted: int,
            updated: int) -> None:
    """Inside the final transaction: the counts and `done` commit with the rows."""
    ImportBatch.objects.filter(pk=batch.pk).update(
        status=Status.DONE, finished_at=timezone.now(), bytes_read=batch.size_bytes,
        rows_total=rows, rows_rejected=rejected, rows_imported=inserted, rows_updated=updated)
    audit.record(actor=None, verb="metrics.import_finished", obj=batch, data={
        "batch": str(batch.public_id), "file": batch.original_name, "rows": rows,
        "imported": inserted, "updated": updated, "rejected": rejected})


def _fail(batch: ImportBatch, message: str) -> None:
    with transaction.atomic():
        ImportBatch.objects.filter(pk=batch.pk).update(
            status=Status.FAILED, message=message, finished_at=timezone.now())
        audit.record(actor=None, verb="metrics.import_failed", obj=batch,
                     data={"batch": str(batch.public_id), "file": batch.original_name,
                           "message": message})


def _rejection(batch: ImportBatch, number: int, error: RowError) -> ImportRowError:
    return ImportRowError(batch_id=batch.pk, row=number, column=error.column[:40],
                          message=error.message[:300])


def _load_csv_sql(batch: ImportBatch, checker: RowChecker) -> bool:
    """The fast path: False (nothing written) if COPY cannot read the file as Python does."""
    with batch.file.storage.open(batch.file.name, "rb") as raw:
        reader = CsvRecords(raw)
        with reader.readable():
            columns = reader.columns()
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's own cursor: COPY, and no prepared DDL
        try:
            with batch.file.storage.open(batch.file.name, "rb") as raw:
                import_sql.stage_file(cursor, raw, columns, lambda sent, lines: _progress(
                    batch, bytes_read=sent, rows=lines, rejected=0, errors=[]))
        except import_sql.NotForCopy as exc:
            logger.info("Import batch %s: COPY cannot read the file (%s); reading it with "
                        "Python.", batch.pk, exc)
            import_sql.drop_stage(cursor)
            return False
        with transaction.atomic():  # temp tables only; the transaction bounds SET LOCAL
            checked = import_sql.check_stage(cursor, columns, checker)
        rejected = len(checked.errors)
        with transaction.atomic():
            ImportBatch.objects.select_for_update().filter(pk=batch.pk).first()
            written = import_sql.write(cursor, batch.pk)
            ImportRowError.objects.bulk_create(
                [_rejection(batch, number, error) for number, error in checked.errors],
                batch_size=5000)
            _finish(batch, rows=checked.rows, rejected=rejected, inserted=written.inserted,
                    updated=written.updated)
        import_sql.drop_stage(cursor)
    return True


def _copy_text(value: str) -> str:
    """Escape for COPY's text format (backslash, tab, newline, carriage return)."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def _load_postgresql(batch: ImportBatch, stream: Iterable, checker: RowChecker) -> None:
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's own cursor: COPY, and no prepared DDL
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{STAGE}", prepare=False)
        cursor.execute(f"CREATE TEMP TABLE {STAGE} (row integer, agent_id bigint, "
                       "metric_id bigint, observed_at timestamptz, value double precision, "
                       "source varchar(60))", prepare=False)
        check, sources = checker.check, {"": ""}
        lines: list[str] = []
        errors: list[ImportRowError] = []
        number = rejected = 0
        for number, record in enumerate(stream, start=1):
            if record.__class__ is not tuple:
                if record is None:
                    continue  # a blank line
                rejected += 1
                errors.append(_rejection(batch, number, record))
                continue
            try:
                agent_id, metric_id, _when, when_text, value, source = check(*record)
            except RowError as error:
                rejected += 1
                errors.append(_rejection(batch, number, error))
                continue
            escaped = sources.get(source)
            if escaped is None:
                escaped = sources[source] = _copy_text(source)
            lines.append(f"{number}\t{agent_id}\t{metric_id}\t{when_text}\t{value!r}\t"
                         f"{escaped}\n")
            if len(lines) >= CHUNK_ROWS:
                _copy(cursor, lines)
                _progress(batch, bytes_read=stream.tell(), rows=number, rejected=rejected,
                          errors=errors)
        _copy(cursor, lines)
        _progress(batch, bytes_read=stream.tell(), rows=number, rejected=rejected,
                  errors=errors)
        with transaction.atomic():
            ImportBatch.objects.select_for_update().filter(pk=batch.pk).first()
            cursor.execute(f"ANALYZE {STAGE}", prepare=False)
            cursor.execute(_UPSERT_SQL, [batch.pk], prepare=False)
            inserted, updated = cursor.fetchone()
            cursor.execute(_RANGES_SQL, prepare=False)
            rollups.refresh(cursor.fetchall())
            _finish(batch, rows=number, rejected=rejected, inserted=inserted, updated=updated)
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{STAGE}", prepare=False)


def _copy(cursor, lines: list[str]) -> None:
    if lines:
        with cursor.copy(f"COPY {STAGE} (row, agent_id, metric_id, observed_at, value, source) "
                         "FROM STDIN") as copy:
            copy.write("".join(lines))
        lines.clear()


def _load_portable(batch: ImportBatch, stream: Iterable, checker: RowChecker) -> None:
    """SQLite: one transaction around the whole file (SQLite has one writer anyway)."""
    check = checker.check
    rows: list[observations.Row] = []
    errors: list[ImportRowError] = []
    bounds: dict[tuple[int, int], list] = {}
    number = rejected = inserted = updated = 0
    with transaction.atomic():
        for number, record in enumerate(stream, start=1):
            if record.__class__ is not tuple:
                if record is not None:
                    rejected += 1
                    errors.append(_rejection(batch, number, record))
                continue
            try:
                agent_id, metric_id, when, _text, value, source = check(*record)
            except RowError as error:
                rejected += 1
                errors.append(_rejection(batch, number, error))
                continue
            rows.append(observations.Row(agent_id, metric_id, when, value, source, batch.pk))
            span = bounds.setdefault((agent_id, metric_id), [when, when])
            span[0], span[1] = min(span[0], when), max(span[1], when)
            if len(rows) >= CHUNK_ROWS:
                written = observations.upsert(rows, refresh_rollups=False)
                inserted, updated = inserted + written.inserted, updated + written.updated
                rows.clear()
        written = observations.upsert(rows, refresh_rollups=False)
        inserted, updated = inserted + written.inserted, updated + written.updated
        ImportRowError.objects.bulk_create(errors, batch_size=1000)
        rollups.refresh([(a, m, first, last) for (a, m), (first, last) in bounds.items()])
        _finish(batch, rows=number, rejected=rejected, inserted=inserted, updated=updated)
