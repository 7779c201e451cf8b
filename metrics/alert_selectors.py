"""Reads for the alert pages, the navigation badge, the dashboard and the agent page.

Who sees which alert: an alert of an agent is seen by whoever may see the agent (a hidden
agent's alerts answer 404 and are left out of every list and count); an alert about no agent
(a reviewer rubber-stamping, the global budget…) is seen by every signed-in user.
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Case, Exists, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Cast
from django.http import Http404
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents.models import Agent
from metrics.models import Alert
from portal.models import AuditEvent
from portal.permissions import visible_agents

ACTIVE = (Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED)
BADGE_LIMIT = 99  # the navigation shows "99+" beyond this
AGENT_PAGE_ALERTS = 5  # on the agent's page; the list has them all
DASHBOARD_ALERTS = 5

# Filter values of `status` besides the three statuses.
STATUS_ACTIVE, STATUS_ALL = "", "all"  # the default: open and acknowledged

User = get_user_model()


def severity_rank():
    """Critical first, then warning, then info (the choices' order is alphabetical in SQL)."""
    return Case(When(severity=Alert.Severity.CRITICAL, then=Value(0)),
                When(severity=Alert.Severity.WARNING, then=Value(1)),
                default=Value(2), output_field=IntegerField())


def alerts_visible_to(user) -> QuerySet[Alert]:
    """Alerts of the agents `user` may see, and every alert about no agent."""
    if not (user.is_authenticated and user.is_active):
        return Alert.objects.none()
    return Alert.objects.filter(Q(agent__isnull=True)
                                | Q(agent__in=visible_agents(user).values("pk")))


@dataclass(frozen=True)
class AlertFilters:
    status: str = STATUS_ACTIVE  # "", "all", or one Alert.Status
    severity: str = ""
    kind: str = ""
    agent: str = ""  # slug


def alert_list(*, user, filters: AlertFilters) -> QuerySet[Alert]:
    """The visible alerts, filtered; most severe first, then the most recently seen."""
    alerts = alerts_visible_to(user).select_related("agent", "acknowledged_by", "resolved_by")
    if filters.status == STATUS_ACTIVE:
        alerts = alerts.filter(status__in=ACTIVE)
    elif filters.status != STATUS_ALL:
        alerts = alerts.filter(status=filters.status)
    if filters.severity:
        alerts = alerts.filter(severity=filters.severity)
    if filters.kind:
        alerts = alerts.filter(kind=filters.kind)
    if filters.agent:
        alerts = alerts.filter(agent__slug=filters.agent)
    return alerts.annotate(rank=severity_rank()).order_by("rank", "-last_seen", "-id")


def alert_for_user(*, user, pk: int) -> Alert:
    """One alert with what its page shows, if `user` may see it; 404 otherwise."""
    alert = (alerts_visible_to(user)
             .select_related("agent", "agent__business_owner", "agent__process_owner",
                             "agent__technical_owner", "acknowledged_by", "resolved_by",
                             "autonomy_change", "autonomy_change__requested_by")
             .filter(pk=pk).first())
    if alert is None:
        raise Http404("No such alert.")
    return alert


def alert_history(alert: Alert) -> QuerySet[AuditEvent]:
    """The alert's audit events (raised, acknowledged, resolved, reopened…), oldest first."""
    return AuditEvent.objects.filter(
        verb__startswith="alert.", object_type=Alert._meta.label_lower,
        object_id=str(alert.pk)).order_by("id")


def agent_alerts(*, agent: Agent, limit: int = AGENT_PAGE_ALERTS) -> list[Alert]:
    """The agent's open and acknowledged alerts for its page (who sees the agent sees them)."""
    return list(Alert.objects.filter(agent=agent, status__in=ACTIVE)
                .annotate(rank=severity_rank()).order_by("rank", "-last_seen", "-id")[:limit])


def dashboard_alerts(*, user, limit: int = DASHBOARD_ALERTS) -> list[Alert]:
    """The most pressing open alerts `user` may see (acknowledged ones have someone on them)."""
    return list(alerts_visible_to(user).filter(status=Alert.Status.OPEN)
                .select_related("agent").annotate(rank=severity_rank())
                .order_by("rank", "-last_seen", "-id")[:limit])


def agent_choices(*, user) -> list[tuple[str, str]]:
    """The agents the filter offers: those the user may see that have had an alert."""
    return list(visible_agents(user).filter(alerts__isnull=False).distinct()
                .order_by("name").values_list("slug", "name"))


# --- the navigation badge: one query ---------------------------------------------------------

def _visible_condition(user) -> Q:
    """`alerts_visible_to` as one condition that costs no query of its own: the badge is on
    every page, where Django's and guardian's permission checks would add up to four. A test
    checks that both agree for every role."""
    if user.is_superuser:
        return Q()
    view_agent = Permission.objects.filter(codename="view_agent",
                                           content_type__app_label="agents",
                                           content_type__model="agent").values("pk")
    groups = User.groups.through.objects.filter(user_id=user.pk).values("group_id")
    holds_globally = (
        Exists(User.user_permissions.through.objects.filter(
            user_id=user.pk, permission_id__in=view_agent))
        | Exists(Group.permissions.through.objects.filter(
            group_id__in=groups, permission_id__in=view_agent)))
    # guardian keeps the object's key as text
    by_user = (UserObjectPermission.objects.filter(user_id=user.pk, permission_id__in=view_agent)
               .values(agent_pk=Cast("object_pk", IntegerField())))
    by_group = (GroupObjectPermission.objects
                .filter(group_id__in=groups, permission_id__in=view_agent)
                .values(agent_pk=Cast("object_pk", IntegerField())))
    return (Q(agent__isnull=True) | holds_globally
            | Q(agent_id__in=by_user) | Q(agent_id__in=by_group))


def open_alert_count(*, user, limit: int = BADGE_LIMIT) -> int:
    """Open alerts `user` may see (acknowledged ones have someone on them), counted up to
    `limit + 1` in one query. Kept on the user object: the badge and the dashboard count once
    per request."""
    if not (user.is_authenticated and user.is_active):
        return 0
    cached = getattr(user, "_steward_alert_count", None)
    if cached is None:
        cached = (Alert.objects.filter(_visible_condition(user), status=Alert.Status.OPEN)
                  .order_by()[:limit + 1].count())
        user._steward_alert_count = cached
    return cached


def alert_badge(user) -> str:
    """The navigation's badge text: "" for none, "99+" beyond 99."""
    count = open_alert_count(user=user)
    if not count:
        return ""
    return f"{BADGE_LIMIT}+" if count > BADGE_LIMIT else str(count)
