"""The alert lifecycle: raise (open, refresh, escalate, reopen), acknowledge, resolve and
auto-resolve. Every step but a plain refresh of `last_seen` is an audit event.

One row per dedupe key (`kind:agent-id-or-dash:subject`). Writers lock that row
(`SELECT … FOR UPDATE`) before they change it; the first raise of a key inserts it in a
savepoint, and a concurrent first raise that loses the insert race reads the winner's row
under the lock instead (the unique key decides). So two detector runs at once give one alert.

What an alert sets off when it opens, reopens or escalates to critical, in its transaction:
deliveries for the notifications (sent by Celery after the commit), an automatic pause of the
agent (`auto_pause_on_critical`, blast radius or an override spike over the hard limit) through
the same service as a person's pause, and for *speed up, quality down* and override spikes
a step down of one autonomy level (`auto_step_down`) or a pending `AutonomyChange` to review.
"""

from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Agent
from metrics.models import Alert
from portal import audit
from portal.permissions import CHANGE_AGENT, PAUSE_AGENT, has_agent_perm
from portal.roles import ADMINS, REVOPS

Kind, Severity, Status = Alert.Kind, Alert.Severity, Alert.Status

SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
# Critical alerts of these kinds pause an agent that is set to pause itself (issue 6, item 3).
AUTO_PAUSE_KINDS = frozenset({Kind.BLAST_RADIUS, Kind.OVERRIDE_SPIKE})
# These kinds recommend lowering autonomy: a step down, or a change for the owners to decide.
STEP_DOWN_KINDS = frozenset({Kind.SPEED_QUALITY, Kind.OVERRIDE_SPIKE})
NOTE_MAX_CHARS = 2000

# The actions an alert can recommend; the alert page offers a button for each where it can.
ACTIONS = ("lower_autonomy", "improve_adoption", "optimise_cost", "assign_maintainer",
           "assign_owner", "schedule_review", "review_incidents", "review_backlog",
           "coach_reviewer", "review_budget")


def dedupe_key(kind: str, agent: Agent | None, subject: str = "") -> str:
    return f"{kind}:{agent.pk if agent is not None else '-'}:{subject}"


# --- who may act -------------------------------------------------------------------------------

