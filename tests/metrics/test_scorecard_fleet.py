"""The fleet scorecard and its CSV export: who sees which rows, what each cell says, and a
query count that does not grow with the fleet. Rollups are written directly (the pages read
nothing else)."""

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agents.models import Agent
from metrics import patterns, selectors
from metrics.models import Metric, Rollup, ScorecardReview, Target
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


# --- helpers shared by the scorecard tests ---------------------------------------------------

def periods(grain: str = "week") -> tuple:
    """(current, previous): the last complete period and the one before, as the pages use."""
    return selectors.reporting_periods(grain, timezone.localdate())


def rollup(agent, key: str, start, value: float, grain: str = "week") -> Rollup:
    return Rollup.objects.create(agent=agent, metric=Metric.objects.get(key=key), grain=grain,
                                 period_start=start, value=value, count=1)


def series(agent, key: str, values, grain: str = "week") -> None:
    """`values` for the periods ending with the current one (the last value is current)."""
    current, _ = periods(grain)
    for back, value in enumerate(reversed(values)):
        if value is not None:
            rollup(agent, key, selectors.shift(current, grain, -back), value, grain)


def target(agent, key: str, goal=None, baseline=None) -> Target:
    return Target.objects.create(agent=agent, metric=Metric.objects.get(key=key), target=goal,
                                 human_baseline=baseline)


def set_status(agent, status: str, **fields) -> Agent:
    Agent.objects.filter(pk=agent.pk).update(status=status, **fields)
    agent.refresh_from_db()
    return agent


def export(client, grain: str = "week") -> list[dict]:
    response = client.get(reverse("metrics:export"), {"grain": grain})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.content.decode())))


# --- scoping ---------------------------------------------------------------------------------

VISIBLE = {
    "viewer": [],
    "reviewer": ["refund-replies"],
    "other_reviewer": ["crm-hygiene"],
    "pauser": ["refund-replies"],
    "owner": ["refund-replies"],
    "revops": ["crm-hygiene", "refund-replies"],
    "admin": ["crm-hygiene", "refund-replies"],
}


@pytest.mark.parametrize(("role", "slugs"), VISIBLE.items())
def test_fleet_rows_are_the_agents_the_user_may_see(client, roles, role, slugs):
    client.force_login(getattr(roles, role))
    response = client.get(reverse("metrics:fleet"))
    assert response.status_code == 200
    assert sorted(r.agent.slug for r in response.context["scorecard"].rows) == slugs
    body = response.content.decode()
    for slug in ("refund-replies", "crm-hygiene"):
        assert (f'data-agent="{slug}"' in body) == (slug in slugs)
    if not slugs:
        assert "There is no agent you may see." in body


@pytest.mark.parametrize(("role", "slugs"), VISIBLE.items())
def test_csv_rows_are_the_agents_the_user_may_see(client, roles, role, slugs):
    client.force_login(getattr(roles, role))
    assert sorted(row["slug"] for row in export(client)) == slugs


def test_retired_agents_are_left_out(client, roles):
    set_status(roles.other, "retired")
    client.force_login(roles.admin)
    assert [r["slug"] for r in export(client)] == ["refund-replies"]


# --- what a row says -------------------------------------------------------------------------

