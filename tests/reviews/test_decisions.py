"""Decisions on pending items: approve, edit-and-approve, reject, claims, and what an approval
authorises. The races (two reviewers at once, claims) run with real threads on PostgreSQL."""

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agents import services as agent_services
from portal.models import AuditEvent
from reviews import gate
from reviews import services as review_services
from reviews.models import ActionRequest
from tests.factories import UserFactory

STAGE_CHANGE = {"system": "crm", "operation": "update_deal", "kind": "execute",
                "target": "deal 4411", "summary": "Mark deal 4411 won",
                "changes": {"stage": "won", "discount": 10}, "confidence": 0.9}


def _reviewer(agent, username: str, **fields):
    user = UserFactory(username=username, **fields)
    assign_perm("agents.view_agent", user, agent)
    assign_perm("agents.review_agent", user, agent)
    return user


@pytest.fixture
def token(live_agent):
    token, _secret = agent_services.agent_token_create(actor=None, agent=live_agent, name="t")
    return token


@pytest.fixture
def rita(live_agent):
    return _reviewer(live_agent, "rita", first_name="Rita", last_name="Reviewer")


@pytest.fixture
def rudi(live_agent):
    return _reviewer(live_agent, "rudi", first_name="Rudi", last_name="Reviewer")


def _pending(token, **overrides) -> ActionRequest:
    action = gate.propose(token=token, proposal={**STAGE_CHANGE, **overrides}).action
    assert action.status == "pending", action.reasons
    return action


def _events(verb: str, action: ActionRequest) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(verb=verb, object_id=str(action.pk)))


def _message(exc_info) -> str:
    return " ".join(exc_info.value.messages)


# --- approve and reject ------------------------------------------------------------------------

@pytest.mark.django_db
def test_approval_is_audited_with_the_proposals_sha256(token, rita):
    action = _pending(token)
    approved = review_services.action_approve(actor=rita, action=action, note=" fine ")

    assert (approved.status, approved.reviewed_by, approved.review_note) == (
        "approved", rita, "fine")
    [event] = _events("action.approved", action)
    assert event.data["proposal_sha256"] == action.proposal_sha256 == gate.proposal_digest(
        STAGE_CHANGE)
    assert event.actor_user == rita


@pytest.mark.django_db
def test_reject_needs_a_reason_and_the_agent_reads_it(token, rita, agent_api):
    action = _pending(token)
    with pytest.raises(ValidationError):
        review_services.action_reject(actor=rita, action=action, note="  ")
    review_services.action_reject(actor=rita, action=action, note="Wrong deal")

    body = agent_api.get(f"/actions/{action.public_id}").json()
    assert (body["status"], body["review_note"]) == ("rejected", "Wrong deal")
    assert _events("action.rejected", action)[0].data["note"] == "Wrong deal"


@pytest.mark.django_db
def test_a_second_decision_names_who_decided_first(token, rita, rudi):
    approved, rejected = _pending(token), _pending(token)
    review_services.action_approve(actor=rita, action=approved)
    review_services.action_reject(actor=rita, action=rejected, note="No")

    with pytest.raises(ValidationError) as approve_again:
        review_services.action_reject(actor=rudi, action=approved, note="Too late")
    with pytest.raises(ValidationError) as reject_again:
        review_services.action_approve(actor=rudi, action=rejected)
    assert _message(approve_again) == "Already approved by Rita Reviewer."
    assert _message(reject_again) == "Already rejected by Rita Reviewer."


@pytest.mark.django_db
def test_someone_who_is_not_a_reviewer_cannot_decide(token):
    action = _pending(token)
    outsider = UserFactory(username="otto")
    for decide in (lambda: review_services.action_approve(actor=outsider, action=action),
                   lambda: review_services.action_reject(actor=outsider, action=action,
                                                         note="no"),
                   lambda: review_services.action_claim(actor=outsider, action=action)):
        with pytest.raises(PermissionDenied):
            decide()
    assert ActionRequest.objects.get(pk=action.pk).status == "pending"


