"""The 30-day rollout plan: created on registration, checked by Steward where it can be, ticked
by owners elsewhere, and complete before pilot → live."""

import importlib

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from agents import rollout, services
from agents.models import Agent, RolloutTask
from metrics import selectors as metric_selectors
from metrics import services as metric_services
from metrics.models import Metric
from portal.models import AuditEvent
from tests.factories import AgentFactory, UserFactory, complete_plan, make_agent

pytestmark = pytest.mark.django_db


def state(agent: Agent, key: str) -> rollout.TaskState:
    return next(s for s in rollout.plan_status(agent).tasks if s.task.key == key)


def pilot_agent(**fields) -> Agent:
    agent = make_agent(slug="replies", ready=True, **fields)
    return services.agent_move(actor=None, agent=agent, to_status="pilot")


def target(agent, key="accuracy", goal=95, baseline=90):
    return metric_services.target_set(actor=None, agent=agent, metric=Metric.objects.get(key=key),
                                      target=goal, human_baseline=baseline)


def review(agent):
    week = metric_selectors.reporting_periods("week", timezone.localdate())[0]
    return metric_services.scorecard_review_record(actor=None, agent=agent, grain="week",
                                                   period_start=week, decision="keep")


# --- the template ----------------------------------------------------------------------------

def test_registering_an_agent_creates_its_plan_from_the_template():
    agent = make_agent(slug="fresh")
    tasks = list(agent.rollout_tasks.order_by("week", "position"))
    assert [(t.week, t.key, t.title, t.owner_role, t.auto_check) for t in tasks] == [
        (t.week, t.key, t.title, t.owner_role, t.auto_check) for t in rollout.TEMPLATE]
    assert {t.week for t in tasks} == {1, 2, 3, 4}
    assert {t.owner_role for t in tasks} == {"business", "process", "technical"}
    assert not any(t.done_at for t in tasks)
    assert sorted(t.auto_check for t in tasks if t.auto_check) == sorted(rollout.CHECKS)
    assert AuditEvent.objects.filter(agent=agent, verb="rollout.plan_created").count() == 1


def test_an_agent_registered_before_plans_gets_one_when_asked_once():
    agent = AgentFactory(slug="old-timer")  # straight to the table: no plan
    assert not agent.rollout_tasks.exists()
    assert len(rollout.plan_for(agent)) == len(rollout.TEMPLATE)
    assert len(rollout.plan_for(agent)) == len(rollout.TEMPLATE)
    assert agent.rollout_tasks.count() == len(rollout.TEMPLATE)


def test_the_migration_template_is_the_template_it_shipped_with():
    migration = importlib.import_module("agents.migrations.0007_rollout_plans")
    shipped = [(t.week, t.key, t.title, str(t.owner_role), t.auto_check)
               for t in rollout.TEMPLATE]
    assert shipped == migration.TEMPLATE


def test_the_migration_creates_plans_for_existing_agents_only():
    from django.apps import apps

    migration = importlib.import_module("agents.migrations.0007_rollout_plans")
    bare = AgentFactory(slug="bare")
    planned = make_agent(slug="planned")
    RolloutTask.objects.filter(agent=planned, key="map").update(done_at=timezone.now())
    migration.create_plans(apps, None)
    assert bare.rollout_tasks.count() == len(rollout.TEMPLATE)
    assert planned.rollout_tasks.count() == len(rollout.TEMPLATE)
    assert planned.rollout_tasks.get(key="map").done_at is not None


# --- the automatic checks --------------------------------------------------------------------

def test_a_new_ready_agent_has_some_checks_true_and_some_false():
    agent = pilot_agent()
    done = {s.task.key: s.done for s in rollout.plan_status(agent).tasks if s.auto}
    assert done == {"owners": True, "outcome": True, "autonomy": True, "guardrails": False,
                    "rollback": True, "pauser": False, "baseline": False,
                    "first-review": False}


