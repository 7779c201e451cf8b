"""The access services: only Admins grant and revoke, every change is audited in the shape
agents/services.py uses, owners and named pausers keep what naming them gives, bad input
changes nothing, and a role goes to a group across agents in one call."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from guardian.models import GroupObjectPermission, UserObjectPermission

from agents import services as agent_services
from portal import access
from portal.models import AuditEvent
from tests.factories import UserFactory, make_agent

pytestmark = pytest.mark.django_db


def trail(verb: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(verb=verb).order_by("id"))


def snapshot() -> tuple:
    """Everything a refused call must leave alone."""
    return (sorted(UserObjectPermission.objects.values_list("user_id", "object_pk",
                                                            "permission__codename")),
            sorted(GroupObjectPermission.objects.values_list("group_id", "object_pk",
                                                             "permission__codename")),
            AuditEvent.objects.count())


def test_an_admin_grants_a_permission_and_it_is_audited(roles):
    assert not roles.viewer.has_perm("agents.review_agent", roles.agent)
    assert access.access_grant(actor=roles.admin, agent=roles.agent,
                               permission="review_agent", user=roles.viewer) is True
    assert roles.viewer.has_perm("agents.review_agent", roles.agent)
    [event] = trail("permission.granted")[-1:]
    assert (event.actor_user, event.agent, event.object_id) == (
        roles.admin, roles.agent, str(roles.agent.pk))
    assert event.data == {"user": "vic-viewer", "permissions": ["review_agent"]}


def test_granting_what_is_held_changes_and_records_nothing(roles):
    before = snapshot()
    assert access.access_grant(actor=roles.admin, agent=roles.agent,
                               permission="agents.review_agent", user=roles.reviewer) is False
    assert snapshot() == before


def test_an_admin_revokes_a_permission_and_it_is_audited(roles):
    assert access.access_revoke(actor=roles.admin, agent=roles.agent,
                                permission="review_agent", user=roles.reviewer) is True
    assert not UserObjectPermission.objects.filter(
        user=roles.reviewer, permission__codename="review_agent").exists()
    event = trail("permission.revoked")[-1]
    assert (event.actor_user, event.agent) == (roles.admin, roles.agent)
    assert event.data == {"user": "rita-reviewer", "permissions": ["review_agent"]}
    assert access.access_revoke(actor=roles.admin, agent=roles.agent,
                                permission="review_agent", user=roles.reviewer) is False


def test_groups_are_granted_and_revoked_with_their_name_in_the_event(roles):
    managers = Group.objects.create(name="Managers")
    access.access_grant(actor=roles.admin, agent=roles.other, permission="view_agent",
                        group=managers)
    assert trail("permission.granted")[-1].data == {"group": "Managers",
                                                     "permissions": ["view_agent"]}
    member = UserFactory(username="mia-manager")
    member.groups.add(managers)
    assert member.has_perm("agents.view_agent", roles.other)
    access.access_revoke(actor=roles.admin, agent=roles.other, permission="view_agent",
                         group=managers)
    assert trail("permission.revoked")[-1].data == {"group": "Managers",
                                                     "permissions": ["view_agent"]}
    assert not GroupObjectPermission.objects.filter(group=managers).exists()


@pytest.mark.parametrize("role", ["owner", "revops", "reviewer", "pauser", "viewer"])
def test_only_admins_may_grant_or_revoke(roles, role):
    actor = getattr(roles, role)
    before = snapshot()
    with pytest.raises(PermissionDenied, match="Only Admins"):
        access.access_grant(actor=actor, agent=roles.agent, permission="view_agent",
                            user=roles.viewer)
    with pytest.raises(PermissionDenied, match="Only Admins"):
        access.access_revoke(actor=actor, agent=roles.agent, permission="review_agent",
                             user=roles.reviewer)
    with pytest.raises(PermissionDenied, match="Only Admins"):
        access.access_grant_role(actor=actor, group=Group.objects.get(name="Reviewers"),
                                 role="viewer", agents=[roles.agent])
    assert snapshot() == before


def test_a_superuser_counts_as_an_admin(roles):
    boss = UserFactory(username="sue-super", is_superuser=True)
    assert access.access_grant(actor=boss, agent=roles.agent, permission="view_agent",
                               user=roles.viewer)


@pytest.mark.parametrize("perm", ["owner_of_agent", "agents.add_agent", "view_metric", ""])
def test_an_unknown_permission_is_refused_by_name(roles, perm):
    before = snapshot()
    with pytest.raises(ValidationError) as refused:
        access.access_grant(actor=roles.admin, agent=roles.agent, permission=perm,
                            user=roles.viewer)
    assert "is not an agent permission" in str(refused.value)
    assert "view_agent, review_agent, pause_agent, change_agent" in str(refused.value)
    assert refused.value.message_dict.keys() == {"permission"}
    assert snapshot() == before


def test_an_inactive_user_gets_no_new_permission_but_can_lose_one(roles):
    roles.reviewer.is_active = False
    roles.reviewer.save()
    before = snapshot()
    with pytest.raises(ValidationError, match="rita-reviewer is inactive"):
        access.access_grant(actor=roles.admin, agent=roles.agent, permission="pause_agent",
                            user=roles.reviewer)
    assert snapshot() == before
    assert access.access_revoke(actor=roles.admin, agent=roles.agent,
                                permission="review_agent", user=roles.reviewer)


def test_both_or_neither_holder_is_refused(roles):
    before = snapshot()
    for kwargs in ({}, {"user": roles.viewer, "group": Group.objects.get(name="Reviewers")}):
        with pytest.raises(ValidationError, match="either a person or a group"):
            access.access_grant(actor=roles.admin, agent=roles.agent,
                                permission="view_agent", **kwargs)
    assert snapshot() == before


@pytest.mark.parametrize("perm", ["view_agent", "change_agent", "pause_agent"])
def test_an_owners_permissions_cannot_be_revoked_while_they_are_owner(roles, perm):
    before = snapshot()
    with pytest.raises(ValidationError) as refused:
        access.access_revoke(actor=roles.admin, agent=roles.agent, permission=perm,
                             user=roles.owner)
    assert "as its owner" in str(refused.value)
    assert "name someone else on the agent's page first" in str(refused.value)
    assert snapshot() == before
    assert roles.owner.has_perm(f"agents.{perm}", roles.agent)


def test_a_named_pausers_permissions_cannot_be_revoked_but_others_can(roles):
    before = snapshot()
    for perm in ("view_agent", "pause_agent"):
        with pytest.raises(ValidationError, match="as its named pauser"):
            access.access_revoke(actor=roles.admin, agent=roles.agent, permission=perm,
                                 user=roles.pauser)
    assert snapshot() == before
    access.access_grant(actor=roles.admin, agent=roles.agent, permission="review_agent",
                        user=roles.pauser)
    assert access.access_revoke(actor=roles.admin, agent=roles.agent,
                                permission="review_agent", user=roles.pauser)


def test_once_replaced_as_owner_the_permissions_are_no_longer_locked(roles):
    new_owner = UserFactory(username="nina-new")
    agent_services.agent_update(actor=roles.admin, agent=roles.agent, business_owner=new_owner,
                                process_owner=new_owner, technical_owner=new_owner)
    roles.agent.refresh_from_db()
    assert access.named_permissions(roles.agent, roles.owner) == {}
    # Olga lost what owning gave her; what the admin gives her now is the admin's to take.
    assert not roles.owner.has_perm("agents.view_agent", roles.agent)
    access.access_grant(actor=roles.admin, agent=roles.agent, permission="view_agent",
                        user=roles.owner)
    assert access.access_revoke(actor=roles.admin, agent=roles.agent,
                                permission="view_agent", user=roles.owner)
    with pytest.raises(ValidationError, match="as its owner"):
        access.access_revoke(actor=roles.admin, agent=roles.agent, permission="view_agent",
                             user=new_owner)


def test_roles_are_defined_once():
    assert access.ROLES == {
        "viewer": ("view_agent",),
        "reviewer": ("view_agent", "review_agent"),
        "pauser": ("view_agent", "pause_agent"),
        "editor": ("view_agent", "change_agent"),
    }


def test_a_role_goes_to_a_group_across_agents_in_one_call(roles):
    third = make_agent(slug="lead-scoring", name="Lead scoring")
    managers = Group.objects.create(name="Managers")
    access.access_grant(actor=roles.admin, agent=roles.agent, permission="view_agent",
                        group=managers)
    granted = access.access_grant_role(actor=roles.admin, group=managers, role="reviewer",
                                       agents=[roles.agent, roles.other, third])
    assert granted == {roles.agent: ["review_agent"],
                       roles.other: ["view_agent", "review_agent"],
                       third: ["view_agent", "review_agent"]}
    member = UserFactory(username="mia-manager")
    member.groups.add(managers)
    for agent in (roles.agent, roles.other, third):
        assert member.has_perm("agents.review_agent", agent)
        assert member.has_perm("agents.view_agent", agent)
        assert not member.has_perm("agents.change_agent", agent)
    events = [e for e in trail("permission.granted") if e.data.get("group") == "Managers"]
    assert [(e.agent, e.data["permissions"]) for e in events[1:]] == [
        (roles.agent, ["review_agent"]), (roles.other, ["view_agent", "review_agent"]),
        (third, ["view_agent", "review_agent"])]
    assert events[-1].data["because"] == "role reviewer, granted to several agents at once"
    # Again: nothing new, nothing recorded.
    before = snapshot()
    assert access.access_grant_role(actor=roles.admin, group=managers, role="reviewer",
                                    agents=[roles.agent, roles.other]) == {}
    assert snapshot() == before


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"role": "owner"}, "role", "'owner' is not a role; use one of viewer, reviewer, pauser"),
    ({"group": None}, "group", "Choose the group"),
    ({"agents": []}, "agents", "Tick at least one agent."),
])
def test_a_bad_bulk_grant_changes_nothing(roles, kwargs, field, message):
    call = {"group": Group.objects.get(name="Reviewers"), "role": "viewer",
            "agents": [roles.agent], **kwargs}
    before = snapshot()
    with pytest.raises(ValidationError) as refused:
        access.access_grant_role(actor=roles.admin, **call)
    assert message in refused.value.message_dict[field][0]
    assert snapshot() == before
