"""The alert lifecycle: dedupe, refresh, escalate, reopen, auto-resolve, acknowledge and resolve,
each step audited; auto-pause through the kill switch; lowering autonomy."""

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from agents import services
from agents.models import Agent, AutonomyChange
from metrics import alerts
from metrics.models import Alert
from portal.models import AuditEvent
from reviews import gate
from tests.factories import make_live_agent

WARN, CRIT = "warning", "critical"


def raise_(agent=None, kind="budget", severity=WARN, now=None, **fields):
    fields = {"title": "Budget at 85%", "message": "85 of 100 USD.",
              "recommendation": "Review the budget.", "action": "review_budget",
              "evidence": {"share": 0.85}, **fields}
    return alerts.alert_raise(kind=kind, agent=agent, severity=severity, now=now, **fields)


def verbs(alert) -> list[str]:
    return list(AuditEvent.objects.filter(object_type="metrics.alert", object_id=str(alert.pk))
                .order_by("id").values_list("verb", flat=True))


# --- raise: open, refresh, escalate, reopen ---------------------------------------------------

def test_first_raise_opens_an_alert_with_the_key_and_audits_it(roles):
    alert = raise_(roles.agent)
    assert alert.dedupe_key == f"budget:{roles.agent.pk}:"
    assert (alert.status, alert.severity, alert.times_reopened) == ("open", WARN, 0)
    assert alert.first_seen == alert.last_seen == alert.opened_at
    assert verbs(alert) == ["alert.opened"]
    event = AuditEvent.objects.get(verb="alert.opened")
    assert event.actor_type == "system" and event.agent_id == roles.agent.pk


def test_a_second_raise_refreshes_the_same_alert_without_an_audit_event(roles):
    first = raise_(roles.agent)
    later = first.last_seen + timedelta(hours=1)
    again = raise_(roles.agent, now=later, evidence={"share": 0.9}, title="Budget at 90%")
    assert again.pk == first.pk and Alert.objects.count() == 1
    assert again.last_seen == later and again.first_seen == first.first_seen
    assert again.evidence == {"share": 0.9} and again.title == "Budget at 90%"
    assert verbs(again) == ["alert.opened"]


def test_other_agent_or_subject_is_another_alert(roles):
    raise_(roles.agent)
    raise_(roles.other)
    raise_(roles.agent, kind="stale_data", subject="source:crm", action="assign_maintainer")
    raise_(roles.agent, kind="stale_data", subject="source:kb", action="assign_maintainer")
    raise_(None, kind="rubber_stamping", subject="reviewer:rita", action="coach_reviewer")
    assert Alert.objects.count() == 5
    assert Alert.objects.filter(agent=None).get().dedupe_key == "rubber_stamping:-:reviewer:rita"


def test_severity_change_is_audited_and_escalation_to_critical_notifies(roles, mailoutbox):
    alert = raise_(roles.agent)
    assert alert.deliveries.count() == 1  # the owner (all three roles)
    alert = raise_(roles.agent, severity=CRIT)
    assert alert.severity == CRIT
    assert verbs(alert) == ["alert.opened", "alert.escalated"]
    # critical: admins are told too (the owner's e-mail of the first raise still waits)
    assert set(alert.deliveries.values_list("user__username", flat=True)) == {
        "olga-owner", "ada-admin"}
    alert = raise_(roles.agent, severity=WARN)
    assert verbs(alert)[-1] == "alert.deescalated"


def test_a_resolved_alert_reopens_when_the_sign_returns(roles):
    alert = raise_(roles.agent)
    alerts.alert_resolve(actor=roles.owner, alert=alert, note="Raised the budget.")
    later = timezone.now() + timedelta(hours=2)
    again = raise_(roles.agent, now=later)
    assert again.pk == alert.pk
    assert (again.status, again.times_reopened, again.opened_at) == ("open", 1, later)
    assert again.resolved_by is None and again.resolve_note == ""
    assert again.first_seen == alert.first_seen
    assert verbs(again) == ["alert.opened", "alert.resolved", "alert.reopened"]


def test_unknown_kind_severity_or_action_is_a_programming_error(roles):
    for bad in ({"kind": "nope"}, {"severity": "urgent"}, {"action": "panic"}):
        with pytest.raises(ValueError):
            raise_(roles.agent, **bad)


# --- auto-resolve ------------------------------------------------------------------------------

def test_auto_resolve_closes_what_did_not_fire_and_only_of_that_kind(roles):
    firing = raise_(roles.agent)
    cleared = raise_(roles.other)
    other_kind = raise_(roles.other, kind="cost_drift", action="optimise_cost")
    assert alerts.auto_resolve(kind="budget", still_firing_keys={firing.dedupe_key}) == 1
    cleared.refresh_from_db()
    firing.refresh_from_db()
    other_kind.refresh_from_db()
    assert (cleared.status, cleared.auto_resolved, cleared.resolved_by) == ("resolved", True, None)
    assert firing.status == "open" and other_kind.status == "open"
    assert verbs(cleared) == ["alert.opened", "alert.auto_resolved"]
    assert AuditEvent.objects.get(verb="alert.auto_resolved").actor_type == "system"
    # nothing left to resolve: a second run changes nothing
    assert alerts.auto_resolve(kind="budget", still_firing_keys={firing.dedupe_key}) == 0


