"""Reads for the alert pages, the navigation badge, the dashboard and the agent page.

Who sees which alert: an alert of an agent is seen by whoever may see the agent (a hidden
agent's alerts answer 404 and are left out of every list and count); an alert about no agent
(a reviewer rubber-stamping, the global budget…) is seen by every signed-in user.
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
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

# `alerts_visible_to` as one statement with no query of its own, for the badge on every page:
# Django's and guardian's permission checks would add up to four, and building this query
# with the ORM took ~3 ms of Python a page (the inbox benchmark). A test pins it against
# `alerts_visible_to` for every role, direct and group object permissions.
_OPEN_COUNT_SQL = f"""
WITH view_agent AS (
    SELECT p.id FROM {Permission._meta.db_table} p
      JOIN django_content_type ct ON ct.id = p.content_type_id
     WHERE p.codename = 'view_agent' AND ct.app_label = 'agents' AND ct.model = 'agent'),
my_groups AS (SELECT group_id FROM {User.groups.through._meta.db_table} WHERE user_id = %(user)s)
SELECT count(*) FROM (
    SELECT 1 FROM {Alert._meta.db_table} a
     WHERE a.status = %(status)s AND (
           %(superuser)s
        OR a.agent_id IS NULL
        OR EXISTS (SELECT 1 FROM {User.user_permissions.through._meta.db_table}
                    WHERE user_id = %(user)s AND permission_id IN (SELECT id FROM view_agent))
        OR EXISTS (SELECT 1 FROM {Group.permissions.through._meta.db_table}
                    WHERE group_id IN (SELECT group_id FROM my_groups)
                      AND permission_id IN (SELECT id FROM view_agent))
        OR a.agent_id IN (SELECT CAST(object_pk AS integer)
                            FROM {UserObjectPermission._meta.db_table}
                           WHERE user_id = %(user)s
                             AND permission_id IN (SELECT id FROM view_agent))
        OR a.agent_id IN (SELECT CAST(object_pk AS integer)
                            FROM {GroupObjectPermission._meta.db_table}
                           WHERE group_id IN (SELECT group_id FROM my_groups)
                             AND permission_id IN (SELECT id FROM view_agent)))
     LIMIT %(limit)s) visible"""


def open_alert_count(*, user, limit: int = BADGE_LIMIT) -> int:
    """Open alerts `user` may see (acknowledged ones have someone on them), counted up to
    `limit + 1` in one query. Kept on the user object: the badge and the dashboard count once
    per request."""
    if not (user.is_authenticated and user.is_active):
        return 0
    cached = getattr(user, "_steward_alert_count", None)
    if cached is None:
        with connection.cursor() as cursor:
            cursor.execute(_OPEN_COUNT_SQL, {"user": user.pk, "status": Alert.Status.OPEN,
                                             "superuser": user.is_superuser,
                                             "limit": limit + 1})
            cached = cursor.fetchone()[0]
        user._steward_alert_count = cached
    return cached


def alert_badge(user) -> str:
    """The navigation's badge text: "" for none, "99+" beyond 99."""
    count = open_alert_count(user=user)
    if not count:
        return ""
    return f"{BADGE_LIMIT}+" if count > BADGE_LIMIT else str(count)
