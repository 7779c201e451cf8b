"""One agent's scorecard: who may open it, the charts, the pattern reading, the review form
and its history, the review cadence."""

import re
from datetime import date, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from metrics import charts, selectors, services
from metrics.models import ScorecardReview
from portal.models import AuditEvent
from tests.metrics.test_scorecard_fleet import periods, rollup, series, set_status, target

pytestmark = pytest.mark.django_db


def page(client, agent, **params):
    return client.get(reverse("metrics:agent", args=[agent.slug]), params)


# --- who sees it ---------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "own", "other"), [
    ("viewer", 404, 404), ("reviewer", 200, 404), ("other_reviewer", 404, 200),
    ("pauser", 200, 404), ("owner", 200, 404), ("revops", 200, 200), ("admin", 200, 200)])
def test_agent_scorecard_answers_by_permission(client, roles, role, own, other):
    client.force_login(getattr(roles, role))
    assert page(client, roles.agent).status_code == own
    assert page(client, roles.other).status_code == other


# --- charts ----------------------------------------------------------------------------------

def test_each_metric_with_data_gets_a_chart_grouped_by_layer(client, roles):
    series(roles.agent, "cycle_time", [12, 11, None, 9])
    series(roles.agent, "accuracy", [95, 96, 97, 97])
    series(roles.agent, "cost_usd", [100, 120])
    target(roles.agent, "accuracy", 95, 90)
    rollup(roles.other, "adoption", periods()[0], 50)  # another agent's: not here
    client.force_login(roles.owner)

    body = page(client, roles.agent).content.decode()

    assert re.findall(r'data-metric="([a-z_]+)"', body) == ["cycle_time", "accuracy",
                                                           "cost_usd"]
    assert re.findall(r'<h2 id="layer-(\w+)"', body) == ["business", "quality", "cost"]
    assert body.count("<polyline") == 3
    assert body.count('class="target-line"') == 1 and body.count('class="baseline-line"') == 1
    assert body.count('<circle class="point"') == 3 + 4 + 2  # one per period with data
    assert "<script" not in body.split("<main", 1)[1]
    assert 'aria-label="Accuracy: 4 periods, latest 97 %, target 95 %, human baseline 90 %"' in (
        body)


def test_no_data_says_where_data_comes_from(client, roles):
    client.force_login(roles.owner)
    body = page(client, roles.agent).content.decode()
    assert "No metric of Refund replies has data in the last 12 weeks" in body
    assert "<svg" not in body
    assert "Too early to read a pattern" in body


def test_month_grain_charts_months(client, roles):
    series(roles.agent, "accuracy", [90, 92], grain="month")
    series(roles.agent, "completeness", [90, 92])  # weeks: not on the month page
    client.force_login(roles.owner)
    body = page(client, roles.agent, grain="month").content.decode()
    assert re.findall(r'data-metric="([a-z_]+)"', body) == ["accuracy"]
    assert f'{periods("month")[0]:%Y-%m}</text>' in body


def test_chart_draws_target_and_baseline_only_when_set():
    points = [charts.Point(f"w{i}", v) for i, v in enumerate([10, None, 12, 14])]
    plain = str(charts.line_chart(title="Accuracy", points=points, unit="%"))
    assert "target-line" not in plain and "baseline-line" not in plain
    assert plain.count("<circle") == 3 and plain.startswith('<svg class="chart"')
    full = str(charts.line_chart(title="Accuracy", points=points, unit="%", target=13,
                                 baseline=11))
    assert 'class="target-line"' in full and 'class="baseline-line"' in full
    assert "<title>Target 13 %</title>" in full
    # the target sits between the lowest and highest point, and above 11 on the page
    target_y = float(re.search(r'class="target-line"[^>]* y1="([\d.]+)"', full).group(1))
    base_y = float(re.search(r'class="baseline-line"[^>]* y1="([\d.]+)"', full).group(1))
    assert target_y < base_y