def can_act_on_alert(user, alert: Alert) -> bool:
    """Acknowledge and resolve: whoever may change or pause the alert's agent (owners,
    pausers, Admins); RevOps and Admins for alerts about no agent (a reviewer, the fleet)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if alert.agent_id is not None:
        return (has_agent_perm(user, CHANGE_AGENT, alert.agent)
                or has_agent_perm(user, PAUSE_AGENT, alert.agent))
    return user.is_superuser or user.groups.filter(name__in=[ADMINS, REVOPS]).exists()


def _require_actor(actor, alert: Alert) -> None:
    if not can_act_on_alert(actor, alert):
        raise PermissionDenied(
            "Only the agent's owners, its pausers and admins may act on this alert."
            if alert.agent_id is not None else
            "Only RevOps and admins may act on alerts that concern no agent.")


def _clean_note(note: str) -> str:
    note = (note or "").strip()
    if len(note) > NOTE_MAX_CHARS:
        raise ValidationError({"note": f"The note has {len(note)} characters; keep it under "
                                       f"{NOTE_MAX_CHARS}."})
    return note


# --- raise -------------------------------------------------------------------------------------

def _validate(kind: str, severity: str, title: str, action: str) -> None:
    if kind not in Kind.values:
        raise ValueError(f"unknown alert kind {kind!r}")
    if severity not in Severity.values:
        raise ValueError(f"unknown alert severity {severity!r}")
    if action and action not in ACTIONS:
        raise ValueError(f"unknown alert action {action!r}")
    if not title.strip():
        raise ValueError("an alert needs a title")


def alert_raise(*, kind: str, agent: Agent | None = None, subject: str = "", severity: str,
                title: str, message: str = "", recommendation: str = "", action: str = "",
                evidence: dict | None = None, now: datetime | None = None) -> Alert:
    """Open the alert of this key, refresh it while it is active, or reopen it once resolved.

    The system raises alerts (detectors); the caller checks nothing. Idempotent per run: a
    second raise with the same facts only moves `last_seen`.
    """
    _validate(kind, severity, title, action)
    now = now or timezone.now()
    key = dedupe_key(kind, agent, subject)
    facts = {"severity": severity, "title": title[:200], "message": message,
             "recommendation": recommendation, "action": action,
             "evidence": audit._plain(evidence or {})}
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(dedupe_key=key).first()
        if alert is None:
            try:
                with transaction.atomic():  # a savepoint: a lost insert race is not fatal
                    alert = Alert.objects.create(
                        kind=kind, agent=agent, subject=subject[:120], dedupe_key=key,
                        status=Status.OPEN, first_seen=now, last_seen=now, opened_at=now,
                        **facts)
            except IntegrityError:
                alert = Alert.objects.select_for_update().get(dedupe_key=key)
            else:
                audit.record(actor=None, verb="alert.opened", obj=alert, agent=agent,
                             data=_event_data(alert))
                _fired(alert, "opened")
                return alert
        return _refresh(alert, facts, now)


def _refresh(alert: Alert, facts: dict, now: datetime) -> Alert:
    """Under the row lock: a reopen, an escalation, or just a newer sighting."""
    old_severity = alert.severity
    for name, value in facts.items():
        setattr(alert, name, value)
    alert.last_seen = now
    if alert.status == Status.RESOLVED:
        alert.status, alert.opened_at = Status.OPEN, now
        alert.times_reopened += 1
        alert.acknowledged_by, alert.acknowledged_at, alert.acknowledge_note = None, None, ""
        alert.resolved_by, alert.resolved_at, alert.resolve_note = None, None, ""
        alert.auto_resolved = False
        alert.save()
        audit.record(actor=None, verb="alert.reopened", obj=alert, agent=alert.agent,
                     data={**_event_data(alert), "times_reopened": alert.times_reopened})
        _fired(alert, "reopened")
        return alert
    alert.save()
    if alert.severity != old_severity:
        raised = SEVERITY_RANK[alert.severity] > SEVERITY_RANK[old_severity]
        audit.record(actor=None, verb="alert.escalated" if raised else "alert.deescalated",
                     obj=alert, agent=alert.agent,
                     data={**_event_data(alert), "from": old_severity, "to": alert.severity})
        if alert.severity == Severity.CRITICAL:
            _fired(alert, "critical")
    return alert


def _event_data(alert: Alert) -> dict:
    return {"key": alert.dedupe_key, "kind": alert.kind, "severity": alert.severity,
            "title": alert.title, "evidence": alert.evidence}


def _fired(alert: Alert, reason: str) -> None:
    """What a newly opened, reopened or now critical alert sets off (in its transaction)."""
    from metrics import notifications

    notifications.alert_notify(alert=alert, reason=reason)
    if alert.agent_id is None:
        return
    # the agent's switches as they are now, not as the caller's copy had them
    agent = Agent.objects.only("auto_pause_on_critical").get(pk=alert.agent_id)
    if (alert.severity == Severity.CRITICAL and alert.kind in AUTO_PAUSE_KINDS
            and agent.auto_pause_on_critical):
        _auto_pause(alert)
    if alert.kind in STEP_DOWN_KINDS:
        _lower_autonomy(alert)


def _auto_pause(alert: Alert) -> None:
    """The kill switch, pulled by the system with the alert as the reason."""
    from agents.services import agent_pause

    agent = Agent.objects.get(pk=alert.agent_id)
    if agent.status not in (Agent.Status.PILOT, Agent.Status.LIVE):
        return  # proposed agents are blocked anyway; paused and retired ones stay as they are
    agent_pause(actor=None, agent=agent,
                reason=f"Paused by Steward: critical alert #{alert.pk}, “{alert.title}”.")
    audit.record(actor=None, verb="alert.agent_paused", obj=alert, agent=agent,
                 data={"key": alert.dedupe_key})
    alert.agent = Agent.objects.get(pk=agent.pk)


def _lower_autonomy(alert: Alert) -> None:
    """Step the agent down by itself if it is set to; otherwise ask its owners, once."""
    from agents import autonomy

    agent = Agent.objects.get(pk=alert.agent_id)
    if agent.status == Agent.Status.RETIRED or agent.autonomy_level <= 1:
        return
    reason = f"Alert #{alert.pk}: {alert.title}"
    if agent.auto_step_down:
        autonomy.autonomy_step_down(agent=agent, reason=reason, alert=alert)
        alert.agent = Agent.objects.get(pk=agent.pk)
        return
    change = autonomy.autonomy_change_open_lowering(agent=agent, reason=reason,
                                                    evidence=alert.evidence)
    if change is not None and alert.autonomy_change_id != change.pk:
        alert.autonomy_change = change
        alert.save(update_fields=["autonomy_change"])


# --- people ------------------------------------------------------------------------------------

@transaction.atomic
def alert_acknowledge(*, actor, alert: Alert, note: str = "") -> Alert:
    """Someone has seen it and is on it: the alert stays active until resolved."""
    _require_actor(actor, alert)
    note = _clean_note(note)
    alert = (Alert.objects.select_for_update(of=("self",)).select_related("agent")
             .get(pk=alert.pk))
    if alert.status == Status.ACKNOWLEDGED:
        who = alert.acknowledged_by.get_username() if alert.acknowledged_by else "someone"
        raise ValidationError(f"This alert was already acknowledged by {who}.")
    if alert.status == Status.RESOLVED:
        raise ValidationError("This alert is resolved; there is nothing to acknowledge. It "
                              "reopens by itself if the warning sign returns.")
    alert.status = Status.ACKNOWLEDGED
    alert.acknowledged_by, alert.acknowledged_at, alert.acknowledge_note = (
        actor, timezone.now(), note)
    alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at",
                              "acknowledge_note"])
    audit.record(actor=actor, verb="alert.acknowledged", obj=alert, agent=alert.agent,
                 data={"key": alert.dedupe_key, "note": note})
    return alert


@transaction.atomic
def alert_resolve(*, actor, alert: Alert, note: str = "") -> Alert:
    """Done with it. If the detector still sees the sign on its next run, the alert reopens."""
    _require_actor(actor, alert)
    note = _clean_note(note)
    alert = (Alert.objects.select_for_update(of=("self",)).select_related("agent")
             .get(pk=alert.pk))
    if alert.status == Status.RESOLVED:
        who = alert.resolved_by.get_username() if alert.resolved_by else "Steward"
        raise ValidationError(f"This alert was already resolved by {who}.")
    alert.status = Status.RESOLVED
    alert.resolved_by, alert.resolved_at, alert.resolve_note = actor, timezone.now(), note
    alert.auto_resolved = False
    alert.save(update_fields=["status", "resolved_by", "resolved_at", "resolve_note",
                              "auto_resolved"])
    audit.record(actor=actor, verb="alert.resolved", obj=alert, agent=alert.agent,
                 data={"key": alert.dedupe_key, "note": note})
    return alert


# --- the system --------------------------------------------------------------------------------

def auto_resolve(*, kind: str, still_firing_keys, now: datetime | None = None) -> int:
    """Resolve the active alerts of `kind` whose key did not fire this run; returns how many."""
    now = now or timezone.now()
    firing = set(still_firing_keys)
    resolved = 0
    with transaction.atomic():
        # id order: two runs at once lock the same rows in the same order
        for alert in (Alert.objects.select_for_update(of=("self",)).select_related("agent")
                      .filter(kind=kind).exclude(status=Status.RESOLVED).order_by("id")):
            if alert.dedupe_key in firing:
                continue
            alert.status, alert.resolved_at, alert.resolved_by = Status.RESOLVED, now, None
            alert.resolve_note = "The warning sign cleared."
            alert.auto_resolved = True
            alert.save(update_fields=["status", "resolved_at", "resolved_by", "resolve_note",
                                      "auto_resolved"])
            audit.record(actor=None, verb="alert.auto_resolved", obj=alert, agent=alert.agent,
                         data={"key": alert.dedupe_key, "last_seen": alert.last_seen})
            resolved += 1
    return resolved
