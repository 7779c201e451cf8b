"""Who may do what to which agent: one place for every check.

A user holds a permission on an agent when they hold it model-wide (through the Admins or
RevOps group, or as superuser) or on that agent (guardian object permission, given directly
or through a group).
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import get_objects_for_user

VIEW_AGENT = "agents.view_agent"
CHANGE_AGENT = "agents.change_agent"
REVIEW_AGENT = "agents.review_agent"
PAUSE_AGENT = "agents.pause_agent"
ADD_AGENT = "agents.add_agent"
AGENT_PERMISSIONS = (VIEW_AGENT, CHANGE_AGENT, REVIEW_AGENT, PAUSE_AGENT)

# What naming someone on an agent gives them, automatically.
ROLE_PERMISSIONS = {
    "owner": (VIEW_AGENT, CHANGE_AGENT, PAUSE_AGENT),
    "pauser": (VIEW_AGENT, PAUSE_AGENT),
}

MESSAGES = {
    CHANGE_AGENT: "You may not change this agent; ask one of its owners or an admin.",
    REVIEW_AGENT: "You are not a reviewer of this agent.",
    PAUSE_AGENT: "Only the agent's owners, its named pausers and admins may do this.",
    ADD_AGENT: "Only members of Owners or Admins may register agents.",
}


def has_agent_perm(user, perm: str, agent=None) -> bool:
    if user is None or not user.is_active:
        return False
    if user.has_perm(perm):
        return True
    return agent is not None and user.has_perm(perm, agent)


def agent_permissions(user, agent) -> set[str]:
    """Every agent permission `user` holds on `agent`, in two queries at most (for pages)."""
    if user is None or not user.is_active:
        return set()
    held = {perm for perm in AGENT_PERMISSIONS if user.has_perm(perm)}
    if held != set(AGENT_PERMISSIONS):
        codenames = ObjectPermissionChecker(user).get_perms(agent)
        held |= {f"agents.{codename}" for codename in codenames}
    return held


def require_agent_perm(user, perm: str, agent=None) -> None:
    """Raise PermissionDenied unless `user` holds `perm` (on `agent`). None is the system."""
    if user is None:  # management commands and beat tasks act as the system
        return
    if not has_agent_perm(user, perm, agent):
        raise PermissionDenied(MESSAGES.get(perm, "You may not do this."))


def visible_agents(user, queryset=None):
    """The agents `user` may see: all of them for RevOps/Admins, else those with view_agent."""
    from agents.models import Agent

    queryset = Agent.objects.all() if queryset is None else queryset
    if not user.is_authenticated:
        return queryset.none()
    return get_objects_for_user(user, VIEW_AGENT, klass=queryset, accept_global_perms=True)


def get_visible_agent_or_404(user, slug: str, queryset=None):
    """The agent if `user` may see it; 404 otherwise, so hidden agents do not leak their slug."""
    agents = visible_agents(user, queryset)
    try:
        return agents.get(slug=slug)
    except agents.model.DoesNotExist:
        raise Http404("No such agent.") from None
