"""The demo metrics (metrics.demo, loaded by seed_demo): twelve weeks ending this week, each
pattern of the operating model on its own agent, idempotent and deterministic."""

import io
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from statistics import mean

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from metrics import demo, derived, patterns, selectors
from metrics.models import Metric, Observation, Rollup, ScorecardReview, Target
from portal.management.commands.seed_demo import Command as SeedDemo
from portal.models import AuditEvent
from reviews.models import ActionRequest

pytestmark = pytest.mark.django_db
# A Wednesday: the current week (index 11) holds three days, the weeks before are complete.
NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
LAST_FULL_WEEK = 10


def load_registry() -> dict[str, Agent]:
    """The demo people and registry, without seed_demo's metrics (those are seeded at NOW)."""
    command = SeedDemo(stdout=io.StringIO())
    command.create_users()
    command.load_registry(now=NOW)  # live agents pass through pilot to complete their plans
    return {agent.slug: agent for agent in Agent.objects.all()}


@pytest.fixture(scope="class")
def seeded(django_db_setup, django_db_blocker) -> dict[str, Agent]:
    """Seeded once for a class of tests that only read; rolled back after the class."""
    with django_db_blocker.unblock(), transaction.atomic():
        agents = load_registry()
        demo.seed(now=NOW)
        yield agents
        transaction.set_rollback(True)


@pytest.fixture
def fresh(db) -> dict[str, Agent]:
    """Seeded for one test that changes things."""
    agents = load_registry()
    demo.seed(now=NOW)
    return agents


