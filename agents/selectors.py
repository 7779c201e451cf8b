"""Reads for the registry pages: every query a view needs, with its joins, lives here."""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch, Q, QuerySet

from agents import lifecycle
from agents.models import Agent, AgentToken, AutonomyChange, Guardrail, System, SystemAccess
from portal.permissions import (
    CHANGE_AGENT,
    PAUSE_AGENT,
    agent_permissions,
    get_visible_agent_or_404,
    visible_agents,
)
from reviews.models import Incident

User = get_user_model()
OPEN_INCIDENTS_SHOWN = 5  # on the agent's page; the incident list has them all


@dataclass(frozen=True)
class AgentFilters:
    status: str = ""
    autonomy_level: int | None = None
    owner: str = ""  # username of any of the three owners
    q: str = ""


def agent_list(*, user, filters: AgentFilters) -> QuerySet[Agent]:
    """The agents `user` may see, filtered, with everything the list row shows."""
    agents = visible_agents(user).select_related(
        "business_owner", "process_owner", "technical_owner"
    ).prefetch_related(
        Prefetch("accesses", queryset=SystemAccess.objects.select_related("system"))
    ).annotate(guardrail_count=Count("guardrails", distinct=True))
    if filters.status:
        agents = agents.filter(status=filters.status)
    if filters.autonomy_level:
        agents = agents.filter(autonomy_level=filters.autonomy_level)
    if filters.owner:
        agents = agents.filter(Q(business_owner__username=filters.owner)
                               | Q(process_owner__username=filters.owner)
                               | Q(technical_owner__username=filters.owner))
    if filters.q:
        agents = agents.filter(Q(name__icontains=filters.q) | Q(slug__icontains=filters.q))
    return agents.order_by("name")


def owner_choices(*, user) -> QuerySet:
    """People who own at least one agent the user may see (for the owner filter)."""
    agents = visible_agents(user)
    return User.objects.filter(
        Q(pk__in=agents.values("business_owner")) | Q(pk__in=agents.values("process_owner"))
        | Q(pk__in=agents.values("technical_owner"))
    ).order_by("username")


def agent_detail(*, user, slug: str) -> Agent:
    """One agent with its whole configuration, or 404 if the user may not see it."""
    queryset = Agent.objects.select_related(
        "business_owner", "process_owner", "technical_owner", "paused_by"
    ).prefetch_related(
        "pausers",
        "sources__maintainer",
        Prefetch("accesses", queryset=SystemAccess.objects.select_related("system")),
        Prefetch("guardrails",
                 queryset=Guardrail.objects.select_related("system", "route_to_group")),
        "rollback_steps",
        Prefetch("tokens", queryset=AgentToken.objects.select_related("created_by")),
        Prefetch("incidents", to_attr="open_incidents",
                 queryset=Incident.objects.exclude(status=Incident.Status.RESOLVED)
                 .select_related("reported_by").order_by("-reported_at")[:OPEN_INCIDENTS_SHOWN]),
    )
    return get_visible_agent_or_404(user, slug, queryset)


def agent_for_card(*, user, slug: str) -> Agent:
    """The agent with the people its card names (the rest comes from the gate's snapshot),
    or 404."""
    return get_visible_agent_or_404(
        user, slug,
        Agent.objects.select_related("business_owner", "process_owner", "technical_owner")
        .prefetch_related("pausers"))


def agent_for_plan(*, user, slug: str) -> Agent:
    """The agent with what its plan's checks and readiness answers read, or 404."""
    return get_visible_agent_or_404(
        user, slug,
        Agent.objects.select_related("business_owner", "process_owner", "technical_owner")
        .prefetch_related("pausers", "guardrails", "rollback_steps",
                          Prefetch("accesses",
                                   queryset=SystemAccess.objects.select_related("system"))))


def system_names(slugs) -> dict[str, str]:
    """{slug: name} of these systems."""
    return dict(System.objects.filter(slug__in=slugs).values_list("slug", "name"))


def autonomy_changes(*, agent: Agent, limit: int) -> list[AutonomyChange]:
    """The agent's newest autonomy changes, with who asked and who decided (one query)."""
    changes = list(AutonomyChange.objects.filter(agent=agent)
                   .select_related("requested_by", "decided_by")
                   .order_by("-requested_at", "-id")[:limit])
    for change in changes:
        change.agent = agent  # the caller has it: no query per row
    return changes


@dataclass(frozen=True)
class LifecycleMove:
    to_status: str
    missing: list[str]

    @property
    def allowed(self) -> bool:
        return not self.missing

    @property
    def missing_text(self) -> str:
        return lifecycle.describe_gaps(self.missing) if self.missing else ""


def lifecycle_moves(agent: Agent) -> list[LifecycleMove]:
    """The moves open from the agent's status, each with what it still lacks.

    Uses the prefetched relations of `agent_detail`, so it costs no query.
    """
    counts = {"accesses": len(agent.accesses.all()), "steps": len(agent.rollback_steps.all()),
              "guardrails": len(agent.guardrails.all())}
    return [LifecycleMove(target, lifecycle.missing_for(agent, target, **counts))
            for target in lifecycle.MOVES.get(agent.status, [])]


def agent_abilities(*, user, agent: Agent) -> dict:
    """What the user may do on this agent's page."""
    retired = agent.status == Agent.Status.RETIRED
    held = agent_permissions(user, agent)
    can_change = CHANGE_AGENT in held
    return {
        "can_change": can_change and not retired,
        "can_pause": PAUSE_AGENT in held and not retired,
        "can_retire": can_change and not retired,
    }
