"""Derived metrics: what Steward itself sees in the gate and the inbox, per agent per UTC day.

Written as observations at midnight UTC of their day, source `steward`, through
`metrics.observations.upsert` (which refreshes the rollups). Which day a value belongs to:

- by the day the action was proposed: `actions_proposed`, `share_allowed` / `share_reviewed`
  / `share_blocked` (% of the day's proposals by the gate's decision), `cost_usd` and
  `tokens` (sums of what the proposals reported; no value on a day none reported any),
  `cost_per_action` (the day's cost over its proposals) and `incidents_per_100` (incidents
  reported that day per 100 actions proposed that day; no value on a day without proposals);
- by the day a person decided it (`reviewed_by` set: expiries are nobody's decision):
  `override_rate` (edited or rejected, %), `acceptance_rate` (approved as proposed, %) and
  `review_latency` (median hours from proposal to decision).

A run recomputes whole days from `since` (by default the last
STEWARD_DERIVED_LOOKBACK_DAYS days and today), so a late decision or incident lands on its
day, and a value that no longer holds (an incident deleted) is removed. Every figure comes
from GROUP BY agent, day queries; Python only assembles the groups.
"""

import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Aggregate, Count, F, FloatField, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from metrics import observations, rollups
from metrics.models import Metric, Observation
from metrics.observations import Row
from reviews.models import ActionRequest, Incident

SOURCE = "steward"
KEYS = ("actions_proposed", "share_allowed", "share_reviewed", "share_blocked",
        "override_rate", "acceptance_rate", "review_latency", "incidents_per_100",
        "cost_usd", "cost_per_action", "tokens")

Decision, Status = ActionRequest.Decision, ActionRequest.Status


class MedianHours(Aggregate):
    """PostgreSQL: the median of an interval expression, in hours."""

    template = ("percentile_cont(0.5) WITHIN GROUP (ORDER BY "
                "EXTRACT(EPOCH FROM %(expressions)s)::double precision / 3600.0)")
    output_field = FloatField()


def default_since(now: datetime | None = None) -> datetime:
    days = getattr(settings, "STEWARD_DERIVED_LOOKBACK_DAYS", 3)
    today = (now or timezone.now()).astimezone(UTC).date()
    return _midnight(today - timedelta(days=days))


def compute(since: datetime | None = None) -> int:
    """Recompute the derived metrics of every agent for each UTC day from `since`'s day on
    (None: the lookback; `datetime.min` with a tzinfo: everything). Returns observations
    written (inserted or updated)."""
    since = _midnight((since or default_since()).astimezone(UTC).date())  # whole days only
    metric_ids = dict(Metric.objects.filter(key__in=KEYS).values_list("key", "id"))
    values: dict[tuple[int, date], dict[str, float]] = defaultdict(dict)
    _add_proposals(values, since)
    _add_decisions(values, since)
    _add_incidents(values, since)
    rows = [Row(agent_id=agent_id, metric_id=metric_ids[key], observed_at=_midnight(day),
                value=value, source=SOURCE)
            for (agent_id, day), figures in values.items()
            for key, value in figures.items() if key in metric_ids]
    with transaction.atomic():
        _delete_vanished(rows, since, list(metric_ids.values()))
        written = observations.upsert(rows)
    return written.inserted + written.updated


def _add_proposals(values: dict, since: datetime) -> None:
    proposals = (ActionRequest.objects.filter(created_at__gte=since)
                 .annotate(day=TruncDate("created_at", tzinfo=UTC))
                 .values("agent_id", "day").order_by()
                 .annotate(n=Count("id"),
                           allowed=Count("id", filter=Q(decision=Decision.ALLOW)),
                           reviewed=Count("id", filter=Q(decision=Decision.REVIEW)),
                           blocked=Count("id", filter=Q(decision=Decision.BLOCK)),
                           cost_total=Sum("cost_usd"), costed=Count("cost_usd"),
                           token_total=Sum("tokens"), tokened=Count("tokens")))
    for p in proposals:
        figures, n = values[p["agent_id"], p["day"]], p["n"]
        figures.update(actions_proposed=n, share_allowed=100 * p["allowed"] / n,
                       share_reviewed=100 * p["reviewed"] / n,
                       share_blocked=100 * p["blocked"] / n, incidents_per_100=0.0)
        if p["costed"]:
            cost = float(p["cost_total"])
            figures.update(cost_usd=cost, cost_per_action=cost / n)
        if p["tokened"]:
            figures["tokens"] = p["token_total"]


def _add_decisions(values: dict, since: datetime) -> None:
    decided = ActionRequest.objects.filter(reviewed_at__gte=since, reviewed_by__isnull=False)
    overridden = (Q(status=Status.REJECTED) | Q(edited_changes__isnull=False)
                  | Q(edited_content__isnull=False))
    by_day = (decided.annotate(day=TruncDate("reviewed_at", tzinfo=UTC))
              .values("agent_id", "day").order_by())
    if connection.vendor == "postgresql":
        by_day = by_day.annotate(latency=MedianHours(F("reviewed_at") - F("created_at")))
        latencies = None
    else:  # SQLite has no percentile: the median of each group in Python
        latencies = defaultdict(list)
        for agent_id, created, reviewed in decided.values_list(
                "agent_id", "created_at", "reviewed_at"):
            key = (agent_id, reviewed.astimezone(UTC).date())
            latencies[key].append((reviewed - created).total_seconds() / 3600)
    for d in by_day.annotate(n=Count("id"), overridden=Count("id", filter=overridden)):
        key = (d["agent_id"], d["day"])
        latency = d["latency"] if latencies is None else statistics.median(latencies[key])
        values[key].update(override_rate=100 * d["overridden"] / d["n"],
                           acceptance_rate=100 * (d["n"] - d["overridden"]) / d["n"],
                           review_latency=latency)


def _add_incidents(values: dict, since: datetime) -> None:
    incidents = (Incident.objects.filter(reported_at__gte=since)
                 .annotate(day=TruncDate("reported_at", tzinfo=UTC))
                 .values("agent_id", "day").order_by().annotate(n=Count("id")))
    for i in incidents:
        figures = values.get((i["agent_id"], i["day"]))
        if figures and "actions_proposed" in figures:  # per 100 of nothing is no figure
            figures["incidents_per_100"] = 100 * i["n"] / figures["actions_proposed"]


def _delete_vanished(rows: list[Row], since: datetime, metric_ids: list[int]) -> None:
    """Remove derived observations of the recomputed days that no longer hold."""
    keep = {(r.agent_id, r.metric_id, r.observed_at) for r in rows}
    existing = Observation.objects.filter(source=SOURCE, metric_id__in=metric_ids,
                                          observed_at__gte=since).values_list(
        "id", "agent_id", "metric_id", "observed_at")
    gone = [(pk, agent_id, metric_id, at) for pk, agent_id, metric_id, at in existing
            if (agent_id, metric_id, at) not in keep]
    if gone:
        Observation.objects.filter(pk__in=[pk for pk, *_ in gone]).delete()
        rollups.refresh([(agent_id, metric_id, at, at) for _pk, agent_id, metric_id, at in gone])


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
