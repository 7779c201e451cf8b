"""Warning signs at the gate's limits: the hourly write limit hit, the monthly budget used."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Max, Min

from metrics.detectors.base import WATCHED, Finding, iso, threshold, watched_agents
from metrics.detectors.trends import month_spend
from metrics.models import Alert
from reviews.models import ActionRequest
from reviews.selectors import reason_q

Kind, Severity = Alert.Kind, Alert.Severity
EXAMPLES = 5  # request ids kept as evidence


def blast_radius(*, now: datetime) -> list[Finding]:
    """The gate sent an execute action to review because the agent's hourly write limit
    (`max_writes_per_hour`) was reached, within the last `blast_radius_hours`. Critical: an
    agent set to pause itself on critical alerts is paused."""
    hours = threshold("blast_radius_hours")
    since = now - timedelta(hours=hours)
    held = reason_q("blast_radius")  # JSON containment, or the code's text on SQLite
    hits = (ActionRequest.objects.filter(held, created_at__gte=since, created_at__lte=now)
            .values("agent_id").order_by()
            .annotate(n=Count("id"), first=Min("created_at"), last=Max("created_at")))
    by_agent = {h["agent_id"]: h for h in hits}
    findings = []
    for agent in watched_agents(WATCHED).filter(pk__in=by_agent):
        hit = by_agent[agent.pk]
        examples = [str(public_id) for public_id in ActionRequest.objects.filter(
            held, agent=agent, created_at__gte=since)
            .order_by("-created_at").values_list("public_id", flat=True)[:EXAMPLES]]
        noun = "action" if hit["n"] == 1 else "actions"
        findings.append(Finding(
            kind=Kind.BLAST_RADIUS, agent=agent, severity=Severity.CRITICAL,
            title=f"{agent.name} hit its limit of {agent.max_writes_per_hour} writes an hour",
            message=(f"{hit['n']} execute {noun} went to review because the hourly write limit "
                     f"was reached (last {hit['last']:%Y-%m-%d %H:%M} UTC)."),
            recommendation=("Check why the agent writes this much (a loop, a bulk job, a bad "
                            "input); review the held actions; pause it if it is running away."),
            action="review_backlog",
            evidence={"held": hit["n"], "limit": agent.max_writes_per_hour,
                      "first": iso(hit["first"]), "last": iso(hit["last"]),
                      "window_hours": hours, "requests": examples}))
    return findings


def budget(*, now: datetime) -> list[Finding]:
    """This month's spend at `budget_warning_share` of the monthly budget (warning) or at
    `budget_critical_share` (critical: from there on the gate sends actions to review)."""
    warning = Decimal(str(threshold("budget_warning_share")))
    critical = Decimal(str(threshold("budget_critical_share")))
    agents = list(watched_agents(WATCHED).filter(monthly_cost_budget__gt=0))
    spend = month_spend([a.pk for a in agents], now)
    findings = []
    for agent in agents:
        spent = spend.get(agent.pk) or Decimal(0)
        share = spent / agent.monthly_cost_budget
        if share < warning:
            continue
        over = share >= critical
        findings.append(Finding(
            kind=Kind.BUDGET, agent=agent,
            severity=Severity.CRITICAL if over else Severity.WARNING,
            title=f"{agent.name} has used {share:.0%} of its monthly budget",
            message=(f"${spent:,.2f} spent in {now:%B %Y} of a ${agent.monthly_cost_budget:,.2f} "
                     "budget." + (" Its actions now go to review (reason 'budget')." if over
                                  else "")),
            recommendation=("Review the budget with the business owner: raise it if the value "
                            "justifies it, or cut the agent's model and tool spend."),
            action="review_budget",
            evidence={"month": f"{now:%Y-%m}", "spent_usd": round(float(spent), 2),
                      "budget_usd": float(agent.monthly_cost_budget),
                      "share": round(float(share), 4), "warning_share": float(warning),
                      "critical_share": float(critical)}))
    return findings
