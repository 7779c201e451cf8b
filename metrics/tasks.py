"""Metric work in the background. Tasks are thin: the modules they name do the work."""

from celery import shared_task


@shared_task
def import_batch_run(batch_id: int) -> None:
    """Validate and load one uploaded or pushed batch of observations (metrics.importing)."""
    from metrics import importing

    importing.run(batch_id)


@shared_task
def derived_metrics_compute() -> int:
    """Compute the metrics Steward observes itself from the gate and the inbox (beat:
    derived-metrics). Returns how many observations were written."""
    from metrics import derived

    return derived.compute()


@shared_task
def alerts_detect() -> dict:
    """Beat (alerts-detect, hourly by default): run every warning-sign detector, raise and
    refresh their alerts, resolve what cleared (metrics.detectors)."""
    from metrics import detectors

    return detectors.run_detectors()


@shared_task
def alert_emails_send(user_id: int) -> int:
    """Send one person's waiting alert e-mails as one digest, unless they had one within the
    hour (the alert-notifications beat task sends it when the hour is up)."""
    from metrics import notifications

    return notifications.emails_send(user_id=user_id)


@shared_task
def alert_notifications_send() -> int:
    """Beat (alert-notifications, every 10 minutes): send the digests whose hour is up, and
    queue again the webhook posts that never got queued."""
    from metrics import notifications

    notifications.stranded_webhooks_requeue()
    return notifications.due_emails_send()


@shared_task(bind=True, max_retries=None)
def alert_webhook_send(self, delivery_id: int) -> str:
    """POST an alert to a chat webhook; retried with exponential backoff. The delivery counts
    the attempts and decides when to give up (STEWARD_ALERT_WEBHOOK_MAX_ATTEMPTS); each retry
    gets a task id of its own, as reviews.tasks.callback_send explains."""
    import random
    import uuid

    from django.conf import settings

    from metrics import notifications

    try:
        return notifications.webhook_deliver(delivery_id=delivery_id)
    except notifications.WebhookNotDelivered as exc:
        ceiling = min(3600, settings.STEWARD_ALERT_WEBHOOK_BACKOFF_SECONDS
                      * 2 ** max(0, exc.attempts - 1))
        raise self.retry(exc=exc, countdown=random.uniform(ceiling / 2, ceiling),
                         task_id=str(uuid.uuid4()),
                         max_retries=settings.STEWARD_ALERT_WEBHOOK_MAX_ATTEMPTS) from exc
