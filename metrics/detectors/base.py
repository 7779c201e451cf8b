"""What every detector shares: the finding it returns, its thresholds, the agents it watches."""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from agents.models import Agent
from metrics.alerts import dedupe_key

# The defaults of settings.STEWARD_ALERTS (README, "Alerts"); a key missing there falls back
# to these, so a deployment overrides only what it needs.
DEFAULTS: dict[str, float] = {
    # speed up, quality down: cycle time and a quality metric each moved this share (of the
    # earlier value) over the last four complete weeks, in opposite directions
    "speed_quality_min_change": 0.05,
    # cost drift: cost per action or weekly cost this share above its baseline (the owners'
    # human baseline, else the mean of the weeks before)...
    "cost_drift_ratio": 0.20,
    "cost_baseline_weeks": 4,
    # ...or this month's spend projected past the budget after this many days of the month
    "cost_projection_min_days": 3,
    # override spike: the last 7 days' override rate over its trailing 4-week average by this
    # factor and by at least these points, on at least this many decisions; critical (and a
    # pause, where the agent is set to) at or above the hard limit
    "override_spike_ratio": 2.0,
    "override_spike_min_points": 10.0,
    "override_hard_limit": 50.0,
    "override_min_decisions": 10,
    # blast radius: the hourly write limit was hit within this many hours
    "blast_radius_hours": 24,
    # review backlog: pending items this many past their due time...
    "backlog_min_overdue": 1,
    # ...or the last 7 days' median review latency up this share on the 7 days before, and
    # above this many hours
    "backlog_latency_rise": 0.5,
    "backlog_latency_min_hours": 4.0,
    # incidents unreviewed: still `open` (nobody investigating) after this many hours
    "incident_open_hours": 48,
    # rubber-stamping: a reviewer approving more than this share, as proposed, of at least
    # this many decisions in the last days, with a median gap between decisions this short
    "rubber_stamp_min_items": 50,
    "rubber_stamp_approval_share": 0.98,
    "rubber_stamp_max_median_seconds": 30,
    "rubber_stamp_days": 7,
    # ...and sampled items left unchecked this many hours past their due time
    "sample_overdue_hours": 0,
    # budget: share of the monthly cost budget spent (warning, critical)
    "budget_warning_share": 0.8,
    "budget_critical_share": 1.0,
}


def threshold(name: str) -> float:
    return getattr(settings, "STEWARD_ALERTS", {}).get(name, DEFAULTS[name])


# Agents that act (or were stopped while acting): proposed ones do nothing yet, retired ones
# never will again.
WATCHED = (Agent.Status.PILOT, Agent.Status.LIVE, Agent.Status.PAUSED)
ACTIVE = (Agent.Status.PILOT, Agent.Status.LIVE)


def watched_agents(statuses=WATCHED):
    return Agent.objects.filter(status__in=statuses).order_by("id")


@dataclass(frozen=True)
class Finding:
    """One warning sign seen now: what metrics.alerts.alert_raise needs."""

    kind: str
    agent: Agent | None
    severity: str
    title: str
    message: str
    recommendation: str
    action: str
    evidence: dict = field(default_factory=dict)
    subject: str = ""

    @property
    def key(self) -> str:
        return dedupe_key(self.kind, self.agent, self.subject)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def pct(value: float) -> str:
    return f"{value:.0f}%" if abs(value) >= 10 else f"{value:.1f}%"
