"""The audit trail is append-only in the database and sealed into a hash chain in order."""

import json
import threading

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction

from portal import audit, audit_chain
from portal.models import AuditChainHead, AuditEvent

pytestmark = pytest.mark.django_db


def record_events(count: int) -> list[AuditEvent]:
    return [audit.record(actor=None, verb="test.event", data={"n": n, "tags": ["a", "b"]})
            for n in range(1, count + 1)]


def refused(sql: str, params: list | None = None) -> str:
    """Run one statement that the database must refuse; return its error message."""
    with pytest.raises(DatabaseError) as err, transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, params)
    return str(err.value)


# --- Append-only, enforced by PostgreSQL -----------------------------------------------------

@pytest.mark.postgres
def test_database_refuses_update_of_an_event():
    unsealed = audit.record(actor=None, verb="test.event", data={"n": 1})
    sealed = audit.record(actor=None, verb="test.event", data={"n": 2})
    audit_chain.seal()
    sealed.refresh_from_db()
    for event in (unsealed, sealed):
        message = refused("UPDATE portal_auditevent SET verb = 'test.forged' WHERE id = %s",
                          [event.pk])
        assert "append-only" in message
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).update(data={"n": 99})
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.get(pk=event.pk).save()
    assert AuditEvent.objects.get(pk=sealed.pk).data == {"n": 2}
    assert AuditEvent.objects.filter(verb="test.forged").count() == 0


@pytest.mark.postgres
def test_database_refuses_delete_of_an_event():
    events = record_events(2)
    audit_chain.seal(batch_size=1)  # one sealed, so the refusal covers both states
    for event in events:
        assert "append-only" in refused("DELETE FROM portal_auditevent WHERE id = %s",
                                        [event.pk])
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            event.delete()
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.count() == 2


@pytest.mark.postgres
def test_database_refuses_truncate_of_the_trail():
    record_events(1)
    assert "append-only" in refused("TRUNCATE portal_auditevent")
    assert AuditEvent.objects.count() == 1


@pytest.mark.postgres
def test_database_refuses_resealing_a_sealed_event():
    event = record_events(1)[0]
    audit_chain.seal()
    event.refresh_from_db()
    message = refused("UPDATE portal_auditevent SET seq = 7, prev_hash = %s, hash = %s "
                      "WHERE id = %s", ["a" * 64, "b" * 64, event.pk])
    assert f"UPDATE of audit event {event.pk} refused" in message
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(hash="c" * 64)
    assert AuditEvent.objects.get(pk=event.pk).hash == event.hash


@pytest.mark.postgres
def test_database_refuses_a_seal_that_also_changes_the_event():
    event = record_events(1)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(
            seq=1, prev_hash=audit_chain.GENESIS_HASH, hash="d" * 64, verb="test.forged")
    assert AuditEvent.objects.get(pk=event.pk).seq is None


@pytest.mark.postgres
def test_database_refuses_inserting_an_event_that_claims_to_be_sealed():
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.create(actor_type="system", actor_label="system",
                                  verb="test.forged", seq=1,
                                  prev_hash=audit_chain.GENESIS_HASH, hash="e" * 64)
    assert not AuditEvent.objects.filter(verb="test.forged").exists()


# --- Sealing ----------------------------------------------------------------------------------

def test_seal_numbers_events_in_order_and_links_each_to_the_previous():
    events = record_events(4)
    assert audit_chain.seal() == 4
    sealed = list(AuditEvent.objects.order_by("seq"))
    assert [e.pk for e in sealed] == [e.pk for e in events]
    assert [e.seq for e in sealed] == [1, 2, 3, 4]
    assert sealed[0].prev_hash == audit_chain.GENESIS_HASH
    for previous, event in zip(sealed, sealed[1:], strict=False):
        assert event.prev_hash == previous.hash
    assert len({e.hash for e in sealed}) == 4


def test_seal_continues_the_chain_and_seals_each_event_once():
    record_events(2)
    assert audit_chain.seal() == 2
    assert audit_chain.seal() == 0
    later = audit.record(actor=None, verb="test.later")
    assert audit_chain.seal() == 1
    later.refresh_from_db()
    assert later.seq == 3
    assert later.prev_hash == AuditEvent.objects.get(seq=2).hash
    head = AuditChainHead.objects.get()
    assert (head.seq, head.hash) == (3, later.hash)


def test_seal_works_through_a_backlog_in_batches():
    record_events(11)
    assert audit_chain.seal(batch_size=3) == 11
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, 12))
    assert audit_chain.verify().ok


def test_seal_exports_the_head_with_an_hmac_outside_the_database(tmp_path, settings):
    settings.AUDIT_HEAD_PATH = tmp_path / "not" / "yet" / "there" / "audit-head.json"
    record_events(3)
    audit_chain.seal()
    exported = json.loads(settings.AUDIT_HEAD_PATH.read_text())
    last = AuditEvent.objects.get(seq=3)
    assert exported["seq"] == 3
    assert exported["hash"] == last.hash
    assert exported["hmac"] == audit_chain.head_hmac(seq=3, hash=last.hash)
    assert exported["sealed_at"].endswith("+00:00")
    # written atomically: no temporary file is left next to it
    assert [p.name for p in settings.AUDIT_HEAD_PATH.parent.iterdir()] == ["audit-head.json"]


def test_head_hmac_depends_on_the_secret_key(settings):
    first = audit_chain.head_hmac(seq=3, hash="a" * 64)
    settings.AUDIT_HMAC_KEY = "another-secret"
    assert audit_chain.head_hmac(seq=3, hash="a" * 64) != first


def test_seal_with_nothing_new_does_not_touch_the_head_file():
    assert audit_chain.seal() == 0
    assert not settings.AUDIT_HEAD_PATH.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_seals_neither_fork_nor_skip():
    # Many small batches make the two sealers overlap many times; without the head lock they
    # both read the same head and the same events, and one of them fails or forks the chain.
    total = 600
    record_events(total)
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def run_seal() -> None:
        try:
            barrier.wait(timeout=10)
            counts.append(audit_chain.seal(batch_size=20))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run_seal) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(counts) == total
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1))
    result = audit_chain.verify()
    assert result.ok, result.message
    assert result.checked == total


# --- The beat task ----------------------------------------------------------------------------

def test_beat_schedule_names_only_registered_tasks():
    from portal.celery import app

    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, f"beat entry {name!r} names an unknown task"
    assert settings.CELERY_BEAT_SCHEDULE["seal-audit-trail"]["task"] == "portal.tasks.audit_seal"


def test_audit_seal_task_seals_new_events_and_returns_how_many():
    from portal.tasks import audit_seal

    record_events(3)
    assert audit_seal.apply().get() == 3
    assert audit_seal.apply().get() == 0
    assert audit_chain.verify().ok
