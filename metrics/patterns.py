"""The pattern readings of the operating model: what an agent's numbers together say to do.

Pure functions over rollup series and targets (no ORM, no I/O), so the scorecard page and,
later, the alerting can read the same patterns:

- speed up but quality down          → reduce autonomy;
- quality at target, adoption or acceptance low → improve usability and training;
- trust high but cost climbing       → optimise model calls and workflow steps;
- none of these                      → a neutral reading.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# A trend compares the latest value with the one TREND_WINDOW - 1 periods before it (or the
# oldest there is): a month of weeks is long enough to ignore one odd week, short enough to
# catch a slide while it is still small.
TREND_WINDOW = 4
# A change under 5% of the earlier value is noise, not a trend (absolute, when that is 0).
TREND_MIN_CHANGE = 0.05
# Cost has to climb by 10% before it is called climbing: spend is noisier than rates.
COST_MIN_CLIMB = 0.10
# Where owners set no target, these bars say what "high" or "low" means (percent metrics are
# 0–100). An owner's target always wins over the bar.
DEFAULT_BARS: dict[str, float] = {
    "accuracy": 90.0,
    "completeness": 90.0,
    "policy_compliance": 95.0,
    "adoption": 50.0,
    "acceptance_rate": 70.0,
    "override_rate": 20.0,
    "user_feedback": 4.0,
}
SPEED_KEY = "cycle_time"
USABILITY_KEYS = ("adoption", "acceptance_rate")
TRUST_KEYS = ("acceptance_rate", "adoption", "override_rate", "user_feedback")

IMPROVING, WORSENING, FLAT = "improving", "worsening", "flat"


@dataclass(frozen=True)
class MetricSeries:
    """One metric of one agent: its values per period, oldest first (periods without data
    left out), and what the owners aim for."""

    key: str
    name: str
    layer: str
    higher_is_better: bool
    values: tuple[float, ...]
    target: float | None = None

    @property
    def latest(self) -> float | None:
        return self.values[-1] if self.values else None


@dataclass(frozen=True)
class Reading:
    code: str  # reduce_autonomy, improve_usability, optimise_cost, steady, too_early
    title: str
    advice: str
    evidence: tuple[str, ...] = field(default_factory=tuple)

    @property
    def neutral(self) -> bool:
        return self.code in (STEADY, TOO_EARLY)


REDUCE_AUTONOMY, IMPROVE_USABILITY, OPTIMISE_COST = (
    "reduce_autonomy", "improve_usability", "optimise_cost")
STEADY, TOO_EARLY = "steady", "too_early"


def relative_change(series: MetricSeries) -> float | None:
    """(latest − earlier) / |earlier| over the trend window; None with fewer than 2 values."""
    window = series.values[-TREND_WINDOW:]
    if len(window) < 2:
        return None
    earlier, latest = window[0], window[-1]
    if earlier == 0:
        return latest - earlier
    return (latest - earlier) / abs(earlier)


def trend(series: MetricSeries, *, min_change: float = TREND_MIN_CHANGE) -> str:
    """improving / worsening / flat, by the metric's direction."""
    change = relative_change(series)
    if change is None or abs(change) < min_change:
        return FLAT
    return IMPROVING if (change > 0) == series.higher_is_better else WORSENING


def bar(series: MetricSeries) -> float | None:
    return series.target if series.target is not None else DEFAULT_BARS.get(series.key)


def meets_bar(series: MetricSeries) -> bool | None:
    """At or past the target (or the default bar); None when there is no bar or no data."""
    level, latest = bar(series), series.latest
    if level is None or latest is None:
        return None
    return latest >= level if series.higher_is_better else latest <= level


def _pct(change: float | None) -> str:
    return "" if change is None else f" ({change * 100:+.0f}%)"


def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _level(series: MetricSeries) -> str:
    what = "target" if series.target is not None else "bar"
    return f"{series.name} {_num(series.latest)} against a {what} of {_num(bar(series))}"


def _speed_up_quality_down(by_key: Mapping[str, MetricSeries]) -> Reading | None:
    speed = by_key.get(SPEED_KEY)
    if speed is None or trend(speed) != IMPROVING:
        return None
    worse = [s for s in by_key.values() if s.layer == "quality" and trend(s) == WORSENING]
    if not worse:
        return None
    return Reading(
        REDUCE_AUTONOMY, "Faster, but worse: reduce autonomy",
        "The agent works faster while its quality slips. Lower its autonomy level (more "
        "actions to review) until quality is back at target.",
        (f"{speed.name} falling{_pct(relative_change(speed))}",
         *(f"{s.name} worsening{_pct(relative_change(s))}" for s in worse)))


def _quality_fine_usage_low(by_key: Mapping[str, MetricSeries]) -> Reading | None:
    quality = [s for s in by_key.values() if s.layer == "quality" and meets_bar(s) is not None]
    if not quality or not all(meets_bar(s) for s in quality):
        return None
    low = [by_key[k] for k in USABILITY_KEYS if k in by_key and meets_bar(by_key[k]) is False]
    if not low:
        return None
    return Reading(
        IMPROVE_USABILITY, "Good work, little used: improve usability and training",
        "Quality is at target, but people do not take up the agent's work. Look at how it "
        "fits the workflow and train the people who should use it.",
        (*(f"{_level(s)} (met)" for s in quality), *(f"{_level(s)} (low)" for s in low)))


def _trusted_but_costly(by_key: Mapping[str, MetricSeries]) -> Reading | None:
    trust = [by_key[k] for k in TRUST_KEYS if k in by_key and meets_bar(by_key[k]) is not None]
    if not trust or not all(meets_bar(s) for s in trust):
        return None
    climbing = [s for s in by_key.values() if s.layer == "cost"
                and trend(s, min_change=COST_MIN_CLIMB) == WORSENING]
    if not climbing:
        return None
    return Reading(
        OPTIMISE_COST, "Trusted, but getting dearer: optimise model calls and workflow steps",
        "People trust the agent's work, and its cost keeps climbing. Cut model calls (cache, "
        "smaller models, fewer retries) and remove workflow steps that add no value.",
        (*(f"{_level(s)} (met)" for s in trust),
         *(f"{s.name} climbing{_pct(relative_change(s))}" for s in climbing)))


RULES = (_speed_up_quality_down, _quality_fine_usage_low, _trusted_but_costly)


def readings(series: Sequence[MetricSeries]) -> list[Reading]:
    """Every pattern that applies, most urgent first; one neutral reading when none does."""
    by_key = {s.key: s for s in series if s.values}
    found = [reading for rule in RULES if (reading := rule(by_key)) is not None]
    if found:
        return found
    if not any(len(s.values) >= 2 for s in by_key.values()):
        return [Reading(TOO_EARLY, "Too early to read a pattern",
                        "There are fewer than two periods of data; the reading needs a trend.")]
    return [Reading(STEADY, "No warning pattern",
                    "Speed, quality, trust and cost do not pull against each other: keep the "
                    "current autonomy and review again at the next period.")]
