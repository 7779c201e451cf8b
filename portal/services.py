"""Writes to who-may-do-what: groups and their members, per-agent object permissions.

Only admins (the Admins group or superusers) and the system (`actor=None`, management
commands) may change these. Every change is audited; a call that changes nothing records
nothing, so agents-as-code can re-apply a file without noise in the trail.
"""

from collections.abc import Iterable, Sequence

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from agents.models import Agent
from portal import audit
from portal.permissions import AGENT_PERMISSIONS
from portal.roles import ADMINS, user_in_group

User = get_user_model()

# Codenames that may be granted on one agent ("view_agent", ...).
AGENT_PERM_CODENAMES = tuple(perm.split(".")[1] for perm in AGENT_PERMISSIONS)


def _require_admin(actor) -> None:
    if actor is not None and not (actor.is_superuser or user_in_group(actor, ADMINS)):
        raise PermissionDenied("Only admins may change groups and permissions.")


# --- groups ----------------------------------------------------------------------------------

@transaction.atomic
def group_save(*, actor, name: str, members: Iterable) -> Group:
    """Create the group if needed and make its members exactly `members` (users).

    Audited as `group.saved` with the member lists before and after, only when they differ.
    """
    _require_admin(actor)
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the group a name."})
    if len(name) > Group._meta.get_field("name").max_length:
        raise ValidationError({"name": "The group name is too long (150 characters at most)."})
    members = list(members)
    group = Group.objects.select_for_update().filter(name=name).first()
    created = group is None
    if created:
        group = Group.objects.create(name=name)
    before = sorted(u.get_username() for u in group.user_set.all())
    after = sorted(u.get_username() for u in members)
    if not created and before == after:
        return group
    group.user_set.set(members)
    changes = {"members": [None if created else before, after]}
    if created:
        changes["name"] = [None, name]
    audit.record(actor=actor, verb="group.saved", obj=group, data={"changes": changes})
    return group


# --- per-agent object permissions ------------------------------------------------------------

def _codenames(perm: str | Sequence[str]) -> list[str]:
    """Accept "review_agent", "agents.review_agent" or a list of either; check each."""
    perms = [perm] if isinstance(perm, str) else list(perm)
    codenames = []
    for item in perms:
        codename = item.split(".", 1)[1] if item.startswith("agents.") else item
        if codename not in AGENT_PERM_CODENAMES:
            raise ValidationError(f"Unknown agent permission '{item}'; use one of "
                                  f"{', '.join(AGENT_PERM_CODENAMES)}.")
        codenames.append(codename)
    return sorted(set(codenames))


def _holder(user, group) -> tuple[str, str]:
    if (user is None) == (group is None):
        raise ValueError("Give exactly one of user or group.")
    return ("user", user.get_username()) if user is not None else ("group", group.name)


def agent_direct_perms(agent: Agent, *, user=None, group=None) -> set[str]:
    """Codenames held on `agent` directly by the user (not through groups) or by the group."""
    ct = ContentType.objects.get_for_model(Agent)
    if user is not None:
        rows = UserObjectPermission.objects.filter(user=user)
    else:
        rows = GroupObjectPermission.objects.filter(group=group)
    return set(rows.filter(content_type=ct, object_pk=str(agent.pk))
               .values_list("permission__codename", flat=True))


@transaction.atomic
def agent_permission_grant(*, actor, agent: Agent, perm: str | Sequence[str], user=None,
                           group=None) -> list[str]:
    """Give a user or a group permission(s) on one agent; returns the codenames newly granted."""
    _require_admin(actor)
    kind, label = _holder(user, group)
    wanted = _codenames(perm)
    held = agent_direct_perms(agent, user=user, group=group)
    granted = [codename for codename in wanted if codename not in held]
    for codename in granted:
        assign_perm(f"agents.{codename}", user or group, agent)
    if granted:
        audit.record(actor=actor, verb="permission.granted", obj=agent,
                     data={kind: label, "permissions": granted})
    return granted


@transaction.atomic
def agent_permission_revoke(*, actor, agent: Agent, perm: str | Sequence[str], user=None,
                            group=None) -> list[str]:
    """Take permission(s) on one agent back from a user or group; returns what was revoked."""
    _require_admin(actor)
    kind, label = _holder(user, group)
    wanted = _codenames(perm)
    held = agent_direct_perms(agent, user=user, group=group)
    revoked = [codename for codename in wanted if codename in held]
    for codename in revoked:
        remove_perm(f"agents.{codename}", user or group, agent)
    if revoked:
        audit.record(actor=actor, verb="permission.revoked", obj=agent,
                     data={kind: label, "permissions": revoked})
    return revoked
