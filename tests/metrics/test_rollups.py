"""Rollups against a direct aggregate: each aggregation, both grains, bucket edges, updates and
deletions, incremental refresh against a full rebuild. Both paths run: the set-based SQL
(PostgreSQL) and the ORM one a first `make run` uses on SQLite."""

import random
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from metrics import observations, rollups
from metrics.models import Metric, Observation, Rollup
from metrics.observations import Row
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[pytest.param("sql", marks=pytest.mark.postgres), "orm"])
def path(request, monkeypatch):
    """Which implementation refresh/rebuild use: the SQL one exists on PostgreSQL only."""
    if request.param == "orm":
        monkeypatch.setattr(rollups, "set_based", lambda: False)
    return request.param


@pytest.fixture
def metrics(db):
    """One metric per aggregation: a mean and a sum from the catalogue, a `last` of our own."""
    backlog = Metric.objects.create(key="open_backlog", name="Open backlog", layer="business",
                                    unit="count", aggregation="last")
    return {"mean": Metric.objects.get(key="accuracy"), "sum": Metric.objects.get(key="tokens"),
            "last": backlog}


@pytest.fixture
def agents(db):
    return [make_agent(slug="first-agent"), make_agent(slug="second-agent")]


# --- the direct aggregate, computed here from the observations ---------------------------------

def _period(grain: str, moment: datetime) -> date:
    day = moment.astimezone(UTC).date()
    if grain == "week":
        year, week, _weekday = day.isocalendar()
        return date.fromisocalendar(year, week, 1)
    return date(day.year, day.month, 1)


def expected_rollups() -> dict[tuple, tuple[float, int]]:
    how = dict(Metric.objects.values_list("id", "aggregation"))
    buckets = defaultdict(list)
    for o in Observation.objects.all():
        for grain in ("week", "month"):
            buckets[o.agent_id, o.metric_id, grain, _period(grain, o.observed_at)].append(o)
    result = {}
    for key, obs in buckets.items():
        values = [o.value for o in obs]
        aggregation = how[key[1]]
        if aggregation == "sum":
            value = sum(values)
        elif aggregation == "mean":
            value = sum(values) / len(values)
        else:  # the latest; two sources at the same instant: the higher value
            value = max(obs, key=lambda o: (o.observed_at, o.value)).value
        result[key] = (value, len(values))
    return result


def stored_rollups() -> dict[tuple, tuple[float, int]]:
    return {(r.agent_id, r.metric_id, r.grain, r.period_start): (r.value, r.count)
            for r in Rollup.objects.all()}


def assert_rollups_match() -> None:
    expected, stored = expected_rollups(), stored_rollups()
    assert stored.keys() == expected.keys()
    for key, (value, count) in expected.items():
        assert stored[key][1] == count, key
        assert stored[key][0] == pytest.approx(value, rel=1e-9), key


def _row(agent, metric, at: datetime, value: float, source: str = "") -> Row:
    return Row(agent_id=agent.pk, metric_id=metric.pk, observed_at=at, value=value,
               source=source)


def _random_rows(agents, metrics, n: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    start = datetime(2025, 11, 20, tzinfo=UTC)
    return [_row(rng.choice(agents), rng.choice(list(metrics.values())),
                 start + timedelta(seconds=rng.randrange(0, 120 * 86400)),
                 round(rng.uniform(0, 100), 3), rng.choice(["", "crm", "survey"]))
            for _ in range(n)]


# --- correctness -------------------------------------------------------------------------------

def test_rollups_equal_a_direct_aggregate_for_every_aggregation_and_grain(path, agents,
                                                                           metrics):
    observations.upsert(_random_rows(agents, metrics, 600, seed=1))

    assert_rollups_match()
    grains = set(Rollup.objects.values_list("grain", flat=True))
    assert grains == {"week", "month"}


def test_bucket_edges_are_monday_and_the_first_in_utc(path, agents, metrics):
    agent, mean = agents[0], metrics["mean"]
    sunday_late = datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)  # Sunday 1 March
    monday = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    # 01:00 on Monday in UTC+2 is still Sunday in UTC: last week
    monday_in_athens = datetime(2026, 3, 2, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    month_end = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)
    month_start = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    observations.upsert([_row(agent, mean, sunday_late, 10), _row(agent, mean, monday, 20),
                         _row(agent, mean, monday_in_athens, 30),
                         _row(agent, mean, month_end, 40), _row(agent, mean, month_start, 50)])

    weeks = {r.period_start: (r.value, r.count) for r in Rollup.objects.filter(grain="week")}
    months = {r.period_start: (r.value, r.count) for r in Rollup.objects.filter(grain="month")}
    assert weeks == {date(2026, 2, 23): (20.0, 2),  # Sunday 23:59 and Athens' Monday 01:00
                     date(2026, 3, 2): (20.0, 1),   # Monday 00:00
                     date(2026, 1, 26): (45.0, 2)}  # Sat 31 Jan and Sun 1 Feb: one ISO week
    assert months == {date(2026, 3, 1): (20.0, 3),  # 1 March 23:59, 23:00 UTC, 2 March
                      date(2026, 2, 1): (50.0, 1),  # 1 Feb 00:00
                      date(2026, 1, 1): (40.0, 1)}  # 31 Jan 23:59:59
    assert_rollups_match()


