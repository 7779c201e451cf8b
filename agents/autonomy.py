"""Autonomy changes: the only way an agent's autonomy level goes up, and how it steps down.

- Someone who may change the agent *requests* a change; Steward attaches the quality and
  trust figures of the last complete weeks from the rollups, so the decision is taken on
  evidence. A raise needs such figures. One change per agent is pending at a time.
- A *raise* is approved by the agent's business owner only, never by the person who asked;
  a *lowering* by any owner or an Admin. Approving applies the level through
  `agents.services.agent_update`, so the policy version moves and the audit has it.
- Steward itself opens a lowering when an alert recommends it (metrics.alerts), or steps the
  agent down at once when it is set to (`auto_step_down`), telling the owners.

Writers of an agent's changes take a per-agent advisory lock first, so two requests at once
cannot both become pending.
"""

from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from agents.models import Agent, AutonomyChange
from portal import audit
from portal.permissions import CHANGE_AGENT, has_agent_perm, require_agent_perm

Status = AutonomyChange.Status
CHANGE_LOCK_CLASS = 4207  # per-agent advisory lock (4201–4206: gate, agents, rollups, imports…)
EVIDENCE_PERIODS = 4  # weeks of figures attached, as the scorecard's pattern readings read
EVIDENCE_LAYERS = ("quality", "trust")
REASON_MAX_CHARS = 2000


def _lock(agent_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [CHANGE_LOCK_CLASS, agent_id])


def evidence_figures(agent: Agent, *, today: date | None = None) -> dict:
    """The quality and trust figures of the last EVIDENCE_PERIODS complete weeks, per metric,
    with the owners' targets: what an autonomy change is decided on."""
    from metrics.models import Metric, Rollup, Target
    from metrics.selectors import WEEK, reporting_periods, shift

    today = today or timezone.localdate()
    current, _previous = reporting_periods(WEEK, today)
    periods = [shift(current, WEEK, -n) for n in range(EVIDENCE_PERIODS - 1, -1, -1)]
    metrics = {m.pk: m for m in Metric.objects.filter(layer__in=EVIDENCE_LAYERS)}
    values: dict[int, dict[str, float]] = {}
    for metric_id, start, value in (Rollup.objects.filter(
            agent=agent, grain=WEEK, period_start__in=periods, metric_id__in=metrics)
            .values_list("metric_id", "period_start", "value")):
        values.setdefault(metric_id, {})[start.isoformat()] = value
    targets = dict(Target.objects.filter(agent=agent, metric_id__in=values)
                   .values_list("metric_id", "target"))
    figures = [{"metric": metrics[mid].key, "name": metrics[mid].name,
                "layer": metrics[mid].layer, "unit": metrics[mid].unit,
                "higher_is_better": metrics[mid].higher_is_better,
                "values": by_period, "target": targets.get(mid)}
               for mid, by_period in sorted(values.items(),
                                            key=lambda kv: (metrics[kv[0]].layer,
                                                            metrics[kv[0]].position))]
    return {"grain": WEEK, "periods": [p.isoformat() for p in periods], "figures": figures}


def has_figures(change: AutonomyChange) -> bool:
    return bool((change.evidence or {}).get("figures"))


def pending_change(agent: Agent) -> AutonomyChange | None:
    return AutonomyChange.objects.filter(agent=agent, status=Status.PENDING).first()


def _snapshot(change: AutonomyChange) -> dict:
    return {"from": change.from_level, "to": change.to_level, "reason": change.reason,
            "requested_by": (change.requested_by.get_username()
                             if change.requested_by_id else "system")}


def _tell_owners(agent: Agent, *, subject: str, message: str, business_only=False) -> None:
    from reviews.mail import absolute_url, mail_after_commit

    people = [agent.business_owner] if business_only else list(agent.owners.values())
    mail_after_commit(subject=subject,
                      message=f"{message}\n\n{absolute_url(agent.get_absolute_url())}",
                      recipients=[u.email for u in people if u is not None and u.is_active])


# --- requests ----------------------------------------------------------------------------------

