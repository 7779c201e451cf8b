"""Every write that starts an import: a file upload (worked later by a Celery task) and an
agent's API push (written at once).

An upload is copied to storage in chunks while its SHA-256 is computed, so a 200 MB file is
never held in memory. The same file again (same SHA-256 as an upload that is queued, running
or done) becomes a `duplicate` batch pointing at the first one and imports nothing.
"""

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import PurePath

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent, AgentToken
from metrics import observations
from metrics.import_checking import RowChecker, RowError
from metrics.models import ImportBatch, ImportRowError
from portal import audit
from portal.permissions import CHANGE_AGENT, VIEW_AGENT

Status = ImportBatch.Status
LIVE = (Status.QUEUED, Status.RUNNING, Status.DONE)  # what a new upload duplicates
FORMATS = {".csv": ImportBatch.Format.CSV, ".json": ImportBatch.Format.JSON}
API_SOURCE = "api"


def import_max_bytes() -> int:
    return getattr(settings, "STEWARD_IMPORT_MAX_BYTES", 200 * 1024 * 1024)


def may_import(user) -> bool:
    """RevOps and Admins report for any agent; others for the agents they may change."""
    if user is None or not user.is_active:
        return False
    if user.has_perm(VIEW_AGENT) or user.has_perm(CHANGE_AGENT):
        return True
    from guardian.shortcuts import get_objects_for_user

    return get_objects_for_user(user, CHANGE_AGENT, klass=Agent).exists()


def size_message(size: int | None = None) -> str:
    """Why a file is refused; without a size, it was stopped once it passed the limit."""
    limit = f"{import_max_bytes() / 1e6:,.0f} MB"
    found = f"is {size / 1e6:,.1f} MB" if size is not None else "is larger than that"
    return f"Files may be up to {limit}; this one {found}. Split it into smaller files."


class _Hashing(File):
    """Hands the upload to storage chunk by chunk, hashing each chunk on the way."""

    def __init__(self, upload):
        super().__init__(upload, name=upload.name)
        self.sha256, self.copied = hashlib.sha256(), 0

    def chunks(self, chunk_size=None):
        for chunk in self.file.chunks(chunk_size):
            self.sha256.update(chunk)
            self.copied += len(chunk)
            yield chunk


def import_format(name: str, chosen: str = "") -> str:
    """The format the user chose, else the file's extension; ValidationError if neither."""
    if chosen:
        if chosen not in ImportBatch.Format.values:
            raise ValidationError({"format": f"Unknown format {chosen!r}: choose CSV or JSON."})
        return chosen
    found = FORMATS.get(PurePath(name).suffix.lower())
    if found is None:
        raise ValidationError({"format": "Choose the format: the file name ends neither in "
                                         ".csv nor in .json."})
    return found


def batch_upload(*, actor, upload, fmt: str = "") -> ImportBatch:
    """Store the uploaded file and queue its import, or mark it a duplicate of the first
    upload of the same bytes."""
    if not may_import(actor):
        raise PermissionDenied("You may not import metrics: it takes the right to change an "
                               "agent (its owners and Admins have it) or the RevOps role.")
    fmt = import_format(upload.name, fmt)
    if upload.size > import_max_bytes():
        raise ValidationError({"file": size_message(upload.size)})
    batch = ImportBatch(original_name=PurePath(upload.name).name[:255], format=fmt,
                        origin=ImportBatch.Origin.UPLOAD, created_by=actor)
    content = _Hashing(upload)
    batch.file.save(f"{uuid.uuid4().hex}.{fmt}", content, save=False)
    batch.sha256, batch.size_bytes = content.sha256.hexdigest(), content.copied
    try:
        with transaction.atomic():
            first = _live_upload(batch.sha256)
            if first is None:
                batch.save()
                _created(actor, batch)
                transaction.on_commit(lambda: _enqueue(batch.pk))
                return batch
    except IntegrityError:  # the same file uploaded twice at the same moment: one wins
        first = _live_upload(batch.sha256)
        if first is None:
            raise
    return _duplicate(actor, batch, first)