def test_an_auto_resolved_alert_reopens(roles):
    alert = raise_(roles.agent)
    alerts.auto_resolve(kind="budget", still_firing_keys=set())
    again = raise_(roles.agent)
    assert again.pk == alert.pk
    assert (again.status, again.times_reopened, again.auto_resolved) == ("open", 1, False)


# --- acknowledge and resolve -------------------------------------------------------------------

@pytest.mark.parametrize("role", ["owner", "pauser", "admin"])
def test_owners_pausers_and_admins_acknowledge_and_resolve_an_agent_alert(roles, role):
    user = getattr(roles, role)
    alert = alerts.alert_acknowledge(actor=user, alert=raise_(roles.agent), note="On it.")
    assert (alert.status, alert.acknowledged_by, alert.acknowledge_note) == (
        "acknowledged", user, "On it.")
    alert = alerts.alert_resolve(actor=user, alert=alert, note="Fixed.")
    assert (alert.status, alert.resolved_by, alert.auto_resolved) == ("resolved", user, False)
    assert verbs(alert) == ["alert.opened", "alert.acknowledged", "alert.resolved"]
    event = AuditEvent.objects.get(verb="alert.acknowledged")
    assert event.actor_user == user and event.data["note"] == "On it."


@pytest.mark.parametrize("role", ["viewer", "reviewer", "other_reviewer", "revops"])
def test_others_may_not_act_on_an_agent_alert(roles, role):
    alert = raise_(roles.agent)
    with pytest.raises(PermissionDenied):
        alerts.alert_acknowledge(actor=getattr(roles, role), alert=alert)
    with pytest.raises(PermissionDenied):
        alerts.alert_resolve(actor=getattr(roles, role), alert=alert)
    alert.refresh_from_db()
    assert alert.status == "open" and verbs(alert) == ["alert.opened"]


def test_owner_of_another_agent_may_not_act(roles):
    alert = raise_(roles.other)
    with pytest.raises(PermissionDenied):
        alerts.alert_resolve(actor=roles.owner, alert=alert)


@pytest.mark.parametrize("role, allowed", [("revops", True), ("admin", True), ("owner", False),
                                           ("reviewer", False), ("viewer", False)])
def test_alerts_without_an_agent_are_for_revops_and_admins(roles, role, allowed):
    alert = raise_(None, kind="rubber_stamping", subject="reviewer:rita", action="coach_reviewer")
    assert alerts.can_act_on_alert(getattr(roles, role), alert) is allowed
    if allowed:
        assert alerts.alert_resolve(actor=getattr(roles, role), alert=alert).status == "resolved"
    else:
        with pytest.raises(PermissionDenied):
            alerts.alert_resolve(actor=getattr(roles, role), alert=alert)


def test_an_inactive_owner_may_not_act(roles):
    roles.owner.is_active = False
    roles.owner.save()
    with pytest.raises(PermissionDenied):
        alerts.alert_acknowledge(actor=roles.owner, alert=raise_(roles.agent))


def test_invalid_transitions_say_why(roles):
    alert = alerts.alert_acknowledge(actor=roles.owner, alert=raise_(roles.agent))
    with pytest.raises(ValidationError, match="already acknowledged by olga-owner"):
        alerts.alert_acknowledge(actor=roles.admin, alert=alert)
    alert = alerts.alert_resolve(actor=roles.owner, alert=alert)
    with pytest.raises(ValidationError, match="already resolved by olga-owner"):
        alerts.alert_resolve(actor=roles.admin, alert=alert)
    with pytest.raises(ValidationError, match="resolved; there is nothing to acknowledge"):
        alerts.alert_acknowledge(actor=roles.admin, alert=alert)
    alerts.auto_resolve(kind="budget", still_firing_keys=set())
    alert = raise_(roles.agent)
    alerts.auto_resolve(kind="budget", still_firing_keys=set())
    with pytest.raises(ValidationError, match="already resolved by Steward"):
        alerts.alert_resolve(actor=roles.owner, alert=alert)


def test_a_long_note_is_refused_and_nothing_changes(roles):
    alert = raise_(roles.agent)
    with pytest.raises(ValidationError) as caught:
        alerts.alert_acknowledge(actor=roles.owner, alert=alert, note="x" * 2001)
    assert "note" in caught.value.message_dict
    alert.refresh_from_db()
    assert alert.status == "open"


def test_acknowledged_alerts_keep_refreshing_and_resolve_by_themselves(roles):
    alert = alerts.alert_acknowledge(actor=roles.owner, alert=raise_(roles.agent))
    alert = raise_(roles.agent)
    assert alert.status == "acknowledged"
    assert alerts.auto_resolve(kind="budget", still_firing_keys=set()) == 1


