"""The audit hash chain: sealing, the exported head, verification.

`portal.audit.record()` only inserts unsealed events. `seal()` (run by the `audit_seal` beat
task) gives each new event the next sequence number and links it into a SHA-256 chain:

    hash(n) = SHA-256(canonical JSON of event n, including seq n and prev_hash = hash(n-1))

with `GENESIS_HASH` (64 zeros) as the prev_hash of event #1. After every sealed batch the
chain head is also written outside the database (`settings.AUDIT_HEAD_PATH`) with an HMAC
keyed by `settings.AUDIT_HMAC_KEY`, a secret the database never sees, as CloudTrail does with
its digest files. Someone who can rewrite the table can recompute every hash, but cannot
forge that file; `verify()` recomputes the chain and compares it with the file, and `seal()`
refuses to extend a chain whose database head no longer matches it.

Concurrency: sealing and verifying both lock the single `AuditChainHead` row
(`_lock_head()`) before they read anything, so two seals cannot fork or skip, and a verify
never sees a head file that is ahead of the committed chain. Inserting events takes no lock.
Events are sealed in the order the sealer first sees them committed (id order within a run),
so the chain order is commit order, not always id order.
"""

import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from portal.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64
SEAL_BATCH_SIZE = 5_000
VERIFY_CHUNK_SIZE = 2_000
HEAD_PK = 1  # there is exactly one AuditChainHead row

# The event fields covered by the hash, in the shape `.values()` returns them.
HASHED_FIELDS = ("seq", "created_at", "actor_type", "actor_user_id", "actor_label", "verb",
                 "object_type", "object_id", "object_repr", "agent_id", "data", "prev_hash")


class AuditChainError(Exception):
    """The chain or its exported head cannot be trusted."""


@dataclass(frozen=True)
class ExportedHead:
    seq: int
    hash: str
    sealed_at: str
    hmac: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # sealed events whose hash was recomputed
    first_bad_seq: int | None
    message: str


# --- Hashing ----------------------------------------------------------------------------------

