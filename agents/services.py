"""Every write to the registry. Each service checks permission, changes state in a
transaction and records the audit event. `actor=None` means the system (management commands),
which skips the permission check but is still audited.
"""

import hashlib
import hmac
import secrets
from collections import defaultdict
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F, Max
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from agents import lifecycle, rollout, versions
from agents.locking import agent_for_update, lock_agents_for_change
from agents.models import (
    AccessKind,
    Agent,
    AgentToken,
    DataSource,
    Guardrail,
    RollbackStep,
    System,
    SystemAccess,
)
from portal import audit
from portal.permissions import (
    ADD_AGENT,
    CHANGE_AGENT,
    PAUSE_AGENT,
    ROLE_PERMISSIONS,
    require_agent_perm,
)
from portal.roles import ADMINS, user_in_group

User = get_user_model()

AGENT_FIELDS = [
    "slug", "name", "description", "business_outcome", "definition_of_done", "workflow",
    "autonomy_level", "review_sample_rate", "confidence_review_below",
    "confidence_block_below", "max_writes_per_hour", "monthly_cost_budget", "review_cadence",
    "business_owner", "process_owner", "technical_owner", "review_sla_hours", "callback_url",
    "alert_webhook_url", "auto_pause_on_critical", "auto_step_down",
]
OWNER_FIELDS = ["business_owner", "process_owner", "technical_owner"]
NEW_AGENT_MAX_AUTONOMY = 2


# --- snapshots and permissions of the people named on an agent ------------------------------

def agent_snapshot(agent: Agent) -> dict:
    """The agent's editable configuration as plain values, for field-level audit diffs."""
    snap = {}
    for name in AGENT_FIELDS:
        value = getattr(agent, name)
        if name in OWNER_FIELDS:
            value = value.get_username() if value else None
        elif isinstance(value, Decimal):
            value = str(value)
        snap[name] = value
    if agent.pk:
        snap["pausers"] = sorted(u.get_username() for u in agent.pausers.all())
        snap["sources"] = sorted(s.slug for s in agent.sources.all())
    return snap


def _role_permissions(agent: Agent) -> dict:
    """{user: {perm, ...}} that naming people on the agent gives them."""
    held = defaultdict(set)
    for name in OWNER_FIELDS:
        user = getattr(agent, name)
        if user is not None:
            held[user].update(ROLE_PERMISSIONS["owner"])
    for user in agent.pausers.all():
        held[user].update(ROLE_PERMISSIONS["pauser"])
    return held


def _sync_role_permissions(*, actor, agent: Agent, before: dict, after: dict) -> None:
    """Grant what newly named people need and take back what replaced people no longer hold."""
    for user in set(before) | set(after):
        gained = sorted(after.get(user, set()) - before.get(user, set()))
        lost = sorted(before.get(user, set()) - after.get(user, set()))
        for perm in gained:
            assign_perm(perm, user, agent)
        for perm in lost:
            remove_perm(perm, user, agent)
        if gained:
            audit.record(actor=actor, verb="permission.granted", obj=agent,
                         data={"user": user.get_username(), "permissions": gained,
                               "because": "named on the agent"})
        if lost:
            audit.record(actor=actor, verb="permission.revoked", obj=agent,
                         data={"user": user.get_username(), "permissions": lost,
                               "because": "no longer named on the agent"})


def _check_autonomy(*, actor, agent: Agent, old_level: int | None,
                    autonomy_change=None) -> None:
    """New agents start at L1 or L2 (Admins and the system may start higher). Raising an
    existing agent's level is only possible through an approved AutonomyChange
    (agents.autonomy), for everyone: lowering stays an ordinary edit."""
    level = agent.autonomy_level
    if old_level is not None:
        if level <= old_level:
            return
        if (autonomy_change is None or autonomy_change.agent_id != agent.pk
                or autonomy_change.to_level != level):
            raise ValidationError({"autonomy_level": (
                f"Autonomy is raised only through an approved change: use “Request an "
                f"autonomy change” on the agent's page to ask for L{level} (it attaches the "
                f"latest quality and trust figures, and the business owner decides).")})
        return
    if actor is None or actor.is_superuser or user_in_group(actor, ADMINS):
        return
    if level > NEW_AGENT_MAX_AUTONOMY:
        raise ValidationError({"autonomy_level": "New agents start at L1 or L2; raise the "
                               "level later through an autonomy change with evidence."})


