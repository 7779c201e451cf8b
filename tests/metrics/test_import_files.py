"""Importing files: every row checked, bad ones reported with row, column and message, good
ones loaded on the natural key; whole-file problems fail the batch with a clear message."""

import io
import json
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from guardian.shortcuts import assign_perm

from metrics import import_reading, importing
from metrics.import_services import batch_upload
from metrics.models import ImportBatch, ImportRowError, Metric, Observation
from portal.models import AuditEvent
from tests.factories import UserFactory, make_agent

pytestmark = pytest.mark.django_db

HEADER = "agent,metric,observed_at,value,source\n"


@pytest.fixture
def owner():
    return UserFactory(username="olga")


@pytest.fixture
def agent(owner):
    return make_agent(owner=owner, slug="refund-replies")


def upload(user, content: str | bytes, name: str = "metrics.csv", fmt: str = "") -> ImportBatch:
    data = content.encode() if isinstance(content, str) else content
    return batch_upload(actor=user, upload=SimpleUploadedFile(name, data), fmt=fmt)


def imported(user, content, name="metrics.csv", fmt="") -> ImportBatch:
    batch = upload(user, content, name, fmt)
    importing.run(batch.pk)
    batch.refresh_from_db()
    return batch


def errors(batch) -> list[tuple[int, str, str]]:
    return list(ImportRowError.objects.filter(batch=batch).values_list("row", "column", "message"))


def stored() -> set[tuple]:
    return set(Observation.objects.values_list("agent__slug", "metric__key", "observed_at",
                                               "value", "source"))


def test_good_rows_are_loaded_and_counted(owner, agent):
    batch = imported(owner, HEADER
                     + "refund-replies,accuracy,2026-01-05,93.5,qa\n"
                     + "refund-replies,cycle_time,2026-01-05T09:30:00+02:00,4.25,\n"
                     + "refund-replies,adoption,2026-01-06 08:00,40,\n")
    assert (batch.status, batch.rows_total, batch.rows_imported, batch.rows_updated,
            batch.rows_rejected) == ("done", 3, 3, 0, 0)
    assert batch.finished_at and batch.bytes_read == batch.size_bytes
    assert stored() == {
        ("refund-replies", "accuracy", datetime(2026, 1, 5, tzinfo=UTC), 93.5, "qa"),
        ("refund-replies", "cycle_time", datetime(2026, 1, 5, 7, 30, tzinfo=UTC), 4.25, ""),
        ("refund-replies", "adoption", datetime(2026, 1, 6, 8, 0, tzinfo=UTC), 40.0, ""),
    }
    assert set(Observation.objects.values_list("batch_id", flat=True)) == {batch.pk}


def test_each_bad_row_is_rejected_with_row_column_and_message(owner, agent):
    other = make_agent(slug="crm-hygiene")  # exists, but olga may not even see it
    batch = imported(owner, HEADER
                     + "refund-replies,accuracy,2026-01-05,93.5,\n"      # 1 good
                     + "nobody,accuracy,2026-01-05,90,\n"                # 2 unknown agent
                     + f"{other.slug},accuracy,2026-01-05,90,\n"         # 3 hidden: unknown
                     + "refund-replies,speed,2026-01-05,90,\n"           # 4 unknown metric
                     + "refund-replies,acceptance_rate,2026-01-05,90,\n"  # 5 derived
                     + "refund-replies,accuracy,2026-01-05,lots,\n"      # 6 not a number
                     + "refund-replies,accuracy,2026-01-05,NaN,\n"       # 7 NaN
                     + "refund-replies,cycle_time,2026-01-05,inf,\n"     # 8 infinity
                     + "refund-replies,accuracy,05/01/2026,90,\n"        # 9 bad date
                     + "refund-replies,accuracy,2026-01-05,101,\n"       # 10 out of range
                     + "refund-replies,accuracy,2026-01-05\n"            # 11 short row
                     + "refund-replies,accuracy,,90,\n"                  # 12 missing date
                     + "refund-replies,user_feedback,2026-01-05,0.5,\n"  # 13 below 1
                     + f"refund-replies,accuracy,2026-01-06,90,{'x' * 61}\n")  # 14 long source
    assert (batch.status, batch.rows_total, batch.rows_imported, batch.rows_rejected) == (
        "done", 14, 1, 13)
    found = {row: (column, message) for row, column, message in errors(batch)}
    assert sorted(found) == list(range(2, 15))
    assert found[2] == ("agent", "Unknown agent 'nobody': use the slug shown on the agent's "
                                 "page.")
    assert found[3][0] == "agent" and found[3][1].startswith("Unknown agent 'crm-hygiene'")
    assert found[4][0] == "metric" and "Unknown metric 'speed'" in found[4][1]
    assert found[5] == ("metric", "Acceptance rate ('acceptance_rate') is computed by Steward, "
                                  "not imported.")
    assert found[6] == ("value", "'lots' is not a number.")
    assert found[7] == ("value", "'NaN' is not a finite number.")
    assert found[8] == ("value", "'inf' is not a finite number.")
    assert found[9][0] == "observed_at" and "'05/01/2026' is not a date" in found[9][1]
    assert found[10] == ("value", "101 is out of range: Accuracy must be between 0 and 100.")
    assert found[11] == ("value", "The value is missing.")
    assert found[12][0] == "observed_at" and "missing" in found[12][1]
    assert found[13] == ("value", "0.5 is out of range: User feedback must be between 1 and 5.")
    assert found[14] == ("source", "The source is longer than 60 characters.")


