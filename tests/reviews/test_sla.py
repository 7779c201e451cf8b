"""The review SLA: due times from the agent's SLA, escalation once past due, expiry later."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from agents import services as agent_services
from agents.forms import AgentForm
from agents.models import Agent
from portal.models import AuditEvent
from portal.roles import ADMINS
from reviews import gate, tasks
from reviews import services as review_services
from reviews.models import ActionRequest
from tests.factories import UserFactory

PROPOSAL = {"system": "crm", "operation": "update_deal", "kind": "execute",
            "target": "deal 7", "summary": "Move deal 7 to negotiation",
            "changes": {"stage": "negotiation"}, "confidence": 0.9}


@pytest.fixture
def token(live_agent):
    token, _secret = agent_services.agent_token_create(actor=None, agent=live_agent, name="t")
    return token


@pytest.fixture
def admins(db):
    return [UserFactory(username="ada", groups=[ADMINS]),
            UserFactory(username="alan", groups=[ADMINS], email=""),  # no address: skipped
            UserFactory(username="gone", groups=[ADMINS], is_active=False)]


def _pending(token) -> ActionRequest:
    action = gate.propose(token=token, proposal=dict(PROPOSAL)).action
    assert action.status == "pending"
    return action


def _later(hours: float):
    return timezone.now() + timedelta(hours=hours)


@pytest.mark.django_db
def test_an_items_due_time_is_its_agents_review_sla(live_agent, token):
    agent_services.agent_update(actor=None, agent=live_agent, review_sla_hours=4)
    action = _pending(token)
    assert action.due_at == action.created_at + timedelta(hours=4)


@pytest.mark.django_db
def test_nothing_happens_before_the_due_time(token, admins):
    action = _pending(token)
    assert review_services.review_sla_enforce(now=_later(23.9)) == {"expired": 0,
                                                                   "escalated": 0}
    assert ActionRequest.objects.get(pk=action.pk).escalated_at is None
    assert mail.outbox == []


@pytest.mark.django_db
def test_an_overdue_item_is_escalated_once_to_the_process_owner_and_admins(live_agent, token,
                                                                           admins):
    first, second = _pending(token), _pending(token)
    now = _later(25)
    assert review_services.review_sla_enforce(now=now) == {"expired": 0, "escalated": 2}

    for action in (first, second):
        stored = ActionRequest.objects.get(pk=action.pk)
        assert (stored.status, stored.escalated_at) == ("pending", now)
    [message] = mail.outbox  # one e-mail per agent, naming every overdue item
    owner = live_agent.process_owner.email
    assert sorted(message.to) == sorted([owner, "ada@example.com"])
    assert "2 review items wait past due for" in message.subject
    assert message.body.count(f"{settings.STEWARD_BASE_URL}/reviews/") == 2
    assert str(first.public_id) in message.body
    events = AuditEvent.objects.filter(verb="action.escalated")
    assert events.count() == 2
    assert events.first().data["notified"] == sorted([owner, "ada@example.com"])

    assert review_services.review_sla_enforce(now=_later(26)) == {"expired": 0,
                                                                 "escalated": 0}
    assert len(mail.outbox) == 1  # idempotent: escalated once


@pytest.mark.django_db
def test_a_failing_mail_server_leaves_the_item_for_the_next_run(token, admins, monkeypatch):
    action = _pending(token)

    def broken(**kwargs):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr("django.core.mail.send_mail", broken)
    with pytest.raises(ConnectionRefusedError):
        review_services.review_sla_enforce(now=_later(25))
    assert ActionRequest.objects.get(pk=action.pk).escalated_at is None
    monkeypatch.undo()
    assert review_services.review_sla_enforce(now=_later(25))["escalated"] == 1


@pytest.mark.django_db
def test_a_decided_item_is_never_escalated_or_expired(token, admins):
    action = _pending(token)
    reviewer = UserFactory(username="root", is_superuser=True)
    review_services.action_approve(actor=reviewer, action=action)
    assert review_services.review_sla_enforce(now=_later(100)) == {"expired": 0,
                                                                  "escalated": 0}
    assert ActionRequest.objects.get(pk=action.pk).status == "approved"


@pytest.mark.django_db
def test_an_item_nobody_decided_expires_and_the_agent_sees_it(token, admins, agent_api):
    action = _pending(token)
    assert review_services.review_sla_enforce(now=_later(71.9))["expired"] == 0
    now = _later(72.1)
    assert review_services.review_sla_enforce(now=now) == {"expired": 1, "escalated": 0}

    stored = ActionRequest.objects.get(pk=action.pk)
    assert (stored.status, stored.reviewed_at, stored.reviewed_by) == ("expired", now, None)
    assert "nobody decided it within 72 hours" in stored.review_note
    event = AuditEvent.objects.get(verb="action.expired")
    assert (event.actor_label, event.data["after_hours"]) == ("system", 72)
    body = agent_api.get(f"/actions/{action.public_id}").json()
    assert (body["status"], body["review_note"]) == ("expired", stored.review_note)

    assert review_services.review_sla_enforce(now=_later(80)) == {"expired": 0,
                                                                 "escalated": 0}
    assert AuditEvent.objects.filter(verb="action.expired").count() == 1
    with pytest.raises(ValidationError, match="expired"):
        review_services.action_approve(actor=UserFactory(is_superuser=True), action=stored)


@pytest.mark.django_db
def test_the_expiry_is_configurable(token, settings):
    settings.STEWARD_REVIEW_EXPIRE_HOURS = 2
    _pending(token)
    assert review_services.review_sla_enforce(now=_later(2.1))["expired"] == 1


@pytest.mark.django_db
def test_the_beat_task_runs_the_sla(token, admins):
    _pending(token)
    assert tasks.review_sla_enforce.apply().get() == {"expired": 0, "escalated": 0}
    assert "review-sla" in settings.CELERY_BEAT_SCHEDULE
    assert settings.CELERY_BEAT_SCHEDULE["review-sla"]["task"] == (
        "reviews.tasks.review_sla_enforce")
    assert settings.CELERY_BEAT_SCHEDULE["review-sla"]["schedule"] <= 300


@pytest.mark.django_db
def test_the_agent_form_keeps_the_sla_inside_the_expiry(live_agent):
    base = {"name": live_agent.name, "autonomy_level": 2, "review_sample_rate": 0,
            "confidence_review_below": 0.7, "confidence_block_below": 0.3,
            "review_cadence": "weekly"}
    assert not AgentForm({**base, "review_sla_hours": 72}, instance=live_agent).is_valid()
    assert not AgentForm({**base, "review_sla_hours": 0}, instance=live_agent).is_valid()
    form = AgentForm({**base, "review_sla_hours": 8}, instance=live_agent)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["review_sla_hours"] == 8
    kept = AgentForm(base, instance=Agent.objects.get(pk=live_agent.pk))
    assert kept.is_valid(), kept.errors
    assert kept.cleaned_data["review_sla_hours"] == 24
