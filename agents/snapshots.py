"""The agent's policy as the gate sees it, built once per policy version and kept per process.

Every change the gate judges by raises `Agent.policy_version` (see agents.services), and the
gate reads that version under a lock on each call, so a cached snapshot is used only while it
is still exactly the policy in the database.
"""

import threading

from agents.models import Agent, Guardrail, SystemAccess
from agents.policy import GuardrailRule, PolicySnapshot, SourceInfo

_cache: dict[int, PolicySnapshot] = {}
_cache_lock = threading.Lock()


def build_snapshot(agent_id: int) -> PolicySnapshot:
    """Read the agent's whole policy from the database (four queries)."""
    agent = Agent.objects.get(pk=agent_id)
    accesses = list(SystemAccess.objects.filter(agent_id=agent_id)
                    .values_list("system__slug", "system_id", "max_kind"))
    access = {slug: kind for slug, _id, kind in accesses}
    sources = {
        source.slug: SourceInfo(slug=source.slug, name=source.name, approved=source.approved,
                                refreshed_at=source.refreshed_at, max_age=source.max_age)
        for source in agent.sources.all()
    }
    guardrails = tuple(
        GuardrailRule(id=g.id, name=g.name, field=g.field, operator=g.operator, value=g.value,
                      effect=g.effect, system=g.system.slug if g.system_id else None,
                      operation=g.operation,
                      route_to_group=g.route_to_group.name if g.route_to_group_id else None)
        for g in Guardrail.objects.filter(agent_id=agent_id)
        .select_related("system", "route_to_group").order_by("id")
    )
    return PolicySnapshot(
        agent_id=agent.pk, slug=agent.slug, status=agent.status,
        autonomy_level=agent.autonomy_level, access=access, sources=sources,
        guardrails=guardrails,
        confidence_review_below=agent.confidence_review_below,
        confidence_block_below=agent.confidence_block_below,
        review_sample_rate=agent.review_sample_rate,
        max_writes_per_hour=agent.max_writes_per_hour,
        monthly_cost_budget=(float(agent.monthly_cost_budget)
                             if agent.monthly_cost_budget is not None else None),
        version=agent.policy_version, pause_reason=agent.pause_reason,
        system_ids={slug: system_id for slug, system_id, _kind in accesses},
        review_sla_hours=agent.review_sla_hours,
    )


def policy_snapshot(agent_id: int, version: int) -> PolicySnapshot:
    """The snapshot for `version`, from this process's cache when it has that version."""
    snapshot = _cache.get(agent_id)
    if snapshot is not None and snapshot.version == version:
        return snapshot
    snapshot = build_snapshot(agent_id)
    with _cache_lock:
        _cache[agent_id] = snapshot
    return snapshot


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
