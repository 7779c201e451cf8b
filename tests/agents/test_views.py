"""What owners, reviewers and admins see and do on the registry pages."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm

from agents.models import Agent, AgentToken, Guardrail, RollbackStep, SystemAccess
from agents.services import hash_token
from portal.models import AuditEvent
from tests.factories import SystemFactory, UserFactory, make_agent

pytestmark = pytest.mark.django_db


def test_list_and_dashboard_show_only_visible_agents(client, roles):
    client.force_login(roles.reviewer)
    page = client.get(reverse("agents:list")).content.decode()
    assert "Refund replies" in page and "CRM hygiene" not in page
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert "CRM hygiene" not in dashboard
    client.force_login(roles.viewer)
    assert "Refund replies" not in client.get(reverse("agents:list")).content.decode()
    client.force_login(roles.revops)
    page = client.get(reverse("agents:list")).content.decode()
    assert "Refund replies" in page and "CRM hygiene" in page


def test_list_filters_by_status_level_owner_and_name(client, roles):
    client.force_login(roles.admin)
    roles.other.autonomy_level = 2
    roles.other.save()
    url = reverse("agents:list")
    assert "CRM hygiene" not in client.get(url, {"q": "refund"}).content.decode()
    by_level = client.get(url, {"autonomy_level": 2}).content.decode()
    assert "CRM hygiene" in by_level and "Refund replies" not in by_level
    by_owner = client.get(url, {"owner": roles.owner.username}).content.decode()
    assert "Refund replies" in by_owner and "CRM hygiene" not in by_owner
    assert "No agent matches" in client.get(url, {"status": "live"}).content.decode()


def test_htmx_filter_returns_only_the_results_fragment(client, roles):
    client.force_login(roles.admin)
    response = client.get(reverse("agents:list"), {"q": "crm"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="results">') and "<html" not in body
    assert "CRM hygiene" in body


def test_agent_list_query_count_does_not_grow_with_agents(client, roles, django_assert_num_queries):
    client.force_login(roles.reviewer)
    system = SystemFactory(slug="crm")
    for n in range(12):
        agent = make_agent(slug=f"bulk-{n}")
        SystemAccess.objects.create(agent=agent, system=system, max_kind="read")
        assign_perm("agents.view_agent", roles.reviewer, agent)
    client.get(reverse("agents:list"))  # the first view after login refreshes the session
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("agents:list"))
    for n in range(12, 30):
        assign_perm("agents.view_agent", roles.reviewer, make_agent(slug=f"bulk-{n}"))
    with django_assert_num_queries(len(few.captured_queries)):
        response = client.get(reverse("agents:list"))
    assert response.content.decode().count('class="badge level"') == 31


def test_agent_list_pins_its_query_count(client, roles, django_assert_num_queries):
    client.force_login(roles.admin)
    client.get(reverse("agents:list"))  # warm the process-wide ContentType cache
    # session, user, perms ×2, owner filter, count, nav groups, nav waiting badge ×2, agents,
    # accesses, nav alert badge (the session is refreshed at most once a minute, so no save)
    with django_assert_num_queries(12):
        client.get(reverse("agents:list"))


def test_agent_detail_pins_its_query_count(client, roles, django_assert_num_queries):
    client.force_login(roles.owner)
    client.get(reverse("agents:detail", args=["refund-replies"]))  # warm the ContentType cache
    # 17 + its open incidents (1) + the navigation's waiting badge (3)
    # + its open alerts, its autonomy changes, the navigation's alert badge (3)
    # + its rollout plan: tasks, targets, whether a scorecard review exists (3)
    # + its policy history (1)
    with django_assert_num_queries(24):
        response = client.get(reverse("agents:detail", args=["refund-replies"]))
    assert response.status_code == 200


def test_owner_registers_an_agent_and_is_sent_to_configure_it(client, roles):
    client.force_login(roles.owner)
    response = client.post(reverse("agents:create"), {
        "name": "Ticket summaries", "slug": "ticket-summaries",
        "business_outcome": "Summarise every ticket within a minute.",
        "definition_of_done": "The summary is on the ticket.", "workflow": "support",
        "autonomy_level": 1, "business_owner": roles.owner.pk,
        "review_sample_rate": 0.1, "confidence_review_below": 0.7,
        "confidence_block_below": 0.3, "review_cadence": "weekly",
    })
    assert response.status_code == 302
    assert response.url == reverse("agents:edit", args=["ticket-summaries"])
    agent = Agent.objects.get(slug="ticket-summaries")
    assert agent.status == "proposed"
    assert roles.owner.has_perm("agents.change_agent", agent)
    assert AuditEvent.objects.filter(agent=agent, verb="agent.created",
                                     actor_user=roles.owner).exists()


def test_bad_agent_form_names_the_fields_and_changes_nothing(client, roles):
    client.force_login(roles.owner)
    before = Agent.objects.count()
    response = client.post(reverse("agents:create"), {
        "name": "", "slug": "Not a slug!", "autonomy_level": 4,
        "review_sample_rate": 2, "confidence_review_below": 0.5,
        "confidence_block_below": 0.9, "review_cadence": "weekly",
    })
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert {"name", "slug", "review_sample_rate"} <= set(errors)
    assert Agent.objects.count() == before


def test_owner_cannot_start_a_new_agent_above_l2(client, roles):
    client.force_login(roles.owner)
    response = client.post(reverse("agents:create"), {
        "name": "Bold", "slug": "bold", "autonomy_level": 3, "business_owner": roles.owner.pk,
        "review_sample_rate": 0.1, "confidence_review_below": 0.7,
        "confidence_block_below": 0.3, "review_cadence": "weekly",
    })
    assert "New agents start at L1 or L2" in str(response.context["form"].errors)
    assert not Agent.objects.filter(slug="bold").exists()


def test_edit_records_a_field_level_diff(client, roles):
    client.force_login(roles.owner)
    agent = roles.agent
    form_data = {
        "name": agent.name, "business_outcome": agent.business_outcome,
        "definition_of_done": agent.definition_of_done, "workflow": "refunds",
        "autonomy_level": 1, "business_owner": roles.owner.pk,
        "process_owner": roles.owner.pk, "technical_owner": roles.owner.pk,
        "pausers": [roles.pauser.pk], "review_sample_rate": 0.25,
        "confidence_review_below": 0.7, "confidence_block_below": 0.3,
        "review_cadence": "weekly",
    }
    response = client.post(reverse("agents:edit", args=[agent.slug]), form_data)
    assert response.status_code == 302
    event = AuditEvent.objects.filter(agent=agent, verb="agent.changed").latest("id")
    assert event.data["changes"] == {"workflow": ["", "refunds"],
                                     "review_sample_rate": [0.1, 0.25]}
    # raising autonomy is not an edit: it goes through an autonomy change (issue 6)
    response = client.post(reverse("agents:edit", args=[agent.slug]),
                           {**form_data, "autonomy_level": 2})
    assert "Request an autonomy change" in str(response.context["form"].errors)


def test_replacing_an_owner_moves_their_permissions(roles):
    from agents import services

    newcomer = UserFactory(username="nina-new")
    services.agent_update(actor=roles.admin, agent=roles.agent, technical_owner=newcomer)
    assert newcomer.has_perm("agents.pause_agent", roles.agent)
    # olga still owns the business and process roles, so she keeps hers
    assert UserFactory(username="olga-owner").has_perm("agents.change_agent", roles.agent)
    services.agent_update(actor=roles.admin, agent=roles.agent, pausers=[])
    pauser = type(roles.pauser).objects.get(pk=roles.pauser.pk)  # fresh permission cache
    assert not pauser.has_perm("agents.pause_agent", roles.agent)
    assert not pauser.has_perm("agents.view_agent", roles.agent)
    revoked = AuditEvent.objects.filter(agent=roles.agent, verb="permission.revoked").latest("id")
    assert revoked.data["user"] == "paul-pauser"


def test_inline_sections_add_and_remove_with_htmx(client, roles):
    client.force_login(roles.owner)
    slug = roles.agent.slug
    crm = SystemFactory(slug="crm", name="CRM")
    hx = {"HX-Request": "true"}
    response = client.post(reverse("agents:access-add", args=[slug]),
                           {"system": crm.pk, "max_kind": "draft"}, headers=hx)
    assert response.content.decode().lstrip().startswith('<article id="accesses">')
    assert SystemAccess.objects.get(agent=roles.agent, system=crm).max_kind == "draft"

    response = client.post(reverse("agents:guardrail-add", args=[slug]), {
        "name": "Refunds over 500", "field": "amount", "operator": "gt", "value": "500",
        "effect": "review"}, headers=hx)
    assert "If amount is greater than 500: send to review." in response.content.decode()
    assert Guardrail.objects.get(agent=roles.agent).value == 500

    client.post(reverse("agents:step-add", args=[slug]),
                {"title": "Discard", "instructions": "Delete the draft."}, headers=hx)
    client.post(reverse("agents:step-add", args=[slug]),
                {"title": "Tell the customer", "instructions": "Apologise."}, headers=hx)
    first = RollbackStep.objects.get(agent=roles.agent, position=1)
    client.post(reverse("agents:step-remove", args=[slug, first.pk]), headers=hx)
    assert list(RollbackStep.objects.filter(agent=roles.agent)
                .values_list("position", "title")) == [(1, "Tell the customer")]


def test_bad_guardrail_is_explained_next_to_its_field(client, roles):
    client.force_login(roles.owner)
    response = client.post(reverse("agents:guardrail-add", args=[roles.agent.slug]), {
        "name": "Broken", "field": "colour", "operator": "gt", "value": "lots",
        "effect": "review"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "Unknown field &#x27;colour&#x27;" in body
    assert "compares numbers: give a number" in body
    assert not Guardrail.objects.filter(agent=roles.agent).exists()


def test_move_refused_says_what_is_missing(client, roles):
    client.force_login(roles.owner)
    response = client.post(reverse("agents:move", args=[roles.agent.slug]),
                           {"to_status": "pilot"}, follow=True)
    text = response.content.decode()
    assert "cannot move to pilot yet: it needs at least one system access and at least " \
           "one rollback step" in text
    roles.agent.refresh_from_db()
    assert roles.agent.status == "proposed"


def test_pause_without_reason_is_refused_with_a_message(client, roles):
    client.force_login(roles.pauser)
    response = client.post(reverse("agents:pause", args=[roles.agent.slug]), {"reason": ""})
    assert response.status_code == 400
    assert "Say why you are pausing the agent." in response.content.decode()
    roles.agent.refresh_from_db()
    assert roles.agent.status == "proposed"


def test_token_secret_is_shown_once_and_only_its_hash_is_stored(client, roles):
    client.force_login(roles.owner)
    url = reverse("agents:token-create", args=[roles.agent.slug])
    response = client.post(url, {"name": "prod"}, headers={"HX-Request": "true"})
    secret = re.search(r'value="(stw_[^"]+)"', response.content.decode()).group(1)
    assert secret in response.content.decode()
    token = AgentToken.objects.get(agent=roles.agent)
    assert secret.startswith(token.prefix) and token.secret_hash == hash_token(secret)
    assert secret not in str(AgentToken.objects.values().get())
    detail = client.get(reverse("agents:detail", args=[roles.agent.slug])).content.decode()
    assert secret not in detail and token.prefix in detail

    client.post(reverse("agents:token-revoke", args=[roles.agent.slug, token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(verb="token.revoked", agent=roles.agent).exists()


def test_retired_agent_cannot_be_edited(client, roles):
    client.force_login(roles.owner)
    client.post(reverse("agents:retire", args=[roles.agent.slug]), {"confirm": "on"})
    assert client.get(reverse("agents:edit", args=[roles.agent.slug])).status_code == 403
    page = client.get(reverse("agents:detail", args=[roles.agent.slug])).content.decode()
    assert "Retired" in page and "Edit</a>" not in page


def test_audit_page_filters_by_agent_and_verb(client, roles):
    client.force_login(roles.revops)
    page = client.get(reverse("audit"), {"agent": "crm-hygiene", "verb": "agent.created"})
    events = page.context["events"]
    assert events and all(e.agent_id == roles.other.pk and e.verb == "agent.created"
                          for e in events)
    bad = client.get(reverse("audit"), {"since": "2026-02-01", "until": "2026-01-01"})
    assert "The end date is before the start date." in bad.content.decode()


def test_forbidden_page_says_why(client, roles):
    client.force_login(roles.reviewer)
    response = client.get(reverse("agents:edit", args=[roles.agent.slug]))
    assert response.status_code == 403
    assert "You may not change this agent; ask one of its owners or an admin." in (
        response.content.decode())