def test_owners_check_names_the_missing_roles():
    agent = services.agent_create(actor=None, slug="lonely", name="Lonely",
                                  business_owner=UserFactory(), business_outcome="Less work.")
    assert state(agent, "owners").missing == "no process and technical owner is named"
    assert state(agent, "outcome").done
    agent = services.agent_update(actor=None, agent=agent, process_owner=UserFactory(),
                                  technical_owner=UserFactory())
    assert state(agent, "owners").done


def test_outcome_and_rollback_checks():
    agent = services.agent_create(actor=None, slug="vague", name="Vague",
                                  business_owner=UserFactory())
    assert state(agent, "outcome").missing == "no business outcome is written"
    assert state(agent, "rollback").missing == "no rollback step is written"
    services.rollback_step_add(actor=None, agent=agent, title="Undo", instructions="Revert it.")
    agent = services.agent_update(actor=None, agent=agent, business_outcome="Faster replies.")
    assert state(agent, "outcome").done and state(agent, "rollback").done


def test_autonomy_check_holds_for_a_level_and_fails_without_one():
    facts = rollout.plan_facts(make_agent(slug="levels"))
    check = rollout.CHECKS["autonomy_set"]
    assert check.holds(facts)
    unset = rollout.PlanFacts(**{**facts.__dict__, "autonomy_level": None})
    assert not check.holds(unset)
    assert check.missing(unset) == "no autonomy level (L1–L4) is set"


def test_guardrails_and_quality_checks_count_together_up_to_three():
    agent = pilot_agent()  # one guardrail
    assert state(agent, "guardrails").missing == (
        "1 of 3 guardrails or quality checks (targets on quality metrics) are defined")
    target(agent, "accuracy")
    target(agent, "adoption")  # a trust metric: not a quality check
    assert not state(agent, "guardrails").done
    services.guardrail_create(actor=None, agent=agent, name="Stage", field="changes.stage",
                              operator="changed", effect="review")
    assert state(agent, "guardrails").done


def test_pauser_check():
    agent = pilot_agent()
    assert state(agent, "pauser").missing == "nobody besides the owners may pause it"
    agent = services.agent_update(actor=None, agent=agent, pausers=[UserFactory()])
    assert state(agent, "pauser").done


def test_targets_need_a_human_baseline():
    agent = pilot_agent()
    assert state(agent, "baseline").missing == "no target is set"
    target(agent, baseline=None)
    assert state(agent, "baseline").missing == "no target has a human baseline"
    target(agent, baseline=88)
    assert state(agent, "baseline").done


def test_first_review_check():
    agent = pilot_agent()
    assert state(agent, "first-review").missing == "no scorecard review is recorded yet"
    review(agent)
    assert state(agent, "first-review").done


# --- ticking ---------------------------------------------------------------------------------

def test_an_owner_ticks_a_manual_task_and_may_reopen_it_each_audited():
    owner = UserFactory()
    agent = pilot_agent(owner=owner)
    task = agent.rollout_tasks.get(key="map")
    task = rollout.task_tick(actor=owner, task=task, done=True)
    assert task.done_at is not None and task.done_by == owner
    assert state(agent, "map").done
    rollout.task_tick(actor=owner, task=task, done=True)  # again: nothing new
    task = rollout.task_tick(actor=owner, task=task, done=False)
    assert task.done_at is None and task.done_by is None
    events = AuditEvent.objects.filter(agent=agent, verb__startswith="rollout.task_")
    assert list(events.order_by("id").values_list("verb", "actor_user", "data__key")) == [
        ("rollout.task_done", owner.pk, "map"), ("rollout.task_reopened", owner.pk, "map")]


def test_only_people_who_may_change_the_agent_tick(roles):
    task = roles.agent.rollout_tasks.get(key="workflow")
    for user in (roles.reviewer, roles.pauser, roles.revops, roles.viewer):
        with pytest.raises(PermissionDenied):
            rollout.task_tick(actor=user, task=task, done=True)
    assert RolloutTask.objects.get(pk=task.pk).done_at is None
    assert rollout.task_tick(actor=roles.admin, task=task, done=True).done_by == roles.admin


