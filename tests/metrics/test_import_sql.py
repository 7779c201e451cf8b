"""The PostgreSQL fast path (metrics.import_sql): the file checked in SQL must give exactly
what the Python reader and checker give, and a file COPY reads differently goes to Python."""

import io
import logging

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from metrics import import_reading, import_sql, importing
from metrics.import_checking import RowChecker
from metrics.import_services import batch_upload
from metrics.models import ImportBatch, ImportRowError, Observation
from tests.factories import UserFactory, make_agent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

HEADER = "agent,metric,observed_at,value,source\n"
FALLBACK = "COPY cannot read the file"

# Every kind of row, each with all five cells, so COPY reads the file.
MIXED = HEADER + "".join(f"{line}\n" for line in [
    "refund-replies,accuracy,2026-01-05,93.5,qa",                # good, date only
    "refund-replies,cycle_time,2026-01-05T09:30:00+02:00,4.25,",  # good, offset
    "refund-replies,adoption,2026-01-06 08:00,40,",              # good, space, no seconds
    "refund-replies,accuracy,2026-01-07T10:00:00.123456Z,-0,",   # good, fraction, -0
    "refund-replies,accuracy,2026-01-08T10:00:00-05:30,1e1,web",  # good, exponent
    " refund-replies ,accuracy, 2026-01-09 , 91 ,",              # good: Python strips
    "refund-replies,accuracy,2026-01-05T0930,90,",               # good: an odd ISO form
    "refund-replies,accuracy,2026-01-05T09:30:00+23:00,90,",     # good: a far offset
    "refund-replies,accuracy,2026-01-05,93.5,qa",                # repeat: the last wins
    "nobody,accuracy,2026-01-05,90,",                            # unknown agent
    "crm-hygiene,accuracy,2026-01-05,90,",                       # hidden: unknown
    "watched,accuracy,2026-01-05,90,",                           # visible, not permitted
    ",accuracy,2026-01-05,90,",                                  # missing agent
    "refund-replies,speed,2026-01-05,90,",                       # unknown metric
    "refund-replies,acceptance_rate,2026-01-05,90,",             # derived metric
    "refund-replies,,2026-01-05,90,",                            # missing metric
    "refund-replies,accuracy,2026-01-05,lots,",                  # not a number
    "refund-replies,accuracy,2026-01-05,NaN,",                   # NaN
    "refund-replies,cycle_time,2026-01-05,inf,",                 # infinity
    "refund-replies,cycle_time,2026-01-05,1e400,",               # overflows to infinity
    "refund-replies,accuracy,2026-01-05,1_000,",                 # Python-only syntax
    "refund-replies,accuracy,2026-01-05,,",                      # missing value
    "refund-replies,accuracy,2026-01-05,101,",                   # out of range
    "refund-replies,user_feedback,2026-01-05,0.5,",              # below the minimum
    "refund-replies,accuracy,05/01/2026,90,",                    # not ISO
    "refund-replies,accuracy,2026-02-30,90,",                    # impossible date
    "refund-replies,accuracy,2026-02-29T10:00:00Z,90,",          # not a leap year
    "refund-replies,accuracy,2024-02-29T25:00:00Z,90,",          # hour 25
    "refund-replies,accuracy,2026-01-05T23:59:60Z,90,",          # second 60
    "refund-replies,accuracy,0000-01-01,90,",                    # year 0
    "refund-replies,accuracy,,90,",                              # missing date
    f"refund-replies,accuracy,2026-01-06,90,{'x' * 61}",         # source too long
    "refund-replies,accuracy,2024-02-29,90,leap",                # good: a leap day
]) + '"refund-replies","accuracy","2026-01-10","88","a, quoted\nsource"\n'  # good, quoted


@pytest.fixture
def owner():
    owner = UserFactory(username="olga")
    make_agent(owner=owner, slug="refund-replies")
    make_agent(slug="crm-hygiene")
    watched = make_agent(slug="watched")
    from guardian.shortcuts import assign_perm

    assign_perm("agents.view_agent", owner, watched)
    return owner


def upload(user, content: str):
    return batch_upload(actor=user, upload=SimpleUploadedFile("m.csv", content.encode()))


def outcome(batch) -> tuple:
    batch.refresh_from_db()
    observations = sorted(Observation.objects.filter(batch=batch).values_list(
        "agent__slug", "metric__key", "observed_at", "value", "source"))
    errors = list(ImportRowError.objects.filter(batch=batch).order_by("row").values_list(
        "row", "column", "message"))
    return (batch.status, batch.rows_total, batch.rows_imported, batch.rows_updated,
            batch.rows_rejected, observations, errors)


def python_path(batch) -> None:
    """The reader and checker the fast path must agree with, run on the same batch."""
    batch = importing._start(batch.pk)
    with batch.file.storage.open(batch.file.name, "rb") as raw:
        importing._load_postgresql(batch, import_reading.records(raw, "csv"),
                                   RowChecker.for_user(batch.created_by))