# --- concurrency -------------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_raises_give_one_alert_and_one_opened_event():
    agent = make_live_agent()
    barrier, errors = threading.Barrier(6), []

    def run():
        try:
            barrier.wait()
            raise_(agent)
        except Exception as exc:  # pragma: no cover - shown by the assert
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Alert.objects.count() == 1
    assert AuditEvent.objects.filter(verb="alert.opened").count() == 1


# --- auto-pause: the kill switch, pulled by the system -----------------------------------------

def test_critical_blast_radius_pauses_an_agent_set_to_pause_itself(db):
    agent = make_live_agent()
    Agent.objects.filter(pk=agent.pk).update(auto_pause_on_critical=True)
    token, _ = services.agent_token_create(actor=None, agent=agent, name="t")
    assert gate.propose(token=token, proposal={
        "system": "crm", "operation": "update", "kind": "execute"}).action.decision == "allow"

    alert = raise_(agent, kind="blast_radius", severity=CRIT, title="Write limit hit",
                   action="review_backlog")

    agent.refresh_from_db()
    assert agent.status == "paused" and agent.paused_by is None
    assert f"alert #{alert.pk}" in agent.pause_reason
    paused = AuditEvent.objects.get(verb="agent.paused", agent_id=agent.pk)
    assert paused.actor_type == "system" and paused.actor_user is None
    assert "Write limit hit" in paused.data["reason"]
    assert "alert.agent_paused" in verbs(alert)
    token.agent.refresh_from_db()
    decision = gate.propose(token=token, proposal={
        "system": "crm", "operation": "update", "kind": "execute"}).action
    assert (decision.decision, decision.reasons[0]["code"]) == ("block", "paused")


def test_no_pause_when_not_set_or_not_critical_or_another_kind(db):
    agent = make_live_agent()
    raise_(agent, kind="blast_radius", severity=CRIT, action="review_backlog")  # not set to
    Agent.objects.filter(pk=agent.pk).update(auto_pause_on_critical=True)
    raise_(agent, kind="override_spike", severity=WARN, action="lower_autonomy")  # warning
    raise_(agent, kind="budget", severity=CRIT)  # budget never pauses
    agent.refresh_from_db()
    assert agent.status == "live"
    # an override spike turning critical does
    raise_(agent, kind="override_spike", severity=CRIT, action="lower_autonomy")
    agent.refresh_from_db()
    assert agent.status == "paused"


def test_an_already_paused_agent_is_left_alone(db):
    agent = make_live_agent()
    Agent.objects.filter(pk=agent.pk).update(auto_pause_on_critical=True)
    services.agent_pause(actor=None, agent=agent, reason="Maintenance")
    raise_(agent, kind="blast_radius", severity=CRIT, action="review_backlog")
    agent.refresh_from_db()
    assert agent.pause_reason == "Maintenance"


# --- lowering autonomy -------------------------------------------------------------------------

def test_speed_quality_opens_a_lowering_for_the_owners_and_links_it(db):
    agent = make_live_agent()  # L2, not set to step down
    alert = raise_(agent, kind="speed_quality", action="lower_autonomy", evidence={"x": 1})
    change = AutonomyChange.objects.get(agent=agent)
    assert (change.from_level, change.to_level, change.status) == (2, 1, "pending")
    assert change.requested_by is None and change.evidence["alert"] == {"x": 1}
    assert alert.autonomy_change == change
    agent.refresh_from_db()
    assert agent.autonomy_level == 2  # owners decide
    # it reopens later: the pending change is reused, not doubled
    alerts.auto_resolve(kind="speed_quality", still_firing_keys=set())
    raise_(agent, kind="speed_quality", action="lower_autonomy")
    assert AutonomyChange.objects.filter(agent=agent).count() == 1


def test_override_spike_steps_an_agent_set_to_step_down(db, mailoutbox,
                                                        django_capture_on_commit_callbacks):
    agent = make_live_agent()
    Agent.objects.filter(pk=agent.pk).update(auto_step_down=True)
    with django_capture_on_commit_callbacks() as callbacks:
        alert = raise_(agent, kind="override_spike", action="lower_autonomy")
    for callback in callbacks:  # the owners' e-mail; not the alert's queued deliveries
        if "enqueue" not in callback.__qualname__:
            callback()
    agent.refresh_from_db()
    assert agent.autonomy_level == 1
    change = alert.autonomy_change
    assert (change.from_level, change.to_level, change.status) == (2, 1, "approved")
    event = AuditEvent.objects.filter(agent_id=agent.pk, verb="agent.changed").latest("id")
    assert event.actor_type == "system"
    assert event.data["changes"]["autonomy_level"] == [2, 1]
    assert event.data["autonomy_change"] == change.pk
    assert AuditEvent.objects.filter(verb="autonomy.stepped_down", agent_id=agent.pk).exists()
    assert any("stepped down to L1" in m.subject for m in mailoutbox)


def test_an_l1_agent_does_not_step_or_ask(db):
    agent = make_live_agent()
    services.agent_update(actor=None, agent=agent, autonomy_level=1)
    raise_(agent, kind="speed_quality", action="lower_autonomy")
    assert not AutonomyChange.objects.filter(agent=agent).exists()
