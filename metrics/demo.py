"""Demo metrics (`seed_demo`): twelve weeks of observations, targets and human baselines, and
past scorecard reviews for the demo agents, so each scorecard tells one story of the
operating model (DESIGN.md):

- refund-replies (pilot, L2): replies get faster while accuracy slips → reduce autonomy;
- account-research (live, L1): accurate briefs that few reps open → improve usability;
- crm-hygiene (live, L2): trusted fixes, model calls per fix climbing → optimise model calls;
- campaign-segments (pilot, L1): healthy: steady and on target;
- kpi-reporter (paused): fine until the finance feed went stale; no data since the pause.
  Its scorecard review is not due (paused); refund-replies' weekly review is overdue.

The twelve weeks end with the current ISO week (UTC), one value a day at midnight UTC (a few
metrics weekly or three times a week), after the days since the 1st of the first week's month
(so month rollups hold whole months). Deterministic: each series draws its wobble from its own
seeded generator, day by day from the first day, so a value does not depend on the weekday
the seed runs. Idempotent: a second run on the same day writes nothing; a later run moves the
story along so it still ends this week.
"""

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.functions import TruncDate
from django.utils import timezone

from agents.models import Agent
from metrics import observations, rollups
from metrics.models import Metric, Observation, Rollup, ScorecardReview, Target
from portal import audit
from reviews.models import ActionRequest

WEEKS = 12
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
MON_WED_FRI = (0, 2, 4)
MONDAYS = (0,)
# Metrics people report come from "demo". The ones Steward derives from the gate stand in for
# twelve weeks of action requests the demo does not have; they get a source of their own, as
# the hourly derivation owns "steward" and deletes what it no longer computes from its
# lookback days. The scorecard reads both the same way.
DEMO_SOURCE = "demo"
DERIVED_SOURCE = "steward-demo"


@dataclass(frozen=True)
class Series:
    """One metric's story: its level in each of the twelve weeks (oldest first), the daily
    wobble around it (a standard deviation in the metric's unit), the weekdays it is observed
    on (0 = Monday) and the decimals it is written with."""

    weekly: tuple[float, ...]
    noise: float
    days: tuple[int, ...] = EVERY_DAY
    digits: int = 1


def steady(level: float, noise: float, **options) -> Series:
    return Series((level,) * WEEKS, noise, **options)


def ramp(first: float, last: float, noise: float, *, from_week: int = 0, **options) -> Series:
    """`first` until week `from_week`, then a straight line to `last` in the current week."""
    steps = WEEKS - 1 - from_week
    return Series(tuple(first if week <= from_week
                        else first + (last - first) * (week - from_week) / steps
                        for week in range(WEEKS)), noise, **options)


@dataclass(frozen=True)
class Story:
    series: dict[str, Series]  # keys starting with "_" help compute others; not written
    last_week: int = WEEKS - 1  # the last week with data (0-based)


# Numbers that hang together on one day: shares add up to 100, spend is actions × unit cost.
LINKED: dict[str, tuple[tuple[str, ...], Callable[..., float], int]] = {
    "override_rate": (("acceptance_rate",), lambda accepted: 100 - accepted, 1),
    "share_allowed": (("share_reviewed", "share_blocked"),
                      lambda reviewed, blocked: 100 - reviewed - blocked, 1),
    "model_calls": (("actions_proposed", "_calls_per_action"), lambda n, calls: n * calls, 0),
    "cost_usd": (("actions_proposed", "cost_per_action"), lambda n, cost: n * cost, 4),
    "tokens": (("actions_proposed", "_tokens_per_action"), lambda n, tokens: n * tokens, 0),
}