def _policy_changed(*agents: Agent, actor=None) -> dict[int, int]:
    """The gate judges by a cached snapshot keyed by this version: every change must raise it.
    Returns the policy versions recorded ({agent id: number}, agents.versions)."""
    lock_agents_for_change(*(a.pk for a in agents))
    Agent.objects.filter(pk__in=[a.pk for a in agents]).update(
        policy_version=F("policy_version") + 1)
    return versions.record(actor=actor, agent_ids=[a.pk for a in agents])


def _full_clean(obj, exclude=None) -> None:
    obj.full_clean(exclude=exclude, validate_constraints=True)


def _ensure_callback_secret(*, actor, agent: Agent) -> None:
    """The first callback URL gets a signing secret (kept when the URL changes later).

    Call after the agent is saved. The secret is shown on the agent's page to the people who
    may change the agent; the audit trail records only its last four characters.
    """
    if not agent.callback_url or agent.callback_secret:
        return
    agent.callback_secret = secrets.token_hex(32)
    Agent.objects.filter(pk=agent.pk).update(callback_secret=agent.callback_secret)
    audit.record(actor=actor, verb="agent.callback_secret_created", obj=agent,
                 data={"hint": f"…{agent.callback_secret[-4:]}"})


# --- agents ----------------------------------------------------------------------------------

@transaction.atomic
def agent_create(*, actor, pausers=(), sources=(), **fields) -> Agent:
    """Register a new agent in `proposed`; owners and pausers get their permissions."""
    require_agent_perm(actor, ADD_AGENT)
    agent = Agent(**fields)
    agent.status = Agent.Status.PROPOSED
    _check_autonomy(actor=actor, agent=agent, old_level=None)
    _full_clean(agent)
    agent.save()
    agent.pausers.set(pausers)
    agent.sources.set(sources)
    made = versions.record(actor=actor, agent_ids=[agent.pk])
    audit.record(actor=actor, verb="agent.created", obj=agent,
                 data={**agent_snapshot(agent), **versions.audit_data(made, agent)})
    rollout.plan_create(actor=actor, agent=agent)
    _ensure_callback_secret(actor=actor, agent=agent)
    after = _role_permissions(agent)
    if actor is not None and actor not in after:
        # Whoever registers the agent keeps sight of it even if they named other owners.
        after_creator = {**after, actor: {ROLE_PERMISSIONS["owner"][0]}}
        _sync_role_permissions(actor=actor, agent=agent, before={}, after=after_creator)
    else:
        _sync_role_permissions(actor=actor, agent=agent, before={}, after=after)
    return agent


@transaction.atomic
def agent_update(*, actor, agent: Agent, pausers=None, sources=None, autonomy_change=None,
                 **fields) -> Agent:
    """Change the agent's configuration; the audit event carries a field-level diff.

    `autonomy_change` is for agents.autonomy only: the approved change that raises the level.
    """
    require_agent_perm(actor, CHANGE_AGENT, agent)
    agent = agent_for_update(agent.pk)
    if agent.status == Agent.Status.RETIRED:
        raise ValidationError("A retired agent cannot be changed.")
    versions.ensure_baselines(agent)
    before, perms_before = agent_snapshot(agent), _role_permissions(agent)
    old_level = agent.autonomy_level
    for name, value in fields.items():
        if name not in AGENT_FIELDS:
            raise ValueError(f"{name} is not an editable agent field")
        setattr(agent, name, value)
    _check_autonomy(actor=actor, agent=agent, old_level=old_level,
                    autonomy_change=autonomy_change)
    _full_clean(agent)
    agent.save()
    if pausers is not None:
        agent.pausers.set(pausers)
    if sources is not None:
        agent.sources.set(sources)
    changes = audit.diff(before, agent_snapshot(agent))
    if changes:
        made = _policy_changed(agent, actor=actor)
        audit.record(actor=actor, verb="agent.changed", obj=agent,
                     data={"changes": changes, **versions.audit_data(made, agent),
                           **({"autonomy_change": autonomy_change.pk}
                              if autonomy_change is not None else {})})
        _sync_role_permissions(actor=actor, agent=agent, before=perms_before,
                               after=_role_permissions(agent))
        _ensure_callback_secret(actor=actor, agent=agent)
    return agent


