"""Reads for the dashboard and the audit page."""

from dataclasses import dataclass
from datetime import date, datetime, time

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from agents.models import Agent
from portal.models import AuditEvent
from portal.permissions import visible_agents
from reviews.digests import pending_for_user
from reviews.incident_selectors import unresolved_incident_count


def dashboard_summary(*, user) -> dict:
    """Counts by status, agents that need someone, and recent activity on visible agents."""
    agents = visible_agents(user)
    by_status = dict(agents.values_list("status").annotate(n=Count("id")).order_by())
    attention = (agents.filter(
        Q(status=Agent.Status.PAUSED)
        | Q(business_owner__isnull=True) | Q(process_owner__isnull=True)
        | Q(technical_owner__isnull=True)
        | Q(status__in=[Agent.Status.PILOT, Agent.Status.LIVE], guardrails__isnull=True)
    ).exclude(status=Agent.Status.RETIRED)
        .select_related("paused_by").distinct().order_by("name")[:10])
    recent = (AuditEvent.objects.filter(agent__in=agents.values("pk"))
              .select_related("agent").order_by("-id")[:8])
    return {
        "by_status": [(status, label, by_status.get(status, 0))
                      for status, label in Agent.Status.choices],
        "total": sum(by_status.values()),
        "by_level": dict(agents.exclude(status=Agent.Status.RETIRED)
                         .values_list("autonomy_level").annotate(n=Count("id")).order_by()),
        "attention": list(attention),
        "recent": list(recent),
        **waiting_for_user(user=user),
    }


WAITING_SHOWN_UP_TO = 99  # beyond it the dashboard says "99+" rather than count every row


def waiting_for_user(*, user) -> dict:
    """What waits for `user`: pending items they may decide (counted up to 99, then "99+")
    and the unresolved incidents they may resolve."""
    pending = pending_for_user(user=user).order_by()[:WAITING_SHOWN_UP_TO + 1].count()
    return {
        "waiting_reviews": min(pending, WAITING_SHOWN_UP_TO),
        "waiting_reviews_more": pending > WAITING_SHOWN_UP_TO,
        "waiting_incidents": unresolved_incident_count(user=user),
    }


@dataclass(frozen=True)
class AuditFilters:
    agent: str = ""  # slug
    actor: str = ""  # actor label (username, agent:slug or system)
    verb: str = ""
    since: date | None = None
    until: date | None = None


def audit_events(*, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Audit events, newest first (callers page them by id: `id < before`)."""
    events = AuditEvent.objects.select_related("agent").order_by("-id")
    if filters.agent:
        events = events.filter(agent__slug=filters.agent)
    if filters.actor:
        events = events.filter(actor_label=filters.actor)
    if filters.verb:
        events = events.filter(verb__startswith=filters.verb)
    tz = timezone.get_current_timezone()
    if filters.since:
        events = events.filter(created_at__gte=datetime.combine(filters.since, time.min, tz))
    if filters.until:
        events = events.filter(created_at__lte=datetime.combine(filters.until, time.max, tz))
    return events


def audit_verbs() -> list[str]:
    return list(AuditEvent.objects.order_by().values_list("verb", flat=True).distinct())
