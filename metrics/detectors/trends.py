"""Warning signs in the numbers: speed up while quality falls, good work little used, cost
drifting up, overrides spiking. The first three read weekly rollups through the same pattern
helpers as the scorecards (metrics.patterns); the override spike counts decisions directly, so
it fires within the hour instead of after the week."""

import calendar
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from metrics import patterns
from metrics.detectors.base import ACTIVE, WATCHED, Finding, pct, threshold, watched_agents
from metrics.models import Alert, Metric, Rollup, Target
from metrics.selectors import WEEK, reporting_periods, shift
from reviews.models import ActionRequest

Kind, Severity = Alert.Kind, Alert.Severity


def weekly_series(agent_ids: list[int], *, today: date, weeks: int = patterns.TREND_WINDOW
                  ) -> tuple[list[date], dict[int, dict[str, patterns.MetricSeries]]]:
    """The last `weeks` complete weeks (oldest first) and, per agent, each metric's series."""
    current, _previous = reporting_periods(WEEK, today)
    periods = [shift(current, WEEK, -n) for n in range(weeks - 1, -1, -1)]
    metrics = {m.pk: m for m in Metric.objects.all()}
    values: dict[int, dict[int, dict[date, float]]] = defaultdict(lambda: defaultdict(dict))
    for agent_id, metric_id, start, value in Rollup.objects.filter(
            agent_id__in=agent_ids, grain=WEEK, period_start__in=periods).values_list(
            "agent_id", "metric_id", "period_start", "value"):
        values[agent_id][metric_id][start] = value
    targets = {(t.agent_id, t.metric_id): t
               for t in Target.objects.filter(agent_id__in=agent_ids)}
    result: dict[int, dict[str, patterns.MetricSeries]] = {}
    for agent_id, by_metric in values.items():
        series = {}
        for metric_id, by_period in by_metric.items():
            metric, target = metrics[metric_id], targets.get((agent_id, metric_id))
            series[metric.key] = patterns.MetricSeries(
                metric.key, metric.name, metric.layer, metric.higher_is_better,
                tuple(by_period[p] for p in periods if p in by_period),
                target.target if target else None)
        result[agent_id] = series
    return periods, result


def _figure(series: patterns.MetricSeries) -> dict:
    change = patterns.relative_change(series)
    return {"metric": series.key, "name": series.name, "values": list(series.values),
            "change": round(change, 4) if change is not None else None,
            "bar": patterns.bar(series)}


def _today(now: datetime) -> date:
    return timezone.localdate(now)


# --- speed up, quality down --------------------------------------------------------------------

def speed_quality(*, now: datetime) -> list[Finding]:
    """Cycle time improving while a quality metric worsens by the threshold or more."""
    min_change = threshold("speed_quality_min_change")
    agents = list(watched_agents(ACTIVE))
    periods, series = weekly_series([a.pk for a in agents], today=_today(now))
    findings = []
    for agent in agents:
        mine = series.get(agent.pk, {})
        speed = mine.get(patterns.SPEED_KEY)
        if speed is None or patterns.trend(speed, min_change=min_change) != patterns.IMPROVING:
            continue
        worse = [s for s in mine.values() if s.layer == Metric.Layer.QUALITY
                 and patterns.trend(s, min_change=min_change) == patterns.WORSENING]
        if not worse:
            continue
        names = ", ".join(f"{s.name} {pct(100 * patterns.relative_change(s))}" for s in worse)
        findings.append(Finding(
            kind=Kind.SPEED_QUALITY, agent=agent, severity=Severity.WARNING,
            title=f"{agent.name} got faster while its quality fell",
            message=(f"Over the last {len(periods)} weeks {speed.name.lower()} changed "
                     f"{pct(100 * patterns.relative_change(speed))} while {names}."),
            recommendation=("Lower the agent's autonomy by one level (more of its actions go "
                            "to a person) until quality is back at target."),
            action="lower_autonomy",
            evidence={"periods": [p.isoformat() for p in periods], "speed": _figure(speed),
                      "quality": [_figure(s) for s in worse], "min_change": min_change}))
    return findings


# --- adoption low ------------------------------------------------------------------------------

