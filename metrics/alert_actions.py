"""Start, from an alert's page, the action the alert recommends.

Each function checks through the service it calls (an autonomy change needs whatever
`autonomy_change_request` asks; a source's maintainer is Admins' to set), links or records the
step on the alert, and writes an `alert.action_started` event, so the alert's history says
who started what.
"""

from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Agent, AutonomyChange, DataSource
from metrics.models import Alert
from portal import audit
from portal.permissions import CHANGE_AGENT, require_agent_perm


def _locked(alert: Alert) -> Alert:
    return (Alert.objects.select_for_update(of=("self",)).select_related("agent")
            .get(pk=alert.pk))


@transaction.atomic
def alert_lower_autonomy(*, actor, alert: Alert) -> AutonomyChange:
    """Open a request to move the alert's agent one autonomy level down, with the alert's
    evidence, and link it to the alert. The change already linked is returned instead."""
    from agents.autonomy import autonomy_change_request, pending_change

    alert = _locked(alert)
    if alert.autonomy_change_id is not None:
        return AutonomyChange.objects.get(pk=alert.autonomy_change_id)
    agent = alert.agent
    if agent is None:
        raise ValidationError("This alert concerns no agent, so there is no autonomy to lower.")
    require_agent_perm(actor, CHANGE_AGENT, agent)
    if agent.autonomy_level <= Agent.Autonomy.values[0]:
        raise ValidationError(f"{agent.name} is already at L{agent.autonomy_level}, the "
                              "lowest level: every action is reviewed.")
    waiting = pending_change(agent)
    if waiting is not None and not waiting.is_raise:
        change = waiting  # a lowering already waits for the owners: link it, ask nothing new
    else:
        change = autonomy_change_request(
            actor=actor, agent=agent, to_level=agent.autonomy_level - 1,
            reason=f"Alert #{alert.pk}: {alert.title}",
            evidence={"alert": {"id": alert.pk, "kind": alert.kind, "title": alert.title,
                                "evidence": alert.evidence}})
    alert.autonomy_change = change
    alert.save(update_fields=["autonomy_change"])
    audit.record(actor=actor, verb="alert.action_started", obj=alert, agent=agent,
                 data={"action": "lower_autonomy", "autonomy_change": change.pk,
                       "to_level": change.to_level})
    return change


def alert_source(alert: Alert) -> DataSource | None:
    """The data source a stale-or-orphan-data alert is about (its subject, or its evidence)."""
    evidence = alert.evidence if isinstance(alert.evidence, dict) else {}
    slug = evidence.get("source") or alert.subject.removeprefix("source:")
    if not isinstance(slug, str) or not slug:
        return None
    return DataSource.objects.select_related("maintainer").filter(slug=slug).first()


@transaction.atomic
def alert_assign_maintainer(*, actor, alert: Alert, maintainer) -> DataSource:
    """Name the maintainer of the source the alert is about (through `data_source_save`)."""
    from agents.services import data_source_save

    alert = _locked(alert)
    source = alert_source(alert)
    if source is None:
        raise ValidationError("This alert names no data source to give a maintainer.")
    if maintainer is None or not maintainer.is_active:
        raise ValidationError({"maintainer": "Choose an active user to maintain the source."})
    source = data_source_save(actor=actor, slug=source.slug, maintainer=maintainer)
    audit.record(actor=actor, verb="alert.action_started", obj=alert, agent=alert.agent,
                 data={"action": "assign_maintainer", "source": source.slug,
                       "maintainer": maintainer.get_username()})
    return source