def test_a_task_steward_checks_cannot_be_ticked_while_its_check_fails():
    owner = UserFactory()
    agent = pilot_agent(owner=owner)
    task = agent.rollout_tasks.get(key="pauser")
    with pytest.raises(ValidationError) as err:
        rollout.task_tick(actor=owner, task=task, done=True)
    assert err.value.messages == [
        "“Name a person besides the owners who may pause it” is checked by Steward and cannot "
        "be ticked by hand: nobody besides the owners may pause it. It is ticked by itself "
        "once that is put right."]
    assert RolloutTask.objects.get(pk=task.pk).done_at is None
    assert not AuditEvent.objects.filter(verb="rollout.task_done").exists()
    # once it holds it shows as done by itself, and cannot be reopened by hand
    agent = services.agent_update(actor=None, agent=agent, pausers=[UserFactory()])
    assert state(agent, "pauser").done
    with pytest.raises(ValidationError, match="stays done while it does"):
        rollout.task_tick(actor=owner, task=task, done=False)


def test_an_automatic_task_goes_back_to_open_when_its_check_stops_holding():
    agent = pilot_agent()
    pauser = UserFactory()
    agent = services.agent_update(actor=None, agent=agent, pausers=[pauser])
    assert state(agent, "pauser").done
    agent = services.agent_update(actor=None, agent=agent, pausers=[])
    assert not state(agent, "pauser").done


def test_a_retired_agents_plan_is_frozen():
    owner = UserFactory()
    agent = make_agent(slug="gone", owner=owner)
    services.agent_retire(actor=None, agent=agent)
    with pytest.raises(ValidationError, match="retired"):
        rollout.task_tick(actor=owner, task=agent.rollout_tasks.get(key="map"), done=True)


# --- the plan gates pilot → live -------------------------------------------------------------

def test_pilot_to_live_lists_every_open_task_then_goes_once_the_plan_is_complete():
    agent = pilot_agent()
    with pytest.raises(ValidationError) as err:
        services.agent_move(actor=None, agent=agent, to_status="live")
    message = err.value.messages[0]
    assert message.startswith("Replies cannot move to live yet: it needs its rollout plan "
                              "complete (still open: ")
    open_titles = rollout.plan_missing(agent)
    assert len(open_titles) == 11  # 7 manual, and 4 automatic checks that fail
    for title in open_titles:
        assert title in message
    assert Agent.objects.get(pk=agent.pk).status == "pilot"

    complete_plan(agent)
    rollout.task_tick(actor=None, task=agent.rollout_tasks.get(key="decide"), done=False)
    with pytest.raises(ValidationError, match=r"still open: Decide: expand, revise or stop\)"):
        services.agent_move(actor=None, agent=agent, to_status="live")
    rollout.task_tick(actor=None, task=agent.rollout_tasks.get(key="decide"), done=True)
    assert services.agent_move(actor=None, agent=agent, to_status="live").status == "live"


def test_proposed_to_pilot_does_not_wait_for_the_plan():
    agent = make_agent(slug="early", ready=True)
    assert rollout.plan_missing(agent)
    assert services.agent_move(actor=None, agent=agent, to_status="pilot").status == "pilot"


# --- pages -----------------------------------------------------------------------------------

def test_the_agent_page_shows_the_plan_and_why_live_is_not_open_yet(client, roles):
    agent = services.agent_move(actor=None, agent=_ready(roles.agent), to_status="pilot")
    client.force_login(roles.owner)
    body = client.get(reverse("agents:detail", args=[agent.slug])).content.decode()
    assert "30-day plan · 5 of 15 done" in body
    assert "Week 3 · Test against a human benchmark" in body
    assert "To move to live it needs its rollout plan complete (still open: Choose the " in body
    assert ("Not yet: 1 of 3 guardrails or quality checks (targets on quality metrics) are "
            "defined.") in body
    assert body.count(">Mark done</button>") == 7
    assert reverse("agents:card", args=[agent.slug]) in body


