"""Warning signs in the registry: stale or orphan data, unclear ownership, autonomy raised
without evidence."""

from datetime import datetime

from agents.autonomy import has_figures
from agents.models import Agent, AutonomyChange
from agents.services import NEW_AGENT_MAX_AUTONOMY
from metrics.detectors.base import ACTIVE, WATCHED, Finding, iso, watched_agents
from metrics.models import Alert
from portal.models import AuditEvent

Kind, Severity = Alert.Kind, Alert.Severity


# --- stale or orphan data ----------------------------------------------------------------------

def stale_data(*, now: datetime) -> list[Finding]:
    """Per agent and declared source: past its max age, not approved, or nobody (active)
    maintaining it."""
    findings = []
    agents = watched_agents(ACTIVE).prefetch_related("sources__maintainer")
    for agent in agents:
        for source in agent.sources.all():
            problems = []
            if not source.approved:
                problems.append("not approved (the gate blocks actions that use it)")
            if source.is_stale(now):
                age = ("never refreshed" if source.refreshed_at is None else
                       f"last refreshed {source.refreshed_at:%Y-%m-%d %H:%M} UTC")
                problems.append(f"stale: {age}, older than its maximum age of "
                                f"{source.max_age}")
            maintainer = source.maintainer
            if maintainer is None or not maintainer.is_active:
                problems.append("without a maintainer" if maintainer is None else
                                f"maintained by {maintainer.get_username()}, who is inactive")
            if not problems:
                continue
            findings.append(Finding(
                kind=Kind.STALE_DATA, agent=agent, subject=f"source:{source.slug}",
                severity=Severity.WARNING,
                title=f"{agent.name} relies on {source.name}, which is "
                      + ("unapproved" if not source.approved else
                         "stale" if source.is_stale(now) else "unmaintained"),
                message=f"{source.name} is " + "; ".join(problems) + ".",
                recommendation=("Name an active maintainer for the source, have them refresh "
                                "and approve it, or remove it from the agent."),
                action="assign_maintainer",
                evidence={"source": source.slug, "approved": source.approved,
                          "stale": source.is_stale(now),
                          "refreshed_at": iso(source.refreshed_at),
                          "max_age_seconds": (int(source.max_age.total_seconds())
                                              if source.max_age else None),
                          "maintainer": maintainer.get_username() if maintainer else None,
                          "maintainer_active": bool(maintainer and maintainer.is_active)}))
    return findings


# --- unclear ownership -------------------------------------------------------------------------

ROLES = (("business_owner", "business owner"), ("process_owner", "process owner"),
         ("technical_owner", "technical owner"))


def unclear_ownership(*, now: datetime) -> list[Finding]:
    """An agent in pilot or live with an owner role empty, an owner who is inactive, or
    nobody active who can pause it (owners and named pausers)."""
    findings = []
    agents = (watched_agents(ACTIVE)
              .select_related("business_owner", "process_owner", "technical_owner")
              .prefetch_related("pausers"))
    for agent in agents:
        missing = [label for field, label in ROLES if getattr(agent, field) is None]
        inactive = [f"{label} {getattr(agent, field).get_username()}" for field, label in ROLES
                    if getattr(agent, field) is not None and not getattr(agent, field).is_active]
        can_pause = {u.pk for u in (*agent.owners.values(), *agent.pausers.all())
                     if u is not None and u.is_active}
        if not missing and not inactive and can_pause:
            continue
        said = []
        if missing:
            said.append("no " + ", no ".join(missing))
        if inactive:
            said.append("inactive " + ", ".join(inactive))
        if not can_pause:
            said.append("nobody active who can pause it")
        findings.append(Finding(
            kind=Kind.UNCLEAR_OWNERSHIP, agent=agent,
            severity=Severity.WARNING if can_pause else Severity.CRITICAL,
            title=f"Nobody clearly owns {agent.name}" if missing or not can_pause
            else f"An owner of {agent.name} has left",
            message=f"{agent.name} is {agent.status} with " + "; ".join(said) + ".",
            recommendation=("Name an active business, process and technical owner, and at "
                            "least one person who can pause the agent."),
            action="assign_owner",
            evidence={"missing": missing, "inactive": inactive,
                      "people_who_can_pause": len(can_pause)}))
    return findings


# --- autonomy without evidence -----------------------------------------------------------------

def autonomy_without_evidence(*, now: datetime) -> list[Finding]:
    """The agent's current level was reached by a raise that no approved AutonomyChange with
    metric figures backs (an edit before changes existed, a direct database write), or it
    started above L2 and no such change backs that level."""
    agents = {a.pk: a for a in watched_agents(WATCHED)}
    # the latest event that set each agent's autonomy level
    last_set: dict[int, AuditEvent] = {}
    for event in (AuditEvent.objects.filter(agent_id__in=agents, verb="agent.changed",
                                            data__changes__has_key="autonomy_level")
                  .order_by("agent_id", "-id")):
        last_set.setdefault(event.agent_id, event)
    changes = {c.pk: c for c in AutonomyChange.objects.filter(
        agent_id__in=agents, status=AutonomyChange.Status.APPROVED)}
    findings = []
    for agent_id, agent in agents.items():
        level = agent.autonomy_level
        event = last_set.get(agent_id)
        backing = None
        if event is not None:
            old, new = event.data["changes"]["autonomy_level"]
            if new != level:  # set since without a trace in the trail: judge the level alone
                event = None
            elif new <= old:
                continue  # a lowering needs no evidence
            else:
                backing = changes.get(event.data.get("autonomy_change"))
        if event is None:
            if level <= NEW_AGENT_MAX_AUTONOMY:
                continue
            backing = next((c for c in changes.values()
                            if c.agent_id == agent_id and c.to_level == level and has_figures(c)),
                           None)
        if backing is not None and has_figures(backing):
            continue
        findings.append(_unbacked(agent, event, backing))
    return findings


def _unbacked(agent: Agent, event: AuditEvent | None, backing: AutonomyChange | None) -> Finding:
    if event is not None:
        old, new = event.data["changes"]["autonomy_level"]
        how = (f"was raised from L{old} to L{new} by {event.actor_label} on "
               f"{event.created_at:%Y-%m-%d}")
        how += (" through a change without quality or trust figures" if backing is not None
                else " without an approved autonomy change")
    else:
        how = f"runs at L{agent.autonomy_level} without an approved autonomy change"
    return Finding(
        kind=Kind.AUTONOMY_WITHOUT_EVIDENCE, agent=agent, severity=Severity.WARNING,
        title=f"{agent.name} runs at L{agent.autonomy_level} without evidence",
        message=f"{agent.name} {how}.",
        recommendation=("Lower the agent to the level its evidence supports, then request the "
                        "higher level as an autonomy change with its quality and trust figures."),
        action="lower_autonomy",
        evidence={"level": agent.autonomy_level,
                  "event": event.pk if event is not None else None,
                  "changed_at": iso(event.created_at) if event is not None else None,
                  "changed_by": event.actor_label if event is not None else None,
                  "autonomy_change": backing.pk if backing is not None else None})
