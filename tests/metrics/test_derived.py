"""Derived metrics from real gate decisions and real reviews: each value per agent and UTC
day, the lookback, recomputation, and queries that do not grow with the number of actions."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agents import services as agent_services
from metrics import derived
from metrics.models import Observation, Rollup
from metrics.tasks import derived_metrics_compute
from reviews import gate
from reviews import services as review_services
from reviews.incidents import incident_report
from reviews.models import ActionRequest, Incident
from tests.factories import UserFactory, make_live_agent

pytestmark = pytest.mark.django_db

TIDY = {"system": "crm", "operation": "update_deal", "kind": "execute", "target": "deal 4411",
        "summary": "Tidy deal 4411", "changes": {"close_date": "2026-12-01"},
        "confidence": 0.9, "sources": ["crm-records"]}
STAGE = {**TIDY, "summary": "Mark deal 4411 won", "changes": {"stage": "won"}}  # review
BEYOND_ACCESS = {**TIDY, "system": "helpdesk", "kind": "execute"}  # blocked


@pytest.fixture
def agent(db):
    return make_live_agent()


@pytest.fixture
def token(agent):
    token, _secret = agent_services.agent_token_create(actor=None, agent=agent, name="t")
    return token


@pytest.fixture
def rita(agent):
    user = UserFactory(username="rita")
    assign_perm("agents.view_agent", user, agent)
    assign_perm("agents.review_agent", user, agent)
    return user


def _today() -> datetime:
    return datetime.combine(timezone.now().astimezone(UTC).date(), time.min, tzinfo=UTC)


def _propose(token, proposal: dict, at: datetime, **extra) -> ActionRequest:
    action = gate.propose(token=token, proposal={**proposal, **extra}).action
    ActionRequest.objects.filter(pk=action.pk).update(created_at=at)  # when it was proposed
    action.refresh_from_db()
    return action


def _decided_at(action: ActionRequest, at: datetime) -> None:
    ActionRequest.objects.filter(pk=action.pk).update(reviewed_at=at)


def _report(actor, agent, at: datetime) -> Incident:
    incident = incident_report(actor=actor, agent=agent, category="wrong_record",
                               severity="medium", description="Wrong deal closed.")
    Incident.objects.filter(pk=incident.pk).update(reported_at=at)
    return incident


def derived_values(agent, day: datetime) -> dict[str, float]:
    return dict(Observation.objects.filter(agent=agent, observed_at=day, source="steward")
                .values_list("metric__key", "value"))


@pytest.fixture
def busy_day(agent, token, rita):
    """Two days ago: 10 proposals (5 allowed, 4 reviewed, 1 blocked); of the reviewed one
    approved as proposed after 2 h, one edited after 4 h, one rejected after 10 h, one
    expired; two incidents reported."""
    day = _today() - timedelta(days=2)
    start = day + timedelta(hours=8)
    allowed = [_propose(token, TIDY, start + timedelta(minutes=n), cost_usd=0.02, tokens=100,
                        idempotency_key=f"tidy-{n}") for n in range(5)]
    reviewed = [_propose(token, STAGE, start, cost_usd=0.05, tokens=300,
                         idempotency_key=f"stage-{n}") for n in range(4)]
    blocked = _propose(token, BEYOND_ACCESS, start)  # no cost reported
    assert {a.decision for a in allowed} == {"allow"}
    assert {a.decision for a in reviewed} == {"review"}
    assert blocked.decision == "block"

    approved = review_services.action_approve(actor=rita, action=reviewed[0])
    _decided_at(approved, start + timedelta(hours=2))
    edited = review_services.action_edit_approve(actor=rita, action=reviewed[1],
                                                 changes={"stage": "negotiation"})
    _decided_at(edited, start + timedelta(hours=4))
    rejected = review_services.action_reject(actor=rita, action=reviewed[2], note="Not yet.")
    _decided_at(rejected, start + timedelta(hours=10))
    assert review_services.actions_expire(now=start + timedelta(hours=73)) == 1  # nobody's
    for hours in (13, 14):
        _report(rita, agent, start + timedelta(hours=hours))
    return day


def test_each_derived_value_of_a_busy_day(agent, busy_day):
    derived.compute()

    values = derived_values(agent, busy_day)
    assert values == {
        "actions_proposed": 10,
        "share_allowed": pytest.approx(50.0),
        "share_reviewed": pytest.approx(40.0),
        "share_blocked": pytest.approx(10.0),
        "override_rate": pytest.approx(200 / 3),  # edited + rejected over 3 decided by rita
        "acceptance_rate": pytest.approx(100 / 3),  # approved as proposed; expiry not counted
        "review_latency": pytest.approx(4.0),  # median of 2, 4 and 10 hours
        "incidents_per_100": pytest.approx(20.0),  # 2 incidents over 10 actions
        "cost_usd": pytest.approx(0.30),  # 5 × 0.02 + 4 × 0.05
        "cost_per_action": pytest.approx(0.03),  # over all 10 proposals
        "tokens": 1700,
    }


def test_derived_values_reach_the_weekly_and_monthly_rollups(agent, busy_day):
    derived.compute()

    monday = (busy_day - timedelta(days=busy_day.weekday())).date()
    week = Rollup.objects.get(agent=agent, metric__key="actions_proposed", grain="week",
                              period_start=monday)
    assert (week.value, week.count) == (10.0, 1)
    month = Rollup.objects.get(agent=agent, metric__key="cost_usd", grain="month",
                               period_start=busy_day.date().replace(day=1))
    assert month.value == pytest.approx(0.30)


def test_decisions_count_on_the_day_a_person_decided(agent, token, rita):
    yesterday = _today() - timedelta(days=1)
    action = _propose(token, STAGE, yesterday + timedelta(hours=20))
    review_services.action_reject(actor=rita, action=action, note="No.")
    _decided_at(action, _today() + timedelta(minutes=30))  # 4.5 hours later, after midnight

    derived.compute()

    assert derived_values(agent, yesterday) == {
        "actions_proposed": 1, "share_allowed": 0, "share_reviewed": 100, "share_blocked": 0,
        "incidents_per_100": 0}
    assert derived_values(agent, _today()) == {
        "override_rate": 100, "acceptance_rate": 0, "review_latency": pytest.approx(4.5)}


def test_days_are_utc_days(agent, token):
    before_midnight = _today() - timedelta(minutes=1)
    _propose(token, TIDY, before_midnight, tokens=10, idempotency_key="late")
    _propose(token, TIDY, _today() + timedelta(seconds=1), tokens=20, idempotency_key="early")

    derived.compute()

    yesterday = _today() - timedelta(days=1)
    assert derived_values(agent, yesterday)["tokens"] == 10
    assert derived_values(agent, _today())["tokens"] == 20


def test_the_lookback_leaves_older_days_alone_unless_since_says_so(agent, token, settings):
    settings.STEWARD_DERIVED_LOOKBACK_DAYS = 3
    old = _today() - timedelta(days=10)
    _propose(token, TIDY, old + timedelta(hours=9), idempotency_key="old")
    _propose(token, TIDY, _today() - timedelta(days=3), idempotency_key="edge")

    derived.compute()
    assert derived_values(agent, old) == {}
    assert derived_values(agent, _today() - timedelta(days=3))["actions_proposed"] == 1

    derived.compute(since=old + timedelta(hours=15))  # any time of the day: the whole day
    assert derived_values(agent, old)["actions_proposed"] == 1
    assert derived.compute(since=datetime.min.replace(tzinfo=UTC)) == 2 * 5  # everything


def test_a_second_run_updates_and_a_vanished_value_goes(agent, busy_day, rita):
    first = derived.compute()
    stored = Observation.objects.count()
    assert first == stored

    assert derived.compute() == stored  # the same rows again: updates, no duplicates
    assert Observation.objects.count() == stored

    Incident.objects.all().delete()  # say, reported against the wrong agent
    derived.compute()
    assert derived_values(agent, busy_day)["incidents_per_100"] == 0


def test_an_incident_on_a_day_without_proposals_is_no_figure(agent, token, rita):
    _report(rita, agent, _today() + timedelta(hours=1))

    derived.compute()

    assert derived_values(agent, _today()) == {}


def test_the_beat_task_computes_and_says_how_many(agent, token):
    _propose(token, TIDY, _today() + timedelta(hours=1), cost_usd=Decimal("0.5"), tokens=5)

    written = derived_metrics_compute.apply().get()

    assert written == 8  # proposed, 3 shares, incidents, cost, cost per action, tokens
    assert derived_values(agent, _today())["cost_per_action"] == pytest.approx(0.5)


def test_queries_do_not_grow_with_the_actions(agent, token, rita):
    day = _today() + timedelta(hours=1)

    def run_and_count() -> int:
        with CaptureQueriesContext(connection) as queries:
            derived.compute()
        return len(queries)

    for n in range(2):
        review_services.action_approve(
            actor=rita, action=_propose(token, STAGE, day, idempotency_key=f"a{n}"))
    few = run_and_count()
    for n in range(2, 40):
        review_services.action_approve(
            actor=rita, action=_propose(token, STAGE, day, idempotency_key=f"a{n}"))
        _propose(token, TIDY, day, idempotency_key=f"t{n}")
    assert run_and_count() == few
