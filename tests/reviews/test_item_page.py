"""The item page: everything a reviewer needs to decide, the decision forms (htmx and plain),
read-only for people who may see but not decide, and 404 for people who may not see."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from agents import services as agent_services
from agents.models import RollbackStep, SystemAccess
from portal import audit
from reviews.models import ActionRequest, Incident
from tests.factories import DataSourceFactory, SystemFactory, UserFactory
from tests.reviews.test_inbox import pending_action

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Target": "decision"}


def page_of(client, item, **params) -> str:
    response = client.get(reverse("reviews:item", args=[item.public_id]), params)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def refund(roles):
    """A pending refund reply with fields, a draft, a prompt, sources and a fired guardrail."""
    agent = roles.agent
    guardrail = agent_services.guardrail_create(
        actor=None, agent=agent, name="Refunds over 500 need a manager", field="amount",
        operator="gt", value=500, effect="review")
    RollbackStep.objects.create(agent=agent, position=1, title="Withdraw the reply",
                                instructions="Delete the draft in the ticket.")
    agent.sources.add(
        DataSourceFactory(slug="refund-policy", name="Refund policy"),
        DataSourceFactory(slug="ticket-history", name="Ticket history",
                          max_age=timedelta(hours=1),
                          refreshed_at=timezone.now() - timedelta(days=2)))
    SystemAccess.objects.create(agent=agent, system=SystemFactory(slug="crm", name="CRM"),
                                max_kind="execute")
    agent_services.agent_move(actor=None, agent=agent, to_status="pilot")
    item = pending_action(
        agent, summary="Refund 640 EUR to Ann", operation="refund_reply", kind="draft",
        target="ticket 4411", amount="640", currency="EUR", confidence=0.64,
        changes={"ticket_tag": "billing", "refund_eur": 640, "notify": True},
        content="Dear Ann, we refund 640 EUR.", prompt="You are a helpful support agent.",
        sources=["refund-policy", "ticket-history"], fired_guardrail_ids=[guardrail.pk],
        reasons=[{"code": "guardrail", "message": "Refunds over 500 need a manager"},
                 {"code": "confidence_review", "message": "Confidence 0.64 is under 0.7"}])
    audit.record(actor=agent, verb="action.proposed", obj=item, agent=agent,
                 data={"status": "pending", "decision": "review"})
    return item


def test_the_page_shows_everything_needed_to_decide(client, roles, refund):
    client.force_login(roles.reviewer)
    page = page_of(client, refund)
    for text in (
        "Refund replies", 'class="badge level"', ">L1<", "status-pilot",
        "Refund 640 EUR to Ann", "<code>refund_reply</code>", "ticket 4411", "640.00 EUR",
        "0.64",
        "<code>ticket_tag</code></th><td>billing</td>", "<code>refund_eur</code></th><td>640</td>",
        "<code>notify</code></th><td>true</td>",
        "Dear Ann, we refund 640 EUR.",
        '<details class="prompt"><summary>Prompt</summary>', "You are a helpful support agent.",
        "Refund policy", "✓ approved", "Ticket history", '<span class="badge warn">stale</span>',
        "Refunds over 500 need a manager", "Confidence 0.64 is under 0.7",
        "is greater than",  # the fired guardrail's sentence
        "Withdraw the reply", "Delete the draft in the ticket.",
        "<code>action.proposed</code>", "agent:refund-replies",
        'data-key="approve"', 'id="edit"', 'name="note"', "Claim</button>",
        "/incidents/new/?agent=refund-replies&amp;action=",
    ):
        assert text in page, text


def test_edit_form_offers_each_changed_field_and_the_draft(client, roles, refund):
    client.force_login(roles.reviewer)
    page = page_of(client, refund, edit=1)
    assert '<details id="edit" class="edit" open>' in page
    assert 'name="change.ticket_tag" value="billing"' in page
    assert 'name="change.refund_eur" value="640"' in page
    assert 'name="change.notify" value="true"' in page
    assert "Dear Ann, we refund 640 EUR.</textarea>" in page


def test_read_only_for_people_who_see_the_agent_but_do_not_review_it(client, roles, refund):
    for role in ("owner", "pauser", "revops"):
        client.force_login(getattr(roles, role))
        page = page_of(client, refund)
        decision = page.split('id="decision"')[1].split("</article>")[0]
        assert "Read only: only reviewers of Refund replies decide this item." in decision
        assert "<form" not in decision, role
        assert "Refund 640 EUR to Ann" in page


def test_hidden_agents_items_answer_404(client, roles, refund):
    for role in ("viewer", "other_reviewer"):
        client.force_login(getattr(roles, role))
        assert client.get(reverse("reviews:item", args=[refund.public_id])).status_code == 404


def test_paused_agents_item_says_why_and_offers_no_approve(client, roles, refund):
    agent_services.agent_pause(actor=None, agent=roles.agent, reason="Quoting old prices")
    client.force_login(roles.reviewer)
    page = page_of(client, refund)
    assert "is paused (Quoting old prices)" in page
    assert 'data-key="approve"' not in page and 'id="edit"' not in page
    assert "Reject</button>" in page


def test_retired_agents_item_can_only_be_rejected(client, roles, refund):
    agent_services.agent_retire(actor=None, agent=roles.agent, reason="Replaced")
    client.force_login(roles.reviewer)
    page = page_of(client, refund)
    assert "can only be rejected" in page and 'data-key="approve"' not in page


def test_routed_item_is_read_only_for_reviewers_outside_the_group(client, roles, refund):
    managers = Group.objects.create(name="Managers")
    ActionRequest.objects.filter(pk=refund.pk).update(route_to_group=managers)
    client.force_login(roles.reviewer)
    page = page_of(client, refund)
    assert "only members of Managers decide this item" in page
    response = client.post(reverse("reviews:approve", args=[refund.public_id]))
    assert response.status_code == 403
    manager = UserFactory(username="mia-manager")
    manager.groups.add(managers)
    client.force_login(manager)
    assert 'data-key="approve"' in page_of(client, refund)


# --- decisions on the item page --------------------------------------------------------------

def test_htmx_approve_re_renders_the_decision_area(client, roles, refund):
    client.force_login(roles.reviewer)
    response = client.post(reverse("reviews:approve", args=[refund.public_id]),
                           {"note": "Checked the policy"}, headers=HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith('<article id="decision"')
    assert "status-approved" in body and "Checked the policy" in body
    assert '<article id="history" hx-swap-oob="true">' in body and "action.approved" in body
    assert 'id="review-flash"' in body and "Approved: Refund 640 EUR to Ann" in body
    assert "<form" not in body.split('id="history"')[0].split("Report a problem")[0]
    refund.refresh_from_db()
    assert (refund.status, refund.review_note) == ("approved", "Checked the policy")


def test_plain_approve_redirects_to_the_item_with_a_message(client, roles, refund):
    client.force_login(roles.reviewer)
    response = client.post(reverse("reviews:approve", args=[refund.public_id]))
    assert response.status_code == 302
    assert response.url == reverse("reviews:item", args=[refund.public_id])
    page = client.get(response.url).content.decode()
    assert "Approved: Refund 640 EUR to Ann" in page and "status-approved" in page


def test_edit_and_approve_sends_the_edited_fields(client, roles, refund):
    client.force_login(roles.reviewer)
    response = client.post(reverse("reviews:edit", args=[refund.public_id]), {
        "change.ticket_tag": "billing", "change.refund_eur": "600", "change.notify": "true",
        "content": "Dear Ann, we refund 600 EUR.", "note": "Capped"}, headers=HTMX)
    body = response.content.decode()
    assert "Approved with your edits" in body, body[:2000]
    refund.refresh_from_db()
    assert refund.status == "approved"
    assert refund.edited_changes == {"ticket_tag": "billing", "refund_eur": 600, "notify": True}
    assert refund.edited_content == "Dear Ann, we refund 600 EUR."
    page = page_of(client, refund)
    assert 'class="edited">600</td>' in page and "Draft as approved (edited)" in page


def test_edit_with_a_broken_json_value_changes_nothing(client, roles, refund):
    client.force_login(roles.reviewer)
    response = client.post(reverse("reviews:edit", args=[refund.public_id]), {
        "change.ticket_tag": "billing", "change.refund_eur": "six hundred",
        "change.notify": "true",
        "content": "Dear Ann"}, headers=HTMX)
    body = response.content.decode()
    assert "Enter a JSON value" in body and '<details id="edit" class="edit" open>' in body
    assert 'value="six hundred"' in body  # what they typed is kept
    refund.refresh_from_db()
    assert refund.status == "pending" and refund.edited_changes is None


def test_edit_that_changes_nothing_is_refused(client, roles, refund):
    client.force_login(roles.reviewer)
    response = client.post(reverse("reviews:edit", args=[refund.public_id]), {
        "change.ticket_tag": "billing", "change.refund_eur": "640", "change.notify": "true",
        "content": "Dear Ann, we refund 640 EUR."})
    page = client.get(response.url).content.decode()
    assert "Nothing was edited" in page
    refund.refresh_from_db()
    assert refund.status == "pending"


def test_htmx_reject_without_a_reason_shows_the_error_next_to_the_field(client, roles, refund):
    client.force_login(roles.reviewer)
    body = client.post(reverse("reviews:reject", args=[refund.public_id]), {"note": ""},
                       headers=HTMX).content.decode()
    assert 'id="reject-error"' in body and "Say why you reject it" in body
    refund.refresh_from_db()
    assert refund.status == "pending"


def test_second_decision_is_told_who_decided_first(client, roles, refund):
    client.force_login(roles.admin)
    client.post(reverse("reviews:reject", args=[refund.public_id]), {"note": "No"})
    client.force_login(roles.reviewer)
    body = client.post(reverse("reviews:approve", args=[refund.public_id]),
                       headers=HTMX).content.decode()
    assert f"Already rejected by {roles.admin}" in body
    refund.refresh_from_db()
    assert refund.reviewed_by == roles.admin


def test_claim_and_unclaim_on_the_item_page(client, roles, refund):
    client.force_login(roles.reviewer)
    body = client.post(reverse("reviews:claim", args=[refund.public_id]),
                       headers=HTMX).content.decode()
    assert "Claimed by you" in body and "Unclaim</button>" in body
    client.force_login(roles.admin)
    page = page_of(client, refund)
    assert f"Claimed by {roles.reviewer}" in page and "Unclaim</button>" not in page
    client.force_login(roles.reviewer)
    client.post(reverse("reviews:unclaim", args=[refund.public_id]))
    refund.refresh_from_db()
    assert refund.claimed_by is None


def test_sampled_item_gets_looks_right_and_flag(client, roles):
    item = pending_action(roles.agent, status="approved", decision="allow", sampled=True,
                          reasons=[])
    client.force_login(roles.reviewer)
    page = page_of(client, item)
    assert "Looks right</button>" in page and "Flag a problem…" in page
    assert "Approve</button>" not in page
    body = client.post(reverse("reviews:flag", args=[item.public_id]),
                       {"category": "tone", "severity": "high", "description": ""},
                       headers=HTMX).content.decode()
    assert "Describe what went wrong" in body and '<details id="flag" class="flag" open>' in body
    assert not Incident.objects.exists()
    body = client.post(reverse("reviews:flag", args=[item.public_id]),
                       {"category": "tone", "severity": "high", "description": "Too curt."},
                       headers=HTMX).content.decode()
    assert "an incident is open" in body
    incident = Incident.objects.get()
    assert (incident.action_request, incident.category, incident.reported_by) == (
        item, "tone", roles.reviewer)
    item.refresh_from_db()
    assert item.sample_verdict == "flagged"
    assert "Checked afterwards: problem flagged" in page_of(client, item)


@pytest.mark.postgres  # the badge's plain-SQL path; SQLite takes a few more
def test_item_page_pins_its_query_count(client, roles, refund, django_assert_num_queries):
    client.force_login(roles.reviewer)
    page_of(client, refund)  # warm the ContentType cache
    # session, user, global perms ×2, the request (with agent, system, people), may decide
    # (object perms ×2), sources, fired guardrails, runbook, history, navigation (groups,
    # badge: scope + count, alert badge), the action.viewed audit event; no session save
    # (refreshed at most once a minute)
    with django_assert_num_queries(16):
        page_of(client, refund)


def test_edit_cannot_break_a_blocking_guardrail(client, roles, refund):
    agent_services.guardrail_create(actor=None, agent=roles.agent, name="Refunds over 1000",
                                    field="changes.refund_eur", operator="gt", value=1000,
                                    effect="block")
    client.force_login(roles.reviewer)
    body = client.post(reverse("reviews:edit", args=[refund.public_id]), {
        "change.ticket_tag": "billing", "change.refund_eur": "2000", "change.notify": "true",
        "content": "Dear Ann, we refund 2000 EUR."}, headers=HTMX).content.decode()
    assert "The edited proposal would be blocked" in body and "flash-error" in body
    assert '<details id="edit" class="edit" open>' in body and 'value="2000"' in body
    refund.refresh_from_db()
    assert refund.status == "pending" and refund.edited_changes is None
