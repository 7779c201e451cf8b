"""`verify_audit` names the first bad event of a tampered chain, and is quiet when all is well.

Tampering plays an attacker who owns the table: on PostgreSQL the append-only triggers are
switched off inside the test's transaction (and back on); SQLite has no triggers. These tests
run on both databases.
"""

import json
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import connection

from portal import audit, audit_chain
from portal.models import AuditChainHead, AuditEvent

pytestmark = pytest.mark.django_db

EVENTS = 5


@contextmanager
def triggers_disabled():
    postgres = connection.vendor == "postgresql"
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE portal_auditevent DISABLE TRIGGER USER")
    try:
        yield
    finally:
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE portal_auditevent ENABLE TRIGGER USER")


@pytest.fixture
def sealed_trail() -> list[AuditEvent]:
    for n in range(1, EVENTS + 1):
        audit.record(actor=None, verb="test.event", data={"n": n, "note": f"event {n}"})
    assert audit_chain.seal() == EVENTS
    return list(AuditEvent.objects.order_by("seq"))


def assert_broken_at(seq: int, *words: str) -> audit_chain.VerifyResult:
    result = audit_chain.verify()
    assert not result.ok
    assert result.first_bad_seq == seq, result.message
    assert f"#{seq}" in result.message
    for word in words:
        assert word in result.message
    with pytest.raises(CommandError, match=f"#{seq}"):
        call_command("verify_audit")
    return result


def reseal_from(seq: int) -> None:
    """What an attacker who knows the format does after a change: recompute every later hash."""
    prev_hash = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else audit_chain.GENESIS_HASH
    with triggers_disabled():
        for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
            event.prev_hash = prev_hash
            event.hash = prev_hash = audit_chain.event_hash(
                AuditEvent.objects.filter(pk=event.pk).values(*audit_chain.HASHED_FIELDS)
                .get() | {"prev_hash": prev_hash})
            event.save(update_fields=["prev_hash", "hash"])
    AuditChainHead.objects.update(seq=AuditEvent.objects.count(), hash=prev_hash)


# --- A sound chain ----------------------------------------------------------------------------

def test_verify_passes_on_an_empty_trail():
    result = audit_chain.verify()
    assert result.ok
    assert result.checked == 0


def test_verify_audit_prints_one_line_and_exits_zero_on_a_sound_chain(sealed_trail):
    out = StringIO()
    call_command("verify_audit", stdout=out, stderr=StringIO())
    assert out.getvalue() == (f"Audit chain OK: {EVENTS} events sealed, head #{EVENTS} "
                              "matches the exported head.\n")


def test_events_recorded_after_the_last_seal_do_not_break_verification(sealed_trail):
    audit.record(actor=None, verb="test.unsealed")
    result = audit_chain.verify()
    assert result.ok, result.message
    assert result.checked == EVENTS


def test_verification_streams_the_chain_in_chunks(sealed_trail):
    result = audit_chain.verify(chunk_size=2)
    assert result.ok
    assert result.checked == EVENTS


# --- Tampered events --------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"data": {"n": 3, "note": "nothing to see here"}},
    {"verb": "test.harmless"},
    {"actor_label": "somebody-else"},
    {"object_repr": "another object"},
    {"agent_id": 42},
    {"actor_user_id": 7},
])
def test_altered_event_is_named_by_verify(sealed_trail, change):
    with triggers_disabled():
        AuditEvent.objects.filter(seq=3).update(**change)
    assert_broken_at(3, "does not match its hash")


def test_event_with_a_shifted_time_is_named_by_verify(sealed_trail):
    with triggers_disabled():
        AuditEvent.objects.filter(seq=2).update(
            created_at=sealed_trail[1].created_at + timedelta(microseconds=1))
    assert_broken_at(2)


def test_removed_event_is_named_by_verify(sealed_trail):
    with triggers_disabled():
        AuditEvent.objects.filter(seq=3).delete()
    assert_broken_at(3, "missing")


def test_reordered_events_are_named_by_verify(sealed_trail):
    second, third = sealed_trail[1], sealed_trail[2]
    with triggers_disabled():
        AuditEvent.objects.filter(pk=second.pk).update(seq=-1)
        AuditEvent.objects.filter(pk=third.pk).update(seq=2)
        AuditEvent.objects.filter(pk=second.pk).update(seq=3)
    assert_broken_at(2)


def test_forged_event_with_a_made_up_hash_is_named_by_verify(sealed_trail):
    original = sealed_trail[2]
    with triggers_disabled():
        AuditEvent.objects.filter(pk=original.pk).delete()
        AuditEvent.objects.create(
            seq=3, created_at=original.created_at, actor_type="system", actor_label="system",
            verb="test.event", data={"n": 3, "note": "forged"},
            prev_hash=original.prev_hash, hash="f" * 64)
    assert_broken_at(3, "does not match its hash")


