"""PostgreSQL: a CSV file's rows go into the database as they are and are checked there.

The file's bytes are streamed with `COPY ... (FORMAT csv)` into a TEMP table of text columns
(one per header column) with a row number in file order. One set-based statement then types
every row it can vouch for: the agent and the metric joined against temp tables built from
the very RowChecker the Python path uses, the date and the number matched by regexes and
range arithmetic (no cast runs on text the guards have not accepted, so no row can raise).

What SQL cannot vouch for (a bad row, or an odd but valid spelling such as `2026-01-05T0930`)
is handed to `RowChecker.check`, which decides and words every rejection: the SQL is only
ever a faster "yes", never a second set of rules or messages. Rows it accepts join the
SQL's good rows, and one upsert writes them.

A file COPY cannot read the way Python's csv module does (a row with the wrong number of
cells, a blank line, bad quoting, not UTF-8) raises NotForCopy, and the caller falls back
to the Python reader for that batch.
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import psycopg
from django.db import transaction
from psycopg import sql

from metrics import rollups
from metrics.import_checking import SOURCE_MAX, RowChecker, RowError
from metrics.import_reading import Columns

logger = logging.getLogger(__name__)

RAW = "metrics_import_raw"  # the file's cells, as text
CHECKED = "metrics_import_checked"  # typed rows (NULL agent_id: SQL could not vouch for it)
EXTRA = "metrics_import_extra"  # rows SQL could not vouch for and RowChecker accepted
TIMES = "metrics_import_times"  # each distinct date text of the file, typed or NULL
AGENTS, RULES = "metrics_import_agents", "metrics_import_rules"  # what the checker accepts
TEMP_TABLES = ", ".join(f"pg_temp.{name}" for name in (RAW, CHECKED, EXTRA, TIMES, AGENTS,
                                                       RULES))
BLOCK = 4 * 1024 * 1024  # bytes per COPY statement (and per progress update)
BULK_SHARE = 0.1  # a write of this share of the stored rows refreshes rollups in bulk
CARRY_MAX = 16 * 1024 * 1024  # a "line" longer than this: not a file for COPY

# A quote inside an unquoted cell: Python's csv keeps it, COPY starts a quoted section.
_STRAY_QUOTE = re.compile(rb'[^,\r\n"]"[^,\r\n"]')
# A line `\.` ends COPY's data; Python's csv reads it as a cell.
_END_MARKER = re.compile(rb"(?:^|[\r\n])\\\.(?:[\r\n]|$)")

# Dates are checked once per distinct text (a file repeats its dates): YYYY-MM-DD, or with
# [T ]HH:MM[:SS[.ffffff]][Z|±HH:MM]; years 1001-9998 keep the shift to UTC in range; no
# offset means UTC, as in Python. Casts run only under CASE WHEN the guards passed, so no
# row can raise. (regexp_match with captures is ~100x slower than `~`: parts come by substr.)
_TIMES_SQL = """
CREATE TEMP TABLE {times} AS
SELECT raw_at, CASE WHEN y BETWEEN 1001 AND 9998 AND mo BETWEEN 1 AND 12
           AND d BETWEEN 1 AND CASE WHEN mo = 2 THEN 28 + CASE WHEN y %% 4 = 0
                   AND (y %% 100 <> 0 OR y %% 400 = 0) THEN 1 ELSE 0 END
               WHEN mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END
           AND h <= 23 AND mi <= 59 AND sec <= 59 AND oh <= 23 AND om <= 59
       THEN (left(raw_at, length(raw_at) - zone)::timestamp
             - sign * make_interval(hours => oh, mins => om)) AT TIME ZONE 'UTC' END AS at
