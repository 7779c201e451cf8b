"""Incidents: anyone who sees an agent reports a problem with what it did; its owners handle it.

Reporting needs `view_agent`; changing the status, the resolution note and the rollback
checklist needs `change_agent` (the agent's owners and Admins). Both are audited, and the
people concerned are e-mailed after commit.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent, RollbackStep
from portal import audit
from portal.permissions import CHANGE_AGENT, VIEW_AGENT, has_agent_perm
from reviews.mail import absolute_url, mail_after_commit
from reviews.models import ActionRequest, Incident

Status = Incident.Status


def incident_report(*, actor, agent: Agent, action_request: ActionRequest | None = None,
                    category: str, severity: str, description: str) -> Incident:
    """Open an incident on `agent` (optionally about one of its action requests).

    Anyone who may see the agent may report. The agent's owners are e-mailed after commit
    (the reporter is not sent their own report).
    """
    if actor is None or not has_agent_perm(actor, VIEW_AGENT, agent):
        raise PermissionDenied("Only people who can see this agent may report a problem with it.")
    errors = {}
    if category not in Incident.Category.values:
        errors["category"] = "Choose a category: " + ", ".join(Incident.Category.labels) + "."
    if severity not in Incident.Severity.values:
        errors["severity"] = "Choose a severity: " + ", ".join(Incident.Severity.labels) + "."
    description = (description or "").strip()
    if not description:
        errors["description"] = "Describe what went wrong, so the owners can act on it."
    if action_request is not None and action_request.agent_id != agent.pk:
        errors["action_request"] = "That action request belongs to another agent."
    if errors:
        raise ValidationError(errors)

    with transaction.atomic():
        incident = Incident.objects.create(
            agent=agent, action_request=action_request, category=category, severity=severity,
            description=description, reported_by=actor)
        audit.record(actor=actor, verb="incident.reported", obj=incident, agent=agent, data={
            "category": category, "severity": severity, "description": description,
            "request": str(action_request.public_id) if action_request else None})
        owners = [user for user in agent.owners.values() if user and user.pk != actor.pk]
        mail_after_commit(
            subject=f"[Steward] {incident.get_severity_display().capitalize()} incident on "
                    f"{agent.name}: {incident.get_category_display()}",
            message=_report_message(incident),
            recipients=[user.email for user in owners if user.is_active])
    return incident


def _report_message(incident: Incident) -> str:
    action = incident.action_request
    about = (f"\nAbout the action: {action.summary or action.operation}\n"
             f"{absolute_url(reverse('reviews:item', args=[action.public_id]))}\n"
             if action else "")
    return (f"{incident.reported_by} reported a problem with {incident.agent.name}.\n\n"
            f"Category: {incident.get_category_display()}\n"
            f"Severity: {incident.get_severity_display()}\n\n"
            f"{incident.description}\n{about}\n"
            f"Investigate and resolve it here (the agent's rollback runbook is on the page):\n"
            f"{absolute_url(reverse('incidents:detail', args=[incident.pk]))}\n\n"
            "You receive this as one of the agent's owners.")


def incident_update(*, actor, incident: Incident, status: str, resolution_note: str = "",
                    rollback_steps_done: list[int] | None = None) -> Incident:
    """Move an incident between open, investigating and resolved; tick the rollback steps run.

    Resolving needs a resolution note and records who resolved it and when; reopening clears
    that. `resolution_note` replaces the note. `rollback_steps_done` (ids of the agent's
    rollback steps) replaces the checklist; None leaves it as it is. A call that changes
    nothing records nothing.
    """
    if actor is not None and not has_agent_perm(actor, CHANGE_AGENT, incident.agent):
        raise PermissionDenied("Only the agent's owners and admins may update its incidents.")
    errors = {}
    if status not in Status.values:
        errors["status"] = "Choose a status: " + ", ".join(Status.labels) + "."
    resolution_note = (resolution_note or "").strip()
    if status == Status.RESOLVED and not resolution_note:
        errors["resolution_note"] = "Say how it was resolved: what was wrong and what was done."
    steps = None
    if rollback_steps_done is not None:
        steps = sorted({step for step in rollback_steps_done if _is_id(step)})
        known = set(RollbackStep.objects.filter(agent_id=incident.agent_id, pk__in=steps)
                    .values_list("pk", flat=True))
        if unknown := [step for step in rollback_steps_done
                       if not _is_id(step) or step not in known]:
            errors["rollback_steps_done"] = (
                f"Not a rollback step of {incident.agent.name}: "
                + ", ".join(str(step) for step in unknown) + ".")
    if errors:
        raise ValidationError(errors)

    with transaction.atomic():
        incident = (Incident.objects.select_for_update(of=("self",))
                    .select_related("agent", "reported_by").get(pk=incident.pk))
        before = _snapshot(incident)
        was_resolved = incident.status == Status.RESOLVED
        incident.status, incident.resolution_note = status, resolution_note
        if steps is not None:
            incident.rollback_steps_done = steps
        if status == Status.RESOLVED and not was_resolved:
            incident.resolved_by, incident.resolved_at = actor, timezone.now()
        elif status != Status.RESOLVED:
            incident.resolved_by, incident.resolved_at = None, None
        changes = audit.diff(before, _snapshot(incident))
        if not changes:
            return incident
        incident.save(update_fields=["status", "resolution_note", "rollback_steps_done",
                                     "resolved_by", "resolved_at"])
        verb = ("incident.resolved" if status == Status.RESOLVED and not was_resolved
                else "incident.reopened" if was_resolved and status != Status.RESOLVED
                else "incident.updated")
        audit.record(actor=actor, verb=verb, obj=incident, agent=incident.agent,
                     data={"changes": changes})
        reporter = incident.reported_by
        if verb == "incident.resolved" and reporter.is_active and (
                actor is None or reporter.pk != actor.pk):
            mail_after_commit(
                subject=f"[Steward] Resolved: the problem you reported on {incident.agent.name}",
                message=(f"{actor or 'Steward'} resolved the incident you reported on "
                         f"{incident.agent.name} ({incident.get_category_display()}):\n\n"
                         f"{incident.resolution_note}\n\n"
                         f"{absolute_url(reverse('incidents:detail', args=[incident.pk]))}\n"),
                recipients=[reporter.email])
    return incident


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _snapshot(incident: Incident) -> dict:
    return {"status": incident.status, "resolution_note": incident.resolution_note,
            "rollback_steps_done": list(incident.rollback_steps_done)}
