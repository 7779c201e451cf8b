"""Reads for the incident pages and the dashboard. A hidden agent's incidents answer 404."""

import uuid
from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404
from guardian.shortcuts import get_objects_for_user

from agents.models import Agent
from portal.models import AuditEvent
from portal.permissions import CHANGE_AGENT, visible_agents
from reviews.models import ActionRequest, Incident

UNRESOLVED = (Incident.Status.OPEN, Incident.Status.INVESTIGATING)
INCIDENT_VERBS = ("incident.reported", "incident.updated", "incident.resolved",
                  "incident.reopened")


@dataclass(frozen=True)
class IncidentFilters:
    agent: str = ""  # slug
    status: str = ""  # a status, or "unresolved" (open or investigating)
    category: str = ""
    severity: str = ""
    mine: bool = False  # only agents the user may change (the incidents they can resolve)


def resolvable_agents(*, user) -> QuerySet[Agent]:
    """The agents whose incidents `user` may update: `change_agent` (owners, Admins)."""
    if not user.is_authenticated or not user.is_active:
        return Agent.objects.none()
    return get_objects_for_user(user, CHANGE_AGENT, klass=Agent, accept_global_perms=True)


def incident_list(*, user, filters: IncidentFilters) -> QuerySet[Incident]:
    """Incidents of the agents `user` may see, newest first, with what a list row shows."""
    incidents = Incident.objects.filter(
        agent__in=visible_agents(user).values("pk"),
    ).select_related("agent", "reported_by", "action_request")
    if filters.agent:
        incidents = incidents.filter(agent__slug=filters.agent)
    if filters.status == "unresolved":
        incidents = incidents.filter(status__in=UNRESOLVED)
    elif filters.status:
        incidents = incidents.filter(status=filters.status)
    if filters.category:
        incidents = incidents.filter(category=filters.category)
    if filters.severity:
        incidents = incidents.filter(severity=filters.severity)
    if filters.mine:
        incidents = incidents.filter(agent__in=resolvable_agents(user=user).values("pk"))
    return incidents.order_by("-reported_at", "-id")


def unresolved_incident_count(*, user) -> int:
    """Open or investigating incidents `user` may resolve (the dashboard's number)."""
    return Incident.objects.filter(
        status__in=UNRESOLVED, agent__in=resolvable_agents(user=user).values("pk")).count()


def incident_for_user(*, user, pk: int) -> Incident:
    """One incident with its agent's runbook, if `user` may see the agent; 404 otherwise."""
    incident = (Incident.objects
                .select_related("agent", "action_request__system", "reported_by", "resolved_by")
                .prefetch_related("agent__rollback_steps")
                .filter(pk=pk, agent__in=visible_agents(user).values("pk"))
                .first())
    if incident is None:
        raise Http404("No such incident.")
    return incident


def incident_history(incident: Incident) -> QuerySet[AuditEvent]:
    """The incident's audit events, oldest first (by verb and agent: both are indexed)."""
    return AuditEvent.objects.filter(
        verb__in=INCIDENT_VERBS, agent_id=incident.agent_id,
        object_type=Incident._meta.label_lower, object_id=str(incident.pk),
    ).order_by("id")


def report_target(*, user, agent_slug: str = "", action_id: str = "") -> tuple[
        Agent | None, ActionRequest | None]:
    """The agent and action request a report is about, from `?agent=` and `?action=`.

    Either may be missing (the action names its agent). Anything the user may not see, or an
    action of another agent, answers 404 like any hidden page.
    """
    agents = visible_agents(user)
    agent = None
    if agent_slug:
        agent = agents.filter(slug=agent_slug).first()
        if agent is None:
            raise Http404("No such agent.")
    action = None
    if action_id:
        try:
            public_id = uuid.UUID(action_id)
        except ValueError:
            raise Http404("No such action request.") from None
        action = (ActionRequest.objects.select_related("agent", "system")
                  .filter(public_id=public_id, agent__in=agents.values("pk")).first())
        if action is None or (agent is not None and action.agent_id != agent.pk):
            raise Http404("No such action request.")
        agent = agent or action.agent
    return agent, action