STORIES: dict[str, Story] = {
    # Speed up, quality down → reduce autonomy: from week 6 on, time to first reply falls
    # from 3 hours towards the 1-hour target while accuracy and completeness lose 11 points.
    "refund-replies": Story({
        "cycle_time": ramp(3.1, 1.1, 0.06, from_week=5, digits=2),
        "resolution_rate": ramp(71, 77, 0.8, from_week=5),
        "accuracy": ramp(95, 84, 0.5, from_week=5),
        "completeness": ramp(97, 86, 0.5, from_week=5),
        "policy_compliance": ramp(99.2, 97, 0.2, from_week=5),
        "adoption": ramp(60, 78, 0.6, days=MONDAYS),
        "user_feedback": ramp(4.3, 3.6, 0.05, from_week=5, days=MON_WED_FRI, digits=2),
        "actions_proposed": ramp(110, 150, 5, digits=0),
        "share_reviewed": steady(24, 1.0),
        "share_blocked": steady(1.5, 0.3),
        "acceptance_rate": ramp(90, 76, 0.8, from_week=5),
        "review_latency": steady(2.4, 0.2, digits=2),
        "incidents_per_100": ramp(0.4, 1.8, 0.1, from_week=5, digits=2),
        "cost_per_action": steady(0.0045, 0.0001, digits=5),
        "_calls_per_action": steady(2.0, 0.03, digits=2),
        "_tokens_per_action": steady(1000, 20, digits=0),
    }),
    # Quality high, adoption low → improve usability and training: every brief is right and
    # on time, but only a quarter of the reps open them.
    "account-research": Story({
        "cycle_time": steady(0.16, 0.01, digits=2),  # hours of preparation per meeting
        "accuracy": steady(96.5, 0.4),
        "completeness": steady(98, 0.4),
        "policy_compliance": steady(99.6, 0.15),
        "adoption": steady(26, 0.8, days=MONDAYS),
        "user_feedback": steady(4.6, 0.06, days=MON_WED_FRI, digits=2),
        "actions_proposed": steady(34, 3, digits=0),
        "share_reviewed": steady(93, 0.8),  # L1: every draft is reviewed; reads are not
        "share_blocked": steady(2, 0.3),
        "acceptance_rate": steady(92, 0.8),
        "review_latency": steady(1.2, 0.1, digits=2),
        "incidents_per_100": steady(0.2, 0.05, digits=2),
        "cost_per_action": steady(0.011, 0.0003, digits=5),
        "_calls_per_action": steady(3.0, 0.05, digits=2),
        "_tokens_per_action": steady(2400, 40, digits=0),
    }),
    # Trust high, cost climbing → optimise model calls: reviewers accept 95% of the fixes,
    # while the model calls (and tokens) per fix more than double over the quarter.
    "crm-hygiene": Story({
        "cycle_time": steady(5.0, 0.15, digits=2),
        "accuracy": steady(97.6, 0.2),
        "completeness": steady(98.5, 0.2),
        "policy_compliance": steady(99.7, 0.1),
        "adoption": steady(88, 0.5, days=MONDAYS),
        "user_feedback": steady(4.6, 0.05, days=MON_WED_FRI, digits=2),
        "actions_proposed": steady(420, 12, digits=0),
        "share_reviewed": steady(12, 0.8),
        "share_blocked": steady(1, 0.2),
        "acceptance_rate": steady(95.5, 0.6),
        "review_latency": steady(0.8, 0.08, digits=2),
        "incidents_per_100": steady(0.1, 0.03, digits=2),
        "cost_per_action": ramp(0.0009, 0.0024, 0.00003, digits=5),
        "_calls_per_action": ramp(1.5, 3.6, 0.03, digits=2),
        "_tokens_per_action": ramp(600, 1500, 15, digits=0),
    }),
    # Healthy: steady, on every target.
    "campaign-segments": Story({
        "cycle_time": steady(4.0, 0.1, digits=2),
        "conversion_rate": steady(4.7, 0.08, digits=2),
        "accuracy": steady(93.5, 0.5),
        "completeness": steady(96, 0.5),
        "policy_compliance": steady(99.8, 0.1),
        "adoption": steady(74, 0.6, days=MONDAYS),
        "user_feedback": steady(4.3, 0.05, days=MON_WED_FRI, digits=2),
        "actions_proposed": steady(18, 1, digits=0),
        "share_reviewed": steady(94, 0.8),
        "share_blocked": steady(3, 0.4),
        "acceptance_rate": steady(88, 0.8),
        "review_latency": steady(3.0, 0.2, digits=2),
        "incidents_per_100": steady(0.3, 0.05, digits=2),
        "cost_per_action": steady(0.012, 0.0002, digits=5),
        "_calls_per_action": steady(4.0, 0.05, digits=2),
        "_tokens_per_action": steady(3500, 50, digits=0),
    }),
    # One pack a week (Mondays); last week's quoted stale revenue figures, and it was paused.
    "kpi-reporter": Story({
        "cycle_time": steady(6.0, 0.3, days=MONDAYS, digits=2),
        "accuracy": Series((96, 95.5, 96, 96.5, 96, 95.5, 96, 96, 95.5, 94, 81, 81), 0.3,
                           days=MONDAYS),
        "completeness": steady(97, 0.4, days=MONDAYS),
        "adoption": steady(90, 1, days=MONDAYS),
        "user_feedback": Series((4.4,) * 10 + (3.1, 3.1), 0.05, days=MONDAYS, digits=2),
        "actions_proposed": steady(12, 0.4, days=MONDAYS, digits=0),
        "share_reviewed": steady(96, 0.8, days=MONDAYS),
        "share_blocked": steady(2, 0.3, days=MONDAYS),
        "acceptance_rate": Series((91,) * 10 + (62, 62), 1.0, days=MONDAYS),
        "review_latency": steady(2.0, 0.2, days=MONDAYS, digits=2),
        "incidents_per_100": Series((0,) * 10 + (16.7, 16.7), 0, days=MONDAYS),
        "cost_per_action": steady(0.02, 0.0005, days=MONDAYS, digits=5),
        "_calls_per_action": steady(5.0, 0.1, days=MONDAYS, digits=2),
        "_tokens_per_action": steady(4000, 60, days=MONDAYS, digits=0),
    }, last_week=WEEKS - 2),
}