def test_chart_escapes_names_and_handles_a_flat_line():
    svg = str(charts.line_chart(title="<b>Odd</b>", points=[charts.Point("a", 5),
                                                           charts.Point("b", 5)]))
    assert "<b>" not in svg and "&lt;b&gt;Odd&lt;/b&gt;" in svg
    assert "nan" not in svg.lower()
    empty = str(charts.line_chart(title="Empty", points=[charts.Point("a", None)]))
    assert "<svg" not in empty and "No data for Empty yet." in empty


# --- the pattern reading on the page ---------------------------------------------------------

@pytest.mark.parametrize(("data", "targets", "expected"), [
    ({"cycle_time": [10, 9, 8, 6], "accuracy": [95, 93, 90, 85]}, {},
     "Faster, but worse: reduce autonomy"),
    ({"accuracy": [96, 97], "adoption": [20, 25]}, {"accuracy": 95},
     "Good work, little used: improve usability and training"),
    ({"acceptance_rate": [90, 92], "cost_per_action": [0.1, 0.2]}, {},
     "Trusted, but getting dearer: optimise model calls and workflow steps"),
    ({"accuracy": [96, 97], "adoption": [70, 75]}, {}, "No warning pattern"),
])
def test_page_shows_the_pattern_reading(client, roles, data, targets, expected):
    for key, values in data.items():
        series(roles.agent, key, values)
    for key, goal in targets.items():
        target(roles.agent, key, goal)
    client.force_login(roles.revops)
    [reading] = page(client, roles.agent).context["card"].readings
    assert reading.title == expected
    assert expected in page(client, roles.agent).content.decode()


def test_agent_scorecard_pins_its_query_count(client, roles, django_assert_num_queries):
    for key in ("cycle_time", "accuracy", "completeness", "adoption", "acceptance_rate",
                "cost_usd", "tokens"):
        series(roles.agent, key, list(range(1, 13)))
        target(roles.agent, key, 5, 4)
    for _ in range(5):
        ScorecardReview.objects.create(agent=roles.agent, grain="week", decision="keep",
                                       period_start=periods()[1], reviewer=roles.owner)
    client.force_login(roles.owner)
    page(client, roles.agent)  # warm the session refresh and the ContentType cache
    # session, user, visible agent (perms ×2 + agent), may change ×2, metrics, rollups,
    # targets, reviews with reviewers, nav groups, nav waiting badge ×2, nav alert badge
    with django_assert_num_queries(15):
        response = page(client, roles.agent)
    assert response.content.decode().count("<polyline") == 7


# --- reviews ---------------------------------------------------------------------------------

def review_post(client, agent, headers=None, **data):
    current, _ = periods()
    payload = {"grain": "week", "period_start": current.isoformat(), "decision": "keep",
               "notes": "", **data}
    return client.post(reverse("metrics:review", args=[agent.slug]), payload,
                       headers=headers or {})


@pytest.mark.parametrize("role", ["owner", "revops", "admin"])
def test_owners_revops_and_admins_record_a_review(client, roles, role):
    user = getattr(roles, role)
    client.force_login(user)
    response = review_post(client, roles.agent, decision="expand", notes="Ready for L2.")
    assert response.status_code == 302
    assert response.url == reverse("metrics:agent", args=["refund-replies"]) + "#review"
    review = ScorecardReview.objects.get()
    assert (review.agent, review.reviewer, review.decision, review.grain, review.period_start,
            review.notes) == (roles.agent, user, "expand", "week", periods()[0], "Ready for L2.")
    event = AuditEvent.objects.get(verb="scorecard.reviewed")
    assert (event.actor_user, event.agent_id, event.data["decision"]) == (
        user, roles.agent.pk, "expand")
    body = page(client, roles.agent).content.decode()
    assert "Recorded: Expand for Refund replies." in body
    assert "Ready for L2." in body and 'class="badge decision-expand"' in body


@pytest.mark.parametrize(("role", "status"), [("reviewer", 403), ("pauser", 403),
                                              ("viewer", 404), ("other_reviewer", 404)])
