"""Policy versions: what the gate judged an agent by after each save, and what changed.

The services call `record()` right after they raise `Agent.policy_version` (inside the same
transaction, under the agent's change lock), so version numbers are the agent's
`policy_version` after the save and a version's document is exactly what the gate's snapshot
holds. A save that raised the number without changing anything the gate judges by (a new
description, say) records no version: numbers may skip.

Agents registered before versions existed have none: the first policy save calls
`ensure_baselines()` before it changes anything, which stores the policy as it stood
(no diff, no author) under the current number, so that save's diff has something to compare.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.urls import reverse

from agents.models import Agent, PolicyVersion
from agents.policy import PolicySnapshot
from agents.snapshots import build_snapshot
from portal import audit

AUDIT_KEY = "policy_version_saved"  # in the audit event's data: the version the save made

SCALARS: dict[str, str] = {
    "status": "Status",
    "pause_reason": "Pause reason",
    "autonomy_level": "Autonomy level",
    "review_sample_rate": "Review sample rate (L2)",
    "confidence_review_below": "Review when confidence is below",
    "confidence_block_below": "Block when confidence is below",
    "max_writes_per_hour": "Writes an hour before review",
    "monthly_cost_budget": "Monthly cost budget (USD)",
}


def policy_document(snapshot: PolicySnapshot) -> dict[str, Any]:
    """The snapshot as plain JSON: collections keyed by a stable id so diffs stay readable."""
    document: dict[str, Any] = {name: getattr(snapshot, name) for name in SCALARS}
    document["access"] = dict(sorted(snapshot.access.items()))
    document["guardrails"] = {
        str(rule.id): {"name": rule.name, "system": rule.system, "operation": rule.operation,
                       "field": rule.field, "operator": rule.operator, "value": rule.value,
                       "effect": rule.effect, "route_to_group": rule.route_to_group}
        for rule in snapshot.guardrails}
    document["sources"] = {
        slug: {"name": source.name, "approved": source.approved,
               "refreshed_at": source.refreshed_at.isoformat() if source.refreshed_at else None,
               "max_age_seconds": (int(source.max_age.total_seconds())
                                   if source.max_age is not None else None)}
        for slug, source in sorted(snapshot.sources.items())}
    return document


def guardrail_words(rule: dict) -> str:
    """A guardrail of a document in one line: "amount gt 500 (in crm) → review"."""
    value = "" if rule["operator"] == "changed" else f" {rule['value']!r}"
    scope = " ".join(filter(None, [f"operation {rule['operation']}" if rule["operation"] else "",
                                   f"in {rule['system']}" if rule["system"] else ""]))
    then = rule["effect"] + (f" by {rule['route_to_group']}" if rule["route_to_group"] else "")
    return f"{rule['field']} {rule['operator']}{value}{f' ({scope})' if scope else ''} → {then}"


def _source_words(source: dict) -> str:
    state = "approved" if source["approved"] else "not approved"
    age = source["max_age_seconds"]
    return f"{source['name']}, {state}" + (f", at most {age} s old" if age is not None else "")


_COLLECTIONS = {
    "access": (lambda key, _item: f"Access to {key}", lambda item: item),
    "guardrails": (lambda _key, item: f"Guardrail '{item['name']}'", guardrail_words),
    "sources": (lambda key, _item: f"Source {key}", _source_words),
}


def policy_diff(before: dict | None, after: dict) -> list[dict[str, Any]]:
    """What changed from `before` to `after`, as [{item, before, after}] a person can read.

    Scalars and the fields of a changed guardrail or source are compared with
    `portal.audit.diff`; an added or removed item is one line with its summary.
    """
    if before is None:
        return []
    changes = [{"item": SCALARS[name], "before": old, "after": new}
               for name, (old, new) in audit.diff(
                   {name: before.get(name) for name in SCALARS},
                   {name: after.get(name) for name in SCALARS}).items()]
    for collection, (label, words) in _COLLECTIONS.items():
        old_items, new_items = before.get(collection, {}), after.get(collection, {})
        for key in sorted(old_items.keys() | new_items.keys()):
            old, new = old_items.get(key), new_items.get(key)
            if old == new:
                continue
            name = label(key, new if new is not None else old)
            if old is None or new is None or not isinstance(old, dict):
                changes.append({"item": name,
                                "before": words(old) if old is not None else None,
                                "after": words(new) if new is not None else None})
                continue
            changes.extend({"item": f"{name}: {field.replace('_', ' ')}", "before": was,
                            "after": now} for field, (was, now) in audit.diff(old, new).items())
    return changes


def ensure_baselines(*agents: Agent) -> None:
    """Store the current policy of agents that have no version yet (call before a change)."""
    ids = {agent.pk for agent in agents}
    have = set(PolicyVersion.objects.filter(agent_id__in=ids)
               .values_list("agent_id", flat=True).distinct())
    for agent_id in sorted(ids - have):
        snapshot = build_snapshot(agent_id)
        # ignore_conflicts: two first saves at once both try the same baseline
        PolicyVersion.objects.bulk_create([PolicyVersion(
            agent_id=agent_id, number=snapshot.version, policy=policy_document(snapshot),
            diff=[])], ignore_conflicts=True)


def record(*, actor, agent_ids: list[int]) -> dict[int, int]:
    """After a policy change: a version for each agent whose policy differs from its latest
    one. Returns {agent id: version number} for the versions made."""
    user = actor if isinstance(actor, get_user_model()) else None
    made = {}
    for agent_id in sorted(set(agent_ids)):
        snapshot = build_snapshot(agent_id)
        document = policy_document(snapshot)
        latest = (PolicyVersion.objects.filter(agent_id=agent_id).order_by("-number")
                  .only("number", "policy").first())
        if latest is not None and (latest.policy == document
                                   or latest.number >= snapshot.version):
            continue
        PolicyVersion.objects.create(
            agent_id=agent_id, number=snapshot.version, policy=document,
            diff=policy_diff(latest.policy if latest else None, document), created_by=user)
        made[agent_id] = snapshot.version
    return made


def audit_data(made: dict[int, int], agent: Agent) -> dict[str, int]:
    """What the save's audit event carries about the version it made (nothing if none)."""
    return {AUDIT_KEY: made[agent.pk]} if agent.pk in made else {}


def history(*, agent: Agent, limit: int = 20) -> list[PolicyVersion]:
    """The agent's latest versions, newest first, with their authors (one query)."""
    return list(agent.policy_versions.select_related("created_by").order_by("-number")[:limit])


def versions_of(agent: Agent) -> QuerySet[PolicyVersion]:
    return agent.policy_versions.select_related("created_by")


def link_audit_events(events) -> None:
    """Give each audit event that saved a version its `policy_version_url` (no query: the
    events come with their agent)."""
    for event in events:
        number = (event.data or {}).get(AUDIT_KEY) if isinstance(event.data, dict) else None
        agent = event.agent if event.agent_id else None
        event.policy_version_url = (reverse("agents:policy-version", args=[agent.slug, number])
                                    if number and agent is not None else "")
