"""Telling people about alerts: e-mail digests and Slack-compatible webhook posts.

When an alert opens, reopens or turns critical, `alert_notify` (called by metrics.alerts in
the alert's transaction) stores one `AlertDelivery` per recipient:

- **e-mail** to the agent's owners (RevOps for alerts about no agent), and to Admins as well
  when the alert is critical. Digest mode: a person gets at most one alert e-mail an hour
  (STEWARD_ALERT_DIGEST_MINUTES). After the commit a task tries to send the person's pending
  deliveries at once, all in one e-mail; while the hour is not up it leaves them pending and
  the `alert-notifications` beat task sends them when it is. A per-person advisory lock keeps
  two senders from mailing the same person twice.
- **webhook**: `{"text": …}` POSTed to the agent's `alert_webhook_url` and to the global
  STEWARD_ALERT_WEBHOOK_URL, each by its own task, retried with exponential backoff until
  STEWARD_ALERT_WEBHOOK_MAX_ATTEMPTS; the delivery keeps the attempts, the last error and
  its status.
"""

import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Max
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from metrics.models import Alert, AlertDelivery
from portal.roles import ADMINS, REVOPS

logger = logging.getLogger(__name__)
User = get_user_model()
Channel, DeliveryStatus = AlertDelivery.Channel, AlertDelivery.Status

DIGEST_LOCK_CLASS = 4206  # per-person advisory lock (4201–4205: gate, agents, rollups, imports)
ERROR_MAX_CHARS = 500


def digest_interval() -> timedelta:
    return timedelta(minutes=getattr(settings, "STEWARD_ALERT_DIGEST_MINUTES", 60))


def alert_path(alert: Alert) -> str:
    """The alert's page on the portal (the pages may not be wired yet: fall back to the URL
    the issue names)."""
    for name in ("alert", "metrics:alert", "alert-detail"):
        try:
            return reverse(name, args=[alert.pk])
        except NoReverseMatch:
            continue
    return f"/metrics/alerts/{alert.pk}/"


def alert_url(alert: Alert) -> str:
    return settings.STEWARD_BASE_URL.rstrip("/") + alert_path(alert)


# --- who is told -------------------------------------------------------------------------------

def email_recipients(alert: Alert) -> list:
    """Active users with an address: the agent's owners (RevOps for alerts about no agent),
    plus Admins when the alert is critical."""
    people = {}
    if alert.agent_id is not None:
        agent = alert.agent
        for user in (agent.business_owner, agent.process_owner, agent.technical_owner):
            if user is not None:
                people[user.pk] = user
    else:
        for user in User.objects.filter(groups__name=REVOPS):
            people[user.pk] = user
    if alert.severity == Alert.Severity.CRITICAL:
        for user in User.objects.filter(groups__name=ADMINS):
            people[user.pk] = user
    return [u for u in sorted(people.values(), key=lambda u: u.pk) if u.is_active and u.email]


def webhook_urls(alert: Alert) -> list[str]:
    urls = []
    if alert.agent_id is not None and alert.agent.alert_webhook_url:
        urls.append(alert.agent.alert_webhook_url)
    global_url = getattr(settings, "STEWARD_ALERT_WEBHOOK_URL", "")
    if global_url and global_url not in urls:
        urls.append(global_url)
    return urls


def alert_notify(*, alert: Alert, reason: str) -> list[AlertDelivery]:
    """Store the deliveries for this alert and send them once the transaction commits.

    `reason`: opened, reopened or critical. A person who still has this alert waiting in
    their digest is not added twice.
    """
    waiting = set(AlertDelivery.objects.filter(
        alert=alert, channel=Channel.EMAIL, status=DeliveryStatus.PENDING)
        .values_list("user_id", flat=True))
    deliveries = [AlertDelivery(alert=alert, channel=Channel.EMAIL, user=user,
                                recipient=user.email)
                  for user in email_recipients(alert) if user.pk not in waiting]
    deliveries += [AlertDelivery(alert=alert, channel=Channel.WEBHOOK, recipient=url)
                   for url in webhook_urls(alert)]
    deliveries = AlertDelivery.objects.bulk_create(deliveries)

    def enqueue() -> None:
        from metrics import tasks

        for delivery in deliveries:
            try:
                if delivery.channel == Channel.EMAIL:
                    tasks.alert_emails_send.delay(delivery.user_id)
                else:
                    tasks.alert_webhook_send.delay(delivery.pk)
            except Exception:  # the broker is down: the beat task picks them up later
                logger.exception("Could not enqueue alert delivery %s", delivery.pk)

    transaction.on_commit(enqueue)
    return deliveries