def test_last_takes_the_latest_and_breaks_ties_by_the_higher_value(path, agents, metrics):
    agent, last = agents[0], metrics["last"]
    noon = datetime(2026, 4, 8, 12, tzinfo=UTC)
    observations.upsert([_row(agent, last, noon - timedelta(days=1), 99),
                         _row(agent, last, noon, 5, "crm"), _row(agent, last, noon, 7, "erp"),
                         _row(agent, last, noon - timedelta(hours=1), 50)])

    week = Rollup.objects.get(grain="week")
    assert (week.value, week.count) == (7.0, 4)


def test_sum_and_mean_of_one_bucket(path, agents, metrics):
    agent = agents[0]
    day = datetime(2026, 5, 5, 9, tzinfo=UTC)
    observations.upsert([_row(agent, metrics["sum"], day + timedelta(hours=h), v)
                         for h, v in ((0, 1000), (1, 2500), (30, 500))]
                        + [_row(agent, metrics["mean"], day + timedelta(hours=h), v)
                           for h, v in ((0, 90), (2, 80), (3, 100))])

    by_metric = {r.metric_id: (r.value, r.count) for r in Rollup.objects.filter(grain="week")}
    assert by_metric == {metrics["sum"].pk: (4000.0, 3), metrics["mean"].pk: (90.0, 3)}


def test_an_update_changes_the_bucket_and_deletions_shrink_then_remove_it(path, agents,
                                                                          metrics):
    agent, mean = agents[0], metrics["mean"]
    monday = datetime(2026, 6, 1, 8, tzinfo=UTC)
    rows = [_row(agent, mean, monday + timedelta(days=d), 10 * (d + 1)) for d in range(3)]
    observations.upsert(rows)
    assert Rollup.objects.get(grain="week").count == 3

    observations.upsert([_row(agent, mean, monday, 70)])  # the same natural key: an update
    week = Rollup.objects.get(grain="week")
    assert (week.value, week.count) == (pytest.approx(40.0), 3)

    Observation.objects.filter(observed_at=monday).delete()
    rollups.refresh([(agent.pk, mean.pk, monday, monday)])
    week = Rollup.objects.get(grain="week")
    assert (week.value, week.count) == (25.0, 2)
    assert_rollups_match()

    Observation.objects.filter(agent=agent).delete()
    rollups.refresh([(agent.pk, mean.pk, monday, monday + timedelta(days=2))])
    assert not Rollup.objects.exists()


def test_incremental_refreshes_equal_a_full_rebuild(path, agents, metrics):
    rows = _random_rows(agents, metrics, 500, seed=2)
    for start in range(0, len(rows), 37):  # many small imports, overlapping buckets
        observations.upsert(rows[start:start + 37])
    changed = _random_rows(agents, metrics, 60, seed=2)[:60]  # the same keys: updates
    observations.upsert([Row(r.agent_id, r.metric_id, r.observed_at, r.value + 1, r.source)
                         for r in changed])
    doomed = list(Observation.objects.order_by("id")[:40])
    Observation.objects.filter(pk__in=[o.pk for o in doomed]).delete()
    rollups.refresh([(o.agent_id, o.metric_id, o.observed_at, o.observed_at) for o in doomed])
    incremental = stored_rollups()

    Rollup.objects.update(value=-1, count=999)  # the rebuild must not trust what is there
    written = rollups.rebuild()

    assert written == len(incremental)
    rebuilt = stored_rollups()
    assert rebuilt.keys() == incremental.keys()
    for key, (value, count) in incremental.items():
        assert rebuilt[key] == (pytest.approx(value, rel=1e-9), count), key
    assert_rollups_match()