@transaction.atomic
def autonomy_change_request(*, actor, agent: Agent, to_level: int, reason: str,
                            evidence: dict | None = None) -> AutonomyChange:
    """Ask to move the agent to `to_level`, with the latest figures attached.

    `evidence` is whatever else the requester attaches (kept under "attached").
    """
    require_agent_perm(actor, CHANGE_AGENT, agent)
    _lock(agent.pk)
    agent = Agent.objects.select_related("business_owner").get(pk=agent.pk)
    reason = (reason or "").strip()
    try:
        to_level = int(to_level)
    except (TypeError, ValueError):
        to_level = 0
    errors = {}
    if agent.status == Agent.Status.RETIRED:
        raise ValidationError(f"{agent.name} is retired; its autonomy no longer changes.")
    if to_level not in Agent.Autonomy.values:
        errors["to_level"] = "Choose a level from 1 to 4."
    elif to_level == agent.autonomy_level:
        errors["to_level"] = (f"{agent.name} is already at L{to_level}; choose another level.")
    if not reason:
        errors["reason"] = "Say why the level should change (what the figures show)."
    elif len(reason) > REASON_MAX_CHARS:
        errors["reason"] = f"Keep the reason under {REASON_MAX_CHARS} characters."
    if errors:
        raise ValidationError(errors)
    existing = pending_change(agent)
    if existing is not None:
        raise ValidationError(
            f"A change to L{existing.to_level} is already waiting for a decision; decide "
            "or reject it first (one pending change per agent).")
    figures = evidence_figures(agent)
    if to_level > agent.autonomy_level and not figures["figures"]:
        raise ValidationError(
            f"{agent.name} has no quality or trust figures for the last {EVIDENCE_PERIODS} "
            "weeks. Autonomy is raised on evidence: import or push its metrics first.")
    change = AutonomyChange.objects.create(
        agent=agent, from_level=agent.autonomy_level, to_level=to_level, reason=reason,
        evidence={**figures, **({"attached": audit._plain(evidence)} if evidence else {})},
        requested_by=actor)
    audit.record(actor=actor, verb="autonomy_change.requested", obj=change, agent=agent,
                 data=_snapshot(change))
    if change.is_raise and agent.business_owner_id:
        _tell_owners(agent, business_only=True,
                     subject=f"[Steward] Approve raising {agent.name} to L{to_level}?",
                     message=(f"{_who(actor)} asks to raise {agent.name} from "
                              f"L{change.from_level} to L{to_level}: {reason}\n\nAs its "
                              "business owner you decide; the agent's page has the figures."))
    return change


def _who(actor) -> str:
    return "Steward" if actor is None else (actor.get_full_name() or actor.get_username())


def autonomy_change_open_lowering(*, agent: Agent, reason: str,
                                  evidence: dict | None = None) -> AutonomyChange | None:
    """Steward asks the owners to lower the agent by one level (an alert recommends it).

    Returns the pending lowering (an existing one is reused); a pending raise is withdrawn,
    since the figures now point the other way. None when the agent is at L1 or retired.
    """
    with transaction.atomic():
        _lock(agent.pk)
        agent = Agent.objects.get(pk=agent.pk)
        if agent.status == Agent.Status.RETIRED or agent.autonomy_level <= 1:
            return None
        existing = pending_change(agent)
        if existing is not None and not existing.is_raise:
            return existing
        if existing is not None:
            _withdraw(existing, note=f"Withdrawn by Steward: {reason}")
        change = AutonomyChange.objects.create(
            agent=agent, from_level=agent.autonomy_level, to_level=agent.autonomy_level - 1,
            reason=reason, requested_by=None,
            evidence={**evidence_figures(agent),
                      **({"alert": audit._plain(evidence)} if evidence else {})})
        audit.record(actor=None, verb="autonomy_change.requested", obj=change, agent=agent,
                     data=_snapshot(change))
        return change


def _withdraw(change: AutonomyChange, *, note: str) -> None:
    change.status, change.decided_at, change.decision_note = (
        Status.WITHDRAWN, timezone.now(), note)
    change.save(update_fields=["status", "decided_at", "decision_note"])
    audit.record(actor=None, verb="autonomy_change.withdrawn", obj=change, agent=change.agent,
                 data={**_snapshot(change), "note": note})


# --- decisions ---------------------------------------------------------------------------------

def can_approve(user, change: AutonomyChange) -> bool:
    """A raise: the business owner, not the requester. A lowering: any owner or an Admin."""
    if user is None or not user.is_active:
        return False
    if change.is_raise:
        return (change.agent.business_owner_id == user.pk
                and change.requested_by_id != user.pk)
    return has_agent_perm(user, CHANGE_AGENT, change.agent)


def _locked_pending(change: AutonomyChange) -> AutonomyChange:
    _lock(change.agent_id)
    change = (AutonomyChange.objects.select_for_update(of=("self",))
              .select_related("agent", "agent__business_owner", "requested_by", "decided_by")
              .get(pk=change.pk))
    if change.status != Status.PENDING:
        who = f" by {change.decided_by.get_username()}" if change.decided_by_id else ""
        raise ValidationError(f"This change was already {change.status}{who}.")
    return change


