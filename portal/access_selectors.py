"""Reads for the access administration pages: who holds what on which agent, and what one
person may do. Each page costs a fixed number of queries, however many agents or people."""

from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Cast, Coalesce
from django.shortcuts import get_object_or_404
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents.models import Agent
from portal.access import OWNER_FIELDS, PERMISSION_LABELS, PERMISSIONS, named_permissions

User = get_user_model()


@dataclass
class Cell:
    codename: str
    held: bool
    named: str = ""  # "owner" or "named pauser": given by a role on the agent, not revocable

    @property
    def label(self) -> str:
        return PERMISSION_LABELS[self.codename]


@dataclass
class HolderRow:
    """One person or group on an agent's access table."""

    kind: str  # "user" or "group"
    holder: object
    cells: list[Cell]
    error: str = ""
    note: str = ""
    roles: list[str] = field(default_factory=list)  # "business owner", "named pauser", ...

    @property
    def name(self) -> str:
        return self.holder.get_username() if self.kind == "user" else self.holder.name

    @property
    def dom_id(self) -> str:
        return f"access-{self.kind}-{self.holder.pk}"


def _agent_ct() -> ContentType:
    return ContentType.objects.get_for_model(Agent)


def _holders_count(model, holder: str):
    """How many users (or groups) hold any permission on the outer agent."""
    rows = (model.objects.filter(content_type=_agent_ct(),
                                 object_pk=Cast(OuterRef("pk"), CharField()))
            .order_by().values("object_pk").annotate(n=Count(holder, distinct=True))
            .values("n"))
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def access_agents(*, q: str = "") -> QuerySet[Agent]:
    """Every agent with the number of people and groups holding permissions on it."""
    agents = (Agent.objects.select_related("business_owner")
              .annotate(people=_holders_count(UserObjectPermission, "user"),
                        groups=_holders_count(GroupObjectPermission, "group"))
              .order_by("name"))
    if q:
        agents = agents.filter(Q(name__icontains=q) | Q(slug__icontains=q))
    return agents


def agent_for_access(*, slug: str) -> Agent:
    return get_object_or_404(
        Agent.objects.select_related("business_owner", "process_owner", "technical_owner")
        .prefetch_related("pausers"), slug=slug)


def _user_row(agent: Agent, user, held: set[str], **extra) -> HolderRow:
    named = named_permissions(agent, user)
    roles = [label for name, label in OWNER_FIELDS.items()
             if getattr(agent, f"{name}_id") == user.pk]
    if any(pauser.pk == user.pk for pauser in agent.pausers.all()):
        roles.append("named pauser")
    return HolderRow("user", user, [Cell(c, c in held, named.get(c, "")) for c in PERMISSIONS],
                     roles=roles, **extra)


def _group_row(group: Group, held: set[str], **extra) -> HolderRow:
    return HolderRow("group", group, [Cell(c, c in held) for c in PERMISSIONS], **extra)


def agent_access_rows(*, agent: Agent) -> dict:
    """The agent's people (named ones first) and groups, each with its four permissions."""
    ct = _agent_ct()
    people: dict[int, tuple] = {}
    for row in (UserObjectPermission.objects.filter(content_type=ct, object_pk=str(agent.pk))
                .select_related("user", "permission")):
        people.setdefault(row.user_id, (row.user, set()))[1].add(row.permission.codename)
    named = [agent.business_owner, agent.process_owner, agent.technical_owner,
             *agent.pausers.all()]
    for user in named:
        if user is not None:
            people.setdefault(user.pk, (user, set()))
    named_ids = [u.pk for u in named if u is not None]
    order = sorted(people.values(), key=lambda item: (
        item[0].pk not in named_ids, item[0].get_username()))
    groups: dict[int, tuple] = {}
    for row in (GroupObjectPermission.objects.filter(content_type=ct, object_pk=str(agent.pk))
                .select_related("group", "permission")):
        groups.setdefault(row.group_id, (row.group, set()))[1].add(row.permission.codename)
    return {
        "user_rows": [_user_row(agent, user, held) for user, held in order],
        "group_rows": [_group_row(group, held) for group, held in
                       sorted(groups.values(), key=lambda item: item[0].name)],
    }


