"""The two ways a checked CSV file reaches metrics_observation on PostgreSQL (metrics.import_sql):
into weeks and months where its (agent, metric) pairs have no data yet, a plain insert with
rollups computed from the file's rows alone; otherwise, or when the file repeats a key, the
upsert and a refresh from the stored observations. Both must leave the same rows and rollups
a direct aggregate gives."""

import logging
import random
from datetime import UTC, datetime, timedelta

import pytest

from metrics import observations
from metrics.models import Metric, Observation
from metrics.observations import Row
from tests.factories import UserFactory, make_agent
from tests.metrics.test_import_files import HEADER, imported
from tests.metrics.test_rollups import assert_rollups_match

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

FRESH = "periods without data"
REPEATED = "the file repeats a key"
TAKEN = "some periods have data already"


@pytest.fixture
def owner():
    return UserFactory(username="olga")


@pytest.fixture
def agents(owner):
    return [make_agent(owner=owner, slug="first-agent"),
            make_agent(owner=owner, slug="second-agent")]


@pytest.fixture
def keys(db):
    """A mean (accuracy), a sum (model_calls) and a `last` of our own."""
    Metric.objects.create(key="open_backlog", name="Open backlog", layer="business",
                          unit="count", aggregation="last")
    return ["accuracy", "model_calls", "open_backlog"]


def _csv(agents, keys, n: int, seed: int, start=datetime(2025, 11, 20, tzinfo=UTC)) -> str:
    """n rows with distinct natural keys over 120 days (across week and month edges)."""
    rng = random.Random(seed)
    rows = {}
    while len(rows) < n:
        at = start + timedelta(minutes=rng.randrange(0, 120 * 1440))
        key = (rng.choice(agents).slug, rng.choice(keys), at.isoformat(),
               rng.choice(["", "crm"]))
        rows[key] = f"{round(rng.uniform(0, 100), 2)}"
    return HEADER + "".join(f"{a},{m},{t},{v},{s}\n" for (a, m, t, s), v in rows.items())


def _path(caplog) -> str:
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "metrics.import_sql")
    return next(path for path in (FRESH, REPEATED, TAKEN) if path in said)


def test_a_file_into_empty_periods_is_inserted_and_rolled_up_from_its_rows(owner, agents, keys,
                                                                          caplog):
    caplog.set_level(logging.INFO, logger="metrics.import_sql")
    batch = imported(owner, _csv(agents, keys, 400, seed=1))

    assert _path(caplog) == FRESH
    assert (batch.status, batch.rows_imported, batch.rows_updated) == ("done", 400, 0)
    assert Observation.objects.count() == 400
    assert_rollups_match()


def test_a_file_that_repeats_a_key_is_upserted_and_the_last_row_wins(owner, agents, keys,
                                                                    caplog):
    caplog.set_level(logging.INFO, logger="metrics.import_sql")
    content = _csv(agents, keys, 50, seed=2)
    again = content.splitlines()[1].rsplit(",", 2)
    repeated = f"{again[0]},12.5,{again[2]}\n"  # the first row's key, another value
    batch = imported(owner, content + repeated)

    assert _path(caplog) == REPEATED
    assert (batch.rows_total, batch.rows_imported, batch.rows_updated) == (51, 50, 0)
    assert 12.5 in set(Observation.objects.values_list("value", flat=True))
    assert Observation.objects.count() == 50
    assert_rollups_match()


def test_a_file_into_a_month_with_data_of_the_pair_is_upserted(owner, agents, keys, caplog):
    accuracy = Metric.objects.get(key="accuracy")
    # the last day of the month before the file starts: the same month bucket as its first rows
    observations.upsert([Row(agents[0].pk, accuracy.pk, datetime(2025, 11, 1, tzinfo=UTC), 50.0,
                             "")])
    caplog.set_level(logging.INFO, logger="metrics.import_sql")
    batch = imported(owner, _csv(agents, keys, 300, seed=3))

    assert _path(caplog) == TAKEN
    assert (batch.rows_imported, batch.rows_updated) == (300, 0)
    assert Observation.objects.count() == 301
    assert_rollups_match()  # the November bucket holds the old row and the file's


def test_other_metrics_of_the_agent_in_the_period_keep_the_plain_insert(owner, agents, keys,
                                                                       caplog):
    adoption = Metric.objects.get(key="adoption")
    observations.upsert([Row(agents[0].pk, adoption.pk, datetime(2025, 12, 3, tzinfo=UTC), 40.0,
                             "")])
    caplog.set_level(logging.INFO, logger="metrics.import_sql")
    imported(owner, _csv(agents, keys, 300, seed=4))

    assert _path(caplog) == FRESH
    assert Observation.objects.count() == 301
    assert_rollups_match()


def test_a_second_file_into_the_same_periods_updates_through_the_upsert(owner, agents, keys,
                                                                       caplog):
    content = _csv(agents, keys, 200, seed=5)
    imported(owner, content)
    caplog.set_level(logging.INFO, logger="metrics.import_sql")
    caplog.clear()
    changed = HEADER + "".join(f"{line.rsplit(',', 2)[0]},1.5,{line.rsplit(',', 1)[1]}\n"
                               for line in content.splitlines()[1:])
    batch = imported(owner, changed, name="changed.csv")

    assert _path(caplog) == TAKEN
    assert (batch.rows_imported, batch.rows_updated) == (0, 200)
    assert set(Observation.objects.values_list("value", flat=True)) == {1.5}
    assert_rollups_match()