@pytest.mark.django_db
def test_an_item_routed_to_a_group_needs_a_member_of_it(live_agent, token, rita):
    from django.contrib.auth.models import Group

    managers = Group.objects.create(name="Managers")
    agent_services.guardrail_create(actor=None, agent=live_agent, name="Big deals",
                                    field="amount", operator="gt", value=500,
                                    effect="review", route_to_group=managers)
    action = _pending(token, amount=900)
    assert action.route_to_group == managers
    with pytest.raises(PermissionDenied, match="Only members of Managers"):
        review_services.action_approve(actor=rita, action=action)
    rita.groups.add(managers)
    assert review_services.action_approve(actor=rita, action=action).status == "approved"


@pytest.mark.django_db
def test_a_paused_agents_items_cannot_be_approved_but_can_be_rejected(live_agent, token, rita):
    first, second = _pending(token), _pending(token)
    agent_services.agent_pause(actor=None, agent=live_agent, reason="Incident 12")
    with pytest.raises(ValidationError, match="is paused"):
        review_services.action_approve(actor=rita, action=first)
    with pytest.raises(ValidationError, match="is paused"):
        review_services.action_edit_approve(actor=rita, action=first,
                                            changes={"stage": "lost"})
    assert review_services.action_reject(actor=rita, action=second, note="Paused").status == (
        "rejected")


# --- edit and approve --------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_agent_receives_the_edited_changes_and_content(token, rita, agent_api):
    action = _pending(token, content="Dear customer")
    review_services.action_edit_approve(
        actor=rita, action=action, changes={"stage": "won", "discount": 5},
        content="Dear Ms Jones", note="Smaller discount")

    body = agent_api.get(f"/actions/{action.public_id}").json()
    assert body["status"] == "approved" and body["edited"] is True
    assert body["changes"] == {"stage": "won", "discount": 5}
    assert body["content"] == "Dear Ms Jones"
    stored = ActionRequest.objects.get(pk=action.pk)
    assert stored.changes == STAGE_CHANGE["changes"]  # the proposal itself is kept as sent


@pytest.mark.django_db
def test_an_edit_is_an_override_audited_with_its_diff(token, rita):
    action = _pending(token)
    review_services.action_edit_approve(actor=rita, action=action,
                                        changes={"stage": "won", "owner": "ana"})

    [event] = _events("action.edited_approved", action)
    assert event.data["edit"] == {"changes": {"discount": [10, None], "owner": [None, "ana"]}}
    assert event.data["proposal_sha256"] == action.proposal_sha256
    assert event.data["approved_sha256"] not in ("", action.proposal_sha256)
    assert event.data["rejudged"]["decision"] == "review"  # stage changed: a person reviews
    assert not _events("action.approved", action)
    stored = ActionRequest.objects.get(pk=action.pk)
    assert stored.edited_content is None  # only what was edited is stored as edited


@pytest.mark.django_db
def test_an_edit_cannot_break_a_block_guardrail(live_agent, token, rita):
    agent_services.guardrail_create(actor=None, agent=live_agent, name="Discounts over 20",
                                    field="changes.discount", operator="gt", value=20,
                                    effect="block")
    action = _pending(token)
    with pytest.raises(ValidationError) as refused:
        review_services.action_edit_approve(actor=rita, action=action,
                                            changes={"stage": "won", "discount": 35})

    message = _message(refused)
    assert "would be blocked" in message
    assert "Guardrail 'Discounts over 20': changes.discount 35 > 20 → block" in message
    assert "Stage changes need approval" not in message  # only the reasons that block
    stored = ActionRequest.objects.get(pk=action.pk)
    assert (stored.status, stored.edited_changes) == ("pending", None)
    review_services.action_edit_approve(actor=rita, action=action,
                                        changes={"stage": "won", "discount": 15})


@pytest.mark.django_db
def test_an_edit_is_judged_under_the_agents_current_policy(live_agent, token, rita):
    action = _pending(token)
    agent_services.system_access_set(actor=None, agent=live_agent, system=action.system,
                                     max_kind="draft")
    with pytest.raises(ValidationError, match="above its access"):
        review_services.action_edit_approve(actor=rita, action=action, content="New text")


@pytest.mark.django_db
def test_an_edit_that_needs_another_groups_review_is_refused(live_agent, token, rita):
    from django.contrib.auth.models import Group

    managers = Group.objects.create(name="Managers")
    agent_services.guardrail_create(actor=None, agent=live_agent, name="Big discounts",
                                    field="changes.discount", operator="gte", value=50,
                                    effect="review", route_to_group=managers)
    action = _pending(token)
    with pytest.raises(ValidationError, match="needs a review by Managers"):
        review_services.action_edit_approve(actor=rita, action=action,
                                            changes={"stage": "won", "discount": 60})
    rita.groups.add(managers)
    review_services.action_edit_approve(actor=rita, action=action,
                                        changes={"stage": "won", "discount": 60})