def agent_missing_for(agent: Agent, target: str) -> list[str]:
    return lifecycle.missing_for(
        agent, target,
        accesses=agent.accesses.count(),
        steps=agent.rollback_steps.count(),
        guardrails=agent.guardrails.count(),
        # the 30-day plan gates going live (its tasks are read only then)
        plan_missing=rollout.plan_missing(agent) if target == Agent.Status.LIVE else [],
    )


@transaction.atomic
def agent_move(*, actor, agent: Agent, to_status: str) -> Agent:
    """Move along the lifecycle (proposed → pilot → live, or one step back)."""
    require_agent_perm(actor, CHANGE_AGENT, agent)
    agent = agent_for_update(agent.pk)
    if to_status not in lifecycle.MOVES.get(agent.status, []):
        raise ValidationError(
            f"{agent.name} is {agent.status}; it cannot move to {to_status} from there.")
    missing = agent_missing_for(agent, to_status)
    if missing:
        raise ValidationError(f"{agent.name} cannot move to {to_status} yet: it needs "
                              f"{lifecycle.describe_gaps(missing)}.")
    versions.ensure_baselines(agent)
    old = agent.status
    agent.status = to_status
    agent.policy_version += 1
    data = {"from": old, "to": to_status}
    if to_status == Agent.Status.LIVE and agent.review_cadence != Agent.Cadence.MONTHLY:
        # scorecards are reviewed weekly in pilot and monthly once live (owners may change it)
        data["review_cadence"] = [agent.review_cadence, Agent.Cadence.MONTHLY]
        agent.review_cadence = Agent.Cadence.MONTHLY
    agent.save(update_fields=["status", "policy_version", "review_cadence", "updated_at"])
    data.update(versions.audit_data(versions.record(actor=actor, agent_ids=[agent.pk]), agent))
    audit.record(actor=actor, verb="agent.moved", obj=agent, data=data)
    return agent


@transaction.atomic
def agent_pause(*, actor, agent: Agent, reason: str) -> Agent:
    """Stop the agent now: from commit on, the gate blocks it and no approval succeeds."""
    require_agent_perm(actor, PAUSE_AGENT, agent)
    if not reason or not reason.strip():
        raise ValidationError({"reason": "Say why you are pausing the agent."})
    agent = agent_for_update(agent.pk)
    if agent.status in (Agent.Status.PAUSED, Agent.Status.RETIRED):
        raise ValidationError(f"{agent.name} is already {agent.status}.")
    versions.ensure_baselines(agent)
    agent.status_before_pause, agent.status = agent.status, Agent.Status.PAUSED
    agent.paused_at, agent.paused_by, agent.pause_reason = timezone.now(), actor, reason.strip()
    agent.policy_version += 1
    agent.save(update_fields=["status", "status_before_pause", "paused_at", "paused_by",
                              "pause_reason", "policy_version", "updated_at"])
    made = versions.record(actor=actor, agent_ids=[agent.pk])
    audit.record(actor=actor, verb="agent.paused", obj=agent,
                 data={"reason": agent.pause_reason, "was": agent.status_before_pause,
                       **versions.audit_data(made, agent)})
    return agent


@transaction.atomic
def agent_resume(*, actor, agent: Agent) -> Agent:
    """Lift a pause: the agent returns to the status it had before."""
    require_agent_perm(actor, PAUSE_AGENT, agent)
    agent = agent_for_update(agent.pk)
    if agent.status != Agent.Status.PAUSED:
        raise ValidationError(f"{agent.name} is not paused.")
    versions.ensure_baselines(agent)
    agent.status = agent.status_before_pause or Agent.Status.PROPOSED
    reason = agent.pause_reason
    agent.status_before_pause, agent.paused_at, agent.paused_by, agent.pause_reason = (
        "", None, None, "")
    agent.policy_version += 1
    agent.save(update_fields=["status", "status_before_pause", "paused_at", "paused_by",
                              "pause_reason", "policy_version", "updated_at"])
    made = versions.record(actor=actor, agent_ids=[agent.pk])
    audit.record(actor=actor, verb="agent.resumed", obj=agent,
                 data={"to": agent.status, "pause_reason": reason,
                       **versions.audit_data(made, agent)})
    return agent