def adoption_low(*, now: datetime) -> list[Finding]:
    """Every quality metric with a bar meets it, while adoption or acceptance is below its bar
    (the owners' target, else patterns.DEFAULT_BARS)."""
    agents = list(watched_agents(ACTIVE))
    periods, series = weekly_series([a.pk for a in agents], today=_today(now))
    findings = []
    for agent in agents:
        mine = {k: s for k, s in series.get(agent.pk, {}).items() if s.values}
        quality = [s for s in mine.values() if s.layer == Metric.Layer.QUALITY
                   and patterns.meets_bar(s) is not None]
        if not quality or not all(patterns.meets_bar(s) for s in quality):
            continue
        low = [mine[k] for k in patterns.USABILITY_KEYS
               if k in mine and patterns.meets_bar(mine[k]) is False]
        if not low:
            continue
        said = ", ".join(f"{s.name} {s.latest:.3g} against {patterns.bar(s):.3g}" for s in low)
        findings.append(Finding(
            kind=Kind.ADOPTION_LOW, agent=agent, severity=Severity.WARNING,
            title=f"{agent.name} does good work that few take up",
            message=f"Quality is at target, but {said} (week of {periods[-1]:%Y-%m-%d}).",
            recommendation=("Improve usability and training: look at how the agent's output "
                            "fits the workflow, and train the people who should use it."),
            action="improve_adoption",
            evidence={"periods": [p.isoformat() for p in periods],
                      "quality": [{"metric": s.key, "name": s.name, "value": s.latest,
                                   "bar": patterns.bar(s)} for s in quality],
                      "low": [{"metric": s.key, "name": s.name, "value": s.latest,
                               "bar": patterns.bar(s)} for s in low]}))
    return findings


# --- cost drift --------------------------------------------------------------------------------

