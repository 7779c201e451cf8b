"""Policy versions: one per save of what the gate judges by, with a readable diff."""

import pytest
from django.urls import reverse

from agents import services, versions
from agents.models import Agent, PolicyVersion, SystemAccess
from agents.snapshots import build_snapshot
from portal.models import AuditEvent
from tests.factories import (
    AgentFactory,
    DataSourceFactory,
    SystemFactory,
    UserFactory,
    make_agent,
)

pytestmark = pytest.mark.django_db


def latest(agent) -> PolicyVersion:
    return PolicyVersion.objects.filter(agent=agent).latest("number")


def items(version) -> dict:
    return {change["item"]: [change["before"], change["after"]] for change in version.diff}


def event(agent, verb) -> AuditEvent:
    return AuditEvent.objects.filter(agent=agent, verb=verb).latest("id")


@pytest.fixture
def owner():
    return UserFactory(username="vera-owner")


@pytest.fixture
def agent(owner):
    return make_agent(owner=owner, actor=None, slug="quotes")


def test_registering_records_version_one_with_the_whole_policy(agent):
    version = PolicyVersion.objects.get(agent=agent)
    assert version.number == agent.policy_version == 1
    assert version.diff == []
    assert version.policy["status"] == "proposed"
    assert version.policy["autonomy_level"] == agent.autonomy_level
    assert event(agent, "agent.created").data["policy_version_saved"] == 1


def test_each_kind_of_policy_save_makes_a_version_with_its_diff(agent, owner):
    crm = SystemFactory(slug="crm", name="CRM")
    source = DataSourceFactory(slug="price-list", name="Price list")

    access = services.system_access_set(actor=owner, agent=agent, system=crm, max_kind="read")
    assert items(latest(agent)) == {"Access to crm": [None, "read"]}
    services.system_access_set(actor=owner, agent=agent, system=crm, max_kind="draft")
    assert items(latest(agent)) == {"Access to crm": ["read", "draft"]}

    rule = services.guardrail_create(actor=owner, agent=agent, name="Big quotes",
                                     field="amount", operator="gt", value=500, effect="review")
    assert items(latest(agent)) == {"Guardrail 'Big quotes'": [None, "amount gt 500 → review"]}
    services.guardrail_update(actor=owner, guardrail=rule, value=800)
    assert items(latest(agent)) == {"Guardrail 'Big quotes': value": [500, 800]}

    services.agent_update(actor=owner, agent=agent, confidence_review_below=0.8,
                          review_sample_rate=0.2, sources=[source])
    assert items(latest(agent)) == {
        "Review when confidence is below": [0.7, 0.8],
        "Review sample rate (L2)": [0.1, 0.2],
        "Source price-list": [None, "Price list, approved"]}

    services.data_source_save(actor=None, slug="price-list", name="Price list",
                              approved=False)
    assert items(latest(agent)) == {"Source price-list: approved": [True, False]}

    services.guardrail_delete(actor=owner, guardrail=rule)
    assert items(latest(agent)) == {"Guardrail 'Big quotes'": ["amount gt 800 → review", None]}
    services.system_access_remove(actor=owner, access=access)
    assert items(latest(agent)) == {"Access to crm": ["draft", None]}

    agent.refresh_from_db()
    numbers = list(PolicyVersion.objects.filter(agent=agent).order_by("number")
                   .values_list("number", flat=True))
    assert numbers == list(range(1, 10)) and numbers[-1] == agent.policy_version
    assert latest(agent).created_by == owner
    assert latest(agent).policy == versions.policy_document(build_snapshot(agent.pk))


def test_status_changes_are_versions_too(owner):
    agent = make_agent(owner=owner, slug="pilot-one", ready=True)
    services.agent_move(actor=owner, agent=agent, to_status="pilot")
    assert items(latest(agent)) == {"Status": ["proposed", "pilot"]}
    services.agent_pause(actor=owner, agent=agent, reason="Odd replies")
    assert items(latest(agent)) == {"Status": ["pilot", "paused"],
                                    "Pause reason": ["", "Odd replies"]}
    services.agent_resume(actor=owner, agent=agent)
    assert items(latest(agent)) == {"Status": ["paused", "pilot"],
                                    "Pause reason": ["Odd replies", ""]}
    services.agent_retire(actor=owner, agent=agent)
    assert items(latest(agent)) == {"Status": ["pilot", "retired"]}
    agent.refresh_from_db()
    assert latest(agent).number == agent.policy_version
    assert event(agent, "agent.retired").data["policy_version_saved"] == agent.policy_version


def test_a_save_that_changes_no_policy_makes_no_version(agent, owner):
    before = PolicyVersion.objects.filter(agent=agent).count()
    services.agent_update(actor=owner, agent=agent, description="Now with a description.")
    services.rollback_step_add(actor=owner, agent=agent, title="Undo", instructions="Revert.")
    services.agent_token_create(actor=owner, agent=agent, name="ci")
    crm = SystemFactory(slug="crm")
    SystemAccess.objects.create(agent=agent, system=crm, max_kind="read")
    services.system_access_set(actor=owner, agent=agent, system=crm, max_kind="read")  # same
    assert PolicyVersion.objects.filter(agent=agent).count() == before
    assert "policy_version_saved" not in event(agent, "agent.changed").data


def test_an_agent_older_than_versions_gets_its_baseline_at_its_first_save():
    agent = AgentFactory(slug="old-timer", policy_version=7, confidence_review_below=0.7)
    assert not PolicyVersion.objects.filter(agent=agent).exists()
    services.agent_update(actor=None, agent=agent, confidence_review_below=0.75)
    baseline, first = PolicyVersion.objects.filter(agent=agent).order_by("number")
    assert (baseline.number, baseline.diff, baseline.created_by) == (7, [], None)
    assert baseline.policy["confidence_review_below"] == 0.7
    assert first.number == Agent.objects.get(pk=agent.pk).policy_version == 8
    assert items(first) == {"Review when confidence is below": [0.7, 0.75]}


def test_agent_page_lists_the_history_and_the_version_page_shows_it(client, agent, owner):
    services.agent_update(actor=owner, agent=agent, confidence_block_below=0.2)
    client.force_login(owner)
    page = client.get(reverse("agents:detail", args=[agent.slug])).content.decode()
    assert "Policy history" in page
    url = reverse("agents:policy-version", args=[agent.slug, 2])
    assert url in page and "Block when confidence is below" in page
    version_page = client.get(url)
    assert version_page.status_code == 200
    assert "policy version 2" in version_page.content.decode()
    assert client.get(reverse("agents:policy-version", args=[agent.slug, 99])).status_code == 404


def test_audit_trail_links_the_event_to_its_version(client, agent, owner, roles):
    services.agent_update(actor=owner, agent=agent, confidence_block_below=0.2)
    client.force_login(roles.admin)
    page = client.get(reverse("audit")).content.decode()
    assert reverse("agents:policy-version", args=[agent.slug, 2]) in page
    assert ">policy v2</a>" in page