@transaction.atomic
def agent_retire(*, actor, agent: Agent, reason: str = "") -> Agent:
    """End the agent for good: its tokens stop working and it can never be changed again."""
    require_agent_perm(actor, CHANGE_AGENT, agent)
    agent = agent_for_update(agent.pk)
    if agent.status == Agent.Status.RETIRED:
        raise ValidationError(f"{agent.name} is already retired.")
    versions.ensure_baselines(agent)
    old = agent.status
    agent.status, agent.retired_at = Agent.Status.RETIRED, timezone.now()
    agent.policy_version += 1
    agent.save(update_fields=["status", "retired_at", "policy_version", "updated_at"])
    made = versions.record(actor=actor, agent_ids=[agent.pk])
    audit.record(actor=actor, verb="agent.retired", obj=agent,
                 data={"from": old, "reason": reason.strip(), **versions.audit_data(made, agent)})
    return agent


def _editable(actor, agent: Agent) -> None:
    require_agent_perm(actor, CHANGE_AGENT, agent)
    if agent.status == Agent.Status.RETIRED:
        raise ValidationError("A retired agent cannot be changed.")


# --- system access ---------------------------------------------------------------------------

@transaction.atomic
def system_access_set(*, actor, agent: Agent, system: System, max_kind: str) -> SystemAccess:
    """Give the agent access to a system up to `max_kind` (creates or changes the access)."""
    _editable(actor, agent)
    if max_kind not in AccessKind.values:
        raise ValidationError({"max_kind": f"Choose one of {', '.join(AccessKind.values)}."})
    access = SystemAccess.objects.filter(agent=agent, system=system).first()
    if access and access.max_kind == max_kind:
        return access
    versions.ensure_baselines(agent)
    old = access.max_kind if access else None
    if access is None:
        access = SystemAccess(agent=agent, system=system)
    access.max_kind = max_kind
    access.save()
    made = _policy_changed(agent, actor=actor)
    audit.record(actor=actor, verb="access.set", obj=access, agent=agent,
                 data={"system": system.slug, "changes": {"max_kind": [old, max_kind]},
                       **versions.audit_data(made, agent)})
    return access


@transaction.atomic
def system_access_remove(*, actor, access: SystemAccess) -> None:
    _editable(actor, access.agent)
    versions.ensure_baselines(access.agent)
    # A queryset delete keeps the instance's pk for the audit event below.
    SystemAccess.objects.filter(pk=access.pk).delete()
    made = _policy_changed(access.agent, actor=actor)
    audit.record(actor=actor, verb="access.removed", obj=access, agent=access.agent,
                 data={"system": access.system.slug, "max_kind": access.max_kind,
                       **versions.audit_data(made, access.agent)})


# --- guardrails ------------------------------------------------------------------------------

GUARDRAIL_FIELDS = ["name", "system", "operation", "field", "operator", "value", "effect",
                    "route_to_group"]


def guardrail_snapshot(guardrail: Guardrail) -> dict:
    """The guardrail as plain values: what audit events record and agents-as-code compares."""
    return {
        "name": guardrail.name,
        "system": guardrail.system.slug if guardrail.system_id else None,
        "operation": guardrail.operation,
        "field": guardrail.field,
        "operator": guardrail.operator,
        "value": guardrail.value,
        "effect": guardrail.effect,
        "route_to_group": guardrail.route_to_group.name if guardrail.route_to_group_id else None,
    }


@transaction.atomic
def guardrail_create(*, actor, agent: Agent, **fields) -> Guardrail:
    _editable(actor, agent)
    guardrail = Guardrail(agent=agent, **fields)
    _full_clean(guardrail)
    versions.ensure_baselines(agent)
    guardrail.save()
    made = _policy_changed(agent, actor=actor)
    audit.record(actor=actor, verb="guardrail.created", obj=guardrail, agent=agent,
                 data={**guardrail_snapshot(guardrail), **versions.audit_data(made, agent)})
    return guardrail


