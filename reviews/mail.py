"""E-mail from the review services: absolute links and sending once the transaction commits."""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

logger = logging.getLogger(__name__)


def absolute_url(path: str) -> str:
    """`path` on the portal as people reach it (STEWARD_BASE_URL): e-mails have no request."""
    return settings.STEWARD_BASE_URL.rstrip("/") + path


def mail_after_commit(*, subject: str, message: str, recipients: list[str]) -> None:
    """Send once the surrounding transaction commits (never for a rolled-back change).

    A failing mail server is logged, not raised: what was stored stays stored, and the person
    who acted does not get an error page for someone else's inbox.
    """
    recipients = sorted({address for address in recipients if address})
    if not recipients:
        return

    def send() -> None:
        try:
            send_mail(subject=subject, message=message, from_email=None,
                      recipient_list=recipients, fail_silently=False)
        except Exception:
            logger.exception("Could not send %r to %s", subject, ", ".join(recipients))

    transaction.on_commit(send)
