"""Rollups: one row per agent, metric, grain (ISO week from Monday, calendar month; UTC) and
period, with the metric's aggregation. Scorecard pages read these only.

- `mean`: the average of the bucket's values; `sum`: their total; `last`: the value with the
  latest `observed_at` (two sources at the same instant: the higher value, so the result
  does not depend on row order);
- `count`: how many observations the bucket holds.

`refresh(ranges)` runs after every write of observations (imports, the API, derived metrics)
inside the writer's transaction: it recomputes every bucket that overlaps each (agent,
metric, first, last) range from `metrics_observation` and deletes buckets left empty.

On PostgreSQL each grain is one set-based statement: the ranges travel as arrays (`unnest`),
each range is an index-only scan of the natural key `observation_natural_key (agent_id,
observed_at, metric_id, source) INCLUDE (value)`, and the bucket expression is exactly the
one migration 0002 keeps statistics on. Elsewhere (SQLite, a first `make run`) the ORM does
the same with TruncWeek/TruncMonth.

Concurrency: two transactions writing observations of the same agent must not both compute
a bucket from a snapshot that misses the other's rows (the later upsert would win with a
stale value). Each refresh first takes a transaction-level advisory lock per agent slot in a
fixed order, and PostgreSQL gives a read-committed statement a snapshot taken after the
locks it waited for: the second refresh sees the first one's observations.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncMonth, TruncWeek

from metrics.models import Metric, Observation, Rollup

Range = tuple[int, int, datetime, datetime]

ROLLUP_LOCK_CLASS = 4203  # first key of pg_advisory_xact_lock (4201 blast radius, 4202 agents)
LOCK_SLOTS = 256  # agents share slots: one transaction never holds more than this many locks
GRAINS = (Rollup.Grain.WEEK, Rollup.Grain.MONTH)
PORTABLE_CHUNK = 200  # pairs per ORM query: SQLite limits expression depth and parameters

# Set-based refresh on PostgreSQL, one statement per grain: {grain} is 'week' or 'month';
# {scope} picks the observations, {stale} the rollups that may have to go. {scoped} is
# MATERIALIZED where reading the scope twice costs more than keeping its rows (index scans
# of stored observations), NOT MATERIALIZED where a second scan is cheap (a full rebuild's
# sequential scan, staged rows).
_REFRESH_SQL = """
WITH {ranges}
scoped AS {scoped} (
    SELECT o.agent_id, o.metric_id, o.observed_at, o.value,
           date_trunc('{grain}', o.observed_at AT TIME ZONE 'UTC')::date AS period_start
    FROM {scope}
),
totals AS (
    SELECT agent_id, metric_id, period_start, count(*) AS n, sum(value) AS total
    FROM scoped
    GROUP BY 1, 2, 3
),
-- the latest value of each bucket of a `last` metric, over those metrics' rows only (an
-- ordered array_agg in the pass above sorted per bucket of every metric: 2.6x slower)
latest AS (
    SELECT DISTINCT ON (1, 2, 3) agent_id, metric_id, period_start, value
    FROM scoped
    WHERE metric_id = ANY (ARRAY(SELECT id FROM metrics_metric WHERE aggregation = 'last'))
    ORDER BY 1, 2, 3, observed_at DESC, value DESC
),
fresh AS (
    SELECT t.agent_id, t.metric_id, t.period_start, t.n, t.total, l.value AS latest
    FROM totals t LEFT JOIN latest l ON l.agent_id = t.agent_id
         AND l.metric_id = t.metric_id AND l.period_start = t.period_start
),
written AS (
    INSERT INTO metrics_rollup (agent_id, metric_id, grain, period_start, value, count,
                                updated_at)
    SELECT f.agent_id, f.metric_id, '{grain}', f.period_start,
           CASE m.aggregation WHEN 'sum' THEN f.total WHEN 'last' THEN f.latest
                ELSE f.total / f.n END,
           f.n, now()
    FROM fresh f JOIN metrics_metric m ON m.id = f.metric_id
    ORDER BY 1, 2, 4  -- a fixed order: two refreshes lock rollup rows the same way
    ON CONFLICT (agent_id, metric_id, grain, period_start) DO UPDATE
        SET value = EXCLUDED.value, count = EXCLUDED.count, updated_at = EXCLUDED.updated_at
    RETURNING 1
),
emptied AS (
    DELETE FROM metrics_rollup r {stale}
      AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.agent_id = r.agent_id
                      AND f.metric_id = r.metric_id AND f.period_start = r.period_start)
    RETURNING 1
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM emptied)
"""

# The buckets each range overlaps, as [lo, hi) in UTC wall time.
_RANGES_CTE = """
wanted AS (
    SELECT agent_id, metric_id,
           date_trunc('{grain}', first_at AT TIME ZONE 'UTC') AS lo,
           date_trunc('{grain}', last_at AT TIME ZONE 'UTC') + interval '1 {grain}' AS hi
    FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])
         AS r(agent_id, metric_id, first_at, last_at)
),"""
_RANGES_SCOPE = """wanted w
    JOIN metrics_observation o ON o.agent_id = w.agent_id AND o.metric_id = w.metric_id
         AND o.observed_at >= (w.lo AT TIME ZONE 'UTC')
         AND o.observed_at < (w.hi AT TIME ZONE 'UTC')"""
_RANGES_STALE = """USING wanted w
    WHERE r.agent_id = w.agent_id AND r.metric_id = w.metric_id AND r.grain = '{grain}'
      AND r.period_start >= w.lo::date AND r.period_start < w.hi::date"""


def set_based() -> bool:
    """The SQL path on PostgreSQL; the ORM path elsewhere (tests run both on PostgreSQL)."""
    return connection.vendor == "postgresql"


def refresh(ranges: Iterable[Range], *, bulk: bool = False) -> int:
    """Recompute the week and month rollups of each (agent id, metric id) pair for every
    bucket that overlaps [first, last] (observed_at bounds, inclusive), from the
    observations; buckets left without observations are deleted. Returns buckets written.

    `bulk`: the ranges hold a large share of the table, just written. The planner's per-pair
    index range scans then visit the heap for every row (the visibility map is clear until a
    vacuum): one sequential scan and hash joins are several times faster (an import of a
    million updated rows: 10.3 s → 1.5 s, tests/perf/metrics_import.py)."""
    merged = merge(ranges)
    if not merged:
        return 0
    with transaction.atomic():
        if not set_based():
            return _refresh_portable(merged)
        lock([agent_id for (agent_id, _m) in merged])
        params = statement_params(merged)
        written = 0
        with connection.cursor() as cursor:
            if bulk:
                cursor.execute("SET LOCAL enable_nestloop = off")
            for grain in GRAINS:
                cursor.execute(refresh_statement(grain), params)
                written += cursor.fetchone()[0]
            if bulk:
                cursor.execute("RESET enable_nestloop")
        return written


def refresh_from_rows(rows_sql: str, params: list, agent_ids: Iterable[int]) -> int:
    """PostgreSQL, inside the caller's transaction: write the week and month buckets of the
    rows `rows_sql` yields (agent_id, metric_id, observed_at, value) as if they were every
    observation those buckets hold, without reading metrics_observation back. Right only when
    they are: the caller checked that no other observation lies in those buckets while
    holding `lock(agent_ids)` (an import into periods that had no data; metrics.import_sql).
    Returns buckets written."""
    lock(agent_ids)
    written = 0
    with connection.cursor() as cursor:
        for grain in GRAINS:
            cursor.execute(_REFRESH_SQL.format(
                ranges="", grain=Rollup.Grain(grain).value, scope=f"({rows_sql}) o",
                scoped="NOT MATERIALIZED", stale="WHERE false"), params)
            written += cursor.fetchone()[0]
    return written


def bucket_span(first: datetime, last: datetime) -> tuple[datetime, datetime]:
    """[lo, hi) covering every week and month bucket that [first, last] touches (UTC)."""
    lo = min(bucket_start(grain, first) for grain in GRAINS)
    hi = max(next_bucket(grain, bucket_start(grain, last)) for grain in GRAINS)
    return _midnight(lo), _midnight(hi)


def refresh_statement(grain: str) -> str:
    """PostgreSQL: the refresh of one grain for the ranges `statement_params` passes as
    arrays (tests/perf/scorecards.py EXPLAINs it)."""
    grain = Rollup.Grain(grain).value  # only the two known words reach the SQL
    return _REFRESH_SQL.format(ranges=_RANGES_CTE.format(grain=grain), grain=grain,
                               scope=_RANGES_SCOPE, scoped="MATERIALIZED",
                               stale=_RANGES_STALE.format(grain=grain))


def statement_params(merged: dict[tuple[int, int], tuple[datetime, datetime]]) -> list[list]:
    return [[a for (a, _m) in merged], [m for (_a, m) in merged],
            [first for (first, _l) in merged.values()], [last for (_f, last) in merged.values()]]


def rebuild() -> int:
    """Recompute every rollup from scratch (`manage.py rebuild_rollups`). Returns the number
    of rollup rows written. Readers keep seeing the old rollups until it commits."""
    with transaction.atomic():
        if not set_based():
            return _rebuild_portable()
        lock(range(LOCK_SLOTS))  # every slot: no refresh runs alongside
        written = 0
        with connection.cursor() as cursor:
            for grain in GRAINS:
                cursor.execute(_REFRESH_SQL.format(
                    ranges="", grain=grain, scope="metrics_observation o",
                    scoped="NOT MATERIALIZED", stale=f"WHERE r.grain = '{grain}'"))
                written += cursor.fetchone()[0]
        return written


def merge(ranges: Iterable[Range]) -> dict[tuple[int, int], tuple[datetime, datetime]]:
    """One range per pair (the hull of its ranges), so no observation is counted twice."""
    merged: dict[tuple[int, int], tuple[datetime, datetime]] = {}
    for agent_id, metric_id, first, last in ranges:
        key = (int(agent_id), int(metric_id))
        if first > last:
            first, last = last, first
        if key in merged:
            first, last = min(first, merged[key][0]), max(last, merged[key][1])
        merged[key] = (first, last)
    return merged


def lock(agent_ids: Iterable[int]) -> None:
    """Inside a transaction (PostgreSQL): hold the rollup locks of these agents until it ends,
    as every refresh does first; taking them again later in the transaction is free."""
    slots = sorted({agent_id % LOCK_SLOTS for agent_id in agent_ids})
    with connection.cursor() as cursor:
        # unnest yields the slots in array order: every refresh locks them ascending
        cursor.execute("SELECT pg_advisory_xact_lock(%s, slot) FROM unnest(%s::integer[]) "
                       "AS s(slot)", [ROLLUP_LOCK_CLASS, slots])


# --- the portable path (SQLite) ---------------------------------------------------------------

def bucket_start(grain: str, moment: datetime) -> date:
    """Monday of the ISO week, or the 1st of the month, of `moment` in UTC."""
    day = moment.astimezone(UTC).date()
    if grain == Rollup.Grain.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_bucket(grain: str, start: date) -> date:
    if grain == Rollup.Grain.WEEK:
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _refresh_portable(merged: dict[tuple[int, int], tuple[datetime, datetime]]) -> int:
    aggregation = dict(Metric.objects.values_list("id", "aggregation"))
    pairs = list(merged.items())
    written = 0
    for grain in GRAINS:
        for start in range(0, len(pairs), PORTABLE_CHUNK):
            windows = {pair: (bucket_start(grain, first),
                              next_bucket(grain, bucket_start(grain, last)))
                       for pair, (first, last) in pairs[start:start + PORTABLE_CHUNK]}
            written += _refresh_windows(grain, windows, aggregation)
    return written


def _refresh_windows(grain: str, windows: dict[tuple[int, int], tuple[date, date]],
                     aggregation: dict[int, str]) -> int:
    observed = Q()
    for (agent_id, metric_id), (lo, hi) in windows.items():
        observed |= Q(agent_id=agent_id, metric_id=metric_id,
                      observed_at__gte=_midnight(lo), observed_at__lt=_midnight(hi))
    fresh = _aggregate(grain, Observation.objects.filter(observed), aggregation)
    stale = Q()
    for (agent_id, metric_id), (lo, hi) in windows.items():
        stale |= Q(agent_id=agent_id, metric_id=metric_id, period_start__gte=lo,
                   period_start__lt=hi)
    existing = Rollup.objects.filter(stale, grain=grain).values_list(
        "id", "agent_id", "metric_id", "period_start")
    Rollup.objects.filter(pk__in=[pk for pk, *key in existing if tuple(key) not in fresh]
                          ).delete()
    _save(grain, fresh)
    return len(fresh)


def _aggregate(grain: str, observations, aggregation: dict[int, str]
               ) -> dict[tuple[int, int, date], tuple[float, int]]:
    """{(agent id, metric id, period start): (value, count)} with each metric's aggregation."""
    trunc = (TruncWeek if grain == Rollup.Grain.WEEK else TruncMonth)("observed_at", tzinfo=UTC)
    buckets = (observations.annotate(period=trunc).values("agent_id", "metric_id", "period")
               .annotate(n=Count("id"), total=Sum("value")).order_by())
    fresh = {}
    for row in buckets:
        key = (row["agent_id"], row["metric_id"], _as_date(row["period"]))
        how = aggregation.get(row["metric_id"])
        fresh[key] = (row["total"] if how == Metric.Aggregation.SUM
                      else row["total"] / row["n"], row["n"])
    last_ids = [pk for pk, how in aggregation.items() if how == Metric.Aggregation.LAST]
    latest = (observations.filter(metric_id__in=last_ids).annotate(period=trunc)
              .order_by("agent_id", "metric_id", "period", "-observed_at", "-value")
              .values_list("agent_id", "metric_id", "period", "value"))
    seen = set()
    for agent_id, metric_id, period, value in latest:
        key = (agent_id, metric_id, _as_date(period))
        if key not in seen:  # the first row of each bucket is its latest
            seen.add(key)
            fresh[key] = (value, fresh[key][1])
    return fresh


def _as_date(period) -> date:
    return period.astimezone(UTC).date() if isinstance(period, datetime) else period


def _save(grain: str, fresh: dict[tuple[int, int, date], tuple[float, int]]) -> None:
    Rollup.objects.bulk_create(
        [Rollup(agent_id=a, metric_id=m, grain=grain, period_start=p, value=value, count=n)
         for (a, m, p), (value, n) in fresh.items()],
        update_conflicts=True, unique_fields=["agent", "metric", "grain", "period_start"],
        update_fields=["value", "count", "updated_at"], batch_size=500)


def _rebuild_portable() -> int:
    Rollup.objects.all().delete()
    pairs = (Observation.objects.values("agent_id", "metric_id").order_by()
             .annotate(first=Min("observed_at"), last=Max("observed_at")))
    return _refresh_portable(merge(
        (row["agent_id"], row["metric_id"], row["first"], row["last"]) for row in pairs))

