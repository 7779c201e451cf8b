"""Incidents: who may report and update them, what is stored, audited and e-mailed, and the
pages (/incidents/, /incidents/<id>/, /incidents/new/)."""

import re
import uuid

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agents.models import RollbackStep
from portal.models import AuditEvent
from reviews.incidents import incident_report, incident_update
from reviews.models import ActionRequest, Incident
from tests.factories import SystemFactory, UserFactory, make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _base_url(settings):
    settings.STEWARD_BASE_URL = "https://steward.example.com/"


def _action(agent, **fields) -> ActionRequest:
    fields = {"system": SystemFactory(slug="crm", name="CRM"), "operation": "update_deal",
              "kind": "execute", "summary": "Mark deal 4411 won", "decision": "allow",
              "status": "approved", "policy_version": 1, "proposal_sha256": "0" * 64,
              "created_at": timezone.now(), **fields}
    return ActionRequest.objects.create(agent=agent, **fields)


def _report(actor, agent, **fields) -> Incident:
    fields = {"category": "wrong_record", "severity": "high",
              "description": "It closed the wrong deal.", **fields}
    return incident_report(actor=actor, agent=agent, **fields)


def _step(agent, position=1) -> RollbackStep:
    return RollbackStep.objects.create(agent=agent, position=position, title=f"Step {position}",
                                       instructions="Put the record back.")


# --- reporting -------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["reviewer", "pauser", "owner", "revops", "admin"])
def test_anyone_who_sees_the_agent_may_report(roles, role):
    incident = _report(getattr(roles, role), roles.agent)
    assert incident.status == "open" and incident.reported_by == getattr(roles, role)


@pytest.mark.parametrize("role", ["viewer", "other_reviewer"])
def test_who_cannot_see_the_agent_cannot_report(roles, role):
    with pytest.raises(PermissionDenied):
        _report(getattr(roles, role), roles.agent)
    assert not Incident.objects.exists()


def test_an_inactive_user_cannot_report(roles):
    roles.reviewer.is_active = False
    with pytest.raises(PermissionDenied):
        _report(roles.reviewer, roles.agent)


def test_report_is_stored_audited_and_mailed_to_the_owners_after_commit(
        roles, django_capture_on_commit_callbacks):
    action = _action(roles.agent)
    with django_capture_on_commit_callbacks() as callbacks:
        incident = _report(roles.reviewer, roles.agent, action_request=action)
        assert mail.outbox == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert incident.action_request == action and incident.description == (
        "It closed the wrong deal.")
    event = AuditEvent.objects.get(verb="incident.reported")
    assert event.agent_id == roles.agent.pk and event.actor_user == roles.reviewer
    assert event.data["category"] == "wrong_record" and event.data["request"] == str(
        action.public_id)
    [message] = mail.outbox
    assert message.to == [roles.owner.email]
    assert message.subject == "[Steward] High incident on Refund replies: wrong record"
    assert f"https://steward.example.com/incidents/{incident.pk}/" in message.body
    assert f"https://steward.example.com/reviews/{action.public_id}/" in message.body
    assert "It closed the wrong deal." in message.body