def test_an_agent_the_uploader_sees_but_may_not_change_is_refused(owner, agent):
    watched = make_agent(slug="crm-hygiene")
    assign_perm("agents.view_agent", owner, watched)
    batch = imported(owner, HEADER + "crm-hygiene,accuracy,2026-01-05,90,\n")
    [(row, column, message)] = errors(batch)
    assert (row, column) == (1, "agent")
    assert "may not report metrics for this agent" in message
    assert not Observation.objects.exists()


def test_revops_reports_for_any_agent(roles):
    batch = imported(roles.revops, HEADER + "refund-replies,accuracy,2026-01-05,90,\n"
                     "crm-hygiene,accuracy,2026-01-05,80,\n")
    assert (batch.rows_imported, batch.rows_rejected) == (2, 0)


def test_the_same_observation_in_another_file_updates_it(owner, agent):
    imported(owner, HEADER + "refund-replies,accuracy,2026-01-05,90,qa\n")
    second = imported(owner, "metric,agent,value,observed_at,source\n"  # any column order
                      "accuracy,refund-replies,95,2026-01-05T00:00:00Z,qa\n"
                      "accuracy,refund-replies,70,2026-01-05,other\n")
    assert (second.rows_imported, second.rows_updated) == (1, 1)
    assert Observation.objects.get(source="qa").value == 95
    assert Observation.objects.count() == 2


def test_a_repeated_row_in_one_file_counts_once_and_the_last_wins(owner, agent):
    batch = imported(owner, HEADER + "refund-replies,accuracy,2026-01-05,90,\n"
                     "refund-replies,accuracy,2026-01-05,91,\n")
    assert (batch.rows_imported, batch.rows_updated) == (1, 0)
    assert Observation.objects.get().value == 91


def test_the_same_file_again_is_a_duplicate_and_imports_nothing(owner, agent):
    content = HEADER + "refund-replies,accuracy,2026-01-05,90,\n"
    first = imported(owner, content)
    Observation.objects.all().delete()
    again = upload(owner, content, name="renamed.csv")
    assert (again.status, again.duplicate_of) == ("duplicate", first)
    assert not again.file
    importing.run(again.pk)  # even if a task ran for it, nothing happens
    assert not Observation.objects.exists()
    assert AuditEvent.objects.filter(verb="metrics.import_created",
                                     object_id=str(again.pk)).exists()


def test_a_failed_file_may_be_uploaded_again(owner, agent):
    content = "agent,metric,value\nrefund-replies,accuracy,90\n"
    first = imported(owner, content)
    assert first.status == "failed"
    assert upload(owner, content).status == "queued"


