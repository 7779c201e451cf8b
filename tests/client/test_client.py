"""steward_client against the live test server: decisions, waiting, the decorator, errors.

Reviewers decide from a background thread through the real services (reviews.services), the
way a person would while the agent waits.
"""

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import DatabaseError, connection
from guardian.shortcuts import assign_perm

import steward_client
from agents import services
from reviews import api as reviews_api
from reviews import gate
from reviews import services as review_services
from reviews.models import ActionRequest
from steward_client import (
    AuthenticationFailed,
    BadRequest,
    Blocked,
    Conflict,
    Decision,
    GateUnavailable,
    NotFound,
    Reason,
    Rejected,
    Steward,
    WaitTimeout,
)
from tests.factories import UserFactory, make_live_agent

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
UPDATE = {"target": "deal 4411", "summary": "Fix the deal's close date",
          "changes": {"close_date": "2026-12-01"}, "confidence": 0.9,
          "sources": ["crm-records"], "prompt": "Tidy deal 4411", "cost_usd": 0.012,
          "tokens": 812}
STAGE_CHANGE = {**UPDATE, "summary": "Mark deal 4411 as won", "changes": {"stage": "won"}}


@pytest.fixture
def agent(transactional_db):
    return make_live_agent()


@pytest.fixture
def steward(live_server, agent):
    _token, secret = services.agent_token_create(actor=None, agent=agent, name="client")
    return Steward(live_server.url, secret, timeout=5.0)


@pytest.fixture
def reviewer_decides(agent):
    """`reviewer_decides("approve", edited_changes=...)`: a reviewer, in another thread, takes
    the next pending request and decides it; the test fails if that does not happen."""
    reviewer = UserFactory(username="rita-reviewer")
    assign_perm("agents.review_agent", reviewer, agent)
    assign_perm("agents.view_agent", reviewer, agent)
    threads, errors = [], []

    def decide(verdict, *, note="", edited_changes=None, edited_content=None, delay=0.2):
        def run():
            try:
                deadline = time.monotonic() + 10
                while (action := ActionRequest.objects.filter(status="pending").first()) is None:
                    assert time.monotonic() < deadline, "no request came to review"
                    time.sleep(0.02)
                time.sleep(delay)  # the agent is waiting by now
                edits = {name: value for name, value in (("edited_changes", edited_changes),
                                                          ("edited_content", edited_content))
                         if value is not None}
                if edits:  # the edit service arrives with the inbox; the fields are the same
                    ActionRequest.objects.filter(pk=action.pk).update(**edits)
                if verdict == "approve":
                    review_services.action_approve(actor=reviewer, action=action, note=note)
                else:
                    review_services.action_reject(actor=reviewer, action=action, note=note)
            except BaseException as exc:  # reported by the fixture, not lost in the thread
                errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield decide
    for thread in threads:
        thread.join(timeout=15)
    assert not errors, errors


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- propose and its Decision ----------------------------------------------------------------

def test_whoami_names_the_agent_and_shows_a_pause(steward, agent):
    me = steward.whoami()
    assert (me.slug, me.status, me.paused, me.token_name) == ("crm-hygiene", "live", False,
                                                              "client")
    services.agent_pause(actor=None, agent=agent, reason="Bad stage changes")
    assert steward.whoami().paused is True
    decision = steward.propose("crm", "update_deal", "execute", **UPDATE)
    assert decision.blocked and decision.reasons[0].code == "paused"


def test_allowed_proposal_is_approved_at_once(steward, live_server):
    decision = steward.propose("crm", "update_deal", "execute", **UPDATE)
    stored = ActionRequest.objects.get()
    assert decision == Decision(id=str(stored.public_id), decision="allow", status="approved",
                                sampled=False, reasons=(),
                                review_url=f"{live_server.url}/reviews/{stored.public_id}/")
    assert (decision.allowed, decision.pending, decision.blocked) == (True, False, False)
    assert decision.changes is None  # not known until polled
    assert stored.changes == {"close_date": "2026-12-01"} and stored.tokens == 812


