"""Autonomy changes on the agent's page: the request form, the figures each change carries, and
approve / reject for who may decide (htmx and plain forms)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm

from agents import autonomy
from agents.autonomy_views import change_view
from agents.models import Agent, AutonomyChange
from portal.models import AuditEvent
from tests.factories import UserFactory
from tests.metrics.test_scorecard_fleet import series, target

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def detail(client, agent) -> str:
    return client.get(reverse("agents:detail", args=[agent.slug])).content.decode()


def at_level(agent: Agent, level: int) -> Agent:
    Agent.objects.filter(pk=agent.pk).update(autonomy_level=level)
    agent.refresh_from_db()
    return agent


def with_figures(agent: Agent) -> Agent:
    series(agent, "accuracy", [94, 95, 96, 97])
    series(agent, "acceptance_rate", [88, 90, 91, 93])
    target(agent, "accuracy", 95)
    return agent


def test_owners_see_the_request_form_and_viewers_do_not(client, roles):
    client.force_login(roles.owner)
    page = detail(client, roles.agent)
    assert 'id="autonomy"' in page and "Request an autonomy change" in page
    assert "No autonomy change asked for yet." in page
    client.force_login(roles.reviewer)
    page = detail(client, roles.agent)
    assert 'id="autonomy"' in page and "Request an autonomy change" not in page


def test_requesting_a_lowering_with_htmx_shows_it_pending_with_its_figures(client, roles):
    agent = with_figures(at_level(roles.agent, 3))
    client.force_login(roles.owner)
    response = client.post(reverse("agents:autonomy-request", args=[agent.slug]),
                           {"to_level": "2", "reason": "Accuracy is slipping."}, headers=HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert '<article id="autonomy">' in body and "<html" not in body
    assert "Requested L3 → L2; an owner or an admin decides." in body
    change = AutonomyChange.objects.get()
    assert (change.from_level, change.to_level, change.status) == (3, 2, "pending")
    assert f'id="autonomy-change-{change.pk}"' in body
    assert "Accuracy" in body and "Acceptance rate" in body and ">97<" in body
    assert "One change waits for a decision" in body  # no second request form meanwhile
    assert AuditEvent.objects.filter(verb="autonomy_change.requested").count() == 1


def test_a_raise_without_figures_is_refused_with_the_reason(client, roles):
    client.force_login(roles.owner)
    response = client.post(reverse("agents:autonomy-request", args=[roles.agent.slug]),
                           {"to_level": "2", "reason": "It does well."})
    body = response.content.decode()
    assert response.status_code == 400
    assert "has no quality or trust figures" in body and "<html" in body
    assert not AutonomyChange.objects.exists()


def test_bad_request_input_names_the_fields(client, roles):
    client.force_login(roles.owner)
    response = client.post(reverse("agents:autonomy-request", args=[roles.agent.slug]),
                           {"to_level": "1", "reason": ""}, headers=HTMX)
    body = response.content.decode()
    assert response.status_code == 400
    assert "Say why the level should change" in body
    assert "Choose one of the other levels" in body  # L1 is where it already is
    assert not AutonomyChange.objects.exists()


def test_a_raise_is_approved_by_the_business_owner_not_the_requester(client, roles):
    agent = with_figures(roles.agent)
    process = UserFactory(username="pia-process")
    Agent.objects.filter(pk=agent.pk).update(process_owner=process)
    agent.refresh_from_db()
    assign_perm("agents.view_agent", process, agent)
    assign_perm("agents.change_agent", process, agent)
    change = autonomy.autonomy_change_request(actor=process, agent=agent, to_level=2,
                                              reason="Four good weeks.")
    client.force_login(process)
    page = detail(client, agent)
    assert "Approve L2" not in page  # the requester may still reject (withdraw) it
    assert f"/agents/{agent.slug}/autonomy/{change.pk}/reject/" in page
    client.force_login(roles.owner)  # the business owner
    page = detail(client, agent)
    assert "Approve L2" in page
    response = client.post(reverse("agents:autonomy-approve", args=[agent.slug, change.pk]),
                           {"note": ""})
    assert response.status_code == 302 and response.url.endswith("#autonomy")
    agent.refresh_from_db()
    change.refresh_from_db()
    assert agent.autonomy_level == 2 and change.status == "approved"
    assert change.decided_by == roles.owner


def test_the_requester_cannot_approve_their_own_raise(client, roles):
    agent = with_figures(roles.agent)
    change = autonomy.autonomy_change_request(actor=roles.owner, agent=agent, to_level=2,
                                              reason="Four good weeks.")
    client.force_login(roles.owner)
    assert "Approve L2" not in detail(client, agent)
    response = client.post(reverse("agents:autonomy-approve", args=[agent.slug, change.pk]))
    assert response.status_code == 403
    change.refresh_from_db()
    assert change.status == "pending"


def test_rejecting_needs_a_note_and_then_keeps_the_level(client, roles):
    agent = at_level(roles.agent, 2)
    change = AutonomyChange.objects.create(agent=agent, from_level=2, to_level=1,
                                           reason="Overrides doubled.")
    client.force_login(roles.owner)
    url = reverse("agents:autonomy-reject", args=[agent.slug, change.pk])
    response = client.post(url, {"note": ""}, headers=HTMX)
    assert response.status_code == 400
    assert "Say why you reject the change" in response.content.decode()
    response = client.post(url, {"note": "It was one bad day."}, headers=HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "Rejected L2 → L1." in body
    assert "It was one bad day." in body
    change.refresh_from_db()
    agent.refresh_from_db()
    assert change.status == "rejected" and agent.autonomy_level == 2


def test_a_decided_change_cannot_be_decided_again(client, roles):
    agent = at_level(roles.agent, 2)
    change = AutonomyChange.objects.create(agent=agent, from_level=2, to_level=1,
                                           reason="Overrides doubled.", status="rejected")
    client.force_login(roles.owner)
    response = client.post(reverse("agents:autonomy-approve", args=[agent.slug, change.pk]),
                           headers=HTMX)
    assert response.status_code == 400
    assert "already rejected" in response.content.decode()


def test_a_change_of_another_agent_answers_404(client, roles):
    other = at_level(roles.other, 2)
    change = AutonomyChange.objects.create(agent=other, from_level=2, to_level=1,
                                           reason="Overrides doubled.")
    client.force_login(roles.admin)
    url = reverse("agents:autonomy-approve", args=[roles.agent.slug, change.pk])
    assert client.post(url).status_code == 404


def test_the_pages_decide_buttons_follow_the_services_rule(roles):
    """change_view's may_approve (no queries) agrees with autonomy.can_approve."""
    agent = with_figures(at_level(roles.agent, 2))
    lowering = AutonomyChange.objects.create(agent=agent, from_level=2, to_level=1,
                                             reason="x")
    raise_by_owner = AutonomyChange.objects.create(agent=agent, from_level=2, to_level=3,
                                                   reason="y", requested_by=roles.owner)
    raise_by_admin = AutonomyChange.objects.create(agent=agent, from_level=2, to_level=3,
                                                   reason="z", requested_by=roles.admin)
    for user in roles.all().values():
        can_change = user.has_perm("agents.change_agent") or user.has_perm(
            "agents.change_agent", agent)
        for change in (lowering, raise_by_owner, raise_by_admin):
            view = change_view(change, user=user, can_change=can_change)
            assert view.may_approve == autonomy.can_approve(user, change), (
                user.username, change.reason)


def test_the_autonomy_section_costs_the_same_queries_for_many_changes(client, roles):
    agent = at_level(with_figures(roles.agent), 2)

    def change(n: int) -> AutonomyChange:
        return AutonomyChange.objects.create(
            agent=agent, from_level=2, to_level=1 if n % 2 else 3, reason=f"r{n}",
            status="rejected", requested_by=roles.owner, decided_by=roles.admin,
            evidence=autonomy.evidence_figures(agent))

    change(0)
    client.force_login(roles.owner)
    detail(client, agent)
    with CaptureQueriesContext(connection) as one:
        detail(client, agent)
    for n in range(1, 9):
        change(n)
    with CaptureQueriesContext(connection) as many:
        page = detail(client, agent)
    assert len(many.captured_queries) == len(one.captured_queries)
    assert page.count('class="autonomy-change autonomy-rejected"') == 9