@transaction.atomic
def guardrail_update(*, actor, guardrail: Guardrail, **fields) -> Guardrail:
    _editable(actor, guardrail.agent)
    before = guardrail_snapshot(guardrail)
    for name, value in fields.items():
        if name not in GUARDRAIL_FIELDS:
            raise ValueError(f"{name} is not an editable guardrail field")
        setattr(guardrail, name, value)
    _full_clean(guardrail)
    changes = audit.diff(before, guardrail_snapshot(guardrail))
    if changes:
        versions.ensure_baselines(guardrail.agent)
    guardrail.save()
    if changes:
        made = _policy_changed(guardrail.agent, actor=actor)
        audit.record(actor=actor, verb="guardrail.changed", obj=guardrail,
                     agent=guardrail.agent,
                     data={"changes": changes, **versions.audit_data(made, guardrail.agent)})
    return guardrail


@transaction.atomic
def guardrail_delete(*, actor, guardrail: Guardrail) -> None:
    _editable(actor, guardrail.agent)
    versions.ensure_baselines(guardrail.agent)
    data = guardrail_snapshot(guardrail)
    Guardrail.objects.filter(pk=guardrail.pk).delete()  # keeps the pk for the event
    made = _policy_changed(guardrail.agent, actor=actor)
    audit.record(actor=actor, verb="guardrail.deleted", obj=guardrail, agent=guardrail.agent,
                 data={**data, **versions.audit_data(made, guardrail.agent)})


# --- rollback runbook ------------------------------------------------------------------------

@transaction.atomic
def rollback_step_add(*, actor, agent: Agent, title: str, instructions: str) -> RollbackStep:
    _editable(actor, agent)
    agent_for_update(agent.pk)  # serialise numbering
    last = agent.rollback_steps.aggregate(last=Max("position"))["last"] or 0
    step = RollbackStep(agent=agent, position=last + 1, title=title.strip(),
                        instructions=instructions.strip())
    _full_clean(step, exclude=["agent"])
    step.save()
    audit.record(actor=actor, verb="rollback_step.added", obj=step, agent=agent,
                 data={"position": step.position, "title": step.title,
                       "instructions": step.instructions})
    return step


@transaction.atomic
def rollback_step_update(*, actor, step: RollbackStep, title: str,
                         instructions: str) -> RollbackStep:
    _editable(actor, step.agent)
    before = {"title": step.title, "instructions": step.instructions}
    step.title, step.instructions = title.strip(), instructions.strip()
    _full_clean(step, exclude=["agent"])
    step.save()
    changes = audit.diff(before, {"title": step.title, "instructions": step.instructions})
    if changes:
        audit.record(actor=actor, verb="rollback_step.changed", obj=step, agent=step.agent,
                     data={"position": step.position, "changes": changes})
    return step


@transaction.atomic
def rollback_step_remove(*, actor, step: RollbackStep) -> None:
    """Remove a step and close the gap so positions stay 1, 2, 3…"""
    agent = step.agent
    _editable(actor, agent)
    agent_for_update(agent.pk)
    audit.record(actor=actor, verb="rollback_step.removed", obj=step, agent=agent,
                 data={"position": step.position, "title": step.title})
    position = step.position
    step.delete()
    for later in agent.rollback_steps.filter(position__gt=position).order_by("position"):
        later.position -= 1
        later.save(update_fields=["position"])


# --- tokens ----------------------------------------------------------------------------------

TOKEN_PREFIX = "stw_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def agent_token_create(*, actor, agent: Agent, name: str) -> tuple[AgentToken, str]:
    """Create a token; the secret is returned once and only its SHA-256 is stored."""
    _editable(actor, agent)
    name = (name or "").strip() or "default"
    public = secrets.token_hex(4)
    raw = f"{TOKEN_PREFIX}{public}_{secrets.token_urlsafe(32)}"  # 32 random bytes of secret
    token = AgentToken.objects.create(
        agent=agent, name=name[:80], prefix=f"{TOKEN_PREFIX}{public}",
        secret_hash=hash_token(raw), created_by=actor)
    audit.record(actor=actor, verb="token.created", obj=token, agent=agent,
                 data={"name": token.name, "prefix": token.prefix})
    return token, raw


@transaction.atomic
def agent_token_revoke(*, actor, token: AgentToken) -> AgentToken:
    require_agent_perm(actor, CHANGE_AGENT, token.agent)
    token = AgentToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at, token.revoked_by = timezone.now(), actor
    token.save(update_fields=["revoked_at", "revoked_by"])
    audit.record(actor=actor, verb="token.revoked", obj=token, agent=token.agent,
                 data={"name": token.name, "prefix": token.prefix})
    return token


