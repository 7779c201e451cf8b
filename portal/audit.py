"""The audit trail: `record()` is how every service writes one event.

Recording only inserts. Sealing the chain, exporting its head and verifying it live in
`portal.audit_chain`.
"""

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from portal.models import AuditEvent


def _plain(data: Any) -> Any:
    """JSON-normalise once, so what is hashed later is exactly what the database returns."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True))


def record(*, actor, verb: str, obj: models.Model | None = None, agent=None,
           data: dict | None = None) -> AuditEvent:
    """Append one event. `actor` is a user, an agent (acting through its token) or None (system)."""
    from agents.models import Agent

    if actor is None:
        actor_type, actor_user, label = AuditEvent.ActorType.SYSTEM, None, "system"
    elif isinstance(actor, Agent):
        actor_type, actor_user, label = AuditEvent.ActorType.AGENT, None, f"agent:{actor.slug}"
        agent = agent or actor
    else:
        actor_type, actor_user, label = AuditEvent.ActorType.USER, actor, actor.get_username()
    if agent is None and isinstance(obj, Agent):
        agent = obj
    return AuditEvent.objects.create(
        actor_type=actor_type,
        actor_user=actor_user,
        actor_label=label,
        verb=verb,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        agent=agent,
        data=_plain(data or {}),
    )


def diff(before: dict, after: dict) -> dict:
    """Field-level changes as {field: [old, new]} for the fields whose value changed."""
    return {key: [before.get(key), after.get(key)] for key in after
            if before.get(key) != after.get(key)}


def record_read(*, request, verb: str, obj: models.Model | None = None, agent=None,
                data: dict | None = None) -> AuditEvent:
    """Audit a read that matters (a prompt viewed, a CSV exported, audit data downloaded).

    Called by the view that serves it, before the response is built, so a download that
    fails half-way is still on record. The path says exactly what was asked for.
    """
    return record(actor=request.user, verb=verb, obj=obj, agent=agent,
                  data={"path": request.get_full_path()[:500], **(data or {})})
