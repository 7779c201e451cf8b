"""After-the-fact checks of sampled actions: *Looks right* and *Flag a problem*."""

import threading
import time

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone
from guardian.shortcuts import assign_perm

from portal.models import AuditEvent
from reviews import samples
from reviews.models import ActionRequest, Incident
from reviews.samples import sample_flag, sample_looks_right
from tests.factories import SystemFactory, UserFactory, make_roles

FLAG = {"category": "factual_error", "severity": "high",
        "description": "The reply quoted last year's refund policy."}


def _sampled(agent, **fields) -> ActionRequest:
    fields = {"system": SystemFactory(slug="crm", name="CRM"), "operation": "update_deal",
              "kind": "execute", "summary": "Close deal 4411", "decision": "allow",
              "status": "executed", "sampled": True, "policy_version": 1,
              "proposal_sha256": "0" * 64, "created_at": timezone.now(), **fields}
    return ActionRequest.objects.create(agent=agent, **fields)


@pytest.mark.django_db
def test_a_reviewer_confirms_a_sampled_action(roles):
    action = sample_looks_right(actor=roles.reviewer, action=_sampled(roles.agent))
    action.refresh_from_db()
    assert action.sample_verdict == "looks_right" and action.sample_checked_by == roles.reviewer
    assert action.sample_checked_at is not None
    event = AuditEvent.objects.get(verb="action.sample_looks_right")
    assert event.agent_id == roles.agent.pk and event.data == {"request": str(action.public_id)}
    assert not Incident.objects.exists()


@pytest.mark.django_db
def test_flagging_opens_an_incident_and_tells_the_owners(roles,
                                                         django_capture_on_commit_callbacks):
    action = _sampled(roles.agent)
    with django_capture_on_commit_callbacks(execute=True):
        incident = sample_flag(actor=roles.reviewer, action=action, **FLAG)
    action.refresh_from_db()
    assert action.sample_verdict == "flagged" and action.sample_checked_by == roles.reviewer
    assert incident.action_request == action and incident.agent == roles.agent
    assert incident.category == "factual_error" and incident.reported_by == roles.reviewer
    flagged = AuditEvent.objects.get(verb="action.sample_flagged")
    assert flagged.data == {"request": str(action.public_id), "incident": incident.pk}
    assert AuditEvent.objects.filter(verb="incident.reported").count() == 1
    [message] = mail.outbox
    assert message.to == [roles.owner.email] and "last year's refund policy" in message.body


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "allowed"), [
    ("reviewer", True), ("admin", True), ("owner", False), ("pauser", False),
    ("revops", False), ("other_reviewer", False), ("viewer", False)])
def test_only_reviewers_of_the_agent_may_check(roles, role, allowed):
    action = _sampled(roles.agent)
    user = getattr(roles, role)
    if allowed:
        assert sample_looks_right(actor=user, action=action).sample_verdict == "looks_right"
        return
    for check in (lambda: sample_looks_right(actor=user, action=action),
                  lambda: sample_flag(actor=user, action=action, **FLAG)):
        with pytest.raises(PermissionDenied, match="not a reviewer of this agent"):
            check()
    action.refresh_from_db()
    assert action.sample_verdict == "" and not Incident.objects.exists()


@pytest.mark.django_db
def test_an_item_routed_to_a_group_is_checked_by_its_members(roles):
    managers = Group.objects.create(name="Managers")
    maria = UserFactory(username="maria")
    maria.groups.add(managers)
    assign_perm("agents.view_agent", maria, roles.agent)
    action = _sampled(roles.agent, route_to_group=managers)
    with pytest.raises(PermissionDenied, match="Only members of Managers"):
        sample_looks_right(actor=roles.reviewer, action=action)
    incident = sample_flag(actor=maria, action=action, **FLAG)
    assert incident.reported_by == maria


