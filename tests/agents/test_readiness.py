"""The readiness check: the operating model's five questions, answered from the configuration,
and the "ready / not ready" badge on the agent page (checked for every demo agent)."""

import io

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from agents import readiness, rollout, services
from agents.models import Agent
from metrics.models import Target
from portal.models import User
from tests.factories import SystemFactory, UserFactory, make_agent

pytestmark = pytest.mark.django_db

READY_BADGE = '<span class="badge ready">ready</span>'
NOT_READY_BADGE = '<span class="badge not-ready">not ready</span>'

# What each demo agent may decide alone (question 2), as its configuration says.
ALONE = {
    "account-research": "None that change anything: a person approves every action; it may "
                        "look things up alone. At most it may draft in CRM and look things up "
                        "in Knowledge base.",
    "crm-hygiene": "Low-risk actions within its access (act in CRM) run alone; 20% of what it "
                   "executes is reviewed afterwards.",
    "refund-replies": "Low-risk actions within its access (look things up in Billing and "
                      "draft in Helpdesk) run alone; 20% of what it executes is reviewed "
                      "afterwards.",
    "campaign-segments": "None that change anything: a person approves every action; it may "
                         "look things up alone. At most it may look things up in CRM and "
                         "recommend in Marketing automation.",
    "kpi-reporter": "None that change anything: a person approves every action; it may look "
                    "things up alone. At most it may look things up in Billing, look things up "
                    "in CRM and draft in Knowledge base.",
}
APPROVE = {
    "account-research": "Before every action that changes anything (L1).",
    "crm-hygiene": "When one of its 3 review guardrails sends an action to a person, when it is "
                   "less than 0.8 sure, and when a limit is reached.",
    "refund-replies": "When one of its 3 review guardrails sends an action to a person, when it "
                      "is less than 0.7 sure, and when a limit is reached.",
    "campaign-segments": "Before every action that changes anything (L1).",
    "kpi-reporter": "Before every action that changes anything (L1).",
}


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo as seed_demo ships it, loaded once for the module and rolled back after."""
    with django_db_blocker.unblock(), transaction.atomic(), override_settings(DEBUG=True):
        call_command("seed_demo", stdout=io.StringIO())
        yield {agent.slug: agent for agent in Agent.objects.all()}
        transaction.set_rollback(True)


def check(agent: Agent) -> readiness.Readiness:
    agent = Agent.objects.get(pk=agent.pk)
    return readiness.readiness(agent, rollout.plan_facts(agent))


def test_every_demo_agent_is_ready_with_answers_from_its_configuration(demo, client):
    assert sorted(demo) == sorted(ALONE)
    client.force_login(User.objects.get(username="admin"))
    for slug, agent in demo.items():
        result = check(agent)
        assert result.ready, (slug, result.missing)
        answers = {a.question: a.answer for a in result.answers}
        assert answers["What business outcome is it for?"] == agent.business_outcome
        assert answers["Which decisions may it make alone?"] == ALONE[slug]
        assert answers["When must a person approve?"] == APPROVE[slug]
        assert answers["Who owns its performance after launch?"].startswith(
            "Bob Brown (outcome) with Paula Petrova (workflow and adoption)")
        measured = answers["How are quality, safety and cost measured?"]
        assert f"a monthly budget of ${agent.monthly_cost_budget:,.0f}" in measured

        body = client.get(reverse("agents:detail", args=[slug])).content.decode()
        assert READY_BADGE in body and NOT_READY_BADGE not in body, slug
        assert "badge warn\">missing" not in body


def test_a_demo_agent_without_targets_is_not_ready_and_its_page_lists_what_is_missing(
        demo, client):
    agent = demo["campaign-segments"]
    Target.objects.filter(agent=agent).delete()
    result = check(agent)
    assert not result.ready
    assert result.missing == [
        "Set a target on a quality metric (e.g. accuracy) and a target on a trust metric for "
        "safety (e.g. acceptance or override rate)."]
    client.force_login(User.objects.get(username="admin"))
    body = client.get(reverse("agents:detail", args=[agent.slug])).content.decode()
    assert NOT_READY_BADGE in body and READY_BADGE not in body
    assert "Set a target on a quality metric (e.g. accuracy)" in body


def test_a_bare_agent_misses_every_answer():
    agent = services.agent_create(actor=None, slug="bare", name="Bare",
                                  business_owner=UserFactory(), autonomy_level=2)
    result = check(agent)
    assert [a.answered for a in result.answers] == [False, False, False, False, False]
    assert result.missing == [
        "Write the business outcome in one sentence.",
        "Give it access to at least one system: with none it may decide nothing.",
        "Add a guardrail that sends risky actions to a person (effect: review): above L1 "
        "nothing else says when.",
        "Set a target on a quality metric (e.g. accuracy), a target on a trust metric for "
        "safety (e.g. acceptance or override rate) and a monthly cost budget or a target on a "
        "cost metric.",
        "Name the process owner.",
    ]


def test_l1_is_its_own_answer_to_when_a_person_approves():
    agent = make_agent(slug="careful", autonomy_level=1)
    answer = check(agent).answers[2]
    assert answer.answered and answer.answer == "Before every action that changes anything (L1)."


def test_a_block_guardrail_does_not_say_when_a_person_approves():
    agent = make_agent(slug="bold", autonomy_level=2)
    from agents.models import SystemAccess

    SystemAccess.objects.create(agent=agent, system=SystemFactory(slug="crm"), max_kind="execute")
    services.guardrail_create(actor=None, agent=agent, name="Never delete", field="operation",
                              operator="eq", value="delete", effect="block")
    assert not check(agent).answers[2].answered
    services.guardrail_create(actor=None, agent=agent, name="Stage", field="changes.stage",
                              operator="changed", effect="review")
    assert check(agent).answers[2].answer.startswith(
        "When its review guardrail sends an action to a person")


def test_demo_plans_are_complete_for_live_agents_and_part_way_for_pilots(demo):
    """Not readiness, but the same demo: the rollout plans seed_demo ships."""
    done = {}
    for slug, agent in demo.items():
        plan = rollout.plan_status(Agent.objects.get(pk=agent.pk))
        done[slug] = (agent.status, plan.done, plan.missing)
    assert done["account-research"] == ("live", 15, [])
    assert done["crm-hygiene"] == ("live", 15, [])
    assert done["kpi-reporter"] == ("paused", 15, [])
    assert done["refund-replies"] == ("pilot", 13, [
        "Track business, quality, trust and cost on the scorecard",
        "Decide: expand, revise or stop"])
    assert done["campaign-segments"] == ("pilot", 10, [
        "Name a person besides the owners who may pause it",
        "Capture the mistakes found, in categories", "Launch to a small group of users",
        "Track business, quality, trust and cost on the scorecard",
        "Decide: expand, revise or stop"])
