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

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO

import psycopg
from django.db import transaction
from psycopg import sql

from metrics.import_checking import SOURCE_MAX, RowChecker, RowError
from metrics.import_reading import Columns

RAW = "metrics_import_raw"  # the file's cells, as text
CHECKED = "metrics_import_checked"  # typed rows (NULL agent_id: SQL could not vouch for it)
EXTRA = "metrics_import_extra"  # rows SQL could not vouch for and RowChecker accepted
BLOCK = 4 * 1024 * 1024  # bytes per COPY statement (and per progress update)
CARRY_MAX = 16 * 1024 * 1024  # a "line" longer than this: not a file for COPY
WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())  # str.strip()'s set

# A quote inside an unquoted cell: Python's csv keeps it, COPY starts a quoted section.
_STRAY_QUOTE = re.compile(rb'[^,\r\n"]"[^,\r\n"]')
# A line `\.` ends COPY's data; Python's csv reads it as a cell.
_END_MARKER = re.compile(rb"(?:^|[\r\n])\\\.(?:[\r\n]|$)")

# Every row once: typed where SQL can vouch for all of it, else its raw cells for Python.
# Dates: YYYY-MM-DD, or with [T ]HH:MM[:SS[.ffffff]][Z|±HH:MM]; years 1001-9998 keep the
# shift to UTC in range; no offset means UTC (as in Python). Numbers: plain decimals with a
# short exponent, so the cast can neither overflow nor fail. Casts run only under CASE WHEN
# the guards passed: no row can raise.
_CHECK_SQL = """
CREATE TEMP TABLE {checked} AS
SELECT q.row,
       CASE WHEN g.good THEN q.agent_id END AS agent_id, q.metric_id,
       CASE WHEN g.good THEN c.observed_at END AS observed_at, c.value, q.source,
       CASE WHEN g.good THEN NULL ELSE q.agent END AS raw_agent,
       CASE WHEN g.good THEN NULL ELSE q.metric END AS raw_metric,
       CASE WHEN g.good THEN NULL ELSE q.raw_observed_at END AS raw_observed_at,
       CASE WHEN g.good THEN NULL ELSE q.raw_value END AS raw_value
FROM (
    SELECT s.row, s.agent, s.metric, s.observed_at AS raw_observed_at, s.value AS raw_value,
           s.source, a.id AS agent_id, m.id AS metric_id, m.low, m.high, p.t, p.number,
           n.oh, n.om,
           (a.id IS NOT NULL AND m.id IS NOT NULL
            AND p.t IS NOT NULL AND char_length(s.observed_at) <= 40
            AND n.y BETWEEN 1001 AND 9998 AND n.mo BETWEEN 1 AND 12
            AND n.d BETWEEN 1 AND CASE WHEN n.mo = 2 THEN 28 + CASE WHEN n.y %% 4 = 0
                    AND (n.y %% 100 <> 0 OR n.y %% 400 = 0) THEN 1 ELSE 0 END
                WHEN n.mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END
            AND n.h <= 23 AND n.mi <= 59 AND n.sec <= 59 AND n.oh <= 23 AND n.om <= 59
            AND p.number ~ '^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]{{1,2}})?$'
            AND char_length(p.number) <= 24
            AND char_length(s.source) <= {source_max}) AS typable
    FROM (SELECT row, coalesce({agent}, '') AS agent, coalesce({metric}, '') AS metric,
                 coalesce({observed_at}, '') AS observed_at, coalesce({value}, '') AS value,
                 coalesce({source}, '') AS source
          FROM {raw}) s
    CROSS JOIN LATERAL (
        SELECT btrim(s.agent, %(ws)s) AS agent, btrim(s.metric, %(ws)s) AS metric,
               regexp_match(btrim(s.observed_at, %(ws)s),
                   '^([0-9]{{4}})-([0-9]{{2}})-([0-9]{{2}})(?:[T ]([0-9]{{2}}):([0-9]{{2}})'
                   '(?::([0-9]{{2}})(\\.[0-9]{{1,6}})?)?(Z|([+-])([0-9]{{2}}):([0-9]{{2}}))?)?$'
               ) AS t,
               btrim(s.value, %(ws)s) AS number
    ) p
    CROSS JOIN LATERAL (
        SELECT p.t[1]::int AS y, p.t[2]::int AS mo, p.t[3]::int AS d,
               coalesce(p.t[4], '0')::int AS h, coalesce(p.t[5], '0')::int AS mi,
               coalesce(p.t[6], '0')::int AS sec,
               coalesce(p.t[10], '0')::int AS oh, coalesce(p.t[11], '0')::int AS om
    ) n
    LEFT JOIN {agents} a ON a.slug = p.agent
    LEFT JOIN {rules} m ON m.key = p.metric
) q
CROSS JOIN LATERAL (
    SELECT CASE WHEN q.typable THEN q.number::float8 END AS value,
           CASE WHEN q.typable THEN
               (concat(q.t[1], '-', q.t[2], '-', q.t[3], ' ', coalesce(q.t[4], '00'), ':',
                       coalesce(q.t[5], '00'), ':', coalesce(q.t[6], '00'), q.t[7])::timestamp
                - CASE q.t[9] WHEN '-' THEN -1 ELSE 1 END
                  * make_interval(hours => q.oh, mins => q.om)) AT TIME ZONE 'UTC'
           END AS observed_at
) c
CROSS JOIN LATERAL (SELECT coalesce(c.value BETWEEN q.low AND q.high, false) AS good) g
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
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{RAW}, pg_temp.{CHECKED}, pg_temp.{EXTRA}",
                   prepare=False)
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
    """Type what SQL can vouch for into CHECKED; let `checker` judge the rest (rows it
    accepts go to EXTRA). Returns the row count and the rejections in file order."""
    _rule_tables(cursor, checker)
    cell = {name: sql.Identifier(f"c{index}") for name, index in (
        ("agent", columns.agent), ("metric", columns.metric),
        ("observed_at", columns.observed_at), ("value", columns.value))}
    source = sql.SQL("NULL::text") if columns.source is None else sql.Identifier(
        f"c{columns.source}")
    statement = sql.SQL(_CHECK_SQL).format(
        checked=sql.Identifier(CHECKED), raw=sql.Identifier(RAW), source=source,
        agents=sql.Identifier("metrics_import_agents"),
        rules=sql.Identifier("metrics_import_rules"), source_max=sql.Literal(SOURCE_MAX),
        **cell)
    cursor.execute(statement, {"ws": WHITESPACE}, prepare=False)
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
    cursor.execute("DROP TABLE IF EXISTS pg_temp.metrics_import_agents, "
                   "pg_temp.metrics_import_rules", prepare=False)
    cursor.execute("CREATE TEMP TABLE metrics_import_agents AS SELECT * FROM "
                   "unnest(%s::text[], %s::bigint[]) AS a(slug, id)",
                   [list(checker.agents), list(checker.agents.values())], prepare=False)
    rules = [(key, rule) for key, rule in checker.metrics.items() if not rule.derived]
    cursor.execute("CREATE TEMP TABLE metrics_import_rules AS SELECT * FROM "
                   "unnest(%s::text[], %s::bigint[], %s::float8[], %s::float8[]) "
                   "AS m(key, id, low, high)",
                   [[k for k, _r in rules], [r.id for _k, r in rules],
                    [r.low for _k, r in rules], [r.high for _k, r in rules]], prepare=False)


_UPSERT_SQL = f"""
WITH good AS (
    SELECT row, agent_id, metric_id, observed_at, value, source
      FROM {CHECKED} WHERE agent_id IS NOT NULL
    UNION ALL
    SELECT row, agent_id, metric_id, observed_at, value, source FROM {EXTRA}
),
written AS (
    INSERT INTO metrics_observation (agent_id, metric_id, observed_at, value, source, batch_id)
    SELECT DISTINCT ON (agent_id, metric_id, observed_at, source)
           agent_id, metric_id, observed_at, value, source, %(batch)s
      FROM good
     ORDER BY agent_id, metric_id, observed_at, source, row DESC  -- the last row wins
    ON CONFLICT (agent_id, metric_id, observed_at, source) DO UPDATE
       SET value = EXCLUDED.value, batch_id = EXCLUDED.batch_id
    RETURNING agent_id, metric_id, observed_at, (xmax = 0) AS fresh  -- 0: a new row version
)
SELECT agent_id, metric_id, count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh),
       min(observed_at), max(observed_at)
  FROM written GROUP BY agent_id, metric_id"""


@dataclass(frozen=True)
class Upserted:
    inserted: int
    updated: int
    ranges: list[tuple[int, int, datetime, datetime]]  # what rollups.refresh needs


def upsert(cursor: psycopg.Cursor, batch_id: int) -> Upserted:
    """Inside the caller's transaction: write CHECKED's and EXTRA's good rows on the natural
    key, the last of a file's duplicates winning."""
    cursor.execute("SET LOCAL work_mem = '256MB'", prepare=False)  # the sort stays in memory
    cursor.execute(_UPSERT_SQL, {"batch": batch_id}, prepare=False)
    inserted = updated = 0
    ranges = []
    for agent_id, metric_id, fresh, stale, first, last in cursor.fetchall():
        inserted, updated = inserted + fresh, updated + stale
        ranges.append((agent_id, metric_id, first, last))
    return Upserted(inserted, updated, ranges)


def drop_stage(cursor: psycopg.Cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{RAW}, pg_temp.{CHECKED}, pg_temp.{EXTRA}, "
                   "pg_temp.metrics_import_agents, pg_temp.metrics_import_rules",
                   prepare=False)