@pytest.mark.django_db
def test_an_edit_that_changes_nothing_is_refused(token, rita):
    action = _pending(token, content="Hello")
    with pytest.raises(ValidationError, match="Nothing was edited"):
        review_services.action_edit_approve(actor=rita, action=action,
                                            changes=dict(STAGE_CHANGE["changes"]),
                                            content="Hello")
    with pytest.raises(ValidationError, match="Nothing was edited"):
        review_services.action_edit_approve(actor=rita, action=action)


@pytest.mark.django_db
def test_an_edit_must_be_storable(token, rita):
    action = _pending(token)
    for changes, content in ((["stage"], None), ({"stage": "w\x00n"}, None),
                             (None, "a\x00b"), (None, 12)):
        with pytest.raises(ValidationError):
            review_services.action_edit_approve(actor=rita, action=action, changes=changes,
                                                content=content)
    assert ActionRequest.objects.get(pk=action.pk).status == "pending"


# --- what an approval authorises ---------------------------------------------------------------

@pytest.mark.django_db
def test_an_approval_authorises_one_execution(token, rita, agent_api):
    action = _pending(token)
    path = f"/actions/{action.public_id}/outcome"
    assert agent_api.post(path, {"outcome": "executed"}).status_code == 409  # not approved yet
    review_services.action_approve(actor=rita, action=action)

    assert agent_api.post(path, {"outcome": "executed"}).status_code == 200
    again = agent_api.post(path, {"outcome": "executed"})
    assert again.status_code == 409
    assert "executed" in again.json()["detail"]
    assert AuditEvent.objects.filter(verb="action.executed", object_id=str(action.pk)).count() == 1


@pytest.mark.django_db
def test_proposing_the_same_action_again_is_judged_anew(token, rita, agent_api):
    first = agent_api.post("/actions", STAGE_CHANGE).json()
    review_services.action_approve(actor=rita,
                                   action=ActionRequest.objects.get(public_id=first["id"]))
    second = agent_api.post("/actions", STAGE_CHANGE).json()

    assert second["id"] != first["id"]
    assert (second["decision"], second["status"]) == ("review", "pending")
    one, two = (ActionRequest.objects.get(public_id=r["id"]) for r in (first, second))
    assert one.proposal_sha256 == two.proposal_sha256  # the same proposal, a new request
    assert agent_api.post(f"/actions/{two.public_id}/outcome",
                          {"outcome": "executed"}).status_code == 409


# --- claims ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_claim_keeps_other_reviewers_from_deciding(token, rita, rudi):
    action = _pending(token)
    claimed = review_services.action_claim(actor=rita, action=action)
    assert (claimed.claimed_by, claimed.claimed_at is not None) == (rita, True)
    ActionRequest.objects.filter(pk=action.pk).update(
        claimed_at=timezone.now() - timedelta(minutes=3, seconds=5))

    with pytest.raises(ValidationError) as claim:
        review_services.action_claim(actor=rudi, action=action)
    with pytest.raises(ValidationError) as approve:
        review_services.action_approve(actor=rudi, action=action)
    with pytest.raises(ValidationError):
        review_services.action_unclaim(actor=rudi, action=action)
    assert _message(claim) == "Claimed by Rita Reviewer 3 minutes ago."
    assert _message(approve).startswith("Claimed by Rita Reviewer 3 minutes ago.")
    assert review_services.action_approve(actor=rita, action=action).status == "approved"
    assert len(_events("action.claimed", action)) == 1


@pytest.mark.django_db
def test_a_claim_lapses_after_fifteen_minutes(token, rita, rudi):
    action = _pending(token)
    review_services.action_claim(actor=rita, action=action)
    ActionRequest.objects.filter(pk=action.pk).update(
        claimed_at=timezone.now() - timedelta(minutes=15, seconds=1))

    assert review_services.action_claim(actor=rudi, action=action).claimed_by == rudi
    ActionRequest.objects.filter(pk=action.pk).update(
        claimed_at=timezone.now() - timedelta(minutes=16))
    assert review_services.action_reject(actor=rita, action=action, note="no").status == (
        "rejected")