def month_spend(agent_ids: list[int], now: datetime) -> dict[int, Decimal]:
    """This calendar month's spend per agent, as the gate's budget check counts it."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return dict(ActionRequest.objects.filter(agent_id__in=agent_ids, created_at__gte=start,
                                             created_at__lte=now)
                .values_list("agent").annotate(total=Sum("cost_usd")).order_by()
                .values_list("agent", "total"))


def cost_drift(*, now: datetime) -> list[Finding]:
    """Cost per action or weekly cost above its baseline by the threshold (the owners' human
    baseline where set, else the mean of the weeks before), or this month's spend on course
    to pass the budget."""
    ratio = threshold("cost_drift_ratio")
    weeks = int(threshold("cost_baseline_weeks"))
    agents = list(watched_agents(ACTIVE))
    ids = [a.pk for a in agents]
    periods, series = weekly_series(ids, today=_today(now), weeks=weeks + 1)
    baselines = _human_baselines(ids)
    spend = month_spend(ids, now)
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    elapsed_days = (now - now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                    ).total_seconds() / 86400
    findings = []
    for agent in agents:
        drifts = []
        for key in ("cost_per_action", "cost_usd"):
            s = series.get(agent.pk, {}).get(key)
            if s is None or len(s.values) < 2:
                continue
            latest = s.values[-1]
            baseline = baselines.get((agent.pk, key))
            source = "human baseline"
            if baseline is None:
                earlier = s.values[:-1]
                baseline, source = sum(earlier) / len(earlier), f"mean of {len(earlier)} weeks"
            if baseline > 0 and latest > baseline * (1 + ratio):
                drifts.append({"metric": key, "name": s.name, "value": latest,
                               "baseline": round(baseline, 6), "baseline_from": source,
                               "over": round(latest / baseline - 1, 4)})
        projection = None
        budget = agent.monthly_cost_budget
        spent = spend.get(agent.pk) or Decimal(0)
        if (budget and budget > 0 and elapsed_days >= threshold("cost_projection_min_days")
                and spent < budget):
            projected = float(spent) * days_in_month / elapsed_days
            if projected > float(budget):
                projection = {"spent_usd": round(float(spent), 2),
                              "projected_usd": round(projected, 2),
                              "budget_usd": float(budget),
                              "days_elapsed": round(elapsed_days, 1),
                              "days_in_month": days_in_month}
        if not drifts and projection is None:
            continue
        said = [f"{d['name']} {d['value']:.3g} is {pct(100 * d['over'])} above its "
                f"{d['baseline_from']} ({d['baseline']:.3g})" for d in drifts]
        if projection:
            said.append(f"at this pace the month ends at ${projection['projected_usd']:,.2f} "
                        f"of a ${projection['budget_usd']:,.2f} budget")
        findings.append(Finding(
            kind=Kind.COST_DRIFT, agent=agent, severity=Severity.WARNING,
            title=f"{agent.name} is getting dearer",
            message=_sentence("; ".join(said)),
            recommendation=("Optimise model calls (cache, smaller models, fewer retries) and "
                            "remove workflow steps that add no value."),
            action="optimise_cost",
            evidence={"periods": [p.isoformat() for p in periods], "drifts": drifts,
                      "projection": projection, "ratio": ratio}))
    return findings


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _human_baselines(agent_ids: list[int]) -> dict[tuple[int, str], float]:
    return {(agent_id, key): baseline for agent_id, key, baseline in Target.objects.filter(
        agent_id__in=agent_ids, human_baseline__isnull=False,
        metric__key__in=("cost_per_action", "cost_usd")).values_list(
        "agent_id", "metric__key", "human_baseline")}


# --- override spike ----------------------------------------------------------------------------

OVERRIDDEN = (Q(status=ActionRequest.Status.REJECTED) | Q(edited_changes__isnull=False)
              | Q(edited_content__isnull=False))


def override_rates(agent_ids: list[int], since: datetime, until: datetime
                   ) -> dict[int, tuple[int, int]]:
    """{agent id: (decisions, overridden)} by people between the two times (as derived
    metrics count override_rate: edited or rejected)."""
    rows = (ActionRequest.objects.filter(agent_id__in=agent_ids, reviewed_by__isnull=False,
                                         reviewed_at__gte=since, reviewed_at__lt=until)
            .values("agent_id").order_by()
            .annotate(n=Count("id"), overridden=Count("id", filter=OVERRIDDEN)))
    return {r["agent_id"]: (r["n"], r["overridden"]) for r in rows}


def override_spike(*, now: datetime) -> list[Finding]:
    """The last 7 days' override rate far above the 4 weeks before; critical at the hard
    limit (then an agent set to pause itself is paused, and one set to step down does)."""
    ratio, min_points = threshold("override_spike_ratio"), threshold("override_spike_min_points")
    hard_limit, min_n = threshold("override_hard_limit"), int(threshold("override_min_decisions"))
    agents = list(watched_agents(WATCHED))
    ids = [a.pk for a in agents]
    week_ago = now - timedelta(days=7)
    recent = override_rates(ids, week_ago, now)
    trailing = override_rates(ids, week_ago - timedelta(days=28), week_ago)
    findings = []
    for agent in agents:
        n, overridden = recent.get(agent.pk, (0, 0))
        if n < min_n:
            continue
        rate = 100 * overridden / n
        past_n, past_overridden = trailing.get(agent.pk, (0, 0))
        past_rate = 100 * past_overridden / past_n if past_n else None
        spiked = (past_rate is not None and rate >= past_rate * ratio
                  and rate - past_rate >= min_points)
        if not spiked and rate < hard_limit:
            continue
        critical = rate >= hard_limit
        before = (f"{pct(past_rate)} in the four weeks before" if past_rate is not None
                  else "no decisions in the four weeks before")
        findings.append(Finding(
            kind=Kind.OVERRIDE_SPIKE, agent=agent,
            severity=Severity.CRITICAL if critical else Severity.WARNING,
            title=f"Reviewers override {agent.name} {pct(rate)} of the time",
            message=(f"{overridden} of {n} decisions in the last 7 days edited or rejected "
                     f"what the agent proposed ({pct(rate)}), against {before}"
                     + (f"; at or above the hard limit of {pct(hard_limit)}." if critical
                        else ".")),
            recommendation=("Lower the agent's autonomy by one level and find out what changed "
                            "(a prompt, a model, a source) before raising it again."),
            action="lower_autonomy",
            evidence={"decisions": n, "overridden": overridden, "rate": round(rate, 2),
                      "trailing_decisions": past_n,
                      "trailing_rate": round(past_rate, 2) if past_rate is not None else None,
                      "ratio": ratio, "min_points": min_points, "hard_limit": hard_limit,
                      "since": week_ago.isoformat()}))
    return findings
