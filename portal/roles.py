"""Global roles are Django groups; per-agent rights are guardian object permissions.

RevOps and Admins hold model-wide permissions, so they see every agent. Everybody else sees
only the agents they hold `view_agent` on (owners and pausers get theirs automatically).
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

ADMINS, REVOPS, REVIEWERS, OWNERS = "Admins", "RevOps", "Reviewers", "Owners"

ROLE_GROUPS: dict[str, list[str]] = {
    ADMINS: ["agents.view_agent", "agents.add_agent", "agents.change_agent",
             "agents.review_agent", "agents.pause_agent", "portal.view_auditevent"],
    REVOPS: ["agents.view_agent", "portal.view_auditevent"],
    REVIEWERS: [],
    OWNERS: ["agents.add_agent"],
}


def ensure_role_groups(sender=None, apps=global_apps, verbosity: int = 0, **kwargs) -> None:
    """Create the role groups with their global permissions (idempotent; runs after migrate)."""
    for label in ("portal", "agents"):
        create_permissions(global_apps.get_app_config(label), verbosity=0, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.append(Permission.objects.get(content_type__app_label=app_label,
                                                 codename=codename))
        group.permissions.add(*wanted)


def user_in_group(user, name: str) -> bool:
    return user.is_authenticated and user.groups.filter(name=name).exists()
