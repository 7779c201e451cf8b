"""Writing observations: one upsert on the natural key, then the rollups it touches.

For sets that fit in memory (the API push, derived metrics, demo data). Files go through
metrics.importing, which loads rows with COPY and calls the same rollup refresh.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from metrics import rollups
from metrics.models import Observation


@dataclass(frozen=True)
class Row:
    agent_id: int
    metric_id: int
    observed_at: datetime  # aware
    value: float
    source: str = ""
    batch_id: int | None = None


@dataclass(frozen=True)
class Written:
    inserted: int
    updated: int


_UPSERT_SQL = (
    "INSERT INTO metrics_observation (agent_id, metric_id, observed_at, value, source, batch_id) "
    "VALUES {values} "
    "ON CONFLICT (agent_id, metric_id, observed_at, source) DO UPDATE "
    "SET value = EXCLUDED.value, batch_id = EXCLUDED.batch_id "
    "RETURNING (xmax = 0)")  # xmax is 0 on a freshly inserted row version
_CHUNK = 1000


def upsert(rows: Iterable[Row], *, refresh_rollups: bool = True) -> Written:
    """Insert new observations and update those whose natural key (agent, metric,
    observed_at, source) exists; the last of duplicates within `rows` wins. Refreshes the
    rollups of every bucket touched."""
    unique = list({(r.agent_id, r.metric_id, r.observed_at, r.source): r for r in rows}.values())
    if not unique:
        return Written(0, 0)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            written = _upsert_postgresql(unique)
        else:
            written = _upsert_portable(unique)
        if refresh_rollups:
            rollups.refresh(ranges(unique))
    return written


def ranges(rows: Iterable[Row]) -> list[tuple[int, int, datetime, datetime]]:
    """(agent id, metric id, first, last) per pair: what rollups.refresh needs."""
    bounds: dict[tuple[int, int], tuple[datetime, datetime]] = {}
    for r in rows:
        key = (r.agent_id, r.metric_id)
        first, last = bounds.get(key, (r.observed_at, r.observed_at))
        bounds[key] = (min(first, r.observed_at), max(last, r.observed_at))
    return [(a, m, first, last) for (a, m), (first, last) in bounds.items()]


def _upsert_postgresql(rows: Sequence[Row]) -> Written:
    inserted = updated = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
            params = [v for r in chunk for v in (r.agent_id, r.metric_id, r.observed_at,
                                                  float(r.value), r.source, r.batch_id)]
            cursor.execute(_UPSERT_SQL.format(values=values), params)
            flags = [fresh for (fresh,) in cursor.fetchall()]
            inserted += sum(flags)
            updated += len(flags) - sum(flags)
    return Written(inserted, updated)


def _upsert_portable(rows: Sequence[Row]) -> Written:
    """SQLite (a first `make run`): count what exists, one query per (agent, metric) pair,
    then let bulk_create upsert."""
    by_pair: dict[tuple[int, int], list[Row]] = defaultdict(list)
    for r in rows:
        by_pair[(r.agent_id, r.metric_id)].append(r)
    existing = 0
    for (agent_id, metric_id), pair_rows in by_pair.items():
        found = set(Observation.objects.filter(
            agent_id=agent_id, metric_id=metric_id,
            observed_at__gte=min(r.observed_at for r in pair_rows),
            observed_at__lte=max(r.observed_at for r in pair_rows),
        ).values_list("observed_at", "source"))
        existing += sum((r.observed_at, r.source) in found for r in pair_rows)
    Observation.objects.bulk_create(
        [Observation(agent_id=r.agent_id, metric_id=r.metric_id, observed_at=r.observed_at,
                     value=float(r.value), source=r.source, batch_id=r.batch_id) for r in rows],
        update_conflicts=True, unique_fields=["agent", "metric", "observed_at", "source"],
        update_fields=["value", "batch"], batch_size=500)
    return Written(len(rows) - existing, existing)