def test_forged_event_beyond_the_exported_head_is_named_by_verify(sealed_trail):
    # A correct SHA-256 is easy to compute; only the exported head gives the forgery away.
    last = sealed_trail[-1]
    forged = {"seq": EVENTS + 1, "created_at": last.created_at, "actor_type": "system",
              "actor_user_id": None, "actor_label": "system", "verb": "test.event",
              "object_type": "", "object_id": "", "object_repr": "", "agent_id": None,
              "data": {}, "prev_hash": last.hash}
    with triggers_disabled():
        AuditEvent.objects.create(**forged, hash=audit_chain.event_hash(forged))
    assert_broken_at(EVENTS + 1, "exported head", "forged")


def test_cut_tail_is_named_by_verify(sealed_trail):
    with triggers_disabled():
        AuditEvent.objects.filter(seq__gte=4).delete()
    assert_broken_at(4, "tail was cut")


def test_cut_tail_with_a_rewound_head_row_is_still_named_by_verify(sealed_trail):
    with triggers_disabled():
        AuditEvent.objects.filter(seq__gte=4).delete()
    AuditChainHead.objects.update(seq=3, hash=sealed_trail[2].hash)
    assert_broken_at(4, "tail was cut")


def test_rewritten_chain_is_caught_by_the_exported_head(sealed_trail):
    with triggers_disabled():
        AuditEvent.objects.filter(seq=2).update(data={"n": 2, "note": "rewritten"})
    reseal_from(2)
    assert_broken_at(EVENTS, "exported head")


def test_emptied_trail_is_named_by_verify(sealed_trail):
    with triggers_disabled():
        AuditEvent.objects.all().delete()
    AuditChainHead.objects.update(seq=0, hash="")
    assert_broken_at(1, "tail was cut")


def test_rewound_head_row_is_named_by_verify(sealed_trail):
    # The events are intact, but the next seal would fork from #3.
    AuditChainHead.objects.update(seq=3, hash=sealed_trail[2].hash)
    assert_broken_at(4, "head row says #3")


# --- Sealing refuses to sign a tampered chain -------------------------------------------------

def test_seal_refuses_to_sign_a_cut_tail_behind_a_rewound_head_row(sealed_trail):
    with triggers_disabled():
        AuditEvent.objects.filter(seq__gte=4).delete()
    AuditChainHead.objects.update(seq=3, hash=sealed_trail[2].hash)
    newcomer = audit.record(actor=None, verb="test.after_the_cut")
    with pytest.raises(audit_chain.AuditChainError,
                       match="database head is #3 but the exported head is #5"):
        audit_chain.seal()
    newcomer.refresh_from_db()
    assert newcomer.seq is None
    assert_broken_at(4, "tail was cut")


def test_seal_refuses_to_overwrite_a_forged_head_file(sealed_trail):
    settings.AUDIT_HEAD_PATH.write_text(json.dumps({"seq": 9, "hash": "a" * 64, "hmac": "b"}))
    audit.record(actor=None, verb="test.event")
    with pytest.raises(audit_chain.AuditChainError, match="not authentic"):
        audit_chain.seal()
    assert "not authentic" in audit_chain.verify().message


def test_seal_exports_the_head_again_once_the_file_was_moved_away(sealed_trail):
    settings.AUDIT_HEAD_PATH.unlink()
    audit.record(actor=None, verb="test.event")
    assert audit_chain.seal() == 1
    result = audit_chain.verify()
    assert result.ok, result.message
    assert result.checked == EVENTS + 1


# --- The exported head ------------------------------------------------------------------------

def test_forged_head_file_is_refused(sealed_trail):
    # Move the exported head back to #3 to hide events 4 and 5, without the HMAC key.
    path = settings.AUDIT_HEAD_PATH
    exported = json.loads(path.read_text())
    exported.update(seq=3, hash=sealed_trail[2].hash)
    path.write_text(json.dumps(exported))
    result = audit_chain.verify()
    assert not result.ok
    assert "not authentic" in result.message
    with pytest.raises(CommandError, match="not authentic"):
        call_command("verify_audit")


def test_head_file_signed_with_another_key_is_refused(sealed_trail, settings):
    settings.AUDIT_HMAC_KEY = "a-key-the-attacker-made-up"
    assert "not authentic" in audit_chain.verify().message


def test_unreadable_head_file_is_refused(sealed_trail):
    settings.AUDIT_HEAD_PATH.write_text("{not json")
    result = audit_chain.verify()
    assert not result.ok
    assert "unreadable" in result.message


def test_missing_head_file_is_refused_while_events_are_sealed(sealed_trail):
    settings.AUDIT_HEAD_PATH.unlink()
    result = audit_chain.verify()
    assert not result.ok
    assert "missing" in result.message
    assert f"{EVENTS} events are sealed" in result.message


def test_verify_audit_exits_non_zero_on_the_command_line(sealed_trail, capsys):
    with triggers_disabled():
        AuditEvent.objects.filter(seq=2).update(verb="test.altered")
    with pytest.raises(SystemExit) as exit_info:
        execute_from_command_line(["manage.py", "verify_audit"])
    assert exit_info.value.code != 0
    assert "Audit chain broken at #2" in capsys.readouterr().err