def test_others_may_not_record_a_review(client, roles, role, status):
    client.force_login(getattr(roles, role))
    assert review_post(client, roles.agent).status_code == status
    assert not ScorecardReview.objects.exists()
    if status == 403:
        assert "Record the review" not in page(client, roles.agent).content.decode()


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"decision": "pivot"}, "decision", "Choose expand, keep, revise or stop."),
    ({"decision": ""}, "decision", "Choose expand, keep, revise or stop."),
    ({"decision": "stop", "notes": "  "}, "notes", "Say why the agent should stop."),
    ({"decision": "revise"}, "notes", "Say what must be revised."),
    ({"period_start": "not a date"}, "period_start", "Enter a valid date."),
    ({"grain": "year"}, "grain", "Select a valid choice."),
    ({"period_start": "2026-01-07"}, "period_start", "starts on a Monday"),
    ({"notes": "x" * 5001}, "notes", "under 5000 characters"),
])
def test_bad_review_input_is_named_and_changes_nothing(client, roles, data, field, message):
    client.force_login(roles.owner)
    response = review_post(client, roles.agent, **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ScorecardReview.objects.exists()
    assert not AuditEvent.objects.filter(verb="scorecard.reviewed").exists()


def test_future_period_is_refused_by_the_service(roles):
    monday = selectors.period_start(timezone.localdate(), "week") + timedelta(weeks=1)
    with pytest.raises(Exception, match="has not started yet"):
        services.scorecard_review_record(actor=roles.owner, agent=roles.agent, grain="week",
                                         period_start=monday, decision="keep")


def test_review_with_htmx_swaps_the_section_and_clears_overdue(client, roles):
    set_status(roles.agent, "pilot", created_at=timezone.now() - timedelta(days=9))
    client.force_login(roles.owner)
    assert "scorecard review was due on" in page(client, roles.agent).content.decode()
    response = review_post(client, roles.agent, headers={"HX-Request": "true"},
                           decision="revise", notes="Tighten the refund guardrail.")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<article id="review">') and "<html" not in body
    assert "Recorded: Revise." in body and "Tighten the refund guardrail." in body
    assert '<div id="review-due" hx-swap-oob="true">' in body
    assert "was due on" not in body and "overdue</span>" not in body


def test_htmx_review_with_bad_input_shows_the_error_in_place(client, roles):
    client.force_login(roles.revops)
    response = review_post(client, roles.agent, headers={"HX-Request": "true"},
                           decision="stop")
    assert response.status_code == 200
    assert "Say why the agent should stop." in response.content.decode()
    assert not ScorecardReview.objects.exists()


# --- cadence ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "field", "cadence"), [
    ("pilot", "monthly", "week"), ("pilot", "weekly", "week"), ("live", "weekly", "week"),
    ("live", "monthly", "month"), ("proposed", "weekly", None), ("paused", "weekly", None),
    ("retired", "monthly", None)])
def test_review_cadence(status, field, cadence):
    assert selectors.review_cadence(Agent(status=status, review_cadence=field)) == cadence


@pytest.mark.parametrize(("status", "last", "today", "due", "overdue"), [
    ("pilot", datetime(2026, 3, 2, 9), date(2026, 3, 9), date(2026, 3, 9), False),
    ("pilot", datetime(2026, 3, 2, 9), date(2026, 3, 10), date(2026, 3, 9), True),
    ("live", datetime(2026, 1, 31, 9), date(2026, 2, 28), date(2026, 2, 28), False),
    ("live", datetime(2026, 12, 15, 9), date(2027, 1, 16), date(2027, 1, 15), True),
    ("proposed", None, date(2030, 1, 1), None, False),
])
def test_review_due_and_overdue(status, last, today, due, overdue):
    agent = Agent(status=status, review_cadence="monthly",
                  created_at=timezone.make_aware(datetime(2026, 1, 1)))
    last_at = timezone.make_aware(last) if last else None
    state = selectors.review_state(agent=agent, last_review_at=last_at, today=today)
    assert (state.due, state.overdue) == (due, overdue)


def test_never_reviewed_agent_is_due_one_cadence_after_it_was_registered(client, roles):
    set_status(roles.agent, "live", review_cadence="monthly",
               created_at=timezone.now() - timedelta(days=40))
    client.force_login(roles.owner)
    state = page(client, roles.agent).context["card"].review
    assert (state.cadence_label, state.overdue, state.last_at) == ("monthly", True, None)
