"""The pattern readings, table-driven: which numbers call for which advice (pure, no DB)."""

import pytest

from metrics import patterns
from metrics.patterns import MetricSeries


def s(key, *values, target=None):
    """A series with the catalogue's layer and direction for `key`."""
    layer, higher = {
        "cycle_time": ("business", False), "conversion_rate": ("business", True),
        "accuracy": ("quality", True), "completeness": ("quality", True),
        "incidents_per_100": ("quality", False), "adoption": ("trust", True),
        "acceptance_rate": ("trust", True), "override_rate": ("trust", False),
        "user_feedback": ("trust", True), "cost_usd": ("cost", False),
        "cost_per_action": ("cost", False), "model_calls": ("cost", False),
    }[key]
    return MetricSeries(key, key.replace("_", " ").capitalize(), layer, higher,
                        tuple(values), target)


CASES = [
    # (why, series, expected codes)
    ("faster and less accurate",
     [s("cycle_time", 10, 9, 8, 6), s("accuracy", 95, 93, 90, 85)],
     ["reduce_autonomy"]),
    ("faster, more incidents (lower is better worsening)",
     [s("cycle_time", 10, 8), s("incidents_per_100", 1, 2)],
     ["reduce_autonomy"]),
    ("faster and quality holds",
     [s("cycle_time", 10, 9, 8, 6), s("accuracy", 95, 95, 96, 96)],
     ["steady"]),
    ("slower and less accurate: not this pattern",
     [s("cycle_time", 6, 8, 9, 10), s("accuracy", 95, 93, 90, 85)],
     ["steady"]),
    ("only the last TREND_WINDOW periods count",
     [s("cycle_time", 30, 10, 10, 10, 10), s("accuracy", 80, 90, 90, 85, 84)],
     ["steady"]),
    ("quality at target, adoption low",
     [s("accuracy", 96, 97, target=95), s("adoption", 20, 22)],
     ["improve_usability"]),
    ("quality at target, acceptance under the owners' target",
     [s("accuracy", 96, 97, target=95), s("acceptance_rate", 80, 81, target=85)],
     ["improve_usability"]),
    ("quality under target, adoption low: usability is not the problem",
     [s("accuracy", 90, 91, target=95), s("adoption", 20, 22)],
     ["steady"]),
    ("no target: quality judged against the default bar",
     [s("accuracy", 88, 89), s("adoption", 20, 22)],
     ["steady"]),
    ("quality fine, adoption fine",
     [s("accuracy", 96, 97), s("adoption", 70, 75)],
     ["steady"]),
    ("trusted, cost per action climbing",
     [s("acceptance_rate", 90, 92), s("override_rate", 5, 4), s("cost_per_action", 0.10, 0.13)],
     ["optimise_cost"]),
    ("trusted, cost up a little only (under COST_MIN_CLIMB)",
     [s("acceptance_rate", 90, 92), s("cost_per_action", 0.100, 0.108)],
     ["steady"]),
    ("cost climbing but overrides high: not trusted",
     [s("acceptance_rate", 90, 92), s("override_rate", 30, 35), s("model_calls", 100, 150)],
     ["steady"]),
    ("two patterns at once, most urgent first",
     [s("cycle_time", 10, 7), s("accuracy", 95, 80), s("acceptance_rate", 90, 92),
      s("cost_usd", 100, 150)],
     ["reduce_autonomy", "optimise_cost"]),
    ("one period only", [s("accuracy", 95), s("cycle_time", 10)], ["too_early"]),
    ("nothing at all", [], ["too_early"]),
    ("a metric without values is ignored",
     [s("cycle_time"), s("accuracy", 90, 91)], ["steady"]),
]


@pytest.mark.parametrize(("why", "series", "expected"), CASES, ids=[c[0] for c in CASES])
def test_reading(why, series, expected):
    found = patterns.readings(series)
    assert [r.code for r in found] == expected, why
    assert all(r.title and r.advice for r in found)


def test_readings_name_their_evidence():
    [reading] = patterns.readings([s("cycle_time", 10, 8), s("accuracy", 95, 80)])
    assert reading.title == "Faster, but worse: reduce autonomy"
    assert reading.evidence == ("Cycle time falling (-20%)", "Accuracy worsening (-16%)")
    assert not reading.neutral


@pytest.mark.parametrize(("values", "higher", "expected"), [
    ((100, 104), True, "flat"),          # under TREND_MIN_CHANGE
    ((100, 110), True, "improving"),
    ((100, 90), True, "worsening"),
    ((100, 90), False, "improving"),     # lower is better
    ((0, 1), True, "improving"),         # from zero: the absolute change counts
    ((5,), True, "flat"),
])
def test_trend(values, higher, expected):
    series = MetricSeries("m", "M", "business", higher, values)
    assert patterns.trend(series) == expected


def test_owner_target_wins_over_the_default_bar():
    assert patterns.meets_bar(s("adoption", 40)) is False          # bar 50
    assert patterns.meets_bar(s("adoption", 40, target=30)) is True
    assert patterns.meets_bar(s("cost_usd", 40)) is None           # no bar, no target
    assert patterns.meets_bar(s("override_rate", 10)) is True      # lower is better, bar 20