# --- e-mail digests ----------------------------------------------------------------------------

def _lock_person(user_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [DIGEST_LOCK_CLASS, user_id])


def digest_text(alerts: list[Alert]) -> tuple[str, str]:
    """(subject, body) of one e-mail about these alerts."""
    if len(alerts) == 1:
        alert = alerts[0]
        where = f" on {alert.agent.name}" if alert.agent_id else ""
        subject = f"[Steward] {alert.get_severity_display().capitalize()}: {alert.title}{where}"
    else:
        critical = sum(a.severity == Alert.Severity.CRITICAL for a in alerts)
        subject = (f"[Steward] {len(alerts)} alerts"
                   + (f", {critical} critical" if critical else ""))
    parts = []
    for alert in alerts:
        lines = [f"{alert.get_severity_display().upper()}: {alert.title}"
                 + (" (resolved since)" if alert.status == Alert.Status.RESOLVED else "")]
        if alert.agent_id:
            lines.append(f"Agent: {alert.agent.name}")
        lines.append(f"Since: {alert.opened_at:%Y-%m-%d %H:%M} UTC")
        if alert.message:
            lines.append(alert.message)
        if alert.recommendation:
            lines.append(f"What to do: {alert.recommendation}")
        lines.append(alert_url(alert))
        parts.append("\n".join(lines))
    footer = ("You receive this as an owner of the agent, a member of RevOps or an admin. "
              "Alert e-mails come at most once an hour; the alerts page lists them all.")
    return subject, "\n\n".join(parts) + "\n\n-- \n" + footer


def emails_send(*, user_id: int, now: datetime | None = None) -> int:
    """Send the person's waiting alert e-mails as one digest; returns how many alerts it
    carried (0 when nothing waits or their last e-mail is less than an hour old)."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock_person(user_id)
        pending = list(AlertDelivery.objects.select_for_update(of=("self",))
                       .select_related("alert", "alert__agent")
                       .filter(user_id=user_id, channel=Channel.EMAIL,
                               status=DeliveryStatus.PENDING).order_by("id"))
        if not pending:
            return 0
        last = (AlertDelivery.objects.filter(user_id=user_id, channel=Channel.EMAIL,
                                             status=DeliveryStatus.SENT)
                .aggregate(last=Max("sent_at"))["last"])
        if last is not None and now - last < digest_interval():
            return 0
        user = User.objects.get(pk=user_id)
        error = None
        if not user.is_active or not user.email:
            error = "The person is inactive or has no e-mail address."
        else:
            alerts = list({d.alert_id: d.alert for d in pending}.values())
            alerts.sort(key=lambda a: (-_rank(a.severity), a.opened_at))
            subject, body = digest_text(alerts)
            try:
                send_mail(subject=subject, message=body, from_email=None,
                          recipient_list=[user.email], fail_silently=False)
            except Exception as exc:  # SMTP errors come in many classes
                error = f"{type(exc).__name__}: {exc}"
        max_attempts = getattr(settings, "STEWARD_ALERT_EMAIL_MAX_ATTEMPTS", 5)
        for delivery in pending:
            delivery.attempts += 1
            if error is None:
                delivery.status, delivery.sent_at, delivery.last_error = (
                    DeliveryStatus.SENT, now, "")
            else:
                delivery.last_error = error[:ERROR_MAX_CHARS]
                if delivery.attempts >= max_attempts or not user.is_active or not user.email:
                    delivery.status = DeliveryStatus.FAILED
        AlertDelivery.objects.bulk_update(pending, ["attempts", "status", "sent_at",
                                                    "last_error"])
    if error is not None:
        logger.warning("Alert e-mail to user %s failed: %s", user_id, error)
        return 0
    return len(pending)


def _rank(severity: str) -> int:
    return {Alert.Severity.INFO: 0, Alert.Severity.WARNING: 1, Alert.Severity.CRITICAL: 2}.get(
        severity, 0)


def due_emails_send(*, now: datetime | None = None) -> int:
    """Beat (alert-notifications): send every digest whose hour is up. Returns alerts sent."""
    user_ids = (AlertDelivery.objects.filter(channel=Channel.EMAIL,
                                             status=DeliveryStatus.PENDING)
                .values_list("user_id", flat=True).distinct())
    return sum(emails_send(user_id=user_id, now=now) for user_id in list(user_ids) if user_id)


# --- webhooks ----------------------------------------------------------------------------------

# A webhook delivery not tried this long after it was made was never queued (the broker was
# down at commit): the beat task queues it again. A queued one is tried within seconds.
STRANDED_AFTER = timedelta(minutes=10)


def stranded_webhooks_requeue(*, now: datetime | None = None) -> list[int]:
    """Beat (alert-notifications): queue again the webhook deliveries nobody tried, so an
    alert is not lost to a broker outage. Returns their ids. (At least once: if a queue was
    merely slower than STRANDED_AFTER, a chat may see the same alert twice.)"""
    from metrics import tasks

    before = (now or timezone.now()) - STRANDED_AFTER
    ids = list(AlertDelivery.objects.filter(
        channel=Channel.WEBHOOK, status=DeliveryStatus.PENDING, attempts=0,
        created_at__lt=before).order_by("id").values_list("id", flat=True)[:500])
    for delivery_id in ids:
        tasks.alert_webhook_send.delay(delivery_id)
    return ids

class WebhookNotDelivered(Exception):
    """This attempt failed and another one is due (the task retries with backoff)."""

    def __init__(self, error: str, attempts: int):
        super().__init__(error)
        self.attempts = attempts


def webhook_body(alert: Alert) -> bytes:
    """Slack-compatible: a `text` field, with the link in Slack's <url|label> form."""
    where = f" on *{alert.agent.name}*" if alert.agent_id else ""
    text = (f"*{alert.get_severity_display().upper()}*{where}: {alert.title}\n"
            + (f"{alert.message}\n" if alert.message else "")
            + (f"What to do: {alert.recommendation}\n" if alert.recommendation else "")
            + f"<{alert_url(alert)}|Open the alert in Steward>")
    return json.dumps({"text": text}).encode()


