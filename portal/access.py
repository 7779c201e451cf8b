"""Access administration: who may view, review, pause and change which agent.

Admins grant and revoke agents' object permissions here, one at a time or a role to a group
across many agents at once. What naming someone on an agent gives them (owners and named
pausers, agents/services.py `_role_permissions`) is not this module's to take back: it goes
when they are no longer named. Every change is audited with the data shape agents/services.py
uses (`{"user"|"group": name, "permissions": [...], "because"?: ...}`).

Guardian reads object permissions from the database on every check, so a grant or revoke
holds from the affected user's next request; nothing here is cached.
"""

from collections.abc import Iterable

from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from guardian.models import GroupObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from agents.locking import agent_for_update
from agents.models import Agent
from portal import audit
from portal.permissions import ROLE_PERMISSIONS
from portal.roles import ADMINS
from portal.services import agent_direct_perms

# The agent permissions an admin hands out, in the order the pages show them.
PERMISSIONS = ("view_agent", "review_agent", "pause_agent", "change_agent")
PERMISSION_LABELS = {"view_agent": "View", "review_agent": "Review", "pause_agent": "Pause",
                     "change_agent": "Change"}

# Roles for the bulk grant: the one place that says what each gives.
ROLES = {
    "viewer": ("view_agent",),
    "reviewer": ("view_agent", "review_agent"),
    "pauser": ("view_agent", "pause_agent"),
    "editor": ("view_agent", "change_agent"),
}

OWNER_FIELDS = {"business_owner": "business owner", "process_owner": "process owner",
                "technical_owner": "technical owner"}


def is_admin(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and (
        user.is_superuser or any(g.name == ADMINS for g in user.groups.all())))


def require_admin(actor) -> None:
    """Only Admins (and the system, `actor=None`) administer access."""
    if actor is not None and not is_admin(actor):
        raise PermissionDenied("Only Admins may see and change who has access to agents.")


def named_permissions(agent: Agent, user, *, pauser: bool | None = None) -> dict[str, str]:
    """{codename: why} for what being named on `agent` gives `user` ("owner", "named pauser").

    Reads the agent's owner ids and, unless `pauser` says it, `agent.pausers.all()`."""
    held: dict[str, str] = {}
    if any(getattr(agent, f"{name}_id") == user.pk for name in OWNER_FIELDS):
        for perm in ROLE_PERMISSIONS["owner"]:
            held[perm.split(".", 1)[1]] = "owner"
    if pauser is None:
        pauser = any(p.pk == user.pk for p in agent.pausers.all())
    if pauser:
        for perm in ROLE_PERMISSIONS["pauser"]:
            held.setdefault(perm.split(".", 1)[1], "named pauser")
    return held


def check_permission(permission: str) -> str:
    """The codename of an agent permission ("review_agent" or "agents.review_agent")."""
    codename = (permission or "").removeprefix("agents.")
    if codename not in PERMISSIONS:
        raise ValidationError({"permission": (
            f"'{permission}' is not an agent permission; use one of "
            f"{', '.join(PERMISSIONS)}.")})
    return codename


def _holder(user, group, *, granting: bool) -> tuple[str, str]:
    if (user is None) == (group is None):
        raise ValidationError({"user": "Choose either a person or a group, not both or neither."})
    if group is not None:
        return "group", group.name
    if granting and not user.is_active:
        raise ValidationError({"user": (
            f"{user.get_username()} is inactive: reactivate the account in the admin "
            "before granting access.")})
    return "user", user.get_username()


@transaction.atomic
def access_grant(*, actor, agent: Agent, permission: str, user=None, group=None) -> bool:
    """Give a person or a group one permission on one agent; False when they already had it."""
    require_admin(actor)
    codename = check_permission(permission)
    kind, label = _holder(user, group, granting=True)
    if codename in agent_direct_perms(agent, user=user, group=group):
        return False
    assign_perm(f"agents.{codename}", user or group, agent)
    audit.record(actor=actor, verb="permission.granted", obj=agent,
                 data={kind: label, "permissions": [codename]})
    return True


@transaction.atomic
def access_revoke(*, actor, agent: Agent, permission: str, user=None, group=None) -> bool:
    """Take one permission on one agent back; False when they did not hold it directly.

    Refused for what an owner or named pauser holds as such. The agent's row is locked like
    agent_update locks it, so nobody is named owner between the check and the revoke.
    """
    require_admin(actor)
    codename = check_permission(permission)
    kind, label = _holder(user, group, granting=False)
    agent = agent_for_update(agent.pk)
    if user is not None:
        why = named_permissions(agent, user).get(codename)
        if why:
            raise ValidationError({"permission": (
                f"{label} holds {PERMISSION_LABELS[codename].lower()} on {agent.name} as its "
                f"{why}; name someone else on the agent's page first, and the permission "
                "goes with the role.")})
    if codename not in agent_direct_perms(agent, user=user, group=group):
        return False
    remove_perm(f"agents.{codename}", user or group, agent)
    audit.record(actor=actor, verb="permission.revoked", obj=agent,
                 data={kind: label, "permissions": [codename]})
    return True


@transaction.atomic
def access_grant_role(*, actor, group: Group | None, role: str,
                      agents: Iterable[Agent]) -> dict[Agent, list[str]]:
    """Give `group` a role (ROLES) on each of `agents` in one go.

    Returns {agent: codenames newly granted}; agents where the group already had the role are
    left out. One audit event per agent that changed.
    """
    require_admin(actor)
    if role not in ROLES:
        raise ValidationError({"role": f"'{role}' is not a role; use one of "
                                       f"{', '.join(ROLES)}."})
    if group is None:
        raise ValidationError({"group": "Choose the group to grant the role to."})
    agents = list(agents)
    if not agents:
        raise ValidationError({"agents": "Tick at least one agent."})
    ct = ContentType.objects.get_for_model(Agent)
    held: dict[str, set[str]] = {}
    for object_pk, codename in GroupObjectPermission.objects.filter(
            group=group, content_type=ct, object_pk__in=[str(a.pk) for a in agents]
    ).values_list("object_pk", "permission__codename"):
        held.setdefault(object_pk, set()).add(codename)
    perms = {p.codename: p for p in ct.permission_set.filter(codename__in=ROLES[role])}
    granted: dict[Agent, list[str]] = {}
    rows = []
    for agent in agents:
        missing = [c for c in ROLES[role] if c not in held.get(str(agent.pk), set())]
        if missing:
            granted[agent] = missing
            rows += [GroupObjectPermission(group=group, permission=perms[c], content_type=ct,
                                           object_pk=str(agent.pk)) for c in missing]
    GroupObjectPermission.objects.bulk_create(rows, ignore_conflicts=True)
    for agent, codenames in granted.items():
        audit.record(actor=actor, verb="permission.granted", obj=agent,
                     data={"group": group.name, "permissions": codenames,
                           "because": f"role {role}, granted to several agents at once"})
    return granted
