"""Checking one record of an import: the rules, with every lookup prepared beforehand.

Files and the API push use the same checker, so a value is accepted or refused the same way
whichever way it comes in. The loop over a million rows calls `check()` once per row: no ORM,
only dictionary lookups and a cache of parsed dates (a file repeats the same days).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from math import inf

from agents.models import Agent
from metrics.models import Metric
from portal.permissions import CHANGE_AGENT, VIEW_AGENT, visible_agents

SOURCE_MAX = 60  # Observation.source's max_length
_TIME_CACHE_MAX = 200_000


class RowError(Exception):
    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column, self.message = column, message


@dataclass(frozen=True)
class MetricRule:
    id: int
    name: str
    low: float
    high: float
    range_text: str
    derived: bool


def _shown(value, limit: int = 40) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


class RowChecker:
    """`check(agent, metric, observed_at, value, source)` → (agent id, metric id, observed_at
    (aware, UTC), its text for COPY, value, source), or raises RowError(column, message)."""

    def __init__(self, *, agents: dict[str, int], refused: dict[str, str],
                 metrics: dict[str, MetricRule], refuse_others: str = ""):
        self.agents, self.refused, self.metrics = agents, refused, metrics
        self.refuse_others = refuse_others
        self.times: dict[str, tuple[datetime, str]] = {}

    @classmethod
    def for_user(cls, user) -> "RowChecker":
        """Rows `user` may report: any agent for RevOps and Admins (and the system, None);
        otherwise the agents they may change. Agents they cannot see are simply unknown."""
        everything = dict(Agent.objects.values_list("slug", "id"))
        if user is None or user.has_perm(VIEW_AGENT) or user.has_perm(CHANGE_AGENT):
            return cls(agents=everything, refused={}, metrics=metric_rules())
        from guardian.shortcuts import get_objects_for_user

        visible = set(visible_agents(user).values_list("slug", flat=True))
        allowed = set(get_objects_for_user(user, CHANGE_AGENT, klass=Agent,
                                           accept_global_perms=True)
                      .values_list("slug", flat=True)) & visible
        message = ("You may not report metrics for this agent: it takes the right to change "
                   "it (its owners and Admins have it).")
        return cls(agents={slug: everything[slug] for slug in allowed},
                   refused=dict.fromkeys(visible - allowed, message), metrics=metric_rules())

    @classmethod
    def for_agent(cls, agent: Agent) -> "RowChecker":
        """An agent pushing through the API reports for itself only."""
        return cls(agents={agent.slug: agent.pk}, refused={}, metrics=metric_rules(),
                   refuse_others=f"this token may report only for {agent.slug} (leave "
                                 "agent out, or give its slug).")

    def check(self, agent, metric, observed_at, value, source):
        agent_id = self.agents.get(agent)
        if agent_id is None:
            agent_id = self._agent(agent)
        rule = self.metrics.get(metric)
        if rule is None or rule.derived:
            rule = self._metric(metric, rule)
        when = self.times.get(observed_at)
        if when is None:
            when = self._time(observed_at)
        if value.__class__ is str and "_" not in value:  # a CSV cell (Python reads 1_000)
            try:
                number = float(value)
            except ValueError:
                number = self._number(value)  # raises with the reason
            value = number if number - number == 0 else self._number(value)  # NaN, ±inf
        elif value.__class__ is not float or value - value != 0:
            value = self._number(value)
        if not rule.low <= value <= rule.high:
            raise RowError("value", f"{value:g} is out of range: {rule.name} must be "
                                    f"{rule.range_text}.")
        if source.__class__ is not str or len(source) > SOURCE_MAX or "\x00" in source:
            source = self._source(source)
        return agent_id, rule.id, when[0], when[1], value, source

    # The slow paths: a miss, an odd type, or an error.

    def _agent(self, raw) -> int:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise RowError("agent", "The agent is missing: give the agent's slug.")
        if isinstance(raw, str):
            slug = raw.strip()
            if slug in self.agents:
                return self.agents[slug]
            if slug in self.refused:
                raise RowError("agent", f"Agent {_shown(slug)}: {self.refused[slug]}")
        if self.refuse_others:  # the API: say nothing about whether the slug exists
            raise RowError("agent", f"Agent {_shown(raw)}: {self.refuse_others}")
        raise RowError("agent", f"Unknown agent {_shown(raw)}: use the slug shown on the "
                                "agent's page.")

    def _metric(self, raw, rule: MetricRule | None) -> MetricRule:
        if rule is None:
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                raise RowError("metric", "The metric is missing: give the metric's key.")
            rule = self.metrics.get(raw.strip()) if isinstance(raw, str) else None
            if rule is None:
                raise RowError("metric", f"Unknown metric {_shown(raw)}: use a key from the "
                                         "metric catalogue, e.g. accuracy.")
        if rule.derived:
            raise RowError("metric", f"{rule.name} ({_shown(raw)}) is computed by Steward, "
                                     "not imported.")
        return rule

    def _time(self, raw) -> tuple[datetime, str]:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise RowError("observed_at", "The date is missing: give observed_at as "
                                          "2026-01-05 or 2026-01-05T09:30:00Z.")
        try:
            if not isinstance(raw, str) or len(raw) > 40:
                raise ValueError
            text = raw.strip()
            if len(text) == 10:
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            else:
                moment = datetime.fromisoformat(text)
                moment = (moment.replace(tzinfo=UTC) if moment.tzinfo is None
                          else moment.astimezone(UTC))
        except (ValueError, OverflowError):
            raise RowError("observed_at", f"{_shown(raw)} is not a date or date-time: use ISO "
                                          "8601, e.g. 2026-01-05 or 2026-01-05T09:30:00Z."
                           ) from None
        if len(self.times) > _TIME_CACHE_MAX:
            self.times.clear()
        when = (moment, moment.isoformat())
        if isinstance(raw, str):
            self.times[raw] = when
        return when

    @staticmethod
    def _number(raw) -> float:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise RowError("value", "The value is missing.")
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise RowError("value", f"{_shown(raw)} is not a number.")
        if isinstance(raw, str) and "_" in raw:  # Python reads 1_000; people do not
            raise RowError("value", f"{_shown(raw)} is not a number.")
        try:
            value = float(raw)
        except (ValueError, OverflowError):
            raise RowError("value", f"{_shown(raw)} is not a number.") from None
        if value - value != 0:  # NaN or ±infinity
            raise RowError("value", f"{_shown(raw)} is not a finite number.")
        return value

    @staticmethod
    def _source(raw) -> str:
        if raw is None:
            return ""
        if not isinstance(raw, str):
            raise RowError("source", f"The source must be text, found {_shown(raw)}.")
        if len(raw) > SOURCE_MAX:
            raise RowError("source", f"The source is longer than {SOURCE_MAX} characters.")
        if "\x00" in raw:
            raise RowError("source", "The source must not contain NUL characters.")
        return raw


def metric_rules() -> dict[str, MetricRule]:
    return {m.key: MetricRule(id=m.pk, name=m.name,
                              low=-inf if m.min_value is None else m.min_value,
                              high=inf if m.max_value is None else m.max_value,
                              range_text=m.range_text(), derived=m.derived)
            for m in Metric.objects.all()}