def test_guardrail_sends_a_stage_change_to_review_with_its_reason(steward):
    decision = steward.propose("crm", "update_deal", "execute", **STAGE_CHANGE)
    assert (decision.decision, decision.status) == ("review", "pending")
    assert (decision.allowed, decision.pending, decision.blocked) == (False, True, False)
    [reason] = decision.reasons
    assert isinstance(reason, Reason) and reason.code == "guardrail"
    assert "Stage changes need approval" in reason.message


def test_an_action_beyond_the_agents_access_is_blocked(steward):
    decision = steward.propose("helpdesk", "close_ticket", "execute", target="ticket 7")
    assert (decision.decision, decision.status) == ("block", "blocked")
    assert (decision.allowed, decision.pending, decision.blocked) == (False, False, True)
    assert "access_exceeded" in [reason.code for reason in decision.reasons]


# --- get, wait, report -----------------------------------------------------------------------

def test_wait_returns_the_reviewers_edit_once_approved(steward, reviewer_decides):
    proposed = steward.propose("crm", "update_deal", "execute", **STAGE_CHANGE)
    reviewer_decides("approve", edited_changes={"stage": "negotiation"}, note="Not won yet")
    decision = steward.wait(proposed, timeout=10, poll_interval=0.05)
    assert (decision.id, decision.decision, decision.status) == (proposed.id, "review",
                                                                 "approved")
    assert decision.allowed and decision.edited
    assert decision.changes == {"stage": "negotiation"} and decision.content == ""
    assert decision.review_note == "Not won yet"


def test_wait_returns_a_rejection_with_the_reviewers_note(steward, reviewer_decides):
    proposed = steward.propose("crm", "update_deal", "execute", **STAGE_CHANGE)
    reviewer_decides("reject", note="The customer has not signed")
    decision = steward.wait(proposed.id, timeout=10, poll_interval=0.05)
    assert decision.rejected and not decision.allowed
    assert decision.review_note == "The customer has not signed"
    assert decision.changes == {"stage": "won"} and not decision.edited


def test_wait_times_out_while_nobody_decides_and_backs_off(steward, monkeypatch):
    proposed = steward.propose("crm", "update_deal", "execute", **STAGE_CHANGE)
    naps, sleep = [], time.sleep
    monkeypatch.setattr(steward_client.time, "sleep", lambda s: (naps.append(s), sleep(s)))
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as timeout:
        steward.wait(proposed, timeout=0.6, poll_interval=0.1)
    assert time.monotonic() - started < 3
    assert timeout.value.decision.pending and proposed.id in str(timeout.value)
    assert naps[:3] == pytest.approx([0.1, 0.15, 0.225])  # then cut short by the deadline


def test_wait_keeps_polling_through_a_moment_without_database(steward, monkeypatch,
                                                              reviewer_decides):
    proposed = steward.propose("crm", "update_deal", "execute", **STAGE_CHANGE)
    own_action, failures = reviews_api._own_action, []

    def flaky(request, action_id):
        if len(failures) < 2:
            failures.append(action_id)
            raise DatabaseError("connection lost")
        return own_action(request, action_id)

    monkeypatch.setattr(reviews_api, "_own_action", flaky)
    reviewer_decides("approve")
    assert steward.wait(proposed, timeout=10, poll_interval=0.05).allowed
    assert len(failures) == 2


def test_get_of_an_unknown_or_malformed_id_raises(steward):
    with pytest.raises(NotFound):
        steward.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(BadRequest) as bad:
        steward.get("not-a-uuid")
    assert (bad.value.status, bad.value.fields) == (422, ("action_id",))


