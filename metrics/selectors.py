"""Reads for the scorecard pages. They read `Rollup` only, never raw observations.

**Which period is "this week".** The scorecards compare the *last complete* period with the
one before it: on a Monday morning, "this week against last week" means the week that just
ended against the week before, not two days of a new week against a full one. Month grain
likewise: the last full calendar month against the month before. The charts end with that
same period.

**Review cadence.** A review is due once per cadence: weekly while the agent is in `pilot`
(whatever its `review_cadence` says: a pilot is watched closely), and at the agent's own
`review_cadence` once `live` (owners set it to monthly when the agent is stable; left at
weekly, a live agent keeps the weekly rhythm). Proposed, paused and retired agents have no
review due. The next review is due one cadence after the last one (or after the agent was
registered, if it was never reviewed); past that day it is overdue.
"""

import calendar
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property

from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django.utils.safestring import SafeString

from agents.models import Agent
from metrics import charts, patterns
from metrics.models import Metric, Rollup, ScorecardReview, Target
from portal.permissions import visible_agents

WEEK, MONTH = Rollup.Grain.WEEK.value, Rollup.Grain.MONTH.value
GRAINS = (WEEK, MONTH)
HISTORY_PERIODS = 12  # how far back the agent charts go: ~a quarter of weeks, a year of months
LAYERS = [(value, label) for value, label in Metric.Layer.choices]
REVIEW_HISTORY = 50


# --- periods ---------------------------------------------------------------------------------

def parse_grain(value: str | None) -> tuple[str, str]:
    """(grain, complaint): an unknown grain falls back to weeks, with a message saying so."""
    if not value or value in GRAINS:
        return value or WEEK, ""
    return WEEK, f"There is no grain “{value[:20]}”: showing weeks (choose week or month)."