@pytest.mark.parametrize(("content", "message"), [
    ("", "The file is empty"),
    ("agent,metric,value\nrefund-replies,accuracy,90\n",
     "The header has no column 'observed_at'"),
    (b"agent,metric,observed_at,value\n\xff\xfe,accuracy,2026-01-05,1\n", "not UTF-8"),
])
def test_an_unreadable_file_fails_with_a_clear_message(owner, agent, content, message):
    batch = imported(owner, content)
    assert batch.status == "failed"
    assert message in batch.message
    assert AuditEvent.objects.filter(verb="metrics.import_failed",
                                     object_id=str(batch.pk)).exists()


def test_json_array_and_object_forms_are_read(owner, agent):
    items = [{"agent": "refund-replies", "metric": "accuracy", "observed_at": "2026-01-05",
              "value": 90},
             {"agent": "refund-replies", "metric": "accuracy", "observed_at": "2026-01-06",
              "value": "x"},
             ["not", "an", "object"]]
    batch = imported(owner, json.dumps(items), name="a.json")
    assert (batch.rows_total, batch.rows_imported, batch.rows_rejected) == (3, 1, 2)
    assert errors(batch) == [(2, "value", "'x' is not a number."),
                             (3, "", "Each observation must be a JSON object with agent, metric, "
                                     "observed_at and value; found list.")]
    wrapped = imported(owner, json.dumps({"source": "qa", "observations": items[:1]}),
                       name="b.txt", fmt="json")
    assert (wrapped.status, wrapped.rows_updated) == ("done", 1)


@pytest.mark.parametrize(("content", "message"), [
    ('{"rows": []}', 'no "observations" list'),
    ("42", "must be a JSON array"),
    ('[{"agent": "refund-replies"}, {"agent": ', "not valid JSON"),
    ('[{"agent": "refund-replies"} {"agent": 1}]', "expected ',' or ']' after item 1"),
])
def test_broken_json_fails_with_a_clear_message(owner, agent, content, message):
    batch = imported(owner, content, name="x.json")
    assert batch.status == "failed"
    assert message in batch.message


def test_json_is_read_in_chunks_items_straddling_them(monkeypatch):
    monkeypatch.setattr(import_reading, "_CHUNK", 7)
    items = [{"agent": "a", "metric": "m", "observed_at": "2026-01-05", "value": 12345.5,
              "source": "ü"} for _ in range(20)] + [{"value": 123456789}]
    reader = import_reading.JsonRecords(io.BytesIO(json.dumps(items).encode()))
    found = list(reader)
    assert found[:20] == [("a", "m", "2026-01-05", 12345.5, "ü")] * 20
    assert found[20] == (None, None, None, 123456789, "")
    assert reader.tell() == len(json.dumps(items).encode())


def test_the_portable_loader_agrees_with_the_postgresql_one(owner, agent):
    """SQLite (a first `make run`) loads through observations.upsert: same rows, same counts."""
    content = (HEADER + "refund-replies,accuracy,2026-01-05,90,\n"
               "refund-replies,accuracy,2026-01-05,91,\n" "nobody,accuracy,2026-01-05,1,\n"
               "refund-replies,cycle_time,2026-01-07T10:00:00,3,web\n")
    fast = imported(owner, content)
    fast_rows = stored()
    Observation.objects.all().delete()
    slow = upload(owner, content + "\n")  # another file (sha256), same rows
    slow_batch = importing._start(slow.pk)
    with slow.file.storage.open(slow.file.name, "rb") as raw:
        importing._load_portable(slow_batch, import_reading.records(raw, "csv"),
                                 importing.RowChecker.for_user(owner))
    slow.refresh_from_db()
    assert stored() == fast_rows
    assert (slow.rows_total, slow.rows_rejected, slow.status) == (5, 1, "done")
    assert errors(slow) == errors(fast)


def test_metric_catalogue_ranges_come_from_the_database(owner, agent):
    Metric.objects.filter(key="cycle_time").update(max_value=48)
    batch = imported(owner, HEADER + "refund-replies,cycle_time,2026-01-05,49,\n")
    assert errors(batch) == [(1, "value", "49 is out of range: Cycle time must be between "
                                          "0 and 48.")]