def _live_upload(sha256: str) -> ImportBatch | None:
    return (ImportBatch.objects.filter(sha256=sha256, status__in=LIVE,
                                       origin=ImportBatch.Origin.UPLOAD)
            .order_by("created_at", "id").first())


def _duplicate(actor, batch: ImportBatch, first: ImportBatch) -> ImportBatch:
    batch.file.delete(save=False)  # the first upload's copy is the one that counts
    batch.pk = None
    batch.status, batch.duplicate_of, batch.finished_at = (Status.DUPLICATE, first,
                                                           timezone.now())
    with transaction.atomic():
        batch.save()
        _created(actor, batch)
    return batch


def _created(actor, batch: ImportBatch) -> None:
    audit.record(actor=actor, verb="metrics.import_created", obj=batch, agent=batch.agent,
                 data={"batch": str(batch.public_id), "origin": batch.origin,
                       "file": batch.original_name, "format": batch.format,
                       "size_bytes": batch.size_bytes, "sha256": batch.sha256,
                       "status": batch.status,
                       "duplicate_of": str(batch.duplicate_of.public_id)
                       if batch.duplicate_of_id else None})


def _enqueue(batch_id: int) -> None:
    from metrics.tasks import import_batch_run

    import_batch_run.delay(batch_id)


@dataclass
class PushResult:
    batch: ImportBatch
    inserted: int = 0
    updated: int = 0
    errors: list[dict] = field(default_factory=list)


def observations_push(*, token: AgentToken, items: list[dict], body: bytes) -> PushResult:
    """An agent's observations, written at once: the valid items are kept, each invalid one
    is answered with {index, field, message}. `agent` may be left out (the token's agent);
    another agent is refused. A repeated push changes nothing (natural key upsert)."""
    agent = token.agent
    checker = RowChecker.for_agent(agent)
    rows: list[observations.Row] = []
    errors: list[dict] = []
    now = timezone.now()
    for index, item in enumerate(items):
        record = (agent.slug if item.get("agent") is None else item["agent"], item.get("metric"),
                  item.get("observed_at"), item.get("value"),
                  API_SOURCE if item.get("source") is None else item["source"])
        try:
            agent_id, metric_id, when, _text, value, source = checker.check(*record)
        except RowError as error:
            errors.append({"index": index, "field": error.column, "message": error.message})
            continue
        rows.append(observations.Row(agent_id, metric_id, when, value, source))
    batch = ImportBatch(format=ImportBatch.Format.JSON, origin=ImportBatch.Origin.API,
                        sha256=hashlib.sha256(body).hexdigest(), size_bytes=len(body),
                        bytes_read=len(body), status=Status.DONE, agent=agent,
                        original_name=f"API push by {agent.slug}"[:255], rows_total=len(items),
                        rows_rejected=len(errors), started_at=now, finished_at=now)
    with transaction.atomic():
        batch.save()  # pushes are never duplicates: a repeat is harmless (the upsert)
        written = observations.upsert([observations.Row(
            r.agent_id, r.metric_id, r.observed_at, r.value, r.source, batch.pk) for r in rows])
        batch.rows_imported, batch.rows_updated = written.inserted, written.updated
        batch.save(update_fields=["rows_imported", "rows_updated"])
        ImportRowError.objects.bulk_create(
            ImportRowError(batch=batch, row=e["index"] + 1, column=e["field"],
                           message=e["message"][:300]) for e in errors)
        audit.record(actor=agent, verb="metrics.observations_pushed", obj=batch, data={
            "batch": str(batch.public_id), "token": token.prefix, "sha256": batch.sha256,
            "received": len(items), "imported": written.inserted, "updated": written.updated,
            "rejected": len(errors)})
    return PushResult(batch=batch, inserted=written.inserted, updated=written.updated,
                      errors=errors)