def test_rebuild_removes_rollups_without_observations(path, agents, metrics):
    agent = agents[0]
    observations.upsert([_row(agent, metrics["mean"], datetime(2026, 2, 3, tzinfo=UTC), 5)])
    Rollup.objects.create(agent=agent, metric=metrics["sum"], grain="week",
                          period_start=date(2020, 1, 6), value=1, count=1)

    assert rollups.rebuild() == 2
    assert_rollups_match()


@pytest.mark.postgres
def test_a_bulk_refresh_equals_a_direct_aggregate_and_restores_the_planner(agents, metrics):
    rows = _random_rows(agents, metrics, 600, seed=7)
    with transaction.atomic():
        Observation.objects.bulk_create(
            [Observation(agent_id=r.agent_id, metric_id=r.metric_id, observed_at=r.observed_at,
                         value=r.value, source=r.source) for r in rows], ignore_conflicts=True)
        rollups.refresh([(r.agent_id, r.metric_id, r.observed_at, r.observed_at) for r in rows],
                        bulk=True)
        with connection.cursor() as cursor:
            cursor.execute("SHOW enable_nestloop")
            assert cursor.fetchone()[0] == "on"  # the rest of the transaction plans as usual

    assert_rollups_match()


def test_refresh_leaves_other_pairs_and_buckets_alone(path, agents, metrics):
    first, second = agents
    mean = metrics["mean"]
    march, june = datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 6, 10, tzinfo=UTC)
    observations.upsert([_row(first, mean, march, 1), _row(first, mean, june, 2),
                         _row(second, mean, june, 3)])
    Rollup.objects.update(value=-1)  # a marker: only refreshed buckets lose it

    rollups.refresh([(first.pk, mean.pk, june, june)])

    touched = {(r.agent_id, r.period_start) for r in Rollup.objects.exclude(value=-1)}
    assert touched == {(first.pk, date(2026, 6, 8)), (first.pk, date(2026, 6, 1))}


@pytest.mark.postgres
def test_refresh_is_one_statement_per_grain_for_1_or_10000_pairs(agents, metrics,
                                                              django_assert_num_queries):
    extra = [Metric.objects.create(key=f"m{n}", name=f"M{n}", layer="quality") for n in range(8)]
    rows = [_row(agent, metric, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=d), d)
            for agent in agents for metric in [*metrics.values(), *extra] for d in range(40)]
    observations.upsert(rows, refresh_rollups=False)
    many = observations.ranges(rows)
    assert len(many) == 22

    # savepoint, the agents' advisory locks, week, month, release
    with django_assert_num_queries(5):
        rollups.refresh(many[:1])
    with django_assert_num_queries(5):
        rollups.refresh(many)
    assert_rollups_match()
    moment = datetime(2026, 1, 5, tzinfo=UTC)  # pairs without observations: 10,000 in all
    nothing = [(agents[n % 2].pk, 10**6 + n, moment, moment) for n in range(10_000 - 22)]
    with django_assert_num_queries(5):
        rollups.refresh(many + nothing)
    assert_rollups_match()


def test_rebuild_rollups_command_says_how_many(path, agents, metrics, capsys):
    observations.upsert(_random_rows(agents, metrics, 50, seed=3))
    expected = len(expected_rollups())

    call_command("rebuild_rollups")

    assert f"Rebuilt {expected:,} rollups in" in capsys.readouterr().out
    assert_rollups_match()


# --- two writers at once ---------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_writers_in_one_bucket_both_count():
    """The second writer's refresh must see the first one's observations: without the
    advisory lock it computes the bucket from a snapshot without them, waits for the first
    one's rollup row and then overwrites it with count 1."""
    agent = make_agent(slug="busy-agent")
    mean = Metric.objects.get(key="accuracy")
    monday = datetime(2026, 6, 1, 8, tzinfo=UTC)
    first_refreshed, errors = threading.Event(), []

    def first():
        try:
            with transaction.atomic():
                observations.upsert([_row(agent, mean, monday, 10)])
                first_refreshed.set()
                threading.Event().wait(0.5)  # hold the transaction open: a writer in flight
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            first_refreshed.set()
        finally:
            connection.close()

    def second():
        try:
            first_refreshed.wait(10)
            observations.upsert([_row(agent, mean, monday + timedelta(days=1), 30)])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    week = Rollup.objects.get(grain="week")
    assert (week.value, week.count) == (20.0, 2)