# (target, human baseline) per agent and metric: the four headline metrics and a few more.
# None on sum metrics (actions, model calls, spend): a week's and a month's sums differ.
TARGETS: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "refund-replies": {
        "cycle_time": (1.0, 4.0), "resolution_rate": (75, 70), "accuracy": (95, 93),
        "completeness": (95, None), "adoption": (75, None), "acceptance_rate": (85, None),
        "user_feedback": (4.2, 4.0), "cost_per_action": (0.006, None)},
    "account-research": {
        "cycle_time": (0.17, 0.75), "accuracy": (92, 90), "completeness": (95, None),
        "adoption": (70, None), "acceptance_rate": (85, None), "user_feedback": (4.2, None),
        "cost_per_action": (0.015, None)},
    "crm-hygiene": {
        "cycle_time": (8, 48), "accuracy": (97, 95), "completeness": (98, 93),
        "adoption": (80, None), "acceptance_rate": (90, None), "user_feedback": (4.2, None),
        "cost_per_action": (0.0015, None)},
    "campaign-segments": {
        "cycle_time": (6, 16), "conversion_rate": (4.6, 4.0), "accuracy": (90, 88),
        "adoption": (70, None), "acceptance_rate": (85, None),
        "cost_per_action": (0.015, None)},
    "kpi-reporter": {
        "cycle_time": (8, 20), "accuracy": (95, 97), "acceptance_rate": (85, None),
        "cost_per_action": (0.03, None)},
}


@dataclass(frozen=True)
class PastReview:
    days_ago: int
    decision: str
    reviewer: str
    notes: str


# Weekly while in pilot, monthly once live (metrics.selectors): refund-replies' last review
# is 16 days old, so its weekly review is overdue; every other one is on time.
REVIEWS: dict[str, tuple[PastReview, ...]] = {
    "refund-replies": (
        PastReview(37, "expand", "paula", "Drafts are right and rarely edited: raised to L2, "
                   "so replies under 500 skip review."),
        PastReview(30, "keep", "paula", "Steady at L2."),
        PastReview(23, "keep", "paula", ""),
        PastReview(16, "keep", "paula", "Replies are faster; accuracy slipped a point. "
                   "Watch it next week."),
    ),
    "account-research": (
        PastReview(50, "keep", "rachel", "Accurate briefs, on time."),
        PastReview(20, "revise", "rachel", "Briefs are accurate but only a quarter of the "
                   "reps open them: put the brief in the meeting invite and run a training "
                   "session."),
    ),
    "crm-hygiene": (
        PastReview(43, "expand", "rachel", "Acceptance above 95% for two months: raised to "
                   "L2 for routine fixes."),
        PastReview(12, "keep", "rachel", "Trusted. Model calls per fix are creeping up: Tim "
                   "to look at the retries."),
    ),
    "campaign-segments": (
        PastReview(17, "keep", "paula", ""),
        PastReview(10, "keep", "paula", "On target."),
        PastReview(3, "keep", "paula", "On target across the board; stays at L1 until the "
                   "web analytics export is approved."),
    ),
    "kpi-reporter": (
        PastReview(40, "keep", "rachel", "Commentary ready every Monday before 9:00."),
    ),
}


