"""Permission-matrix rows for the alerts pages and autonomy changes (see
tests/permission_rows/__init__.py).

Alerts of an agent follow the agent: hidden → 404. Acknowledge and resolve need change_agent
or pause_agent (owners, pausers, Admins); lowering autonomy and deciding a change need
change_agent; naming a source's maintainer is for Admins (400 here: no maintainer posted).
"""

from django.utils import timezone

from agents.models import Agent, AutonomyChange
from metrics.models import Alert

EXPECTED = {
    ("GET", "alerts:list", None):                [302, 200, 200, 200, 200, 200, 200, 200],
    ("GET", "alerts:detail", "agent"):           [302, 404, 200, 404, 200, 200, 200, 200],
    ("GET", "alerts:detail", "other"):           [302, 404, 404, 200, 404, 404, 200, 200],
    ("POST", "alerts:acknowledge", "agent"):     [302, 404, 403, 404, 302, 302, 403, 302],
    ("POST", "alerts:acknowledge", "other"):     [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "alerts:resolve", "agent"):         [302, 404, 403, 404, 302, 302, 403, 302],
    ("POST", "alerts:resolve", "other"):         [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "alerts:lower-autonomy", "agent"):  [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "alerts:lower-autonomy", "other"):  [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "alerts:maintainer", "agent"):      [302, 404, 403, 404, 403, 403, 403, 400],
    ("POST", "agents:autonomy-request", "agent"):  [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:autonomy-request", "other"):  [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "agents:autonomy-approve", "agent"):  [302, 404, 403, 404, 403, 302, 403, 302],
    ("POST", "agents:autonomy-approve", "other"):  [302, 404, 404, 403, 404, 404, 403, 302],
    ("POST", "agents:autonomy-reject", "agent"):   [302, 404, 403, 404, 403, 302, 403, 302],
}

POST_DATA = {
    "alerts:acknowledge": {"note": "On it."},
    "alerts:resolve": {"note": "Fixed the feed."},
    "agents:autonomy-request": {"to_level": "1", "reason": "Quality fell two weeks running."},
    "agents:autonomy-reject": {"note": "The figures do not show it yet."},
}


def _at_level_two(agent: Agent) -> Agent:
    Agent.objects.filter(pk=agent.pk).update(autonomy_level=2)
    agent.autonomy_level = 2
    return agent


def _alert(agent: Agent, **fields) -> Alert:
    now = timezone.now()
    _at_level_two(agent)
    fields = {"kind": Alert.Kind.SPEED_QUALITY, "severity": Alert.Severity.WARNING,
              "title": f"{agent.name} got faster while accuracy fell",
              "action": "lower_autonomy", **fields}
    return Alert.objects.create(agent=agent, dedupe_key=f"{fields['kind']}:{agent.pk}:",
                                first_seen=now, last_seen=now, opened_at=now, **fields)


def _stale_source_alert(agent: Agent) -> Alert:
    from tests.factories import DataSourceFactory

    source = DataSourceFactory(slug="finance-feed", name="Finance feed")
    return _alert(agent, kind=Alert.Kind.STALE_DATA, subject=source.slug,
                  title="Finance feed has no maintainer", action="assign_maintainer")


def _lowering(agent: Agent) -> AutonomyChange:
    _at_level_two(agent)
    return AutonomyChange.objects.create(agent=agent, from_level=2, to_level=1,
                                         reason="Overrides doubled.")


PART_OF_AGENT = {
    **dict.fromkeys(["alerts:detail", "alerts:acknowledge", "alerts:resolve",
                     "alerts:lower-autonomy"], _alert),
    "alerts:maintainer": _stale_source_alert,
    **dict.fromkeys(["agents:autonomy-approve", "agents:autonomy-reject"], _lowering),
}
# A lowering needs no figures: put the agent at L2 so "to L1" is one.
URL_ARGS = {"agents:autonomy-request": lambda agent: [_at_level_two(agent).slug]}
NOT_IN_TABLE = set()