@pytest.mark.django_db
def test_an_action_that_was_not_sampled_cannot_be_checked(roles):
    action = _sampled(roles.agent, sampled=False)
    with pytest.raises(ValidationError, match="not sampled"):
        sample_looks_right(actor=roles.reviewer, action=action)
    with pytest.raises(ValidationError, match="not sampled"):
        sample_flag(actor=roles.reviewer, action=action, **FLAG)
    assert not Incident.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("first", ["looks_right", "flag"])
def test_a_second_verdict_is_refused_with_who_checked(roles, first):
    action = _sampled(roles.agent)
    if first == "flag":
        sample_flag(actor=roles.admin, action=action, **FLAG)
        said = "problem flagged"
    else:
        sample_looks_right(actor=roles.admin, action=action)
        said = "looks right"
    expected = f"Already checked by {roles.admin} ({said})."
    with pytest.raises(ValidationError) as refused:
        sample_looks_right(actor=roles.reviewer, action=action)
    assert refused.value.messages == [expected]
    with pytest.raises(ValidationError) as refused:
        sample_flag(actor=roles.reviewer, action=action, **FLAG)
    assert refused.value.messages == [expected]
    action.refresh_from_db()
    assert action.sample_checked_by == roles.admin
    assert Incident.objects.count() == (1 if first == "flag" else 0)


@pytest.mark.django_db
def test_a_flag_without_a_description_changes_nothing(roles):
    action = _sampled(roles.agent)
    with pytest.raises(ValidationError) as refused:
        sample_flag(actor=roles.reviewer, action=action,
                    **{**FLAG, "description": " ", "severity": "dire"})
    assert set(refused.value.message_dict) == {"description", "severity"}
    action.refresh_from_db()
    assert action.sample_verdict == "" and action.sample_checked_by is None
    assert not AuditEvent.objects.filter(verb__startswith="action.sample").exists()
    # ... so the item can still be checked.
    assert sample_looks_right(actor=roles.reviewer, action=action).sample_verdict


# --- two reviewers at once -------------------------------------------------------------------

class _SlowClock:
    """`timezone` for reviews.samples whose now() waits: it runs between the check and the
    write, so without the row lock both reviewers would pass the check."""

    @staticmethod
    def now():
        time.sleep(0.3)
        return timezone.now()


def _judge_at_once(roles) -> tuple[list[str], ActionRequest]:
    second = UserFactory(username="rosa-reviewer")
    assign_perm("agents.view_agent", second, roles.agent)
    assign_perm("agents.review_agent", second, roles.agent)
    action = _sampled(roles.agent)
    barrier, results = threading.Barrier(2), []

    def judge(user, verdict) -> None:
        try:
            barrier.wait(timeout=10)
            verdict(actor=user, action=ActionRequest.objects.get(pk=action.pk))
            results.append("won")
        except ValidationError as exc:
            results.append(exc.messages[0])
        finally:
            connection.close()

    threads = [
        threading.Thread(target=judge, args=(roles.reviewer, sample_looks_right)),
        threading.Thread(target=judge, args=(
            second, lambda **kw: sample_flag(**kw, **FLAG))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(results), action


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reviewers_checking_at_once_exactly_one_wins(monkeypatch):
    monkeypatch.setattr(samples, "timezone", _SlowClock)
    results, action = _judge_at_once(make_roles())
    assert results[0].startswith("Already checked by ") and results[1] == "won"
    action.refresh_from_db()
    events = AuditEvent.objects.filter(verb__startswith="action.sample_")
    assert events.count() == 1
    assert Incident.objects.count() == (1 if action.sample_verdict == "flagged" else 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_check_catches_verdicts_without_the_lock(monkeypatch):
    """The same race without `SELECT … FOR UPDATE`: both reviewers win, which the test above
    would catch."""
    def unlocked(action):
        action = ActionRequest.objects.get(pk=action.pk)
        if action.sample_verdict:
            raise ValidationError("Already checked")
        return action

    monkeypatch.setattr(samples, "timezone", _SlowClock)
    monkeypatch.setattr(samples, "_lock_unchecked_sample", unlocked)
    results, _action = _judge_at_once(make_roles())
    assert results == ["won", "won"]