def test_csv_is_exactly_what_the_page_shows(client, roles):
    current, previous = periods()
    agent = roles.agent
    rollup(agent, "cycle_time", current, 8)          # lower is better: 10 → 8 is better
    rollup(agent, "cycle_time", previous, 10)
    rollup(agent, "accuracy", current, 90.5)         # 95 → 90.5 is worse, target missed
    rollup(agent, "accuracy", previous, 95)
    rollup(agent, "acceptance_rate", current, 80)    # no previous period: no change
    rollup(agent, "accuracy", selectors.shift(previous, "week", -1), 10)  # not compared
    rollup(agent, "accuracy", selectors.shift(current, "week", 1), 1)     # this week: not yet
    target(agent, "cycle_time", 9, 12)
    target(agent, "accuracy", 92)
    target(agent, "acceptance_rate", None, 75)
    client.force_login(roles.owner)

    [row] = export(client)

    assert row == {
        "agent": "Refund replies", "slug": "refund-replies", "status": "proposed",
        "grain": "week", "period_start": current.isoformat(),
        "previous_period_start": previous.isoformat(),
        "cycle_time": "8", "cycle_time_previous": "10", "cycle_time_change": "-2",
        "cycle_time_target": "9", "cycle_time_target_status": "met",
        "cycle_time_human_baseline": "12",
        "accuracy": "90.5", "accuracy_previous": "95", "accuracy_change": "-4.5",
        "accuracy_target": "92", "accuracy_target_status": "missed",
        "accuracy_human_baseline": "",
        "acceptance_rate": "80", "acceptance_rate_previous": "", "acceptance_rate_change": "",
        "acceptance_rate_target": "", "acceptance_rate_target_status": "no target",
        "acceptance_rate_human_baseline": "75",
        "cost_per_action": "", "cost_per_action_previous": "", "cost_per_action_change": "",
        "cost_per_action_target": "", "cost_per_action_target_status": "no target",
        "cost_per_action_human_baseline": "",
        "wrong_way": "yes", "warnings": "", "review_cadence": "none", "last_review": "",
        "last_decision": "",
        "review_due": "", "review_overdue": "no",
    }
    page = client.get(reverse("metrics:fleet")).content.decode()
    for shown in ('<td class="num">8</td>', " -2 ",
                  '<td class="num">90.5</td>', "-4.5", "target 92", "human 12", "human 75"):
        assert shown in page
    assert 'class="change change-better"' in page and 'class="change change-worse"' in page
    assert "wrong way" in page
    assert f"week of {current:%Y-%m-%d}" in page


def test_headlines_come_from_the_catalogue(client, roles):
    """An admin moving the quality headline to completeness changes the fleet's column."""
    Metric.objects.filter(key="accuracy").update(headline=False)
    Metric.objects.filter(key="completeness").update(headline=True)
    client.force_login(roles.admin)
    header = client.get(reverse("metrics:export")).content.decode().splitlines()[0]
    assert "completeness_target_status" in header and "accuracy" not in header


def test_improving_agent_is_not_marked(client, roles):
    current, previous = periods()
    rollup(roles.agent, "accuracy", current, 97)
    rollup(roles.agent, "accuracy", previous, 95)
    rollup(roles.agent, "cost_per_action", current, 0.05)
    rollup(roles.agent, "cost_per_action", previous, 0.06)
    client.force_login(roles.owner)
    [row] = export(client)
    assert (row["accuracy_change"], row["cost_per_action_change"], row["wrong_way"]) == (
        "+2", "-0.01", "no")
    assert "wrong way</span>" not in client.get(reverse("metrics:fleet")).content.decode()


def test_noise_does_not_mark_an_agent(client, roles):
    current, previous = periods()
    rollup(roles.agent, "cycle_time", current, 4.05)  # +2%: within a week's noise
    rollup(roles.agent, "cycle_time", previous, 3.97)
    client.force_login(roles.owner)
    [row] = export(client)
    assert (row["cycle_time_change"], row["wrong_way"]) == ("+0.08", "no")


def test_a_warning_pattern_marks_the_agent(client, roles):
    # cycle time falls week after week while accuracy slides, each week by under the noise
    # floor: no headline moved much, but together they read "reduce autonomy"
    series(roles.agent, "cycle_time", [3.0, 2.9, 2.8, 2.75])
    series(roles.agent, "accuracy", [92.0, 90.0, 88.0, 86.5])
    client.force_login(roles.owner)
    [row] = export(client)
    assert row["wrong_way"] == "yes"
    assert row["warnings"] == patterns.readings([
        patterns.MetricSeries("cycle_time", "Cycle time", "business", False, (3, 2.9, 2.8, 2.75)),
        patterns.MetricSeries("accuracy", "Accuracy", "quality", True, (92, 90, 88, 86.5)),
    ])[0].title
    page = client.get(reverse("metrics:fleet")).content.decode()
    assert "wrong way</span>" in page and row["warnings"] in page