def test_owners_are_not_mailed_their_own_report(roles, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _report(roles.owner, roles.agent)
    assert mail.outbox == []


def test_every_distinct_owner_is_mailed_once(roles, django_capture_on_commit_callbacks):
    tech = UserFactory(username="tina-tech")
    agent = make_agent(owner=roles.owner, slug="two-owners")
    agent.technical_owner = tech
    agent.save()
    with django_capture_on_commit_callbacks(execute=True):
        _report(roles.admin, agent)
    [message] = mail.outbox
    assert message.to == sorted([roles.owner.email, tech.email])


def test_a_failing_mail_server_does_not_undo_the_report(roles, monkeypatch,
                                                          django_capture_on_commit_callbacks):
    def refuse(**kwargs):
        raise ConnectionRefusedError("SMTP is down")

    monkeypatch.setattr("reviews.mail.send_mail", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        incident = _report(roles.reviewer, roles.agent)
    assert Incident.objects.filter(pk=incident.pk).exists()


def test_report_names_every_missing_or_wrong_field(roles):
    with pytest.raises(ValidationError) as refused:
        incident_report(actor=roles.reviewer, agent=roles.agent, category="typo",
                        severity="apocalyptic", description="   ")
    errors = refused.value.message_dict
    assert set(errors) == {"category", "severity", "description"}
    assert errors["description"] == ["Describe what went wrong, so the owners can act on it."]
    assert "wrong record" in errors["category"][0] and "critical" in errors["severity"][0]
    assert not Incident.objects.exists() and not AuditEvent.objects.filter(
        verb="incident.reported").exists()


def test_report_refuses_an_action_of_another_agent(roles):
    with pytest.raises(ValidationError) as refused:
        _report(roles.admin, roles.agent, action_request=_action(roles.other))
    assert refused.value.message_dict == {
        "action_request": ["That action request belongs to another agent."]}


# --- updating --------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "allowed"), [
    ("owner", True), ("admin", True), ("reviewer", False), ("pauser", False),
    ("revops", False), ("other_reviewer", False), ("viewer", False)])
def test_only_owners_and_admins_may_update(roles, role, allowed):
    incident = _report(roles.reviewer, roles.agent)
    if allowed:
        incident = incident_update(actor=getattr(roles, role), incident=incident,
                                   status="investigating")
        assert incident.status == "investigating"
    else:
        with pytest.raises(PermissionDenied):
            incident_update(actor=getattr(roles, role), incident=incident,
                            status="investigating")
        incident.refresh_from_db()
        assert incident.status == "open"


def test_resolving_needs_a_note_and_records_who_and_when(roles):
    incident = _report(roles.reviewer, roles.agent)
    with pytest.raises(ValidationError) as refused:
        incident_update(actor=roles.owner, incident=incident, status="resolved")
    assert list(refused.value.message_dict) == ["resolution_note"]
    incident = incident_update(actor=roles.owner, incident=incident, status="resolved",
                               resolution_note="  Reopened the deal and fixed the rule.  ")
    incident.refresh_from_db()
    assert incident.status == "resolved" and incident.resolved_by == roles.owner
    assert incident.resolved_at is not None
    assert incident.resolution_note == "Reopened the deal and fixed the rule."
    event = AuditEvent.objects.get(verb="incident.resolved")
    assert event.data["changes"]["status"] == ["open", "resolved"]


def test_reopening_clears_who_resolved_it(roles):
    incident = _report(roles.reviewer, roles.agent)
    incident_update(actor=roles.owner, incident=incident, status="resolved",
                    resolution_note="Fixed.")
    incident = incident_update(actor=roles.admin, incident=incident, status="open",
                               resolution_note="Fixed, but it happened again.")
    assert incident.resolved_by is None and incident.resolved_at is None
    assert AuditEvent.objects.filter(verb="incident.reopened").count() == 1


def test_resolving_again_keeps_the_first_resolver(roles):
    incident = _report(roles.reviewer, roles.agent)
    incident_update(actor=roles.owner, incident=incident, status="resolved",
                    resolution_note="Fixed.")
    incident = incident_update(actor=roles.admin, incident=incident, status="resolved",
                               resolution_note="Fixed, and the runbook updated.")
    assert incident.resolved_by == roles.owner
    assert AuditEvent.objects.filter(verb="incident.updated").count() == 1


