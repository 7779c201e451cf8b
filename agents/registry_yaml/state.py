"""The database's side of the registry, in the file's shape.

Applying compares these snapshots with the parsed file, key by key; exporting writes them out.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents.models import Agent, DataSource, System
from agents.services import guardrail_snapshot

Status = Agent.Status


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def system_state(system: System) -> dict:
    return {"slug": system.slug, "name": system.name, "description": system.description}


def source_state(source: DataSource) -> dict:
    return {"slug": source.slug, "name": source.name, "description": source.description,
            "approved": source.approved, "maintainer": _username(source.maintainer),
            "max_age": source.max_age, "refreshed_at": source.refreshed_at}


def group_state(group: Group) -> dict:
    return {"name": group.name,
            "members": sorted(u.get_username() for u in group.user_set.all())}


guardrail_state = guardrail_snapshot  # the same plain values the audit trail records


def perm_holders(agents: list[Agent], codename: str) -> tuple[dict, dict]:
    """{agent pk: sorted usernames} and {agent pk: sorted group names} holding `codename`."""
    ct = ContentType.objects.get_for_model(Agent)
    pks = [str(a.pk) for a in agents]
    users: dict[int, list[str]] = {}
    groups: dict[int, list[str]] = {}
    for pk, name in (UserObjectPermission.objects
                     .filter(content_type=ct, object_pk__in=pks, permission__codename=codename)
                     .values_list("object_pk", "user__username")):
        users.setdefault(int(pk), []).append(name)
    for pk, name in (GroupObjectPermission.objects
                     .filter(content_type=ct, object_pk__in=pks, permission__codename=codename)
                     .values_list("object_pk", "group__name")):
        groups.setdefault(int(pk), []).append(name)
    return ({pk: sorted(set(v)) for pk, v in users.items()},
            {pk: sorted(set(v)) for pk, v in groups.items()})


def agent_state(agent: Agent, *, reviewers: list[str], review_groups: list[str]) -> dict:
    paused = agent.status == Status.PAUSED
    return {
        "slug": agent.slug,
        "name": agent.name,
        "description": agent.description,
        "business_outcome": agent.business_outcome,
        "definition_of_done": agent.definition_of_done,
        "workflow": agent.workflow,
        "autonomy_level": agent.autonomy_level,
        "status": agent.status,
        "paused_from": (agent.status_before_pause or Status.PROPOSED) if paused else None,
        "pause_reason": agent.pause_reason if paused else "",
        "owners": {role: _username(user) for role, user in agent.owners.items()},
        "pausers": sorted(u.get_username() for u in agent.pausers.all()),
        "reviewers": reviewers,
        "review_groups": review_groups,
        "review_sample_rate": agent.review_sample_rate,
        "confidence": {"review_below": agent.confidence_review_below,
                       "block_below": agent.confidence_block_below},
        "max_writes_per_hour": agent.max_writes_per_hour,
        "monthly_cost_budget": agent.monthly_cost_budget,
        "review_cadence": agent.review_cadence,
        "access": dict(sorted((a.system.slug, a.max_kind) for a in agent.accesses.all())),
        "sources": sorted(s.slug for s in agent.sources.all()),
        "guardrails": [guardrail_state(g) for g in agent.guardrails.all()],
        "rollback": [{"title": s.title, "instructions": s.instructions}
                     for s in agent.rollback_steps.all()],
    }


def agent_states(agents: list[Agent]) -> list[dict]:
    """agent_state of each agent; the reviewers of all of them are read in two queries."""
    users, groups = perm_holders(agents, "review_agent")
    return [agent_state(agent, reviewers=users.get(agent.pk, []),
                        review_groups=groups.get(agent.pk, [])) for agent in agents]


def agents_for_state():
    """Agents with everything agent_state reads, fetched up front."""
    return Agent.objects.select_related(
        "business_owner", "process_owner", "technical_owner",
    ).prefetch_related(
        "pausers", "sources", "accesses__system", "guardrails__system",
        "guardrails__route_to_group", "rollback_steps",
    )


def agent_with_state(slug: str) -> tuple[Agent | None, dict | None]:
    agent = agents_for_state().filter(slug=slug).first()
    if agent is None:
        return None, None
    return agent, agent_states([agent])[0]
