"""Periodic work of the portal itself. Tasks are thin: the service does the work."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from portal import audit_chain
from portal.models import TaskDelivery


@shared_task
def audit_seal() -> int:
    """Seal new audit events into the hash chain and export the head (beat: seal-audit-trail).

    Safe to run twice or concurrently: sealers take the chain-head lock. Returns how many
    events were sealed.
    """
    return audit_chain.seal()


@shared_task
def task_deliveries_purge() -> int:
    """Delete delivery counters of tasks that finished long ago (beat: daily)."""
    return TaskDelivery.purge_finished(
        older_than=timedelta(days=settings.STEWARD_TASK_DELIVERY_RETENTION_DAYS))