def both_paths(user, content: str, caplog) -> tuple[tuple, tuple]:
    fast = upload(user, content)
    with caplog.at_level(logging.INFO, logger="metrics.importing"):
        importing.run(fast.pk)
    fast_result = outcome(fast)
    Observation.objects.all().delete()
    slow = ImportBatch(format="csv", sha256="python", size_bytes=len(content.encode()),
                       original_name="m.csv", created_by=user)
    slow.file.save("python.csv", ContentFile(content.encode()))
    python_path(slow)
    return fast_result, outcome(slow)


def test_sql_and_python_give_the_same_rows_and_the_same_errors(owner, caplog):
    fast, slow = both_paths(owner, MIXED, caplog)
    assert FALLBACK not in caplog.text  # the fast path really ran
    assert fast[:5] == ("done", 34, 10, 0, 23)
    assert fast[5] == slow[5]  # identical observations
    assert fast[6] == slow[6]  # identical row errors: row, column, message
    assert fast[1:5] == slow[1:5]
    assert [row for row, _c, _m in fast[6]] == list(range(10, 33))
    assert (10, "agent", "Unknown agent 'nobody': use the slug shown on the agent's page.") \
        in fast[6]
    assert (26, "observed_at", "'2026-02-30' is not a date or date-time: use ISO 8601, e.g. "
                               "2026-01-05 or 2026-01-05T09:30:00Z.") in fast[6]


def test_the_last_of_repeated_rows_wins_across_copy_blocks(owner, caplog, monkeypatch):
    monkeypatch.setattr(import_sql, "BLOCK", 64)  # many COPY statements, records cut across
    lines = [f"refund-replies,accuracy,2026-01-05,{n},\"s,\n{n % 3}\"" for n in range(60)]
    fast, slow = both_paths(owner, HEADER + "\n".join(lines) + "\n", caplog)
    assert FALLBACK not in caplog.text
    assert fast == slow
    values = {source: value for _a, _m, _t, value, source in fast[5]}
    assert values == {"s,\n0": 57.0, "s,\n1": 58.0, "s,\n2": 59.0}


@pytest.mark.parametrize("content", [
    HEADER + "refund-replies,accuracy,2026-01-05\n",                   # a short row
    HEADER + "refund-replies,accuracy,2026-01-05,90,,extra\n",          # a long row
    HEADER + "refund-replies,accuracy,2026-01-05,90,\n\nrefund-replies,accuracy,2026-01-06,1,\n",
    HEADER + 'refund-replies,accuracy,2026-01-05,90,a"b\n',             # a stray quote
    HEADER + "refund-replies,accuracy,2026-01-05,90,\n\\.\nrefund-replies,accuracy,"
             "2026-01-06,1,\n",                                          # COPY's end marker
    HEADER + 'refund-replies,accuracy,2026-01-05,90,"unterminated\n',    # bad quoting
])
def test_a_file_copy_reads_differently_falls_back_to_python(owner, caplog, content):
    fast, slow = both_paths(owner, content, caplog)
    assert FALLBACK in caplog.text
    assert fast[0] == slow[0] and fast[5:] == slow[5:]


def test_a_file_that_is_not_utf8_past_the_header_fails_as_before(owner, caplog):
    good = "".join(f"refund-replies,accuracy,2026-01-05,{n % 100},r{n}\n" for n in range(2000))
    content = (HEADER + good).encode() + b"refund-replies,accuracy,2026-01-05,\xff,\n"
    batch = batch_upload(actor=owner, upload=SimpleUploadedFile("m.csv", content))
    with caplog.at_level(logging.INFO, logger="metrics.importing"):
        importing.run(batch.pk)
    batch.refresh_from_db()
    assert FALLBACK in caplog.text
    assert batch.status == "failed" and "not UTF-8" in batch.message


def test_staging_reports_progress_block_by_block_and_keeps_file_order(owner, monkeypatch):
    from django.db import connection

    monkeypatch.setattr(import_sql, "BLOCK", 100)
    content = (HEADER + "".join(f"refund-replies,accuracy,2026-01-05,{n},r{n}\n"
                                for n in range(50))).encode()
    reader = import_reading.CsvRecords(io.BytesIO(content))
    columns = reader.columns()
    seen = []
    with connection.cursor() as wrapper:
        import_sql.stage_file(wrapper.cursor, io.BytesIO(content), columns,
                              lambda sent, lines: seen.append((sent, lines)))
        wrapper.execute(f"SELECT row, c3 FROM {import_sql.RAW} ORDER BY row")
        staged = wrapper.fetchall()
        import_sql.drop_stage(wrapper.cursor)
    assert len(seen) > 10
    assert [sent for sent, _l in seen] == sorted(sent for sent, _l in seen)
    assert seen[-1] == (len(content), 50)
    assert staged == [(n + 1, str(n)) for n in range(50)]