def test_month_grain_reads_month_rollups(client, roles):
    current, previous = periods("month")
    assert current.day == 1 and selectors.shift(previous, "month", 1) == current
    rollup(roles.agent, "accuracy", current, 91, grain="month")
    rollup(roles.agent, "accuracy", periods()[0], 50)  # a week rollup: not on the month page
    client.force_login(roles.owner)
    [row] = export(client, "month")
    assert (row["grain"], row["period_start"], row["accuracy"]) == (
        "month", current.isoformat(), "91")
    page = client.get(reverse("metrics:fleet"), {"grain": "month"}).content.decode()
    assert current.strftime("%B %Y") in page


def test_unknown_grain_says_so(client, roles):
    client.force_login(roles.owner)
    response = client.get(reverse("metrics:fleet"), {"grain": "fortnight"})
    assert response.status_code == 200
    assert "There is no grain “fortnight”: showing weeks" in response.content.decode()
    response = client.get(reverse("metrics:export"), {"grain": "fortnight"})
    assert response.status_code == 400
    assert "There is no grain “fortnight”" in response.content.decode()


# --- reviews on the fleet --------------------------------------------------------------------

def test_overdue_review_is_marked_on_the_fleet(client, roles):
    set_status(roles.agent, "pilot", created_at=timezone.now() - timedelta(days=10))
    set_status(roles.other, "pilot", created_at=timezone.now() - timedelta(days=30))
    ScorecardReview.objects.create(agent=roles.other, grain="week", decision="keep",
                                   period_start=periods()[0], reviewer=roles.admin)
    client.force_login(roles.admin)
    rows = {r["slug"]: r for r in export(client)}
    assert (rows["refund-replies"]["review_overdue"], rows["refund-replies"]["last_review"]) == (
        "yes", "")
    assert (rows["crm-hygiene"]["review_overdue"], rows["crm-hygiene"]["last_decision"]) == (
        "no", "keep")
    page = client.get(reverse("metrics:fleet")).content.decode()
    assert page.count(">overdue</span>") == 1


# --- queries ---------------------------------------------------------------------------------

def _fleet_with_data(n: int, viewer) -> None:
    current, previous = periods()
    for i in range(n):
        agent = make_agent(slug=f"fleet-{viewer.pk}-{i}-{Agent.objects.count()}")
        assign_perm("agents.view_agent", viewer, agent)
        for key in ("cycle_time", "accuracy", "acceptance_rate", "cost_per_action"):
            rollup(agent, key, current, 10 + i)
            rollup(agent, key, previous, 9 + i)
            target(agent, key, 10)
        ScorecardReview.objects.create(agent=agent, grain="week", decision="keep",
                                       period_start=previous)


@pytest.mark.parametrize("role", ["reviewer", "revops"])
def test_fleet_query_count_does_not_grow_with_agents(client, roles, role,
                                                     django_assert_num_queries):
    user = getattr(roles, role)
    client.force_login(user)
    _fleet_with_data(3, user)
    client.get(reverse("metrics:fleet"))  # the first view after login refreshes the session
    urls = [reverse("metrics:fleet"), reverse("metrics:export")]
    few = {}
    for url in urls:
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        few[url] = len(captured.captured_queries)
    _fleet_with_data(12, user)
    for url in urls:
        with django_assert_num_queries(few[url]):
            client.get(url)
    assert len(export(client)) >= 15


def test_fleet_pins_its_query_count(client, roles, django_assert_num_queries):
    client.force_login(roles.revops)
    client.get(reverse("metrics:fleet"))  # warm the session refresh and the ContentType cache
    # session, user, perms ×2 (visible agents), headline metrics, agents with their last
    # review, rollups, targets, nav groups, nav waiting badge ×2, nav alert badge
    with django_assert_num_queries(12):
        client.get(reverse("metrics:fleet"))


@pytest.mark.parametrize(("value", "shown"), [
    (96.4143, "96.41"), (0.0001471, "0.000147"), (-9.571e-05, "-0.000096"), (1031360.4, "1031360"),
    (100.0, "100"), (-1.4e-14, "0"), (None, "")])
def test_numbers_are_shown_without_exponents(value, shown):
    assert selectors.number(value) == shown


def test_equal_values_did_not_change():
    cell = selectors.Cell(Metric(key="m", higher_is_better=True), 97.59, 97.59000000000001,
                          None, None)
    assert (cell.change_text, cell.direction, cell.arrow) == ("0", "same", "→")
