"""Thin Celery tasks of the review app: the services do the work and are safe to run twice."""

import uuid

from celery import shared_task
from django.conf import settings

from reviews import callbacks, services


@shared_task
def budget_warnings_send() -> list[str]:
    """Beat: e-mail the owners of agents past 80% of their monthly budget (once a month)."""
    return services.budget_warnings_send()


@shared_task
def review_sla_enforce() -> dict[str, int]:
    """Beat (review-sla, every 5 minutes): expire pending items older than
    STEWARD_REVIEW_EXPIRE_HOURS, escalate the overdue ones once."""
    return services.review_sla_enforce()


@shared_task(bind=True, max_retries=None)
def callback_send(self, action_id: int) -> str:
    """POST a decision to the agent's callback URL; retried with exponential backoff.

    The item counts the attempts (callback_attempts) and decides when to give up
    (STEWARD_CALLBACK_MAX_ATTEMPTS), so a redelivered message never adds an attempt. Each
    retry gets a task id of its own: portal.tasking.GuardedTask counts deliveries per task id
    to catch tasks that kill their worker, and retries of one id would count against it.
    """
    try:
        return callbacks.callback_deliver(action_id=action_id)
    except callbacks.CallbackNotDelivered as exc:
        raise self.retry(exc=exc, countdown=callbacks.backoff_seconds(exc.attempts),
                         task_id=str(uuid.uuid4()),
                         max_retries=settings.STEWARD_CALLBACK_MAX_ATTEMPTS) from exc


@shared_task
def reviewer_digests_send() -> list[str]:
    """Beat (reviewer-digests, every 10 minutes): e-mail each reviewer what waits for them, at
    most once an hour and only when something new waits."""
    from reviews import digests

    return digests.reviewer_digests_send()