def weekly(agent: Agent, key: str) -> list[float | None]:
    """The twelve weeks of one metric, aggregated as the metric says (mean or sum)."""
    metric = Metric.objects.get(key=key)
    start = demo.first_monday(NOW.date())
    weeks = defaultdict(list)
    for observed_at, value in Observation.objects.filter(agent=agent, metric=metric
                                                         ).values_list("observed_at", "value"):
        weeks[(observed_at.date() - start).days // 7].append(value)
    how = sum if metric.aggregation == Metric.Aggregation.SUM else mean
    return [how(weeks[w]) if weeks[w] else None for w in range(demo.WEEKS)]


def target(agent: Agent, key: str) -> Target:
    return Target.objects.get(agent=agent, metric__key=key)


def state() -> dict:
    counts = {model._meta.label: model.objects.count()
              for model in (Observation, Target, ScorecardReview, Rollup, AuditEvent)}
    counts["values"] = sorted(Observation.objects.values_list(
        "agent_id", "metric_id", "observed_at", "source", "value"))
    counts["rollups"] = sorted(Rollup.objects.values_list(
        "agent_id", "metric_id", "grain", "period_start", "value", "count"))
    counts["targets"] = sorted(Target.objects.values_list(
        "agent_id", "metric_id", "target", "human_baseline"))
    return counts


class TestTheDemoStory:
    """Read-only checks of the story, seeded once at NOW."""

    def test_twelve_weeks_end_with_the_current_week(self, seeded):
        first = Observation.objects.earliest("observed_at").observed_at
        last = Observation.objects.latest("observed_at").observed_at
        # twelve weeks from Monday 7 September, after the days since the 1st of that month
        assert demo.first_monday(NOW.date()) == date(2026, 9, 7)
        assert first == datetime(2026, 9, 1, tzinfo=UTC)
        assert last == datetime(2026, 11, 25, tzinfo=UTC)  # today: nothing in the future
        for slug, agent in seeded.items():
            keys = set(agent.observations.values_list("metric__key", flat=True))
            assert {"cycle_time", "accuracy", "acceptance_rate", "cost_per_action"} <= keys, slug
        # paused after last week's wrong figures: kpi-reporter has no data this week
        kpi = seeded["kpi-reporter"]
        assert weekly(kpi, "accuracy")[-1] is None
        assert weekly(kpi, "accuracy")[LAST_FULL_WEEK] is not None
        # people's numbers come from the demo, the gate's from Steward's own derivation
        sources = set(Observation.objects.values_list("metric__derived", "source"))
        assert sources == {(False, demo.DEMO_SOURCE), (True, demo.DERIVED_SOURCE)}


    def test_values_stay_in_each_metrics_range_and_hang_together(self, seeded):
        for metric in Metric.objects.all():
            values = list(metric.observations.values_list("value", flat=True))
            if metric.min_value is not None:
                assert min(values, default=metric.min_value) >= metric.min_value, metric.key
            if metric.max_value is not None:
                assert max(values, default=metric.max_value) <= metric.max_value, metric.key
        by_day = defaultdict(dict)
        for agent_id, key, observed_at, value in Observation.objects.values_list(
                "agent_id", "metric__key", "observed_at", "value"):
            by_day[(agent_id, observed_at)][key] = value
        for day in by_day.values():
            if "acceptance_rate" in day:
                assert day["acceptance_rate"] + day["override_rate"] == pytest.approx(100)
                assert (day["share_allowed"] + day["share_reviewed"] + day["share_blocked"]
                        == pytest.approx(100))
                assert day["cost_usd"] == pytest.approx(
                    day["actions_proposed"] * day["cost_per_action"], abs=1e-4)
            if "user_feedback" in day:
                assert 1 <= day["user_feedback"] <= 5


    def test_refund_replies_gets_faster_while_quality_drops(self, seeded):
        agent = seeded["refund-replies"]
        cycle_time, accuracy = weekly(agent, "cycle_time"), weekly(agent, "accuracy")
        completeness = weekly(agent, "completeness")
        recent = cycle_time[5:]  # falling week after week, the current week included
        assert all(later < earlier for earlier, later in zip(recent, recent[1:], strict=False))
        assert cycle_time[LAST_FULL_WEEK] < 0.6 * mean(cycle_time[:5])
        assert accuracy[LAST_FULL_WEEK] < mean(accuracy[:5]) - 5
        assert completeness[LAST_FULL_WEEK] < mean(completeness[:5]) - 5
        assert accuracy[LAST_FULL_WEEK] < target(agent, "accuracy").target


    def test_account_research_is_accurate_but_little_used(self, seeded):
        agent = seeded["account-research"]
        goal = target(agent, "accuracy").target
        assert all(value >= goal for value in weekly(agent, "accuracy"))
        assert all(value >= target(agent, "completeness").target
                   for value in weekly(agent, "completeness"))
        adoption_goal = target(agent, "adoption").target
        assert all(value < adoption_goal - 30 for value in weekly(agent, "adoption"))


    def test_crm_hygiene_is_trusted_while_model_calls_climb(self, seeded):
        agent = seeded["crm-hygiene"]
        assert all(value >= target(agent, "acceptance_rate").target
                   for value in weekly(agent, "acceptance_rate"))
        assert all(value >= 4.5 for value in weekly(agent, "user_feedback"))
        calls = weekly(agent, "model_calls")[:LAST_FULL_WEEK + 1]  # weekly sums: full weeks only
        cost = weekly(agent, "cost_per_action")
        assert all(later > earlier for earlier, later in zip(calls, calls[1:], strict=False))
        assert all(later > earlier for earlier, later in zip(cost, cost[1:], strict=False))
        assert calls[-1] > 2 * calls[0]
        assert cost[LAST_FULL_WEEK] > target(agent, "cost_per_action").target > cost[0]


    def test_campaign_segments_is_steady_and_on_target(self, seeded):
        agent = seeded["campaign-segments"]
        for key in ("cycle_time", "accuracy", "acceptance_rate", "cost_per_action",
                    "conversion_rate", "adoption"):
            values, goal = weekly(agent, key), target(agent, key).target
            higher_is_better = Metric.objects.get(key=key).higher_is_better
            assert all(v >= goal if higher_is_better else v <= goal for v in values), key
            full = values[:LAST_FULL_WEEK + 1]
            assert max(full) - min(full) < 0.05 * mean(full), key


    @pytest.mark.parametrize(("grain", "last_complete"), [
        ("week", date(2026, 11, 16)), ("month", date(2026, 10, 1))])
    def test_the_scorecard_reads_each_pattern_from_the_rollups(self, seeded, grain,
                                                               last_complete):
        """What the agent scorecard says: its readings over the rollups up to the last
        complete period, with the owners' targets (months too: they start whole)."""
        readings = {}
        for slug, agent in seeded.items():
            values = defaultdict(list)
            for key, value in Rollup.objects.filter(
                    agent=agent, grain=grain, period_start__lte=last_complete).order_by(
                    "period_start").values_list("metric__key", "value"):
                values[key].append(value)
            goals = dict(Target.objects.filter(agent=agent).values_list("metric__key",
                                                                        "target"))
            series = [patterns.MetricSeries(m.key, m.name, m.layer, m.higher_is_better,
                                            tuple(values[m.key]), goals.get(m.key))
                      for m in Metric.objects.filter(key__in=values)]
            readings[slug] = [reading.code for reading in patterns.readings(series)]
        assert readings["refund-replies"][0] == patterns.REDUCE_AUTONOMY
        assert readings["account-research"] == [patterns.IMPROVE_USABILITY]
        assert readings["crm-hygiene"] == [patterns.OPTIMISE_COST]
        assert readings["campaign-segments"] == [patterns.STEADY]

    def test_rollups_hold_the_weekly_aggregates(self, seeded):
        agent, metric = seeded["crm-hygiene"], Metric.objects.get(key="model_calls")
        rollup_values = list(Rollup.objects.filter(
            agent=agent, metric=metric, grain="week",
            period_start__gte=demo.first_monday(NOW.date()),
        ).order_by("period_start").values_list("value", flat=True))
        assert rollup_values == pytest.approx(weekly(agent, "model_calls"))


    def test_past_reviews_leave_one_agent_overdue(self, seeded):
        today = NOW.date()
        overdue = {}
        for slug, agent in seeded.items():
            last = agent.scorecard_reviews.order_by("-created_at").first()
            assert last.created_at < NOW
            assert selectors.is_period_start(last.period_start, last.grain)
            overdue[slug] = selectors.review_state(agent=agent, last_review_at=last.created_at,
                                                   today=today).overdue
        assert overdue == {"refund-replies": True, "account-research": False, "crm-hygiene": False,
                           "campaign-segments": False, "kpi-reporter": False}
        assert ScorecardReview.objects.filter(decision="revise").exists()


def test_values_do_not_depend_on_the_day_the_seed_runs():
    story = demo.STORIES["refund-replies"]
    monday, sunday = date(2026, 11, 23), date(2026, 11, 29)
    early = demo.story_values("refund-replies", story, monday)
    late = demo.story_values("refund-replies", story, sunday)
    assert max(early) == monday and max(late) == sunday
    assert all(late[day] == numbers for day, numbers in early.items())
    assert early == demo.story_values("refund-replies", story, monday)  # seeded: same story


def test_seeding_again_changes_nothing(fresh):
    before = state()
    assert demo.seed(now=NOW) == demo.Seeded(0, 0, 0, 0)
    assert demo.seed(now=NOW + timedelta(hours=3), reset=True) == demo.Seeded(0, 0, 0, 0)
    assert state() == before
    # the next day adds that day and rewrites nothing
    assert demo.seed(now=NOW + timedelta(days=1)).updated == 0


def test_seed_demo_loads_the_metrics_once_and_leaves_gate_days_to_the_derivation(settings):
    settings.DEBUG = True
    out = io.StringIO()
    call_command("seed_demo", stdout=out)  # its demo proposals go through the real gate
    assert "observations added" in out.getvalue()
    today = timezone.now().astimezone(UTC).date()
    assert Observation.objects.latest("observed_at").observed_at.date() == today
    assert Rollup.objects.exists() and Target.objects.exists()
    before = state()
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "twelve weeks are up to date" in out.getvalue()
    assert state() == before

    # crm-hygiene proposed actions today: today's derived numbers are the derivation's
    agent = Agent.objects.get(slug="crm-hygiene")
    assert ActionRequest.objects.filter(agent=agent, created_at__date=today).exists()
    derived_today = Observation.objects.filter(
        agent=agent, metric__derived=True, observed_at=demo.midnight(today))
    # seed_demo ran the derivation: today's figures are its own, none is the demo's
    assert set(derived_today.values_list("source", flat=True)) == {"steward"}
    yesterday = demo.midnight(today - timedelta(days=1))
    assert Observation.objects.filter(agent=agent, metric__key="cost_per_action",
                                      observed_at=yesterday, source=demo.DERIVED_SOURCE).exists()
    # the hourly derivation recounts its lookback days and leaves the demo's history alone
    derived.compute()
    assert Observation.objects.filter(agent=agent, metric__key="cost_per_action",
                                      observed_at=yesterday, source=demo.DERIVED_SOURCE).exists()
    # ... and what the derivation computes for today stays when the demo is seeded again
    cost_today = derived_today.filter(metric__key="cost_per_action")
    cost_today.update(value=0.0015)
    assert demo.seed() == demo.Seeded(0, 0, 0, 0)
    assert cost_today.get().value == 0.0015


def test_a_target_changed_in_the_portal_survives_until_reset(fresh):
    agent = fresh["refund-replies"]
    Target.objects.filter(agent=agent, metric__key="accuracy").update(target=90)
    assert demo.seed(now=NOW).targets == 0
    assert target(agent, "accuracy").target == 90
    assert demo.seed(now=NOW, reset=True).targets == 1
    assert target(agent, "accuracy").target == 95
    assert AuditEvent.objects.filter(verb="metric.target_set", agent=agent).count() == (
        len(demo.TARGETS["refund-replies"]) + 1)