def test_a_live_agents_page_keeps_the_plan_one_click_away(client, roles):
    agent = services.agent_move(actor=None, agent=_ready(roles.agent), to_status="pilot")
    complete_plan(agent)
    services.agent_move(actor=None, agent=agent, to_status="live")
    client.force_login(roles.owner)
    body = client.get(reverse("agents:detail", args=[agent.slug])).content.decode()
    assert "30-day plan · 15 of 15 done" in body and "Mark done" not in body
    assert reverse("agents:plan", args=[agent.slug]) in body
    page = client.get(reverse("agents:plan", args=[agent.slug])).content.decode()
    assert page.count(">Reopen</button>") == 7


def test_ticking_with_htmx_returns_the_plan_in_place(client, roles):
    client.force_login(roles.owner)
    task = roles.agent.rollout_tasks.get(key="map")
    url = reverse("agents:plan-tick", args=[roles.agent.slug, task.pk])
    response = client.post(url, {"done": "1"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<article id="rollout-weeks"')
    assert "<html" not in body
    assert f'id="task-{task.pk}" class="plan-task done"' in body
    assert RolloutTask.objects.get(pk=task.pk).done_by == roles.owner


def test_a_refused_tick_says_why_in_place_and_as_a_message(client, roles):
    client.force_login(roles.owner)
    task = roles.agent.rollout_tasks.get(key="pauser")
    roles.agent.pausers.clear()
    url = reverse("agents:plan-tick", args=[roles.agent.slug, task.pk])
    body = client.post(url, {"done": "1"}, headers={"HX-Request": "true"}).content.decode()
    assert "is checked by Steward and cannot be ticked by hand" in body
    response = client.post(url, {"done": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("agents:plan", args=[roles.agent.slug])
    assert "cannot be ticked by hand" in response.content.decode()
    assert RolloutTask.objects.get(pk=task.pk).done_at is None


def test_a_task_of_another_agent_is_not_found_through_this_one(client, roles):
    client.force_login(roles.admin)
    task = roles.other.rollout_tasks.get(key="map")
    url = reverse("agents:plan-tick", args=[roles.agent.slug, task.pk])
    assert client.post(url, {"done": "1"}).status_code == 404


def _ready(agent: Agent) -> Agent:
    from agents.models import RollbackStep, SystemAccess
    from tests.factories import SystemFactory

    SystemAccess.objects.create(agent=agent, system=SystemFactory(slug="helpdesk"),
                                max_kind="draft")
    RollbackStep.objects.create(agent=agent, position=1, title="Undo", instructions="Undo it.")
    services.guardrail_create(actor=None, agent=agent, name="Big", field="amount",
                              operator="gt", value=500)
    return agent


def test_the_last_tick_reloads_the_page_so_the_move_to_live_opens(client, roles):
    agent = services.agent_move(actor=None, agent=_ready(roles.agent), to_status="pilot")
    complete_plan(agent)
    task = agent.rollout_tasks.get(key="decide")
    rollout.task_tick(actor=None, task=task, done=False)
    client.force_login(roles.owner)
    url = reverse("agents:plan-tick", args=[agent.slug, task.pk])
    hx = {"HX-Request": "true"}
    assert client.post(url, {"done": "1"}, headers=hx)["HX-Refresh"] == "true"
    assert client.post(url, {"done": "0"}, headers=hx)["HX-Refresh"] == "true"
    other = agent.rollout_tasks.get(key="map")
    other_url = reverse("agents:plan-tick", args=[agent.slug, other.pk])
    assert "HX-Refresh" not in client.post(other_url, {"done": "0"}, headers=hx)