@dataclass(frozen=True)
class Seeded:
    inserted: int
    updated: int
    targets: int
    reviews: int

    @property
    def summary(self) -> str:
        if not (self.inserted or self.updated or self.targets or self.reviews):
            return "Metrics: the demo's twelve weeks are up to date."
        return (f"Metrics: {self.inserted} observations added and {self.updated} updated "
                f"(twelve weeks), {self.targets} targets set, {self.reviews} scorecard "
                "reviews recorded.")


def first_monday(today: date) -> date:
    """The Monday that starts the twelve weeks ending with the week of `today`."""
    return today - timedelta(days=today.weekday(), weeks=WEEKS - 1)


def first_day(today: date) -> date:
    """Where the data starts: the 1st of the month of the first Monday, at week 0's level, so
    month rollups start with a whole month (a partial month would halve its sums)."""
    return first_monday(today).replace(day=1)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def story_values(slug: str, story: Story, today: date) -> dict[date, dict[str, float]]:
    """{day: {metric key: value}} from the first day up to `today`, unclamped."""
    start, monday = first_day(today), first_monday(today)
    length = (monday - start).days + WEEKS * 7
    days: dict[date, dict[str, float]] = defaultdict(dict)
    for key, series in story.series.items():
        rng = random.Random(f"{slug}/{key}")
        for index in range(length):
            wobble = rng.gauss(0, series.noise)  # drawn every day, observed or not
            day = start + timedelta(days=index)
            week = max(0, (day - monday).days // 7)  # the days before week 0 are like it
            if day > today or week > story.last_week or day.weekday() not in series.days:
                continue
            days[day][key] = round(series.weekly[week] + wobble, series.digits)
    for numbers in days.values():
        for key, (inputs, formula, digits) in LINKED.items():
            if all(name in numbers for name in inputs):
                numbers[key] = round(formula(*(numbers[name] for name in inputs)), digits)
    return days


def clamp(value: float, metric: Metric) -> float:
    if metric.min_value is not None:
        value = max(value, metric.min_value)
    if metric.max_value is not None:
        value = min(value, metric.max_value)
    return value


def demo_rows(agents: dict[str, Agent], metrics: dict[str, Metric], today: date,
              gate_days: set[tuple[int, date]]) -> list[observations.Row]:
    """The observations of every story. Derived metrics are left out on the days the gate
    saw real actions of the agent: there `metrics.derived` computes them."""
    rows = []
    for slug, agent in agents.items():
        for day, numbers in sorted(story_values(slug, STORIES[slug], today).items()):
            for key, value in numbers.items():
                metric = metrics.get(key)
                if metric is None or (metric.derived and (agent.pk, day) in gate_days):
                    continue
                rows.append(observations.Row(
                    agent_id=agent.pk, metric_id=metric.pk, observed_at=midnight(day),
                    value=clamp(value, metric),
                    source=DERIVED_SOURCE if metric.derived else DEMO_SOURCE))
    return rows


def seed(*, reset: bool = False, now: datetime | None = None) -> Seeded:
    """Write the demo's observations, targets and reviews where they are missing or differ.
    Targets changed in the portal are kept unless `reset`; reviews are history, written once
    per agent."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    with transaction.atomic():
        agents = {agent.slug: agent for agent in Agent.objects.filter(slug__in=STORIES)}
        metrics = {metric.key: metric for metric in Metric.objects.all()}
        inserted, updated = _write_observations(agents, metrics, today)
        targets = _set_targets(agents, metrics, reset=reset)
        reviews = _record_reviews(agents, now=now)
    return Seeded(inserted, updated, targets, reviews)


def _write_observations(agents: dict[str, Agent], metrics: dict[str, Metric],
                        today: date) -> tuple[int, int]:
    since = midnight(first_day(today))
    gate_days = set(ActionRequest.objects.filter(agent__in=agents.values(), created_at__gte=since)
                    .annotate(day=TruncDate("created_at", tzinfo=UTC))
                    .values_list("agent_id", "day").distinct())
    rows = demo_rows(agents, metrics, today, gate_days)
    existing = {
        (agent_id, metric_id, observed_at, source): value
        for agent_id, metric_id, observed_at, source, value in Observation.objects.filter(
            agent__in=agents.values(), observed_at__gte=since,
            source__in=(DEMO_SOURCE, DERIVED_SOURCE),
        ).values_list("agent_id", "metric_id", "observed_at", "source", "value")}
    changed = [row for row in rows if existing.get(
        (row.agent_id, row.metric_id, row.observed_at, row.source)) != row.value]
    if not changed:  # a second run on the same day: nothing to write, no rollup to redo
        return 0, 0
    written = observations.upsert(changed, refresh_rollups=False)
    # Only the buckets the demo touched: a database that also holds big imports does not pay
    # for a full rebuild on every `make run`.
    rollups.refresh(observations.ranges(changed))
    audit.record(actor=None, verb="metric.demo_observations_written", data={
        "inserted": written.inserted, "updated": written.updated,
        "agents": sorted(agents), "from": since.date(), "to": today, "because": "demo data"})
    return written.inserted, written.updated


def _set_targets(agents: dict[str, Agent], metrics: dict[str, Metric], *, reset: bool) -> int:
    existing = {(t.agent_id, t.metric_id): t
                for t in Target.objects.filter(agent__in=agents.values())}
    written = 0
    for slug, agent in agents.items():
        for key, (goal, baseline) in TARGETS[slug].items():
            metric = metrics.get(key)
            if metric is None:
                continue
            target = existing.get((agent.pk, metric.pk))
            before = {"target": target.target if target else None,
                      "human_baseline": target.human_baseline if target else None}
            after = {"target": goal, "human_baseline": baseline}
            if before == after or (target is not None and not reset):
                continue  # what an owner set in the portal survives a restart
            Target.objects.update_or_create(agent=agent, metric=metric, defaults=after)
            audit.record(actor=None, verb="metric.target_set", obj=agent, agent=agent, data={
                "metric": key, "changes": audit.diff(before, after), "because": "demo data"})
            written += 1
    return written


def review_period(agent: Agent, day: date) -> tuple[str, date]:
    """The period a review on `day` looks back on: the last complete week (pilot, or a
    weekly cadence) or the last complete month."""
    weekly = (agent.status == Agent.Status.PILOT
              or agent.review_cadence == Agent.Cadence.WEEKLY)
    if weekly:
        return Rollup.Grain.WEEK, day - timedelta(days=day.weekday(), weeks=1)
    return Rollup.Grain.MONTH, (day.replace(day=1) - timedelta(days=1)).replace(day=1)


def _record_reviews(agents: dict[str, Agent], *, now: datetime) -> int:
    reviewed = set(ScorecardReview.objects.filter(agent__in=agents.values())
                   .values_list("agent_id", flat=True).distinct())
    people = {user.username: user for user in get_user_model().objects.filter(
        username__in={r.reviewer for past in REVIEWS.values() for r in past})}
    written = 0
    for slug, agent in agents.items():
        if agent.pk in reviewed:
            continue  # reviews are history: written once, never rewritten
        for past in REVIEWS[slug]:
            at = now - timedelta(days=past.days_ago)
            grain, start = review_period(agent, at.astimezone(UTC).date())
            review = ScorecardReview.objects.create(
                agent=agent, grain=grain, period_start=start, decision=past.decision,
                notes=past.notes, reviewer=people.get(past.reviewer))
            # created_at is auto_now_add: back-date it to when the review took place
            ScorecardReview.objects.filter(pk=review.pk).update(created_at=at)
            audit.record(actor=None, verb="scorecard.reviewed", obj=review, agent=agent,
                         data={"decision": past.decision, "grain": grain,
                               "period_start": start, "reviewer": past.reviewer,
                               "reviewed_at": at, "because": "demo data"})
            written += 1
    return written


def seed_targets_and_reviews(slugs: list[str], *, now: datetime | None = None) -> None:
    """The targets and past reviews of some demo agents, ahead of the rest of the demo:
    seed_demo records them while those agents are still in pilot, as their rollout plans
    need them before they may go live (agents.rollout_demo). `seed` then leaves them be."""
    now = now or timezone.now()
    with transaction.atomic():
        agents = {agent.slug: agent for agent in Agent.objects.filter(slug__in=slugs)
                  if agent.slug in STORIES}
        _set_targets(agents, {metric.key: metric for metric in Metric.objects.all()},
                     reset=False)
        _record_reviews(agents, now=now)