@pytest.mark.django_db
def test_unclaim_gives_the_item_back(token, rita, rudi):
    action = _pending(token)
    review_services.action_claim(actor=rita, action=action)
    released = review_services.action_unclaim(actor=rita, action=action)
    assert released.claimed_by is None and released.claimed_at is None
    assert review_services.action_unclaim(actor=rita, action=action).claimed_by is None
    assert review_services.action_claim(actor=rudi, action=action).claimed_by == rudi
    assert [e.data["claimed_by"] for e in _events("action.unclaimed", action)] == ["rita"]


@pytest.mark.django_db
def test_a_decided_item_cannot_be_claimed(token, rita, rudi):
    action = _pending(token)
    review_services.action_approve(actor=rita, action=action)
    with pytest.raises(ValidationError, match="Already approved by Rita Reviewer"):
        review_services.action_claim(actor=rudi, action=action)


# --- races, with real threads on PostgreSQL ----------------------------------------------------

def _race(*calls) -> list:
    """Run the calls at once (a barrier releases them together); each result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except Exception as exc:  # the test inspects it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def slow_decisions(monkeypatch):
    """Hold each decision between reading the item and writing it: races become certain."""
    monkeypatch.setattr(review_services, "after_pending_read", lambda: time.sleep(0.3))


def _two_reviewers_decide(token, rita, rudi) -> tuple[ActionRequest, list]:
    action = _pending(token)
    results = _race(lambda: review_services.action_approve(actor=rita, action=action),
                    lambda: review_services.action_reject(actor=rudi, action=action,
                                                          note="Not this one"))
    return ActionRequest.objects.get(pk=action.pk), results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reviewers_deciding_at_once_exactly_one_wins(live_agent, token, rita, rudi,
                                                         slow_decisions):
    stored, results = _two_reviewers_decide(token, rita, rudi)

    won = [r for r in results if isinstance(r, ActionRequest)]
    lost = [r for r in results if isinstance(r, ValidationError)]
    assert len(won) == 1 and len(lost) == 1, results
    winner = won[0]
    assert stored.status == winner.status and stored.reviewed_by == winner.reviewed_by
    verb = "approved" if winner.status == "approved" else "rejected"
    assert lost[0].messages == [f"Already {verb} by {winner.reviewed_by}."]
    decided = AuditEvent.objects.filter(object_id=str(stored.pk),
                                        verb__in=["action.approved", "action.rejected"])
    assert decided.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_race_check_catches_decisions_without_the_row_lock(live_agent, token, rita, rudi,
                                                               slow_decisions, monkeypatch):
    monkeypatch.setattr(review_services, "_locked_request",
                        lambda pk: ActionRequest.objects.get(pk=pk))
    stored, results = _two_reviewers_decide(token, rita, rudi)

    assert all(isinstance(r, ActionRequest) for r in results), results  # both "won"
    decided = AuditEvent.objects.filter(object_id=str(stored.pk),
                                        verb__in=["action.approved", "action.rejected"])
    assert decided.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_reviewers_claiming_at_once_exactly_one_gets_it(live_agent, token, rita, rudi,
                                                            slow_decisions):
    action = _pending(token)
    results = _race(lambda: review_services.action_claim(actor=rita, action=action),
                    lambda: review_services.action_claim(actor=rudi, action=action))

    won = [r for r in results if isinstance(r, ActionRequest)]
    lost = [r for r in results if isinstance(r, ValidationError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert ActionRequest.objects.get(pk=action.pk).claimed_by == won[0].claimed_by


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_claim_does_not_wait_behind_a_reviewer_holding_the_item(live_agent, token, rita,
                                                                  rudi):
    action = _pending(token)
    holding, release = threading.Event(), threading.Event()

    def hold_the_row():
        try:
            with transaction.atomic():
                ActionRequest.objects.select_for_update().get(pk=action.pk)
                holding.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        started = time.monotonic()
        with pytest.raises(ValidationError, match="right now"):
            review_services.action_claim(actor=rudi, action=action)
        assert time.monotonic() - started < 2  # SKIP LOCKED: refused at once, not after a wait
    finally:
        release.set()
        holder.join(timeout=10)
    assert review_services.action_claim(actor=rudi, action=action).claimed_by == rudi