def test_rollback_checklist_takes_only_the_agents_own_steps(roles):
    first, second = _step(roles.agent, 1), _step(roles.agent, 2)
    foreign = _step(roles.other, 1)
    incident = _report(roles.reviewer, roles.agent)
    with pytest.raises(ValidationError) as refused:
        incident_update(actor=roles.owner, incident=incident, status="investigating",
                        rollback_steps_done=[first.pk, foreign.pk, "2"])
    assert refused.value.message_dict["rollback_steps_done"] == [
        f"Not a rollback step of Refund replies: {foreign.pk}, 2."]
    incident = incident_update(actor=roles.owner, incident=incident, status="investigating",
                               rollback_steps_done=[second.pk, first.pk, first.pk])
    incident.refresh_from_db()
    assert incident.rollback_steps_done == sorted([first.pk, second.pk])
    assert incident.rollback_run
    # None leaves the checklist alone; an empty list clears it.
    incident = incident_update(actor=roles.owner, incident=incident, status="investigating",
                               resolution_note="Undoing.")
    assert incident.rollback_steps_done == sorted([first.pk, second.pk])
    incident = incident_update(actor=roles.owner, incident=incident, status="investigating",
                               resolution_note="Undoing.", rollback_steps_done=[])
    assert incident.rollback_steps_done == [] and not incident.rollback_run


def test_an_update_that_changes_nothing_records_nothing(roles):
    incident = _report(roles.reviewer, roles.agent)
    incident_update(actor=roles.owner, incident=incident, status="open")
    assert not AuditEvent.objects.filter(verb__startswith="incident.").exclude(
        verb="incident.reported").exists()


def test_an_unknown_status_is_refused(roles):
    incident = _report(roles.reviewer, roles.agent)
    with pytest.raises(ValidationError) as refused:
        incident_update(actor=roles.owner, incident=incident, status="closed")
    assert list(refused.value.message_dict) == ["status"]


def test_the_reporter_is_told_when_it_is_resolved(roles, django_capture_on_commit_callbacks):
    incident = _report(roles.reviewer, roles.agent)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        incident_update(actor=roles.owner, incident=incident, status="resolved",
                        resolution_note="Reopened the deal.")
    [message] = mail.outbox
    assert message.to == [roles.reviewer.email]
    assert "Reopened the deal." in message.body
    assert f"https://steward.example.com/incidents/{incident.pk}/" in message.body


# --- pages -----------------------------------------------------------------------------------

def test_list_shows_only_incidents_of_visible_agents(client, roles):
    _report(roles.admin, roles.agent, description="Refund reply was curt.")
    _report(roles.admin, roles.other, description="Merged two companies.")
    client.force_login(roles.reviewer)
    page = client.get(reverse("incidents:list")).content.decode()
    assert "Refund reply was curt." in page and "Merged two companies." not in page
    client.force_login(roles.viewer)
    page = client.get(reverse("incidents:list")).content.decode()
    assert "No incident matches." in page
    client.force_login(roles.revops)
    page = client.get(reverse("incidents:list")).content.decode()
    assert "Refund reply was curt." in page and "Merged two companies." in page


def test_list_filters_by_agent_status_category_severity_and_mine(client, roles):
    curt = _report(roles.admin, roles.agent, category="tone", severity="low",
                   description="Refund reply was curt.")
    _report(roles.admin, roles.other, category="wrong_record", severity="critical",
            description="Merged two companies.")
    incident_update(actor=roles.admin, incident=curt, status="resolved",
                    resolution_note="Prompt fixed.")
    client.force_login(roles.admin)
    url = reverse("incidents:list")

    def shown(**query):
        page = client.get(url, query).content.decode()
        return {text for text in ("Refund reply was curt.", "Merged two companies.")
                if text in page}

    assert shown(agent="refund-replies") == {"Refund reply was curt."}
    assert shown(status="resolved") == {"Refund reply was curt."}
    assert shown(status="unresolved") == {"Merged two companies."}
    assert shown(category="wrong_record") == {"Merged two companies."}
    assert shown(severity="low") == {"Refund reply was curt."}
    client.force_login(roles.owner)
    assert shown(mine="on") == {"Refund reply was curt."}
    client.force_login(roles.revops)  # sees both, may resolve neither
    assert shown() == {"Refund reply was curt.", "Merged two companies."}
    assert shown(mine="on") == set()


