"""The monthly budget: at 80% the owners hear of it, past 100% actions go to review."""

from decimal import Decimal

import pytest
from django.core import mail

from agents import services
from portal.models import AuditEvent
from reviews import gate
from reviews.services import budget_warnings_send
from reviews.tasks import budget_warnings_send as budget_task

pytestmark = pytest.mark.django_db
PROPOSAL = {"system": "crm", "operation": "update_deal", "kind": "execute", "confidence": 0.9}


@pytest.fixture
def budgeted(live_agent):
    owner = live_agent.business_owner
    owner.email = "owner@example.com"
    owner.save()
    agent = services.agent_update(actor=None, agent=live_agent,
                                  monthly_cost_budget=Decimal("10.00"))
    token, _secret = services.agent_token_create(actor=None, agent=agent, name="t")
    return agent, token


def _spend(token, usd: float) -> str:
    return gate.propose(token=token, proposal={**PROPOSAL, "cost_usd": usd}).action.decision


def test_owners_are_told_once_at_80_percent(budgeted):
    agent, token = budgeted
    _spend(token, 7.5)
    assert budget_warnings_send() == []
    _spend(token, 0.6)
    assert budget_task.apply().get() == [agent.slug]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["owner@example.com"]
    assert "81%" in mail.outbox[0].subject
    assert budget_warnings_send() == []  # once a month
    assert AuditEvent.objects.filter(verb="agent.budget_warning", agent=agent).count() == 1


def test_past_the_budget_actions_go_to_review(budgeted):
    _agent, token = budgeted
    assert _spend(token, 10.5) == "allow"
    gate.clear_caches()  # the month's spend is recounted every few seconds
    action = gate.propose(token=token, proposal=dict(PROPOSAL)).action
    assert action.decision == "review"
    assert [r["code"] for r in action.reasons] == ["budget"]