def _url_refusal(url: str) -> str | None:
    """Why Steward may not post to this URL now (SSRF: private addresses, plain http in
    production), checked again before each send: DNS may point elsewhere since it was saved."""
    from django.core.exceptions import ValidationError

    from portal.url_safety import check_outgoing_url

    try:
        check_outgoing_url(url)
    except ValidationError as exc:
        return exc.messages[0]
    return None


def webhook_deliver(*, delivery_id: int) -> str:
    """One attempt to post a webhook delivery; its status afterwards. Safe to run twice: only
    a pending delivery is posted. Raises WebhookNotDelivered when another attempt is due."""
    # one POST, no redirects, private addresses refused at connect time, errors in words
    from reviews.callbacks import _post

    delivery = (AlertDelivery.objects.select_related("alert", "alert__agent")
                .filter(pk=delivery_id, channel=Channel.WEBHOOK).first())
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return delivery.status if delivery is not None else ""
    refusal = _url_refusal(delivery.recipient)
    if refusal:
        return _record(delivery_id, error=refusal)
    error = _post(delivery.recipient, webhook_body(delivery.alert),
                  {"Content-Type": "application/json", "User-Agent": "Steward-Alerts/1"})
    return _record(delivery_id, error=error)


def _record(delivery_id: int, *, error: str | None, give_up: bool = False) -> str:
    with transaction.atomic():
        delivery = AlertDelivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status != DeliveryStatus.PENDING:
            return delivery.status  # a concurrent delivery of the same task finished
        delivery.attempts += 1
        delivery.last_error = (error or "")[:ERROR_MAX_CHARS]
        if error is None:
            delivery.status, delivery.sent_at = DeliveryStatus.SENT, timezone.now()
        elif give_up or delivery.attempts >= settings.STEWARD_ALERT_WEBHOOK_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
        delivery.save(update_fields=["attempts", "last_error", "status", "sent_at"])
    if delivery.status == DeliveryStatus.PENDING:
        logger.info("Alert webhook %s failed (attempt %s): %s", delivery_id, delivery.attempts,
                    error)
        raise WebhookNotDelivered(delivery.last_error, delivery.attempts)
    if delivery.status == DeliveryStatus.FAILED:
        logger.warning("Alert webhook %s failed for good after %s attempts: %s", delivery_id,
                       delivery.attempts, error)
    return delivery.status