def test_filtering_by_a_hidden_agent_leaks_nothing(client, roles):
    _report(roles.admin, roles.other, description="Merged two companies.")
    client.force_login(roles.reviewer)
    page = client.get(reverse("incidents:list"), {"agent": "crm-hygiene"}).content.decode()
    assert "Merged two companies." not in page and "Select a valid choice" in page


def test_htmx_filter_returns_only_the_results_fragment(client, roles):
    _report(roles.admin, roles.agent, description="Refund reply was curt.")
    client.force_login(roles.admin)
    response = client.get(reverse("incidents:list"), {"severity": "high"},
                          headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="results">') and "<html" not in body
    assert "Refund reply was curt." in body


def test_list_pins_its_query_count(client, roles, django_assert_num_queries):
    for n in range(3):
        _report(roles.admin, roles.agent, action_request=_action(roles.agent),
                description=f"Problem {n}")
    client.force_login(roles.owner)
    query = {"status": "open", "mine": "on"}
    client.get(reverse("incidents:list"), query)  # warm the process-wide ContentType cache
    # session, user, user perms, group perms, agent choices, count, incidents (agents, users
    # and actions joined), navigation: groups + waiting badge (2) + alert badge; no session
    # save (it is refreshed at most once a minute)
    with django_assert_num_queries(11):
        response = client.get(reverse("incidents:list"), query)
    assert response.content.decode().count("Problem ") == 3


def test_list_query_count_does_not_grow_with_incidents(client, roles):
    _report(roles.admin, roles.agent, action_request=_action(roles.agent))
    client.force_login(roles.reviewer)
    client.get(reverse("incidents:list"))
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("incidents:list"))
    for n in range(20):
        _report(roles.admin, roles.agent if n % 2 else roles.other,
                action_request=_action(roles.agent) if n % 2 else None)
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("incidents:list"))
    assert len(many.captured_queries) == len(few.captured_queries)


def test_detail_page_shows_the_incident_and_the_status_form_to_owners(client, roles):
    step = _step(roles.agent)
    action = _action(roles.agent)
    incident = _report(roles.reviewer, roles.agent, action_request=action)
    url = reverse("incidents:detail", args=[incident.pk])
    client.force_login(roles.reviewer)
    page = client.get(url).content.decode()
    assert "It closed the wrong deal." in page and "Mark deal 4411 won" in page
    assert reverse("reviews:item", args=[action.public_id]) in page
    assert step.title in page and "incident.reported" in page
    assert reverse("incidents:update", args=[incident.pk]) not in page
    client.force_login(roles.owner)
    page = client.get(url).content.decode()
    assert reverse("incidents:update", args=[incident.pk]) in page
    assert f'value="{step.pk}"' in page  # the rollback checklist


def test_owner_resolves_on_the_page_with_the_rollback_checklist(client, roles):
    first, second = _step(roles.agent, 1), _step(roles.agent, 2)
    incident = _report(roles.reviewer, roles.agent)
    client.force_login(roles.owner)
    url = reverse("incidents:update", args=[incident.pk])
    response = client.post(url, {"status": "resolved", "rollback_steps_done": [first.pk]})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_resolution_note-error"' in page and "Say how it was resolved" in page
    response = client.post(url, {"status": "resolved", "resolution_note": "Rolled back.",
                                 "rollback_steps_done": [first.pk, second.pk]})
    assert response.status_code == 302 and response.url == reverse("incidents:detail",
                                                                     args=[incident.pk])
    incident.refresh_from_db()
    assert incident.status == "resolved" and incident.rollback_steps_done == [first.pk,
                                                                              second.pk]
    page = client.get(response.url).content.decode()
    assert "The incident is resolved." in page and "run (2 steps)" in page
    for step in (first, second):  # the checklist shows what was run
        assert re.search(rf'value="{step.pk}"[^>]*checked', page)