@transaction.atomic
def autonomy_change_approve(*, actor, change: AutonomyChange, note: str = "") -> AutonomyChange:
    """Approve and apply: the agent moves to the requested level now."""
    from agents.services import agent_update

    if actor is None:
        raise PermissionDenied("A person approves autonomy changes.")
    change = _locked_pending(change)
    agent = change.agent
    if change.is_raise:
        if agent.business_owner_id != actor.pk:
            owner = agent.business_owner
            raise PermissionDenied(
                "Only the business owner"
                + (f", {owner.get_full_name() or owner.get_username()}," if owner else "")
                + " may approve raising autonomy.")
        if change.requested_by_id == actor.pk:
            raise PermissionDenied(
                "You asked for this raise yourself; it needs approval by someone other than "
                "the requester. Reject it and ask another owner to request it.")
    elif not has_agent_perm(actor, CHANGE_AGENT, agent):
        raise PermissionDenied("Only the agent's owners and admins may approve lowering its "
                               "autonomy.")
    if agent.autonomy_level != change.from_level:
        raise ValidationError(
            f"{agent.name} is now at L{agent.autonomy_level}, not L{change.from_level} as when "
            "this change was asked for: reject it and request a new one.")
    note = (note or "").strip()
    agent_update(actor=actor, agent=agent, autonomy_level=change.to_level,
                 autonomy_change=change)
    change.status, change.decided_by, change.decided_at, change.decision_note = (
        Status.APPROVED, actor, timezone.now(), note)
    change.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    audit.record(actor=actor, verb="autonomy_change.approved", obj=change, agent=agent,
                 data={**_snapshot(change), "note": note})
    return change


@transaction.atomic
def autonomy_change_reject(*, actor, change: AutonomyChange, note: str) -> AutonomyChange:
    """Turn the change down, saying why; the level stays."""
    if actor is None:
        raise PermissionDenied("A person rejects autonomy changes.")
    require_agent_perm(actor, CHANGE_AGENT, change.agent)
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "Say why you reject the change, so the requester "
                                       "knows what would convince you."})
    change = _locked_pending(change)
    change.status, change.decided_by, change.decided_at, change.decision_note = (
        Status.REJECTED, actor, timezone.now(), note)
    change.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    audit.record(actor=actor, verb="autonomy_change.rejected", obj=change, agent=change.agent,
                 data={**_snapshot(change), "note": note})
    return change


# --- the system --------------------------------------------------------------------------------

@transaction.atomic
def autonomy_step_down(*, agent: Agent, reason: str, alert=None) -> AutonomyChange | None:
    """Steward lowers the agent one level by itself (`auto_step_down`): recorded as an approved
    change, applied through agent_update, audited, and the owners are told. None at L1."""
    from agents.services import agent_update

    _lock(agent.pk)
    agent = Agent.objects.select_related(
        "business_owner", "process_owner", "technical_owner").get(pk=agent.pk)
    if agent.status == Agent.Status.RETIRED or agent.autonomy_level <= 1:
        return None
    existing = pending_change(agent)
    if existing is not None:
        _withdraw(existing, note=f"Superseded: Steward stepped the agent down ({reason}).")
    now = timezone.now()
    change = AutonomyChange.objects.create(
        agent=agent, from_level=agent.autonomy_level, to_level=agent.autonomy_level - 1,
        reason=reason, requested_by=None, status=Status.APPROVED, decided_at=now,
        decision_note="Stepped down by Steward: the agent is set to lower its autonomy by "
                      "itself when this warning sign fires.",
        evidence={**evidence_figures(agent),
                  **({"alert": audit._plain(alert.evidence)} if alert is not None else {})})
    agent_update(actor=None, agent=agent, autonomy_level=change.to_level,
                 autonomy_change=change)
    audit.record(actor=None, verb="autonomy.stepped_down", obj=change, agent=agent,
                 data={**_snapshot(change), "alert": alert.pk if alert is not None else None})
    if alert is not None:
        alert.autonomy_change = change
        alert.save(update_fields=["autonomy_change"])
    _tell_owners(agent, subject=f"[Steward] {agent.name} stepped down to L{change.to_level}",
                 message=(f"Steward lowered {agent.name} from L{change.from_level} to "
                          f"L{change.to_level} by itself: {reason}\n\nRaise it again with an "
                          "autonomy change once the figures recover."))
    return change
