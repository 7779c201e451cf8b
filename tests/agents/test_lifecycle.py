"""Lifecycle rules: each move says what is missing, and retired is final."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from agents import services
from agents.models import Agent, RollbackStep, SystemAccess
from portal.models import AuditEvent
from tests.factories import SystemFactory, UserFactory, complete_plan, make_agent

pytestmark = pytest.mark.django_db


def test_proposed_to_pilot_names_everything_missing():
    owner = UserFactory()
    agent = services.agent_create(actor=None, slug="bare", name="Bare", business_owner=owner)
    with pytest.raises(ValidationError) as err:
        services.agent_move(actor=None, agent=agent, to_status="pilot")
    message = err.value.messages[0]
    for gap in ("a process owner", "a technical owner", "a one-sentence business outcome",
                "a definition of done", "at least one system access",
                "at least one rollback step"):
        assert gap in message
    assert "business owner" not in message
    agent.refresh_from_db()
    assert agent.status == Agent.Status.PROPOSED


def test_pilot_needs_access_and_rollback_then_live_needs_a_guardrail():
    agent = make_agent(slug="replies")
    SystemAccess.objects.create(agent=agent, system=SystemFactory(), max_kind="draft")
    with pytest.raises(ValidationError, match="at least one rollback step"):
        services.agent_move(actor=None, agent=agent, to_status="pilot")
    RollbackStep.objects.create(agent=agent, position=1, title="Undo", instructions="Undo it.")
    agent = services.agent_move(actor=None, agent=agent, to_status="pilot")
    assert agent.status == "pilot"
    with pytest.raises(ValidationError, match="needs at least one guardrail"):
        services.agent_move(actor=None, agent=agent, to_status="live")
    services.guardrail_create(actor=None, agent=agent, name="Stage", field="changes.stage",
                              operator="changed", effect="review")
    with pytest.raises(ValidationError, match="needs its rollout plan complete"):
        services.agent_move(actor=None, agent=agent, to_status="live")
    complete_plan(agent)
    live = services.agent_move(actor=None, agent=agent, to_status="live")
    assert live.status == "live"
    assert live.review_cadence == "monthly"  # scorecards: weekly in pilot, monthly once live
    verbs = [{k: v for k, v in data.items() if k != "policy_version_saved"}  # versions' test
             for data in AuditEvent.objects.filter(agent=agent, verb="agent.moved")
             .values_list("data", flat=True).order_by("id")]
    assert verbs == [{"from": "proposed", "to": "pilot"},
                     {"from": "pilot", "to": "live", "review_cadence": ["weekly", "monthly"]}]


def test_cannot_skip_from_proposed_to_live():
    agent = make_agent(slug="skipper", ready=True)
    with pytest.raises(ValidationError, match="cannot move to live from there"):
        services.agent_move(actor=None, agent=agent, to_status="live")


def test_retired_is_final():
    agent = make_agent(slug="old", ready=True)
    services.agent_retire(actor=None, agent=agent, reason="Replaced")
    with pytest.raises(ValidationError):
        services.agent_move(actor=None, agent=agent, to_status="pilot")
    with pytest.raises(ValidationError, match="retired agent cannot be changed"):
        services.agent_update(actor=None, agent=agent, name="New name")
    with pytest.raises(ValidationError, match="already retired"):
        services.agent_retire(actor=None, agent=agent)
    with pytest.raises(ValidationError):
        services.agent_pause(actor=None, agent=agent, reason="x")


def test_pause_needs_a_reason_and_resume_returns_to_previous_status():
    agent = make_agent(slug="pausable", ready=True)
    agent = services.agent_move(actor=None, agent=agent, to_status="pilot")
    with pytest.raises(ValidationError, match="Say why"):
        services.agent_pause(actor=None, agent=agent, reason="  ")
    agent = services.agent_pause(actor=None, agent=agent, reason="Wrong tone in replies")
    assert (agent.status, agent.pause_reason) == ("paused", "Wrong tone in replies")
    agent = services.agent_resume(actor=None, agent=agent)
    assert (agent.status, agent.pause_reason, agent.paused_at) == ("pilot", "", None)


def test_only_pausers_owners_and_admins_may_pause(roles):
    with pytest.raises(PermissionDenied):
        services.agent_pause(actor=roles.reviewer, agent=roles.agent, reason="no")
    with pytest.raises(PermissionDenied):
        services.agent_pause(actor=roles.revops, agent=roles.agent, reason="no")
    agent = services.agent_pause(actor=roles.pauser, agent=roles.agent, reason="Bad drafts")
    assert agent.paused_by == roles.pauser
    with pytest.raises(PermissionDenied):  # a pauser may pause, not retire
        services.agent_retire(actor=roles.pauser, agent=roles.agent)
