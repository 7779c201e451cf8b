"""Periodic work of the portal itself. Tasks are thin: the service does the work."""

from celery import shared_task

from portal import audit_chain


@shared_task
def audit_seal() -> int:
    """Seal new audit events into the hash chain and export the head (beat: seal-audit-trail).

    Safe to run twice or concurrently: sealers take the chain-head lock. Returns how many
    events were sealed.
    """
    return audit_chain.seal()