def test_a_step_of_another_agent_is_refused_by_the_form(client, roles):
    foreign = _step(roles.other)
    incident = _report(roles.reviewer, roles.agent)
    client.force_login(roles.admin)
    response = client.post(reverse("incidents:update", args=[incident.pk]),
                           {"status": "investigating", "rollback_steps_done": [foreign.pk]})
    assert response.status_code == 400
    incident.refresh_from_db()
    assert incident.status == "open"


def test_report_form_for_an_agent_and_an_action(client, roles,
                                               django_capture_on_commit_callbacks):
    action = _action(roles.agent)
    client.force_login(roles.reviewer)
    url = reverse("incidents:create")
    query = {"agent": "refund-replies", "action": str(action.public_id)}
    page = client.get(url, query).content.decode()
    assert "Mark deal 4411 won" in page and 'type="hidden" name="agent"' in page
    response = client.post(url, {**query, "category": "tone", "severity": "medium",
                                 "description": ""})
    assert response.status_code == 400
    assert 'id="id_description-error"' in response.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {**query, "category": "tone", "severity": "medium",
                                     "description": "Too curt for a refund."})
    incident = Incident.objects.get()
    assert response.status_code == 302 and response.url == reverse("incidents:detail",
                                                                     args=[incident.pk])
    assert incident.action_request == action and incident.reported_by == roles.reviewer
    assert [m.to for m in mail.outbox] == [[roles.owner.email]]


def test_report_form_takes_the_agent_from_the_action(client, roles):
    action = _action(roles.agent)
    client.force_login(roles.reviewer)
    response = client.post(reverse("incidents:create"), {
        "action": str(action.public_id), "category": "cost", "severity": "low",
        "description": "Used the big model for a lookup."})
    assert response.status_code == 302
    assert Incident.objects.get().agent == roles.agent


def test_report_form_without_an_agent_offers_only_visible_agents(client, roles):
    client.force_login(roles.reviewer)
    url = reverse("incidents:create")
    page = client.get(url).content.decode()
    assert '<option value="refund-replies">' in page and "crm-hygiene" not in page
    response = client.post(url, {"category": "tone", "severity": "low",
                                 "description": "Curt."})
    assert response.status_code == 400 and "Choose the agent that did it." in (
        response.content.decode())


@pytest.mark.parametrize("query", [
    {"agent": "crm-hygiene"},  # hidden from the reviewer
    {"agent": "no-such-agent"},
    {"action": "not-a-uuid"},
    {"action": str(uuid.uuid4())},
    {"agent": "refund-replies", "action": "OTHER"},  # an action of the hidden agent
    {"agent": "refund-replies", "action": "MINE-ELSEWHERE"},  # visible, but another agent's
])
def test_report_form_answers_404_for_what_the_user_may_not_see(client, roles, query):
    query = dict(query)
    if query.get("action") == "OTHER":
        query["action"] = str(_action(roles.other).public_id)
    if query.get("action") == "MINE-ELSEWHERE":
        agent = make_agent(slug="second")
        assign_perm("agents.view_agent", roles.reviewer, agent)
        query["action"] = str(_action(agent).public_id)
    client.force_login(roles.reviewer)
    assert client.get(reverse("incidents:create"), query).status_code == 404
    assert client.post(reverse("incidents:create"), {
        **query, "category": "tone", "severity": "low", "description": "x"}).status_code == 404
    assert not Incident.objects.exists()


def test_agent_page_links_to_report_and_lists_open_incidents(client, roles):
    open_one = _report(roles.reviewer, roles.agent, description="Still wrong.")
    done = _report(roles.reviewer, roles.agent, description="Was wrong once.")
    incident_update(actor=roles.owner, incident=done, status="resolved",
                    resolution_note="Fixed.")
    client.force_login(roles.pauser)
    page = client.get(reverse("agents:detail", args=["refund-replies"])).content.decode()
    assert f'{reverse("incidents:create")}?agent=refund-replies' in page
    assert reverse("incidents:detail", args=[open_one.pk]) in page
    assert "Still wrong." in page and "Was wrong once." not in page
    assert f'{reverse("incidents:list")}?agent=refund-replies' in page