def test_report_records_the_outcome_only_after_approval(steward):
    allowed = steward.propose("crm", "update_deal", "execute", **UPDATE)
    done = steward.report(allowed, "executed", "Saved in the CRM")
    assert (done.status, done.raw["outcome_detail"]) == ("executed", "Saved in the CRM")
    assert ActionRequest.objects.get(public_id=allowed.id).status == "executed"
    pending = steward.propose("crm", "update_deal", "execute", **STAGE_CHANGE)
    with pytest.raises(Conflict, match="only after approved"):
        steward.report(pending.id, "executed")
    with pytest.raises(ValueError, match="outcome must be one of"):
        steward.report(allowed, "done")


# --- the decorator ---------------------------------------------------------------------------

def test_gated_runs_at_once_when_allowed_and_reports_executed(steward):
    calls = []

    @steward.gated(system="crm", operation="update_deal", kind="execute", currency="EUR")
    def update_deal(*, target, changes, content, crm):
        calls.append((target, changes, content, crm))
        return "saved"

    assert update_deal(crm="the-crm", **UPDATE) == "saved"
    assert calls == [("deal 4411", {"close_date": "2026-12-01"}, "", "the-crm")]
    stored = ActionRequest.objects.get()
    assert (stored.decision, stored.status, stored.currency) == ("allow", "executed", "EUR")


def test_gated_runs_with_the_reviewers_edit_once_approved(steward, reviewer_decides):
    calls = []

    @steward.gated(system="crm", operation="update_deal", kind="execute", poll_interval=0.05)
    def update_deal(*, changes, content, decision):
        calls.append((changes, content, decision.review_note))

    reviewer_decides("approve", edited_changes={"stage": "negotiation"},
                     edited_content="Moved to negotiation", note="Not won yet")
    update_deal(**STAGE_CHANGE, content="Won!")
    assert calls == [({"stage": "negotiation"}, "Moved to negotiation", "Not won yet")]
    stored = ActionRequest.objects.get()
    assert (stored.decision, stored.status) == ("review", "executed")


def test_gated_does_not_run_a_blocked_action(steward):
    calls = []

    @steward_client.gated(steward, system="helpdesk", operation="close_ticket",
                          kind="execute")
    def close_ticket(*, target, **_):
        calls.append(target)

    with pytest.raises(Blocked) as blocked:
        close_ticket(target="ticket 7")
    assert calls == []
    assert blocked.value.decision.blocked
    assert "execute" in str(blocked.value)  # the access reason, in words
    assert ActionRequest.objects.get().status == "blocked"


def test_gated_does_not_run_a_rejected_action(steward, reviewer_decides):
    calls = []

    @steward.gated(system="crm", operation="update_deal", kind="execute", poll_interval=0.05)
    def update_deal(*, changes, content):
        calls.append(changes)

    reviewer_decides("reject", note="The customer has not signed")
    with pytest.raises(Rejected, match="The customer has not signed"):
        update_deal(**STAGE_CHANGE)
    assert calls == []
    assert ActionRequest.objects.get().status == "rejected"


def test_gated_gives_up_waiting_without_running(steward):
    @steward.gated(system="crm", operation="update_deal", kind="execute", wait_timeout=0.3,
                   poll_interval=0.05)
    def update_deal(*, changes, content):
        raise AssertionError("must not run")

    with pytest.raises(WaitTimeout):
        update_deal(**STAGE_CHANGE)
    assert ActionRequest.objects.get().status == "pending"


def test_gated_reports_a_failure_and_reraises_it(steward):
    @steward.gated(system="crm", operation="update_deal", kind="execute")
    def update_deal(*, changes, content):
        raise RuntimeError("the CRM answered 500")

    with pytest.raises(RuntimeError, match="the CRM answered 500"):
        update_deal(**UPDATE)
    stored = ActionRequest.objects.get()
    assert (stored.status, stored.outcome_detail) == ("failed",
                                                      "RuntimeError: the CRM answered 500")