FROM (
    SELECT raw_at, substr(raw_at, 1, 4)::int AS y, substr(raw_at, 6, 2)::int AS mo,
           substr(raw_at, 9, 2)::int AS d,
           CASE WHEN length(raw_at) > 10 THEN substr(raw_at, 12, 2)::int ELSE 0 END AS h,
           CASE WHEN length(raw_at) > 10 THEN substr(raw_at, 15, 2)::int ELSE 0 END AS mi,
           CASE WHEN substr(raw_at, 17, 1) = ':' THEN substr(raw_at, 18, 2)::int ELSE 0
           END AS sec,
           zone,
           CASE WHEN zone = 6 THEN substr(raw_at, length(raw_at) - 4, 2)::int ELSE 0 END AS oh,
           CASE WHEN zone = 6 THEN right(raw_at, 2)::int ELSE 0 END AS om,
           CASE WHEN zone = 6 AND substr(raw_at, length(raw_at) - 5, 1) = '-' THEN -1
                ELSE 1 END AS sign
    FROM (SELECT raw_at, CASE WHEN right(raw_at, 1) = 'Z' THEN 1
                              WHEN length(raw_at) > 16
                               AND substr(raw_at, length(raw_at) - 5, 1) IN ('+', '-')
                              THEN 6 ELSE 0 END AS zone
          FROM (SELECT DISTINCT {observed_at} AS raw_at FROM {raw}
                OFFSET 0) distinct_times  -- the regex below runs once per distinct text
          WHERE raw_at ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([T ][0-9]{{2}}:[0-9]{{2}}'
                         '(:[0-9]{{2}}([.][0-9]{{1,6}})?)?(Z|[+-][0-9]{{2}}:[0-9]{{2}})?)?$'
          OFFSET 0) shaped
    OFFSET 0
) parts
"""

# Every row once: typed where SQL can vouch for all of it (cells exactly as the catalogue
# spells them: a padded slug or number goes to Python, which strips), else NULL agent_id
# and its raw cells for Python. Numbers: plain decimals with a short exponent, so the cast
# can neither overflow nor fail.
_CHECK_SQL = """
CREATE TEMP TABLE {checked} AS
SELECT row, CASE WHEN good THEN agent_id END AS agent_id, metric_id,
       CASE WHEN good THEN at END AS observed_at, number AS value, source,
       CASE WHEN good THEN NULL ELSE agent END AS raw_agent,
       CASE WHEN good THEN NULL ELSE metric END AS raw_metric,
       CASE WHEN good THEN NULL ELSE raw_at END AS raw_observed_at,
       CASE WHEN good THEN NULL ELSE value END AS raw_value
FROM (
    SELECT *, coalesce(number BETWEEN low AND high, false) AS good
    FROM (
        SELECT s.row, s.agent, s.metric, s.raw_at, s.value, s.source, a.id AS agent_id,
               m.id AS metric_id, m.low, m.high, t.at,
               CASE WHEN a.id IS NOT NULL AND m.id IS NOT NULL AND t.at IS NOT NULL
                     AND char_length(s.source) <= {source_max}
                     AND char_length(s.value) <= 24
                     AND s.value ~ '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]{{1,2}})?$'
                    THEN s.value::float8 END AS number
        FROM (SELECT row, coalesce({agent}, '') AS agent, coalesce({metric}, '') AS metric,
                     {observed_at} AS raw_at, coalesce({value}, '') AS value,
                     coalesce({source}, '') AS source
              FROM {raw}) s
        LEFT JOIN {agents} a ON a.slug = s.agent
        LEFT JOIN {rules} m ON m.key = s.metric
        LEFT JOIN {times} t ON t.raw_at = s.raw_at
        OFFSET 0
    ) typed
    OFFSET 0
) judged
"""


class NotForCopy(Exception):
    """COPY would read this file differently from Python's csv module, or cannot read it."""


@dataclass(frozen=True)
class Checked:
    rows: int  # data rows in the file
    errors: list[tuple[int, RowError]]  # (row number, error), in file order
    accepted: int  # rows SQL could not vouch for that RowChecker accepted


def stage_file(cursor: psycopg.Cursor, raw: IO[bytes], columns: Columns,
               progress: Callable[[int, int], None]) -> None:
    """COPY the file's bytes into the TEMP table RAW in blocks of whole CSV records, each its
    own statement, calling `progress(bytes, lines)` after each (outside any transaction:
    the caller commits it). Raises NotForCopy."""
    drop_stage(cursor)
    cells = ", ".join(f"c{n} text" for n in range(columns.count))
    cursor.execute(f"CREATE TEMP TABLE {RAW} ({cells}, row bigint GENERATED ALWAYS AS "
                   "IDENTITY)", prepare=False)
    copy_sql = f"COPY {RAW} ({', '.join(f'c{n}' for n in range(columns.count))}) FROM STDIN"
    carry, quotes_odd, first, sent, lines = b"", False, True, 0, 0
    while True:
        block = raw.read(BLOCK)
        data = carry + block
        if not block:
            cut = len(data)
        else:
            cut, quotes_odd = _record_end(data, quotes_odd)
            if cut == 0:
                if len(data) > CARRY_MAX:
                    raise NotForCopy("no record end within a block")
                carry = data
                continue
        chunk, carry = data[:cut], data[cut:]
        if chunk:
            _guard(chunk)
            options = "(FORMAT csv, HEADER true)" if first else "(FORMAT csv)"
            try:  # a statement of its own (a savepoint inside a caller's transaction)
                with transaction.atomic(), cursor.copy(f"{copy_sql} {options}") as copy:
                    copy.write(chunk)
            except psycopg.DataError as exc:  # wrong cell count, bad quoting, not UTF-8
                raise NotForCopy(str(exc)) from None
            first = False
            sent += len(chunk)
            lines += chunk.count(b"\n")
            progress(sent, max(lines - 1, 0))
        if not block:
            return


def _record_end(data: bytes, quotes_odd: bool) -> tuple[int, bool]:
    """Where the last whole CSV record in `data` ends (0: none), and whether a quoted
    section is still open after it. COPY toggles "inside quotes" on every quote character,
    so a newline ends a record when the quotes before it are even."""
    end = data.rfind(b"\n")
    if b'"' not in data:
        return end + 1, quotes_odd
    while end >= 0:
        if (data.count(b'"', 0, end) % 2 == 1) == quotes_odd:
            return end + 1, False
        end = data.rfind(b"\n", 0, end)
    return 0, quotes_odd


def _guard(chunk: bytes) -> None:
    if b'"' in chunk and _STRAY_QUOTE.search(chunk):
        raise NotForCopy("a quote inside an unquoted cell")
    if b"\\." in chunk and _END_MARKER.search(chunk):
        raise NotForCopy(r"a line \. (COPY's end of data)")


def check_stage(cursor: psycopg.Cursor, columns: Columns, checker: RowChecker) -> Checked:
    """Inside the caller's transaction: type what SQL can vouch for into CHECKED; let
    `checker` judge the rest (rows it accepts go to EXTRA). Returns the row count and the
    rejections in file order."""
    cursor.execute("SET LOCAL work_mem = '256MB'", prepare=False)  # hash the distinct dates
    _rule_tables(cursor, checker)
    cell = {name: sql.Identifier(f"c{index}") for name, index in (
        ("agent", columns.agent), ("metric", columns.metric),
        ("observed_at", columns.observed_at), ("value", columns.value))}
    source = sql.SQL("NULL::text") if columns.source is None else sql.Identifier(
        f"c{columns.source}")
    names = {"checked": sql.Identifier(CHECKED), "raw": sql.Identifier(RAW),
             "times": sql.Identifier(TIMES), "agents": sql.Identifier(AGENTS),
             "rules": sql.Identifier(RULES), "source": source,
             "source_max": sql.Literal(SOURCE_MAX), **cell}
    cursor.execute(sql.SQL(_TIMES_SQL).format(**names), {}, prepare=False)  # {}: %% is %
    cursor.execute(f"ANALYZE {TIMES}", prepare=False)
    cursor.execute(sql.SQL(_CHECK_SQL).format(**names), prepare=False)
    cursor.execute(f"SELECT count(*) FROM {RAW}", prepare=False)
    rows = cursor.fetchone()[0]
    cursor.execute(f"SELECT row, raw_agent, raw_metric, raw_observed_at, raw_value, source "
                   f"FROM {CHECKED} WHERE agent_id IS NULL ORDER BY row", prepare=False)
    errors, accepted = [], []
    check = checker.check
    for number, *record in cursor.fetchall():
        try:
            agent_id, metric_id, _when, when_text, value, source = check(
                *("" if cell is None else cell for cell in record))
        except RowError as error:
            errors.append((number, error))
            continue
        accepted.append((number, agent_id, metric_id, when_text, value, source))
    cursor.execute(f"CREATE TEMP TABLE {EXTRA} (row bigint, agent_id bigint, metric_id bigint, "
                   "observed_at timestamptz, value float8, source text)", prepare=False)
    if accepted:
        with cursor.copy(f"COPY {EXTRA} FROM STDIN") as copy:
            for row in accepted:
                copy.write_row(row)
    return Checked(rows=rows, errors=errors, accepted=len(accepted))


def _rule_tables(cursor: psycopg.Cursor, checker: RowChecker) -> None:
    """The agents `checker` accepts and its importable metrics, as temp tables to join."""
    cursor.execute(f"CREATE TEMP TABLE {AGENTS} AS SELECT * FROM "
                   "unnest(%s::text[], %s::bigint[]) AS a(slug, id)",
                   [list(checker.agents), list(checker.agents.values())], prepare=False)
    rules = [(key, rule) for key, rule in checker.metrics.items() if not rule.derived]
    cursor.execute(f"CREATE TEMP TABLE {RULES} AS SELECT * FROM "
                   "unnest(%s::text[], %s::bigint[], %s::float8[], %s::float8[]) "
                   "AS m(key, id, low, high)",
                   [[k for k, _r in rules], [r.id for _k, r in rules],
                    [r.low for _k, r in rules], [r.high for _k, r in rules]], prepare=False)
    # true sizes for the planner: a hash of a few rows, probed once per file row
    cursor.execute(f"ANALYZE {AGENTS}, {RULES}", prepare=False)


# The good rows: SQL's, then those RowChecker accepted; in file order.
_GOOD_SQL = f"""
    SELECT row, agent_id, metric_id, observed_at, value, source
      FROM {CHECKED} WHERE agent_id IS NOT NULL
    UNION ALL
    SELECT row, agent_id, metric_id, observed_at, value, source FROM {EXTRA}"""

_RANGES_SQL = f"""SELECT agent_id, metric_id, min(observed_at), max(observed_at)
                    FROM ({_GOOD_SQL}) good GROUP BY agent_id, metric_id"""

# Whether any (agent, metric) pair of the file already has an observation in a week or month
# bucket the file's rows of that pair touch (each span runs over whole buckets).
_TAKEN_SQL = """
SELECT EXISTS (
    SELECT 1 FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])
                  AS span(agent_id, metric_id, lo, hi)
     WHERE EXISTS (SELECT 1 FROM metrics_observation o
                    WHERE o.agent_id = span.agent_id AND o.observed_at >= span.lo
                      AND o.observed_at < span.hi AND o.metric_id = span.metric_id))"""

# Periods with no data yet: a plain insert, in file order. A key the file repeats makes it
# fail (the unique index), and the caller takes the upsert instead.
_INSERT_SQL = f"""
INSERT INTO metrics_observation (agent_id, metric_id, observed_at, value, source, batch_id)
SELECT agent_id, metric_id, observed_at, value, source, %(batch)s FROM ({_GOOD_SQL}) good"""

_UPSERT_SQL = f"""
WITH good AS ({_GOOD_SQL}),
written AS (
    INSERT INTO metrics_observation (agent_id, metric_id, observed_at, value, source, batch_id)
    SELECT DISTINCT ON (agent_id, observed_at, metric_id, source)
           agent_id, metric_id, observed_at, value, source, %(batch)s
      FROM good
     ORDER BY agent_id, observed_at, metric_id, source, row DESC  -- the last row wins;
        -- in the natural key's index order, so its pages fill one after another
    ON CONFLICT (agent_id, metric_id, observed_at, source) DO UPDATE
       SET value = EXCLUDED.value, batch_id = EXCLUDED.batch_id
    RETURNING (xmax = 0) AS fresh  -- 0: a new row version
)
SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM written"""


@dataclass(frozen=True)
class Written:
    inserted: int
    updated: int


def write(cursor: psycopg.Cursor, batch_id: int) -> Written:
    """Inside the caller's transaction: write CHECKED's and EXTRA's good rows on the natural
    key (the last of a file's duplicates winning) and refresh the rollups they touch.

    Where none of the file's (agent, metric) pairs has data yet in the weeks and months its
    rows fall in (a backfill, a new agent, a new period), which is checked holding the
    agents' rollup locks so no other writer's refresh can interleave: a plain insert in file
    order, and rollups computed from the staged rows alone, which are then all those buckets
    hold. That skips the upsert's sort and conflict checks and reading a million rows back
    (tests/perf/metrics_import.py). Otherwise, or if the file repeats a key: the upsert, and
    the refresh from metrics_observation."""
    cursor.execute("SET LOCAL work_mem = '256MB'", prepare=False)  # sorts stay in memory
    cursor.execute(_RANGES_SQL, prepare=False)
    ranges = cursor.fetchall()
    if not ranges:
        return Written(0, 0)
    agent_ids = {agent_id for agent_id, _m, _f, _l in ranges}
    rollups.lock(agent_ids)
    spans = [rollups.bucket_span(first, last) for _a, _m, first, last in ranges]
    cursor.execute(_TAKEN_SQL, [[r[0] for r in ranges], [r[1] for r in ranges],
                                [lo for lo, _hi in spans], [hi for _lo, hi in spans]],
                   prepare=False)
    if not cursor.fetchone()[0]:
        try:
            with transaction.atomic():  # a savepoint: a repeated key undoes only this
                cursor.execute(_INSERT_SQL, {"batch": batch_id}, prepare=False)
                inserted = cursor.rowcount
                rollups.refresh_from_rows(
                    f"SELECT agent_id, metric_id, observed_at, value FROM ({_GOOD_SQL}) good",
                    [], agent_ids)
            logger.info("Batch %s: periods without data, %s rows inserted.", batch_id,
                        inserted)
            return Written(inserted, 0)
        except psycopg.errors.UniqueViolation:
            logger.info("Batch %s: the file repeats a key; upserting instead.", batch_id)
    else:
        logger.info("Batch %s: some periods have data already; upserting.", batch_id)
    cursor.execute(_UPSERT_SQL, {"batch": batch_id}, prepare=False)
    inserted, updated = cursor.fetchone()
    cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'metrics_observation'::regclass",
                   prepare=False)
    stored = max(cursor.fetchone()[0], 1)  # the planner's estimate (-1: never analysed)
    rollups.refresh(ranges, bulk=inserted + updated >= BULK_SHARE * stored)
    return Written(inserted, updated)


def drop_stage(cursor: psycopg.Cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {TEMP_TABLES}", prepare=False)

