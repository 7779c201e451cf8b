"""Reads for the import pages: whose batches a user sees, and a batch's rejected rows."""

from django.db.models import QuerySet
from django.http import Http404

from metrics.models import ImportBatch, ImportRowError
from portal.permissions import VIEW_AGENT


def sees_every_import(user) -> bool:
    """RevOps and Admins (model-wide view_agent) see every batch; others their own."""
    return user.is_authenticated and user.has_perm(VIEW_AGENT)


def batch_list(*, user) -> QuerySet[ImportBatch]:
    batches = ImportBatch.objects.select_related("created_by", "agent", "duplicate_of")
    if not sees_every_import(user):
        batches = batches.filter(created_by_id=user.pk)
    return batches.order_by("-created_at", "-id")


def batch_for_user(*, user, public_id) -> ImportBatch:
    """The batch if `user` may see it; 404 otherwise, as for agents."""
    batch = batch_list(user=user).filter(public_id=public_id).first()
    if batch is None:
        raise Http404("No such import.")
    return batch


def batch_errors(batch: ImportBatch) -> QuerySet[ImportRowError]:
    return ImportRowError.objects.filter(batch=batch).order_by("row", "id")