def agent_token_authenticate(raw: str) -> AgentToken | None:
    """The active token for a raw bearer secret, or None (unknown, revoked, agent retired).

    Looked up by its hash, then compared in constant time. `last_used_at` is written at most
    once a minute so a busy agent does not turn every call into a write. On the API's hot path:
    on PostgreSQL one precompiled query loads the token with its agent.
    """
    if not raw or not raw.startswith(TOKEN_PREFIX):
        return None
    digest = hash_token(raw)
    token = _active_token(digest)
    if token is None or not hmac.compare_digest(token.secret_hash, digest):
        return None
    if token.agent.status == Agent.Status.RETIRED:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= AgentToken.LAST_USED_GRANULARITY:
        AgentToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


_TOKEN_FIELDS = [f.attname for f in AgentToken._meta.concrete_fields]
_AGENT_FIELDS = [f.attname for f in Agent._meta.concrete_fields]
_TOKEN_SQL = "SELECT {}, {} FROM agents_agenttoken t JOIN agents_agent a ON a.id = t.agent_id " \
             "WHERE t.secret_hash = %s AND t.revoked_at IS NULL".format(
                 ", ".join(f"t.{f.column}" for f in AgentToken._meta.concrete_fields),
                 ", ".join(f"a.{f.column}" for f in Agent._meta.concrete_fields))


def _active_token(digest: str) -> AgentToken | None:
    if connection.vendor != "postgresql":  # elsewhere raw values lack the ORM's converters
        return (AgentToken.objects.select_related("agent")
                .filter(secret_hash=digest, revoked_at__isnull=True).first())
    with connection.cursor() as cursor:
        cursor.execute(_TOKEN_SQL, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(_TOKEN_FIELDS)
    token = AgentToken.from_db(connection.alias, _TOKEN_FIELDS, row[:split])
    token.agent = Agent.from_db(connection.alias, _AGENT_FIELDS, row[split:])
    return token


# --- catalogue: systems and data sources (admin or agents-as-code) ---------------------------

def _require_admin(actor) -> None:
    if actor is not None and not (actor.is_superuser or user_in_group(actor, ADMINS)):
        raise PermissionDenied("Only admins may change the catalogue of systems and sources.")


@transaction.atomic
def system_save(*, actor, slug: str, name: str, description: str = "") -> System:
    """Create the system or bring it up to date; audited only when something changed."""
    _require_admin(actor)
    system = System.objects.filter(slug=slug).first()
    before = {"name": system.name, "description": system.description} if system else {}
    system = system or System(slug=slug)
    system.name, system.description = name, description
    _full_clean(system)
    changes = audit.diff(before, {"name": name, "description": description})
    if changes:
        system.save()
        audit.record(actor=actor, verb="system.saved", obj=system, data={"changes": changes})
    return system


def _source_snapshot(source: DataSource) -> dict:
    return {
        "name": source.name,
        "description": source.description,
        "approved": source.approved,
        "maintainer": source.maintainer.get_username() if source.maintainer_id else None,
        "refreshed_at": source.refreshed_at.isoformat() if source.refreshed_at else None,
        "max_age_seconds": int(source.max_age.total_seconds()) if source.max_age else None,
    }


@transaction.atomic
def data_source_save(*, actor, slug: str, **fields) -> DataSource:
    """Create the data source or bring it up to date; audited only when something changed."""
    _require_admin(actor)
    source = DataSource.objects.filter(slug=slug).first()
    before = _source_snapshot(source) if source else {}
    source = source or DataSource(slug=slug)
    for name, value in fields.items():
        setattr(source, name, value)
    _full_clean(source)
    changes = audit.diff(before, _source_snapshot(source))
    if changes:
        agents = list(source.agents.all()) if source.pk else []
        versions.ensure_baselines(*agents)
        source.save()
        made = _policy_changed(*agents, actor=actor)
        saved = {agent.slug: made[agent.pk] for agent in agents if agent.pk in made}
        audit.record(actor=actor, verb="data_source.saved", obj=source,
                     data={"changes": changes, **({"policy_versions": saved} if saved else {})})
    return source
