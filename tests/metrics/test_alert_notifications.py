"""Alert notifications: e-mail digests (locmem) and webhook posts to a local HTTP server,
retried on failure."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.utils import timezone

from agents.models import Agent
from metrics import alerts, notifications
from metrics.models import AlertDelivery
from metrics.tasks import alert_emails_send, alert_webhook_send
from portal.roles import REVOPS
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.STEWARD_BASE_URL = "https://steward.example.com"
    settings.STEWARD_ALLOW_PRIVATE_WEBHOOKS = True  # the test server is on 127.0.0.1
    settings.STEWARD_ALERT_WEBHOOK_URL = ""
    settings.STEWARD_ALERT_WEBHOOK_BACKOFF_SECONDS = 0


def raise_(agent=None, kind="budget", severity="warning", **fields):
    fields = {"title": f"{kind} seen", "message": "Numbers.", "recommendation": "Do it.",
              "action": "", **fields}
    return alerts.alert_raise(kind=kind, agent=agent, severity=severity, **fields)


# --- who gets what -----------------------------------------------------------------------------

def test_owners_get_a_delivery_and_admins_only_for_critical(roles):
    warning = raise_(roles.agent)
    assert [(d.channel, d.recipient) for d in warning.deliveries.all()] == [
        ("email", "olga-owner@example.com")]
    critical = raise_(roles.agent, kind="blast_radius", severity="critical")
    assert sorted(critical.deliveries.values_list("recipient", flat=True)) == [
        "ada-admin@example.com", "olga-owner@example.com"]


def test_alerts_without_an_agent_go_to_revops(roles):
    alert = raise_(None, kind="rubber_stamping", subject="reviewer:rita")
    assert list(alert.deliveries.values_list("recipient", flat=True)) == [
        "remy-revops@example.com"]


def test_inactive_people_and_people_without_an_address_are_skipped(roles):
    roles.owner.is_active = False
    roles.owner.save()
    UserFactory(username="nomail", email="", groups=[REVOPS])
    assert not raise_(roles.agent).deliveries.exists()
    assert list(raise_(None, kind="rubber_stamping").deliveries.values_list(
        "recipient", flat=True)) == ["remy-revops@example.com"]


def test_a_refresh_notifies_nobody(roles):
    raise_(roles.agent)
    raise_(roles.agent)
    assert AlertDelivery.objects.count() == 1


def test_deliveries_are_enqueued_only_after_the_commit(roles, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        raise_(roles.agent)
    assert len(callbacks) == 1


# --- e-mail digests ----------------------------------------------------------------------------

def test_one_email_carries_every_waiting_alert(roles, mailoutbox):
    raise_(roles.agent, title="Budget at 85%")
    raise_(roles.agent, kind="stale_data", subject="source:kb", title="KB is stale",
           severity="critical")
    assert notifications.emails_send(user_id=roles.owner.pk) == 2
    [mail] = mailoutbox
    assert mail.to == ["olga-owner@example.com"]
    assert mail.subject == "[Steward] 2 alerts, 1 critical"
    assert "Budget at 85%" in mail.body and "KB is stale" in mail.body
    assert mail.body.index("KB is stale") < mail.body.index("Budget at 85%")  # critical first
    assert "https://steward.example.com/metrics/alerts/" in mail.body
    assert set(AlertDelivery.objects.filter(user=roles.owner).values_list("status", flat=True)) \
        == {"sent"}


def test_at_most_one_email_an_hour_per_person(roles, mailoutbox):
    raise_(roles.agent)
    now = timezone.now()
    assert notifications.emails_send(user_id=roles.owner.pk, now=now) == 1
    raise_(roles.agent, kind="cost_drift")
    assert notifications.emails_send(user_id=roles.owner.pk, now=now + timedelta(minutes=59)) == 0
    assert notifications.due_emails_send(now=now + timedelta(minutes=59)) == 0
    assert len(mailoutbox) == 1
    assert notifications.due_emails_send(now=now + timedelta(minutes=61)) == 1
    assert len(mailoutbox) == 2 and mailoutbox[1].subject.startswith("[Steward] Warning")


def test_a_digest_says_which_alerts_resolved_while_they_waited(roles, mailoutbox):
    alert = raise_(roles.agent, title="Budget at 85%")
    alerts.alert_resolve(actor=roles.owner, alert=alert)
    assert notifications.emails_send(user_id=roles.owner.pk) == 1
    assert "Budget at 85% (resolved since)" in mailoutbox[0].body


def test_the_email_task_runs_the_digest(roles, mailoutbox):
    raise_(roles.agent)
    assert alert_emails_send.apply(args=[roles.owner.pk]).get() == 1
    assert len(mailoutbox) == 1


def test_a_failing_mail_server_keeps_the_delivery_pending_with_the_error(roles, mailoutbox,
                                                                         monkeypatch):
    raise_(roles.agent)

    def broken(**kwargs):
        raise ConnectionRefusedError("no SMTP")

    monkeypatch.setattr(notifications, "send_mail", broken)
    assert notifications.emails_send(user_id=roles.owner.pk) == 0
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "no SMTP" in delivery.last_error


# --- webhooks ----------------------------------------------------------------------------------

class Receiver:
    """A local HTTP server answering the given statuses in turn (then 200); records bodies."""

    def __init__(self, statuses=()):
        self.statuses, self.bodies = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"server error")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_post_slack_json_to_the_agent_and_the_global_url(roles, settings):
    with Receiver() as agent_hook, Receiver() as global_hook:
        Agent.objects.filter(pk=roles.agent.pk).update(alert_webhook_url=agent_hook.url)
        settings.STEWARD_ALERT_WEBHOOK_URL = global_hook.url
        roles.agent.refresh_from_db()
        alert = raise_(roles.agent, title="Budget at 85%")
        hooks = alert.deliveries.filter(channel="webhook").order_by("id")
        assert [d.recipient for d in hooks] == [agent_hook.url, global_hook.url]
        for delivery in hooks:
            assert notifications.webhook_deliver(delivery_id=delivery.pk) == "sent"
    [body] = agent_hook.bodies
    assert set(body) == {"text"}
    assert "Budget at 85%" in body["text"] and "Refund replies" in body["text"]
    assert f"<{notifications.alert_url(alert)}|" in body["text"]
    assert notifications.alert_url(alert).startswith("https://steward.example.com/")
    assert global_hook.bodies == [body]


def test_a_500_is_retried_with_the_attempts_and_error_recorded(roles, settings):
    with Receiver(statuses=[500, 500]) as hook:
        settings.STEWARD_ALERT_WEBHOOK_URL = hook.url
        delivery = raise_(roles.agent).deliveries.get(channel="webhook")
        # eager apply runs the retries inline (the backoff is 0 here)
        assert alert_webhook_send.apply(args=[delivery.pk]).get() == "sent"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    assert len(hook.bodies) == 3


def test_a_webhook_that_was_never_queued_is_queued_again(roles, settings):
    from celery.signals import before_task_publish

    settings.STEWARD_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    # No on_commit here (the test's transaction never commits): like a broker outage, nothing
    # was queued. One delivery made long enough ago, one just now, one already tried.
    stranded = raise_(roles.agent, kind="budget").deliveries.get(channel="webhook")
    raise_(roles.agent, kind="cost_drift")  # its webhook delivery was made just now
    tried = raise_(roles.agent, kind="stale_data").deliveries.get(channel="webhook")
    long_ago = timezone.now() - notifications.STRANDED_AFTER - timedelta(minutes=1)
    AlertDelivery.objects.filter(pk__in=[stranded.pk, tried.pk]).update(created_at=long_ago)
    AlertDelivery.objects.filter(pk=tried.pk).update(attempts=1)
    published = []

    def record(sender=None, body=None, **kwargs):
        published.append((sender, body[0]))

    before_task_publish.connect(record)
    try:
        assert notifications.stranded_webhooks_requeue() == [stranded.pk]
    finally:
        before_task_publish.disconnect(record)
    assert [(task, list(args)) for task, args in published] == [
        ("metrics.tasks.alert_webhook_send", [stranded.pk])]


def test_a_webhook_gives_up_after_the_last_attempt(roles, settings):
    settings.STEWARD_ALERT_WEBHOOK_MAX_ATTEMPTS = 2
    with Receiver(statuses=[500, 503, 500]) as hook:
        settings.STEWARD_ALERT_WEBHOOK_URL = hook.url
        delivery = raise_(roles.agent).deliveries.get(channel="webhook")
        with pytest.raises(notifications.WebhookNotDelivered):
            notifications.webhook_deliver(delivery_id=delivery.pk)
        assert notifications.webhook_deliver(delivery_id=delivery.pk) == "failed"
        assert notifications.webhook_deliver(delivery_id=delivery.pk) == "failed"  # no 3rd post
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert "HTTP 503" in delivery.last_error
    assert len(hook.bodies) == 2


def test_a_private_webhook_address_is_refused_in_production(roles, settings):
    settings.STEWARD_ALLOW_PRIVATE_WEBHOOKS = False
    settings.DEBUG = False
    with Receiver() as hook:
        settings.STEWARD_ALERT_WEBHOOK_URL = hook.url
        delivery = raise_(roles.agent).deliveries.get(channel="webhook")
        with pytest.raises(notifications.WebhookNotDelivered):
            notifications.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and "cannot be used" in delivery.last_error
    assert hook.bodies == []  # nothing was posted