def holder_row(*, agent: Agent, user=None, group=None, **extra) -> HolderRow:
    """One row again, after a grant or revoke (htmx swaps just that row)."""
    ct = _agent_ct()
    if user is not None:
        held = set(UserObjectPermission.objects.filter(
            content_type=ct, object_pk=str(agent.pk), user=user)
            .values_list("permission__codename", flat=True))
        return _user_row(agent, user, held, **extra)
    held = set(GroupObjectPermission.objects.filter(
        content_type=ct, object_pk=str(agent.pk), group=group)
        .values_list("permission__codename", flat=True))
    return _group_row(group, held, **extra)


def holder_choices() -> dict:
    """People and groups to pick from when adding someone to an agent's table."""
    return {"active_users": list(User.objects.filter(is_active=True).order_by("username")
                                 .only("username", "first_name", "last_name")),
            "all_groups": list(Group.objects.order_by("name"))}


def access_users(*, q: str = "") -> QuerySet:
    users = User.objects.prefetch_related("groups").order_by("username")
    if q:
        users = users.filter(Q(username__icontains=q) | Q(first_name__icontains=q)
                             | Q(last_name__icontains=q) | Q(email__icontains=q))
    return users


@dataclass
class UserAgentRow:
    agent: Agent
    cells: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (codename, label, why)


def user_access(*, username: str) -> dict:
    """What one person may do: their groups, the permissions those give on every agent, and
    each agent they hold something on — directly, through a group, or by being named."""
    user = get_object_or_404(User, username=username)
    ct = _agent_ct()
    groups = list(user.groups.all())
    everywhere: dict[str, list[str]] = {}
    if user.is_superuser:
        everywhere = {c: ["superuser"] for c in PERMISSIONS}
    for codename, group_name in (Permission.objects
                                 .filter(Q(group__user=user) | Q(user=user), content_type=ct,
                                         codename__in=PERMISSIONS)
                                 .values_list("codename", "group__name").distinct()):
        everywhere.setdefault(codename, []).append(group_name or "given to them directly")
    why: dict[str, dict[str, list[str]]] = {}
    for object_pk, codename in UserObjectPermission.objects.filter(
            user=user, content_type=ct).values_list("object_pk", "permission__codename"):
        why.setdefault(object_pk, {}).setdefault(codename, []).append("direct")
    for object_pk, codename, group_name in GroupObjectPermission.objects.filter(
            group__in=[g.pk for g in groups], content_type=ct).values_list(
            "object_pk", "permission__codename", "group__name"):
        why.setdefault(object_pk, {}).setdefault(codename, []).append(f"group {group_name}")
    pausable = set(user.pausable_agents.values_list("pk", flat=True))
    agents = Agent.objects.filter(
        Q(pk__in=[int(pk) for pk in why if pk.isdigit()]) | Q(pk__in=pausable)
        | Q(business_owner=user) | Q(process_owner=user) | Q(technical_owner=user)
    ).order_by("name")
    rows = []
    for agent in agents:
        reasons = why.get(str(agent.pk), {})
        agent_named = named_permissions(agent, user, pauser=agent.pk in pausable)
        row = UserAgentRow(agent)
        for codename in PERMISSIONS:
            sources = [agent_named[codename]] if codename in agent_named else []
            sources += [s for s in reasons.get(codename, [])
                        if not (s == "direct" and codename in agent_named)]
            row.cells.append((codename, PERMISSION_LABELS[codename], sources))
        rows.append(row)
    return {"person": user, "groups": groups, "rows": rows,
            "everywhere": [(c, PERMISSION_LABELS[c], everywhere[c]) for c in PERMISSIONS
                           if c in everywhere]}


def bulk_choices() -> dict:
    return {"all_groups": list(Group.objects.order_by("name")),
            "all_agents": list(Agent.objects.order_by("name"))}