def period_start(day: date, grain: str) -> date:
    """The Monday of the ISO week, or the 1st of the month, that `day` falls in."""
    if grain == WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def shift(start: date, grain: str, periods: int) -> date:
    """The period start `periods` periods after (or before, if negative) `start`."""
    if grain == WEEK:
        return start + timedelta(weeks=periods)
    months = start.year * 12 + start.month - 1 + periods
    return date(months // 12, months % 12 + 1, 1)


def reporting_periods(grain: str, today: date) -> tuple[date, date]:
    """(current, previous): the last complete period and the one before it."""
    current = shift(period_start(today, grain), grain, -1)
    return current, shift(current, grain, -1)


def period_label(start: date, grain: str) -> str:
    if grain == WEEK:
        return f"week of {start:%Y-%m-%d}"
    return start.strftime("%B %Y")


def is_period_start(day: date, grain: str) -> bool:
    return period_start(day, grain) == day


# --- numbers ---------------------------------------------------------------------------------

number = charts.number  # how the page and the CSV show a value


# --- cadence ---------------------------------------------------------------------------------

def review_cadence(agent: Agent) -> str | None:
    """week / month / None (no review due): see the module docstring."""
    if agent.status == Agent.Status.PILOT:
        return WEEK
    if agent.status == Agent.Status.LIVE:
        return MONTH if agent.review_cadence == Agent.Cadence.MONTHLY else WEEK
    return None


def review_due(*, agent: Agent, last_review_at: datetime | None) -> date | None:
    cadence = review_cadence(agent)
    if cadence is None:
        return None
    since = timezone.localdate(last_review_at or agent.created_at)
    if cadence == WEEK:
        return since + timedelta(days=7)
    year, month0 = divmod(since.year * 12 + since.month, 12)  # the next month, 0-based
    month = month0 + 1  # one calendar month later, the day clamped to that month's length
    return date(year, month, min(since.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class ReviewState:
    cadence: str | None
    last_at: datetime | None
    last_decision: str
    due: date | None
    overdue: bool

    @property
    def cadence_label(self) -> str:
        return {WEEK: "weekly", MONTH: "monthly"}.get(self.cadence, "none")


def review_state(*, agent: Agent, last_review_at: datetime | None, last_decision: str = "",
                 today: date) -> ReviewState:
    due = review_due(agent=agent, last_review_at=last_review_at)
    return ReviewState(review_cadence(agent), last_review_at, last_decision, due,
                       due is not None and due < today)


# --- the fleet scorecard -----------------------------------------------------------------------

# A headline that moved less than this share of its previous value has not moved: weekly
# noise must not mark a healthy agent as going the wrong way.
NOTICEABLE_CHANGE = 0.03


# Frozen, without slots: cached_property stores into __dict__, so a page that shows a figure
# several times (value, title, CSV) formats it once.
@dataclass(frozen=True)
class Cell:
    """One layer's headline metric for one agent, as the fleet shows it."""

    metric: Metric
    value: float | None
    previous: float | None
    target: float | None
    baseline: float | None

    @cached_property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        change = self.value - self.previous
        # equal values that float arithmetic makes differ by 1e-14 did not change
        return 0.0 if abs(change) <= 1e-9 * max(abs(self.value), 1.0) else change

    @cached_property
    def direction(self) -> str:
        """better / worse / same / "" (no comparison), by the metric's higher_is_better. A move
        under NOTICEABLE_CHANGE of the previous value is noise: "same"."""
        change = self.change
        if change is None:
            return ""
        if change == 0 or abs(change) < abs(self.previous) * NOTICEABLE_CHANGE:
            return "same"
        return "better" if (change > 0) == self.metric.higher_is_better else "worse"

    @cached_property
    def arrow(self) -> str:
        change = self.change
        if change is None:
            return "—"
        return "↑" if change > 0 else "↓" if change < 0 else "→"

    # what the page and the CSV show
    @cached_property
    def value_text(self) -> str:
        return number(self.value)

    @cached_property
    def previous_text(self) -> str:
        return number(self.previous)

    @cached_property
    def change_text(self) -> str:
        change = self.change
        return "" if change is None else ("+" if change > 0 else "") + number(change)

    @cached_property
    def target_text(self) -> str:
        return number(self.target)

    @cached_property
    def baseline_text(self) -> str:
        return number(self.baseline)

    @cached_property
    def target_status(self) -> str:
        """met / missed / no target / no data."""
        if self.target is None:
            return "no target"
        if self.value is None:
            return "no data"
        met = (self.value >= self.target if self.metric.higher_is_better
               else self.value <= self.target)
        return "met" if met else "missed"


@dataclass(frozen=True)
class FleetRow:
    agent: Agent
    cells: list[Cell]
    review: ReviewState
    warnings: list[patterns.Reading] = field(default_factory=list)  # non-neutral readings

    @property
    def wrong_way(self) -> bool:
        """A headline got noticeably worse against the previous period, or the numbers
        together read as a warning pattern (reduce autonomy, improve usability, optimise
        cost) over the last TREND_WINDOW periods."""
        return bool(self.warnings) or any(cell.direction == "worse" for cell in self.cells)


@dataclass(frozen=True)
class FleetScorecard:
    grain: str
    current: date
    previous: date
    headlines: list[Metric]
    rows: list[FleetRow] = field(default_factory=list)

    @property
    def current_label(self) -> str:
        return period_label(self.current, self.grain)

    @property
    def previous_label(self) -> str:
        return period_label(self.previous, self.grain)


def headline_metrics(metrics: Iterable[Metric] | None = None) -> list[Metric]:
    """One per layer, in layer order; a layer without a headline is left out."""
    if metrics is None:
        metrics = Metric.objects.filter(headline=True)
    by_layer = {m.layer: m for m in metrics if m.headline}
    return [by_layer[layer] for layer, _label in LAYERS if layer in by_layer]


def fleet_scorecard(*, user, grain: str, today: date | None = None) -> FleetScorecard:
    """Every agent the user may see (retired ones left out), with its headline metrics for
    the last complete period against the one before. A fixed number of queries, whatever
    the number of agents."""
    today = today or timezone.localdate()
    current, previous = reporting_periods(grain, today)
    metrics = list(Metric.objects.all())
    headlines = headline_metrics(metrics)
    # the periods the pattern readings look at, oldest first; the last two are compared
    periods = [shift(current, grain, -n) for n in range(patterns.TREND_WINDOW - 1, -1, -1)]
    last = ScorecardReview.objects.filter(agent=OuterRef("pk")).order_by("-created_at", "-id")
    agents = list(
        visible_agents(user).exclude(status=Agent.Status.RETIRED)
        .annotate(last_review_at=Subquery(last.values("created_at")[:1]),
                  last_decision=Subquery(last.values("decision")[:1]))
        .order_by("name"))
    ids = [a.id for a in agents]
    # agent id -> metric id -> period -> value
    values: dict[int, dict[int, dict[date, float]]] = defaultdict(lambda: defaultdict(dict))
    for agent_id, metric_id, start, value in Rollup.objects.filter(
            agent_id__in=ids, grain=grain, period_start__in=periods).values_list(
            "agent_id", "metric_id", "period_start", "value"):
        values[agent_id][metric_id][start] = value
    targets = {(t.agent_id, t.metric_id): t for t in Target.objects.filter(agent_id__in=ids)}
    scorecard = FleetScorecard(grain, current, previous, headlines)
    for agent in agents:
        mine = values.get(agent.id, {})
        cells = []
        for metric in headlines:
            by_period = mine.get(metric.id, {})
            target = targets.get((agent.id, metric.id))
            cells.append(Cell(metric, by_period.get(current), by_period.get(previous),
                              target.target if target else None,
                              target.human_baseline if target else None))
        series = []
        for metric in metrics:
            by_period = mine.get(metric.id)
            if by_period:
                target = targets.get((agent.id, metric.id))
                series.append(patterns.MetricSeries(
                    metric.key, metric.name, metric.layer, metric.higher_is_better,
                    tuple(by_period[p] for p in periods if p in by_period),
                    target.target if target else None))
        warnings = [r for r in patterns.readings(series) if not r.neutral]
        scorecard.rows.append(FleetRow(agent, cells, review_state(
            agent=agent, last_review_at=agent.last_review_at,
            last_decision=agent.last_decision or "", today=today), warnings))
    return scorecard


def fleet_csv_rows(scorecard: FleetScorecard) -> Iterable[list[str]]:
    """The fleet table as CSV rows, header first: exactly the figures the page shows."""
    header = ["agent", "slug", "status", "grain", "period_start", "previous_period_start"]
    for metric in scorecard.headlines:
        key = metric.key
        header += [f"{key}", f"{key}_previous", f"{key}_change", f"{key}_target",
                   f"{key}_target_status", f"{key}_human_baseline"]
    header += ["wrong_way", "warnings", "review_cadence", "last_review", "last_decision",
               "review_due", "review_overdue"]
    yield header
    for row in scorecard.rows:
        line = [row.agent.name, row.agent.slug, row.agent.status, scorecard.grain,
                scorecard.current.isoformat(), scorecard.previous.isoformat()]
        for cell in row.cells:
            line += [cell.value_text, cell.previous_text, cell.change_text, cell.target_text,
                     cell.target_status, cell.baseline_text]
        review = row.review
        line += ["yes" if row.wrong_way else "no", "; ".join(r.title for r in row.warnings),
                 review.cadence_label,
                 timezone.localdate(review.last_at).isoformat() if review.last_at else "",
                 review.last_decision, review.due.isoformat() if review.due else "",
                 "yes" if review.overdue else "no"]
        yield line


# --- one agent's scorecard ---------------------------------------------------------------------

@dataclass(frozen=True)
class MetricPanel:
    metric: Metric
    points: list[charts.Point]
    target: float | None
    baseline: float | None
    cell: Cell  # the last complete period against the one before, as on the fleet

    @property
    def chart(self) -> SafeString:
        return charts.line_chart(title=self.metric.name, points=self.points,
                                 unit=self.metric.unit, target=self.target,
                                 baseline=self.baseline)


@dataclass(frozen=True)
class TargetLine:
    metric: Metric
    target: Target | None

    @property
    def target_text(self) -> str:
        return number(self.target.target) if self.target else ""

    @property
    def baseline_text(self) -> str:
        return number(self.target.human_baseline) if self.target else ""


@dataclass(frozen=True)
class AgentScorecard:
    agent: Agent
    grain: str
    current: date
    previous: date
    layers: list[tuple[str, str, list[MetricPanel]]]  # (layer, label, panels with data)
    readings: list[patterns.Reading]
    targets: list[TargetLine]
    reviews: list[ScorecardReview]
    review: ReviewState

    @property
    def current_label(self) -> str:
        return period_label(self.current, self.grain)

    @property
    def has_data(self) -> bool:
        return any(panels for _layer, _label, panels in self.layers)


def agent_scorecard(*, agent: Agent, grain: str, today: date | None = None) -> AgentScorecard:
    """Charts of every metric with data over the last HISTORY_PERIODS complete periods,
    grouped by layer, with the pattern readings, targets and review history (5 queries)."""
    today = today or timezone.localdate()
    current, previous = reporting_periods(grain, today)
    periods = [shift(current, grain, -n) for n in range(HISTORY_PERIODS - 1, -1, -1)]
    metrics = list(Metric.objects.all())
    values: dict[int, dict[date, float]] = defaultdict(dict)
    for metric_id, start, value in Rollup.objects.filter(
            agent=agent, grain=grain, period_start__range=(periods[0], current)).values_list(
            "metric_id", "period_start", "value"):
        values[metric_id][start] = value
    targets = {t.metric_id: t for t in Target.objects.filter(agent=agent)}
    reviews = list(agent.scorecard_reviews.select_related("reviewer")[:REVIEW_HISTORY])

    panels: dict[str, list[MetricPanel]] = defaultdict(list)
    series = []
    for metric in metrics:
        by_period = values.get(metric.pk)
        if not by_period:
            continue
        target = targets.get(metric.pk)
        goal = target.target if target else None
        baseline = target.human_baseline if target else None
        panels[metric.layer].append(MetricPanel(
            metric, [charts.Point(f"{p:%Y-%m-%d}" if grain == WEEK else f"{p:%Y-%m}",
                                  by_period.get(p)) for p in periods],
            goal, baseline,
            Cell(metric, by_period.get(current), by_period.get(previous), goal, baseline)))
        series.append(patterns.MetricSeries(
            metric.key, metric.name, metric.layer, metric.higher_is_better,
            tuple(by_period[p] for p in periods if p in by_period), goal))
    last = reviews[0] if reviews else None
    return AgentScorecard(
        agent=agent, grain=grain, current=current, previous=previous,
        layers=[(layer, label, panels.get(layer, [])) for layer, label in LAYERS],
        readings=patterns.readings(series),
        targets=[TargetLine(m, targets.get(m.pk)) for m in metrics],
        reviews=reviews,
        review=review_state(agent=agent, last_review_at=last.created_at if last else None,
                            last_decision=last.decision if last else "", today=today))