def test_gated_does_not_run_a_replayed_request_twice(steward):
    calls = []

    @steward.gated(system="crm", operation="update_deal", kind="execute")
    def update_deal(*, changes, content):
        calls.append(changes)

    update_deal(**UPDATE, idempotency_key="run-7")
    with pytest.raises(Conflict, match="already executed"):
        update_deal(**UPDATE, idempotency_key="run-7")
    assert len(calls) == 1 and ActionRequest.objects.count() == 1


def test_gated_refuses_a_call_the_function_cannot_take_before_proposing(steward):
    @steward.gated(system="crm", operation="update_deal", kind="execute")
    def update_deal(*, changes, content):
        raise AssertionError("must not run")

    with pytest.raises(TypeError):
        update_deal(**UPDATE, dry_run=True)
    assert not ActionRequest.objects.exists()
    with pytest.raises(TypeError, match="unknown proposal fields"):
        steward.gated(system="crm", operation="update_deal", kind="execute", amout=5)


# --- errors ----------------------------------------------------------------------------------

def test_an_unknown_token_raises_authentication_failed(live_server, agent):
    with pytest.raises(AuthenticationFailed, match="Bearer") as failed:
        Steward(live_server.url, "stw_nope_nope").propose("crm", "update_deal", "execute")
    assert failed.value.status == 401


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"confidence": 1.5}, 422, "confidence"),
    ({"kind": "delete"}, 422, "kind"),
    ({"currency": "euro"}, 422, "currency"),
    ({"system": "erp"}, 400, "system"),
    ({"sources": ["gossip"]}, 400, "sources"),
], ids=lambda value: str(value)[:30])
def test_a_bad_proposal_raises_bad_request_naming_the_field(steward, change, status, field):
    proposal = {"system": "crm", "operation": "update_deal", "kind": "execute", **UPDATE,
                **change}
    with pytest.raises(BadRequest) as bad:
        steward.propose(**proposal)
    assert (bad.value.status, bad.value.fields) == (status, (field,))
    assert field in str(bad.value)
    assert not ActionRequest.objects.exists()


def test_an_oversized_proposal_raises_bad_request(steward):
    with pytest.raises(BadRequest, match="256 KiB") as bad:
        steward.propose("crm", "update_deal", "execute", prompt="x" * (257 * 1024))
    assert bad.value.status == 413


def test_a_closed_port_is_gate_unavailable_and_nothing_runs():
    steward = Steward(f"http://127.0.0.1:{closed_port()}", "stw_any", timeout=2.0)
    with pytest.raises(GateUnavailable, match="did not answer"):
        steward.propose("crm", "update_deal", "execute", **UPDATE)

    @steward.gated(system="crm", operation="update_deal", kind="execute")
    def update_deal(*, changes, content):
        raise AssertionError("must not run")

    with pytest.raises(GateUnavailable):
        update_deal(**UPDATE)


def test_a_server_that_never_answers_is_gate_unavailable():
    with socket.socket() as silent:  # accepts connections (the backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        steward = Steward(f"http://127.0.0.1:{silent.getsockname()[1]}", "stw_any",
                          timeout=0.3)
        with pytest.raises(GateUnavailable, match="timed out"):
            steward.propose("crm", "update_deal", "execute")


def test_a_503_is_gate_unavailable_and_nothing_runs(steward, monkeypatch):
    def database_down(**kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(gate, "propose", database_down)
    with pytest.raises(GateUnavailable, match="cannot reach its database") as unavailable:
        steward.propose("crm", "update_deal", "execute", **UPDATE)
    assert unavailable.value.status == 503

    @steward.gated(system="crm", operation="update_deal", kind="execute")
    def update_deal(*, changes, content):
        raise AssertionError("must not run")

    with pytest.raises(GateUnavailable):
        update_deal(**UPDATE)


def test_the_client_needs_only_the_standard_library():
    """No site-packages (-S), no environment (-I): Django cannot sneak in."""
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import steward_client; "
              "extra = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)"
              " - {'steward_client', '__main__'}; assert not extra, extra")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
