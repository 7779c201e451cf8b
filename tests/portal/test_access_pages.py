"""Admin → Access: the index, an agent's table with one-click grant and revoke (htmx and
plain), the per-person page and the bulk grant; refusals, the next request obeying a change,
and the query counts of the three read pages."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm

from portal.models import AuditEvent
from portal.roles import ADMINS, REVIEWERS
from tests.factories import UserFactory, make_agent

pytestmark = pytest.mark.django_db

INDEX = reverse("access:index")


def agent_url(agent) -> str:
    return reverse("access:agent", args=[agent.slug])


def grant_url(agent) -> str:
    return reverse("access:grant", args=[agent.slug])


def revoke_url(agent) -> str:
    return reverse("access:revoke", args=[agent.slug])


def row_htmx(user) -> dict:
    return {"HX-Request": "true", "HX-Target": f"access-user-{user.pk}"}


ADD_HTMX = {"HX-Request": "true", "HX-Target": "holders"}


def state() -> tuple:
    return (UserObjectPermission.objects.count(), GroupObjectPermission.objects.count(),
            AuditEvent.objects.count())


@pytest.fixture
def admin_client(client, roles):
    client.force_login(roles.admin)
    return client


# --- navigation and who may enter --------------------------------------------------------------

def test_only_admins_see_the_access_link(client, roles):
    for role, shown in (("admin", True), ("revops", False), ("owner", False),
                        ("reviewer", False), ("viewer", False)):
        client.force_login(getattr(roles, role))
        page = client.get(reverse("dashboard")).content.decode()
        assert (f'href="{INDEX}"' in page) is shown, role


def test_non_admins_get_403_even_for_an_agent_that_does_not_exist(client, roles):
    client.force_login(roles.revops)
    response = client.get(reverse("access:agent", args=["no-such-agent"]))
    assert response.status_code == 403
    client.force_login(roles.admin)
    assert client.get(reverse("access:agent", args=["no-such-agent"])).status_code == 404


def test_an_admin_taken_out_of_admins_loses_the_pages_at_once(client, roles):
    client.force_login(roles.admin)
    assert client.get(INDEX).status_code == 200
    roles.admin.groups.remove(Group.objects.get(name=ADMINS))
    assert client.get(INDEX).status_code == 403


# --- the index ---------------------------------------------------------------------------------

def test_the_index_lists_agents_with_how_many_people_and_groups_have_access(admin_client,
                                                                             roles):
    managers = Group.objects.create(name="Managers")
    assign_perm("agents.view_agent", managers, roles.agent)
    assign_perm("agents.review_agent", managers, roles.agent)
    page = admin_client.get(INDEX).content.decode()
    assert "Refund replies" in page and "CRM hygiene" in page
    row = page.split("Refund replies")[1].split("</tr>")[0]
    # olga (owner), paul (pauser), rita (reviewer); one group, however many permissions
    assert '<td class="num">3</td>' in row and '<td class="num">1</td>' in row
    other = page.split("CRM hygiene")[1].split("</tr>")[0]
    assert '<td class="num">2</td>' in other and '<td class="num">0</td>' in other


def test_the_index_is_searchable_and_answers_htmx_with_the_results_only(admin_client, roles):
    page = admin_client.get(INDEX, {"q": "refund"}).content.decode()
    assert "Refund replies" in page and "CRM hygiene" not in page
    body = admin_client.get(INDEX, {"q": "crm-hyg"},
                            headers={"HX-Request": "true"}).content.decode()
    assert body.lstrip().startswith('<div id="results">') and "<html" not in body
    assert "CRM hygiene" in body and "Refund replies" not in body
    assert "No agent matches “zzz”" in admin_client.get(INDEX, {"q": "zzz"}).content.decode()


# --- one agent's table -------------------------------------------------------------------------

def test_the_agent_page_shows_people_and_groups_and_marks_what_naming_gives(admin_client,
                                                                            roles):
    managers = Group.objects.create(name="Managers")
    assign_perm("agents.review_agent", managers, roles.agent)
    page = admin_client.get(agent_url(roles.agent)).content.decode()
    owner_row = page.split(f'id="access-user-{roles.owner.pk}"')[1].split("</tr>")[0]
    for role in ("business owner", "process owner", "technical owner"):
        assert role in owner_row
    assert owner_row.count(">owner</span>") == 3  # view, pause, change
    assert "Revoke" not in owner_row  # what owning gives is not revocable here
    assert 'aria-label="Grant review to olga-owner"' in owner_row
    pauser_row = page.split(f'id="access-user-{roles.pauser.pk}"')[1].split("</tr>")[0]
    assert pauser_row.count(">named pauser</span>") == 3  # the row's label, view, pause
    assert "Revoke" not in pauser_row
    reviewer_row = page.split(f'id="access-user-{roles.reviewer.pk}"')[1].split("</tr>")[0]
    assert 'aria-label="Revoke view from rita-reviewer"' in reviewer_row
    assert 'aria-label="Revoke review from rita-reviewer"' in reviewer_row
    assert 'aria-label="Grant change to rita-reviewer"' in reviewer_row
    group_row = page.split(f'id="access-group-{managers.pk}"')[1].split("</tr>")[0]
    assert 'aria-label="Revoke review from Managers"' in group_row
    assert "rudi-reviewer" not in page.split("Give someone access")[0]  # the other agent's
    # Owners first, then pausers, then everyone else.
    assert page.index("olga-owner") < page.index("paul-pauser") < page.index("rita-reviewer")


def test_an_htmx_grant_returns_the_row_with_the_new_permission(admin_client, roles):
    response = admin_client.post(grant_url(roles.agent),
                                 {"user": "rita-reviewer", "permission": "change_agent"},
                                 headers=row_htmx(roles.reviewer))
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<tr id="access-user-{roles.reviewer.pk}">')
    assert "<html" not in body and body.count("<tr") == 1
    assert 'aria-label="Revoke change from rita-reviewer"' in body
    assert "Granted change to rita-reviewer." in body
    assert roles.reviewer.has_perm("agents.change_agent", roles.agent)
    event = AuditEvent.objects.latest("id")
    assert (event.verb, event.actor_user, event.agent, event.data) == (
        "permission.granted", roles.admin, roles.agent,
        {"user": "rita-reviewer", "permissions": ["change_agent"]})


def test_an_htmx_revoke_returns_the_row_without_it(admin_client, roles):
    response = admin_client.post(revoke_url(roles.agent),
                                 {"user": "rita-reviewer", "permission": "review_agent"},
                                 headers=row_htmx(roles.reviewer))
    body = response.content.decode()
    assert 'aria-label="Grant review to rita-reviewer"' in body
    assert "Revoked review from rita-reviewer." in body
    assert not roles.reviewer.has_perm("agents.review_agent", roles.agent)
    assert AuditEvent.objects.latest("id").verb == "permission.revoked"


def test_revoking_an_owners_permission_is_refused_in_the_row(admin_client, roles):
    before = state()
    response = admin_client.post(revoke_url(roles.agent),
                                 {"user": "olga-owner", "permission": "change_agent"},
                                 headers=row_htmx(roles.owner))
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<tr id="access-user-{roles.owner.pk}">')
    assert 'class="form-error" role="alert"' in body
    assert "olga-owner holds change on Refund replies as its owner" in body
    assert state() == before
    assert roles.owner.has_perm("agents.change_agent", roles.agent)


def test_a_plain_post_grants_and_redirects_with_a_message(admin_client, roles):
    response = admin_client.post(grant_url(roles.agent),
                                 {"user": "vic-viewer", "permission": "view_agent"})
    assert response.status_code == 302 and response.url == agent_url(roles.agent)
    page = admin_client.get(response.url).content.decode()
    assert "Granted view to vic-viewer." in page
    assert f'id="access-user-{roles.viewer.pk}"' in page  # a new row
    response = admin_client.post(revoke_url(roles.agent),
                                 {"user": "olga-owner", "permission": "view_agent"},
                                 follow=True)
    assert "as its owner" in response.content.decode()


def test_the_add_form_grants_to_a_group_and_returns_the_whole_table(admin_client, roles):
    response = admin_client.post(grant_url(roles.agent),
                                 {"user": "", "group": "Reviewers", "permission": "view_agent"},
                                 headers=ADD_HTMX)
    body = response.content.decode()
    assert response["HX-Retarget"] == "#holders"
    assert body.lstrip().startswith('<article id="holders">')
    group = Group.objects.get(name=REVIEWERS)
    assert f'id="access-group-{group.pk}"' in body and "Granted view to Reviewers." in body
    assert roles.other_reviewer.has_perm("agents.view_agent", roles.agent)


def test_a_groups_row_is_revoked_with_htmx(admin_client, roles):
    managers = Group.objects.create(name="Managers")
    assign_perm("agents.view_agent", managers, roles.agent)
    response = admin_client.post(
        revoke_url(roles.agent), {"group": "Managers", "permission": "view_agent"},
        headers={"HX-Request": "true", "HX-Target": f"access-group-{managers.pk}"})
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tr id="access-group-{managers.pk}">')
    assert 'aria-label="Grant view to Managers"' in body
    assert "Revoked view from Managers." in body
    assert AuditEvent.objects.latest("id").data == {"group": "Managers",
                                                    "permissions": ["view_agent"]}


@pytest.mark.parametrize(("data", "message"), [
    ({"user": "nobody", "permission": "view_agent"},
     "Person: There is no user named &#x27;nobody&#x27;"),
    ({"group": "Nobodies", "permission": "view_agent"},
     "or group: There is no group named &#x27;Nobodies&#x27;"),
    ({"user": "vic-viewer", "permission": "own_agent"},
     "Permission: &#x27;own_agent&#x27; is not an agent permission; use one of view_agent"),
    ({"user": "vic-viewer", "group": "Reviewers", "permission": "view_agent"},
     "Give either a person or a group (not both)."),
    ({"permission": "view_agent"}, "Give either a person or a group"),
    ({"user": "gone-gary", "permission": "view_agent"},
     "gone-gary is inactive: reactivate the account in the admin before granting access."),
])
def test_bad_input_says_what_is_wrong_and_changes_nothing(admin_client, roles, data, message):
    UserFactory(username="gone-gary", is_active=False)
    before = state()
    response = admin_client.post(grant_url(roles.agent), data, headers=ADD_HTMX)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert state() == before
    plain = admin_client.post(grant_url(roles.agent), data, follow=True)
    assert message.split(": ", 1)[-1][:30] in plain.content.decode()
    assert state() == before


def test_the_next_request_obeys_a_grant_and_a_revoke(roles):
    admin, vic, rita = Client(), Client(), Client()
    admin.force_login(roles.admin)
    vic.force_login(roles.viewer)
    rita.force_login(roles.reviewer)
    detail = reverse("agents:detail", args=[roles.agent.slug])
    assert vic.get(detail).status_code == 404
    admin.post(grant_url(roles.agent), {"user": "vic-viewer", "permission": "view_agent"})
    assert vic.get(detail).status_code == 200
    assert rita.get(detail).status_code == 200
    assert "Refund replies" in rita.get(reverse("agents:list")).content.decode()
    admin.post(revoke_url(roles.agent), {"user": "rita-reviewer", "permission": "view_agent"})
    assert rita.get(detail).status_code == 404
    assert "Refund replies" not in rita.get(reverse("agents:list")).content.decode()


# --- one person -------------------------------------------------------------------------------

def test_the_person_page_lists_each_agent_and_why(admin_client, roles):
    managers = Group.objects.create(name="Managers")
    roles.reviewer.groups.add(managers)
    assign_perm("agents.view_agent", managers, roles.other)
    assign_perm("agents.review_agent", managers, roles.other)
    third = make_agent(slug="lead-scoring", name="Lead scoring", owner=roles.reviewer)
    page = admin_client.get(reverse("access:user", args=["rita-reviewer"])).content.decode()
    assert "What can" in page and "rita-reviewer" in page
    assert '<span class="chip">Reviewers</span>' in page
    assert '<span class="chip">Managers</span>' in page
    assert "No permission on every agent" in page
    refund = page.split("Refund replies")[1].split("</tr>")[0]
    assert refund.count(">direct</span>") == 2  # view and review
    crm = page.split("CRM hygiene")[1].split("</tr>")[0]
    assert crm.count(">group Managers</span>") == 2
    lead = page.split("Lead scoring")[1].split("</tr>")[0]
    assert lead.count(">owner</span>") == 3 and ">direct</span>" not in lead
    assert page.index("CRM hygiene") < page.index("Lead scoring") < page.index("Refund replies")
    assert third.slug in page


def test_the_person_page_shows_global_roles(admin_client, roles):
    page = admin_client.get(reverse("access:user", args=["ada-admin"])).content.decode()
    assert "On <strong>every agent</strong>" in page
    for label in ("View", "Review", "Pause", "Change"):
        assert f"<strong>{label}</strong> <span class=\"muted small\">through Admins" in page
    revops = admin_client.get(reverse("access:user", args=["remy-revops"])).content.decode()
    assert "<strong>View</strong>" in revops and "<strong>Change</strong>" not in revops
    assert admin_client.get(reverse("access:user", args=["no-one"])).status_code == 404


def test_the_people_list_is_searchable(admin_client, roles):
    page = admin_client.get(reverse("access:users"), {"q": "rita"}).content.decode()
    assert "rita-reviewer" in page and "olga-owner" not in page
    assert reverse("access:user", args=["rita-reviewer"]) in page


# --- bulk -------------------------------------------------------------------------------------

def test_bulk_grant_gives_a_group_a_role_on_the_ticked_agents(admin_client, roles):
    third = make_agent(slug="lead-scoring", name="Lead scoring")
    managers = Group.objects.create(name="Managers")
    form = admin_client.get(reverse("access:bulk")).content.decode()
    assert 'value="lead-scoring"' in form and 'value="Managers"' in form
    response = admin_client.post(reverse("access:bulk"), {
        "group": "Managers", "role": "pauser", "agents": ["refund-replies", "lead-scoring"]},
        follow=True)
    assert "Managers is pauser of 2 agent(s); newly granted on: Lead scoring, Refund " \
           "replies." in response.content.decode()
    member = UserFactory(username="mia-manager")
    member.groups.add(managers)
    assert member.has_perm("agents.pause_agent", roles.agent)
    assert member.has_perm("agents.pause_agent", third)
    assert not member.has_perm("agents.view_agent", roles.other)
    assert AuditEvent.objects.filter(verb="permission.granted",
                                     data__group="Managers").count() == 2


@pytest.mark.parametrize(("data", "message"), [
    ({"group": "Reviewers", "role": "viewer"}, "Tick at least one agent."),
    ({"group": "Reviewers", "role": "boss", "agents": ["refund-replies"]},
     "Choose one of the roles: viewer, reviewer, pauser, editor."),
    ({"group": "Nobodies", "role": "viewer", "agents": ["refund-replies"]},
     "There is no such group"),
    ({"group": "", "role": "viewer", "agents": ["refund-replies"]},
     "Choose the group to grant the role to."),
    ({"group": "Reviewers", "role": "viewer", "agents": ["ghost"]},
     "There is no agent &#x27;ghost&#x27;"),
])
def test_a_bad_bulk_grant_is_refused_with_the_form_again(admin_client, roles, data, message):
    before = state()
    response = admin_client.post(reverse("access:bulk"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert state() == before


# --- query counts -----------------------------------------------------------------------------

def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def _more_agents_and_people(roles, n: int) -> None:
    group = Group.objects.create(name=f"Team {n}")
    for i in range(n):
        person = UserFactory(username=f"person-{n}-{i}")
        person.groups.add(group)
        agent = make_agent(slug=f"extra-{n}-{i}", owner=person, pausers=[roles.pauser])
        for target in (agent, roles.agent):
            assign_perm("agents.view_agent", person, target)
            assign_perm("agents.review_agent", roles.reviewer, target)
            assign_perm("agents.view_agent", group, target)


@pytest.mark.parametrize(("url", "pinned"), [
    (INDEX, 9),  # count, the page of agents with both counts as subqueries
    (reverse("access:agent", args=["refund-replies"]), 13),  # agent, pausers, user and group
    # permissions, people and groups for the add form
    (reverse("access:user", args=["rita-reviewer"]), 14),  # person, groups, global perms,
    # object perms direct and through groups, pauser of, agents
    (reverse("access:users"), 10),  # count, page, groups (prefetch)
])
def test_the_access_pages_cost_a_fixed_number_of_queries(client, roles, url, pinned,
                                                         django_assert_num_queries):
    client.force_login(roles.admin)
    client.get(url)  # the first view after login refreshes the session
    _more_agents_and_people(roles, 2)
    few = _queries(client, url)
    _more_agents_and_people(roles, 8)
    # + session, user, the admin check (groups), the navigation (groups, review and alert
    # badges); no session save (refreshed at most once a minute)
    with django_assert_num_queries(pinned):
        client.get(url)
    assert few == pinned
