"""Autonomy changes: raising only through an approved change with figures; who approves."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from agents import autonomy, services
from agents.models import Agent, AutonomyChange
from portal.models import AuditEvent
from tests.factories import UserFactory, make_agent
from tests.metrics.alert_helpers import weekly


@pytest.fixture
def team(db):
    """An L1 agent with three different owners and a quality and trust history."""
    business, process, technical = (UserFactory(username=n) for n in ("bea", "pia", "tom"))
    agent = make_agent(slug="replies", owner=business)
    agent = services.agent_update(actor=None, agent=agent, process_owner=process,
                                  technical_owner=technical)
    weekly(agent, "accuracy", [91, 93, 95, 96])
    weekly(agent, "override_rate", [12, 10, 8, 6])
    weekly(agent, "cycle_time", [5, 4, 4, 3])  # business: not attached
    return agent, business, process, technical


def test_raising_through_an_edit_is_refused_for_everyone(team, roles):
    agent, business, *_ = team
    for actor in (business, roles.admin, None):
        with pytest.raises(ValidationError, match="Request an autonomy change"):
            services.agent_update(actor=actor, agent=agent, autonomy_level=2)
    agent.refresh_from_db()
    assert agent.autonomy_level == 1


def test_lowering_through_an_edit_stays_allowed(team):
    agent, business, *_ = team
    Agent.objects.filter(pk=agent.pk).update(autonomy_level=2)
    assert services.agent_update(actor=business, agent=agent, autonomy_level=1).autonomy_level == 1


def test_a_request_attaches_the_last_weeks_quality_and_trust_figures(team):
    agent, _business, process, _ = team
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2,
                                              reason="Accuracy 96%, overrides down to 6%.",
                                              evidence={"note": "see scorecard"})
    assert (change.from_level, change.to_level, change.status) == (1, 2, "pending")
    figures = {f["metric"]: f for f in change.evidence["figures"]}
    assert set(figures) == {"accuracy", "override_rate"}
    assert list(figures["accuracy"]["values"].values()) == [91, 93, 95, 96]
    assert change.evidence["attached"] == {"note": "see scorecard"}
    event = AuditEvent.objects.get(verb="autonomy_change.requested")
    assert event.actor_user == process and event.data["to"] == 2


def test_a_raise_without_figures_is_refused(db):
    agent = make_agent(slug="new-one")
    with pytest.raises(ValidationError, match="no quality or trust figures"):
        autonomy.autonomy_change_request(actor=agent.business_owner, agent=agent, to_level=2,
                                         reason="Trust me.")
    assert not AutonomyChange.objects.exists()


@pytest.mark.parametrize("to_level, reason, field", [
    (1, "Same level.", "to_level"), (5, "Too high.", "to_level"), ("x", "Nonsense.", "to_level"),
    (2, "  ", "reason")])
def test_bad_requests_name_the_field(team, to_level, reason, field):
    agent, business, *_ = team
    with pytest.raises(ValidationError) as caught:
        autonomy.autonomy_change_request(actor=business, agent=agent, to_level=to_level,
                                         reason=reason)
    assert field in caught.value.message_dict


def test_one_pending_change_per_agent(team):
    agent, _business, process, technical = team
    autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2, reason="Good.")
    with pytest.raises(ValidationError, match="already waiting"):
        autonomy.autonomy_change_request(actor=technical, agent=agent, to_level=3, reason="Go.")


def test_only_people_who_may_change_the_agent_request(team, roles):
    agent, *_ = team
    with pytest.raises(PermissionDenied):
        autonomy.autonomy_change_request(actor=roles.revops, agent=agent, to_level=2,
                                         reason="Looks fine.")


def test_the_business_owner_approves_a_raise_and_it_applies(team):
    agent, business, process, _ = team
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2,
                                              reason="Good figures.")
    version = Agent.objects.get(pk=agent.pk).policy_version
    change = autonomy.autonomy_change_approve(actor=business, change=change, note="Agreed.")
    agent.refresh_from_db()
    assert agent.autonomy_level == 2 and agent.policy_version > version
    assert (change.status, change.decided_by, change.decision_note) == (
        "approved", business, "Agreed.")
    event = AuditEvent.objects.filter(verb="agent.changed", agent_id=agent.pk).latest("id")
    assert event.data["changes"]["autonomy_level"] == [1, 2]
    assert event.data["autonomy_change"] == change.pk
    assert AuditEvent.objects.filter(verb="autonomy_change.approved", actor_user=business).exists()


def test_the_requester_cannot_approve_their_own_raise(team):
    agent, business, *_ = team
    change = autonomy.autonomy_change_request(actor=business, agent=agent, to_level=2,
                                              reason="Good figures.")
    with pytest.raises(PermissionDenied, match="yourself"):
        autonomy.autonomy_change_approve(actor=business, change=change)
    agent.refresh_from_db()
    assert agent.autonomy_level == 1


@pytest.mark.parametrize("who", ["technical", "admin"])
def test_nobody_but_the_business_owner_approves_a_raise(team, roles, who):
    agent, _business, process, technical = team
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2,
                                              reason="Good figures.")
    approver = technical if who == "technical" else roles.admin
    with pytest.raises(PermissionDenied, match="Only the business owner"):
        autonomy.autonomy_change_approve(actor=approver, change=change)
    change.refresh_from_db()
    assert change.status == "pending"


@pytest.mark.parametrize("who", ["business", "process", "technical", "admin"])
def test_any_owner_or_an_admin_approves_a_lowering(team, roles, who):
    agent, business, process, technical = team
    Agent.objects.filter(pk=agent.pk).update(autonomy_level=3)
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2,
                                              reason="Overrides rising.")
    approver = {"business": business, "process": process, "technical": technical,
                "admin": roles.admin}[who]
    autonomy.autonomy_change_approve(actor=approver, change=change)
    agent.refresh_from_db()
    assert agent.autonomy_level == 2


def test_others_cannot_approve_a_lowering(team, roles):
    agent, _business, process, _ = team
    Agent.objects.filter(pk=agent.pk).update(autonomy_level=3)
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2,
                                              reason="Overrides rising.")
    for user in (roles.revops, roles.reviewer, roles.owner):
        with pytest.raises(PermissionDenied):
            autonomy.autonomy_change_approve(actor=user, change=change)


def test_a_decided_change_cannot_be_decided_again(team):
    agent, business, process, _ = team
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2,
                                              reason="Good.")
    autonomy.autonomy_change_approve(actor=business, change=change)
    with pytest.raises(ValidationError, match="already approved by bea"):
        autonomy.autonomy_change_approve(actor=business, change=change)
    with pytest.raises(ValidationError, match="already approved"):
        autonomy.autonomy_change_reject(actor=business, change=change, note="No.")


def test_a_stale_change_is_refused(team):
    agent, business, process, _ = team
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=3,
                                              reason="Good.")
    Agent.objects.filter(pk=agent.pk).update(autonomy_level=2)
    with pytest.raises(ValidationError, match="now at L2"):
        autonomy.autonomy_change_approve(actor=business, change=change)


def test_rejecting_needs_a_note_and_keeps_the_level(team):
    agent, business, process, _ = team
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2,
                                              reason="Good.")
    with pytest.raises(ValidationError) as caught:
        autonomy.autonomy_change_reject(actor=business, change=change, note=" ")
    assert "note" in caught.value.message_dict
    change = autonomy.autonomy_change_reject(actor=business, change=change,
                                             note="Two more weeks of data first.")
    agent.refresh_from_db()
    assert (change.status, agent.autonomy_level) == ("rejected", 1)
    assert AuditEvent.objects.filter(verb="autonomy_change.rejected").exists()
    # a new request is possible once it is decided
    autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2, reason="Again.")


def test_the_system_steps_down_and_withdraws_a_pending_raise(team, mailoutbox,
                                                            django_capture_on_commit_callbacks):
    agent, _business, process, _ = team
    Agent.objects.filter(pk=agent.pk).update(autonomy_level=2)
    raise_ = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=3,
                                              reason="Good.")
    with django_capture_on_commit_callbacks(execute=True):
        change = autonomy.autonomy_step_down(agent=agent, reason="Overrides spiked.")
    agent.refresh_from_db()
    raise_.refresh_from_db()
    assert agent.autonomy_level == 1 and raise_.status == "withdrawn"
    assert (change.from_level, change.to_level, change.status) == (2, 1, "approved")
    assert change.evidence["figures"]
    event = AuditEvent.objects.get(verb="autonomy.stepped_down")
    assert event.actor_type == "system"
    assert sorted(mailoutbox[0].to) == ["bea@example.com", "pia@example.com", "tom@example.com"]
    assert autonomy.autonomy_step_down(agent=agent, reason="Again.") is None  # L1 is the floor


def test_a_raise_request_tells_the_business_owner(team, mailoutbox,
                                                  django_capture_on_commit_callbacks):
    agent, _business, process, _ = team
    with django_capture_on_commit_callbacks(execute=True):
        autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2, reason="Good.")
    assert [m.to for m in mailoutbox] == [["bea@example.com"]]
    assert "Approve raising" in mailoutbox[0].subject