def event_hash(event: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of one event (a dict with HASHED_FIELDS)."""
    created_at: datetime = event["created_at"]
    payload = {field: event[field] for field in HASHED_FIELDS}
    payload["created_at"] = created_at.astimezone(UTC).isoformat(timespec="microseconds")
    # sort_keys also sorts nested `data`; compact separators: one byte string per event.
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def head_hmac(*, seq: int, hash: str) -> str:
    """The HMAC that makes the exported head unforgeable without AUDIT_HMAC_KEY."""
    key = settings.AUDIT_HMAC_KEY.encode("utf-8")
    return hmac.new(key, f"{seq}:{hash}".encode(), hashlib.sha256).hexdigest()


# --- The exported head ------------------------------------------------------------------------

def export_head(*, seq: int, hash: str, sealed_at: datetime) -> Path:
    """Write the head file atomically: a reader sees the old file or the new one, never half."""
    path = Path(settings.AUDIT_HEAD_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"seq": seq, "hash": hash,
               "sealed_at": sealed_at.astimezone(UTC).isoformat(timespec="microseconds"),
               "hmac": head_hmac(seq=seq, hash=hash)}
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            json.dump(payload, tmp, indent=2)
            tmp.write("\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # make the rename itself durable
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_exported_head() -> ExportedHead | None:
    """The exported head, or None if there is no file. Raises AuditChainError if it is forged."""
    path = Path(settings.AUDIT_HEAD_PATH)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        head = ExportedHead(seq=int(data["seq"]), hash=str(data["hash"]),
                            sealed_at=str(data.get("sealed_at", "")), hmac=str(data["hmac"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise AuditChainError(f"The exported audit head {path} is unreadable ({exc}).") from exc
    if not hmac.compare_digest(head.hmac, head_hmac(seq=head.seq, hash=head.hash)):
        raise AuditChainError(
            f"The exported audit head {path} is not authentic (HMAC mismatch): "
            "it was forged, or STEWARD_AUDIT_HMAC_KEY changed.")
    return head


# --- Sealing ----------------------------------------------------------------------------------

def _lock_head() -> AuditChainHead:
    """Lock the single head row; every sealer and verifier takes this lock first."""
    AuditChainHead.objects.get_or_create(pk=HEAD_PK)
    return AuditChainHead.objects.select_for_update().get(pk=HEAD_PK)


def seal(*, batch_size: int = SEAL_BATCH_SIZE) -> int:
    """Seal every unsealed event into the chain; return how many were sealed.

    Each batch is its own transaction, so a large backlog never holds one huge transaction;
    safe to run concurrently and repeatedly (a second run waits for the lock, then seals
    only what is left). Raises AuditChainError, sealing nothing, if the database head does
    not match the exported head.
    """
    total = 0
    while True:
        sealed = _seal_batch(batch_size=batch_size)
        total += sealed
        if sealed < batch_size:
            return total


def _check_exported_head(head: AuditChainHead) -> None:
    """Refuse to extend a chain whose database head moved since the last export.

    Otherwise someone who can write the database could cut the tail, rewind the head row and
    let the next seal sign the shorter chain. A missing file is re-exported on the next seal:
    moving it away is how an operator starts over after resetting the database on purpose.
    """
    path = settings.AUDIT_HEAD_PATH
    hint = (f"Run `manage.py verify_audit`; if the database was reset or restored on purpose, "
            f"move {path} away and seal again.")
    try:
        exported = read_exported_head()
    except AuditChainError as exc:
        raise AuditChainError(f"Refusing to seal: {exc} {hint}") from exc
    if exported is not None and (exported.seq, exported.hash) != (head.seq, head.hash):
        raise AuditChainError(
            f"Refusing to seal: the database head is #{head.seq} but the exported head is "
            f"#{exported.seq}. {hint}")


def _seal_batch(*, batch_size: int) -> int:
    with transaction.atomic():
        head = _lock_head()
        _check_exported_head(head)
        # Read after taking the lock: a sealer that waited sees what the previous one sealed.
        events = list(AuditEvent.objects.filter(seq__isnull=True)
                      .order_by("id").values("id", *HASHED_FIELDS)[:batch_size])
        if not events:
            return 0
        seq, prev_hash = head.seq, head.hash or GENESIS_HASH
        sealed = []
        for event in events:
            seq += 1
            event.update(seq=seq, prev_hash=prev_hash)
            prev_hash = event_hash(event)
            sealed.append(AuditEvent(id=event["id"], seq=seq, prev_hash=event["prev_hash"],
                                     hash=prev_hash))
        # Only seq/prev_hash/hash change: exactly the update the append-only trigger allows.
        AuditEvent.objects.bulk_update(sealed, ["seq", "prev_hash", "hash"], batch_size=1_000)
        head.seq, head.hash, head.sealed_at = seq, prev_hash, timezone.now()
        head.save(update_fields=["seq", "hash", "sealed_at"])
        # Still under the lock, so no other seal or verify can interleave with the export.
        export_head(seq=head.seq, hash=head.hash, sealed_at=head.sealed_at)
        return len(sealed)


# --- Verification -----------------------------------------------------------------------------

def verify(*, chunk_size: int = VERIFY_CHUNK_SIZE) -> VerifyResult:
    """Recompute the chain in seq order and compare it with the exported head.

    Names the first bad sequence number for an altered, removed, reordered or forged event,
    a cut tail, or events beyond the exported head. Holds the head lock while it runs, so
    sealing waits (inserting events does not).
    """
    with transaction.atomic():
        head_row = _lock_head()
        try:
            exported = read_exported_head()
        except AuditChainError as exc:
            return VerifyResult(ok=False, checked=0, first_bad_seq=None, message=str(exc))
        return _verify_chain(head_row=head_row, exported=exported, chunk_size=chunk_size)


def _broken(checked: int, seq: int, why: str) -> VerifyResult:
    return VerifyResult(ok=False, checked=checked, first_bad_seq=seq,
                        message=f"Audit chain broken at #{seq}: {why}")


def _verify_chain(*, head_row: AuditChainHead, exported: ExportedHead | None,
                  chunk_size: int) -> VerifyResult:
    events = (AuditEvent.objects.filter(seq__isnull=False).order_by("seq")
              .values(*HASHED_FIELDS, "hash").iterator(chunk_size=chunk_size))
    last_seq, last_hash, checked = 0, GENESIS_HASH, 0
    for event in events:
        seq, expected = event["seq"], last_seq + 1
        beyond_head = exported is not None and seq > exported.seq
        if seq != expected and not (beyond_head and expected > exported.seq):
            return _broken(checked, expected,
                           f"the event is missing (the chain jumps from #{last_seq} to #{seq}).")
        if beyond_head:
            return _broken(checked, seq,
                           f"the exported head is #{exported.seq}, so this event was forged "
                           "(or sealed without exporting the head).")
        if event["prev_hash"] != last_hash:
            return _broken(checked, seq, f"the event does not link to #{last_seq} "
                           "(an event was removed, reordered or forged).")
        if event_hash(event) != event["hash"]:
            return _broken(checked, seq, "the event does not match its hash "
                           "(altered, reordered or forged).")
        last_seq, last_hash, checked = seq, event["hash"], checked + 1

    if exported is None:
        if last_seq:
            return VerifyResult(
                ok=False, checked=checked, first_bad_seq=None,
                message=f"The exported audit head {settings.AUDIT_HEAD_PATH} is missing, "
                        f"but {last_seq} events are sealed.")
    elif last_seq < exported.seq:
        return _broken(checked, last_seq + 1,
                       f"the exported head is #{exported.seq} but the database ends at "
                       f"#{last_seq} (the tail was cut).")
    elif last_hash != exported.hash:
        return _broken(checked, last_seq,
                       "its hash differs from the exported head (the chain was rewritten "
                       f"at or before #{last_seq}).")
    if (head_row.seq, head_row.hash or GENESIS_HASH) != (last_seq, last_hash):
        # Not tampering with events, but the next seal would fork from the wrong place.
        return _broken(checked, min(head_row.seq, last_seq) + 1,
                       f"the database head row says #{head_row.seq} but the chain ends at "
                       f"#{last_seq}.")
    if not last_seq:
        return VerifyResult(ok=True, checked=0, first_bad_seq=None,
                            message="Audit chain OK: no events sealed yet.")
    return VerifyResult(
        ok=True, checked=checked, first_bad_seq=None,
        message=f"Audit chain OK: {checked} events sealed, head #{last_seq} matches the "
                "exported head.")


def append_only_enforced() -> bool:
    """Whether the database itself refuses changes to the trail (PostgreSQL triggers)."""
    return connection.vendor == "postgresql"
