"""The gate's two paths (reviews.gate, PostgreSQL). An uncounted proposal is judged by the
policy version read with the token and stored by one guarded statement; if that version is
stale by then, nothing of that judgement is stored and the call is judged again under the
share lock. A counted write takes the blast-radius lock in shared mode and stores by one
counting statement, both in one pipelined round trip, unless the count is too near the limit
for that: then it takes the locked path."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import services
from agents.models import Agent, AgentToken
from portal.models import AuditEvent
from reviews import gate
from reviews.models import ActionRequest

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PROPOSAL = {"system": "crm", "operation": "update_deal", "kind": "execute",
            "changes": {"close_date": "2026-12-01"}, "confidence": 0.9}


def _token(agent: Agent) -> AgentToken:
    token, _secret = services.agent_token_create(actor=None, agent=agent, name="t")
    return AgentToken.objects.select_related("agent").get(pk=token.pk)  # as the API loads it


def _statements(token: AgentToken) -> tuple[ActionRequest, list[str]]:
    gate.propose(token=token, proposal=dict(PROPOSAL))  # the snapshot is cached from here on
    with CaptureQueriesContext(connection) as queries:
        action = gate.propose(token=token, proposal=dict(PROPOSAL)).action
    return action, [q["sql"].split(" ", 1)[0] for q in queries.captured_queries]


def test_an_uncounted_proposal_is_one_statement(live_agent):
    action, statements = _statements(_token(live_agent))
    assert action.decision == "allow"
    assert statements == ["WITH"]  # guard, request and audit event together
    assert AuditEvent.objects.filter(verb="action.proposed", object_id=str(action.pk)).exists()


def _in_flight_bound() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {gate.IN_FLIGHT_BOUND_SQL}")
        return cursor.fetchone()[0]


def test_a_counted_write_is_the_lock_and_one_statement(live_agent):
    limit = _in_flight_bound() + 10  # far enough under it for any writes in flight
    agent = services.agent_update(actor=None, agent=live_agent, max_writes_per_hour=limit)
    action, statements = _statements(_token(agent))
    assert action.decision == "allow"
    assert statements == ["SELECT", "WITH"]  # sent together (a psycopg pipeline)


def test_a_counted_write_near_the_limit_takes_the_exclusive_lock(live_agent):
    # Under the limit, but not by more than the writes other connections could have in flight.
    agent = services.agent_update(actor=None, agent=live_agent, max_writes_per_hour=50)
    action, statements = _statements(_token(agent))
    assert action.decision == "allow"
    # the pipelined try stored nothing; then the locked path: version FOR SHARE, the
    # exclusive lock, the count, the insert
    assert statements == ["SELECT", "WITH", "BEGIN", "SELECT", "SELECT", "SELECT", "WITH",
                          "COMMIT"]
    assert ActionRequest.objects.filter(agent=agent).count() == 2


def test_a_counted_write_at_the_limit_needs_no_exclusive_lock(live_agent):
    agent = services.agent_update(actor=None, agent=live_agent, max_writes_per_hour=1)
    action, statements = _statements(_token(agent))  # the first call uses the one write
    assert action.decision == "review"
    assert statements == ["SELECT", "WITH"]


def test_a_counted_write_over_the_limit_stores_the_review_judgement(live_agent):
    agent = services.agent_update(actor=None, agent=live_agent, max_writes_per_hour=2)
    token = _token(agent)
    actions = [gate.propose(token=token, proposal=dict(PROPOSAL)).action for _ in range(3)]

    assert [a.decision for a in actions] == ["allow", "allow", "review"]
    third = ActionRequest.objects.get(pk=actions[2].pk)
    assert third.status == "pending" and third.due_at is not None
    assert [r["code"] for r in third.reasons] == ["blast_radius"]
    assert third.reasons == actions[2].reasons  # what the agent was told is what is stored
    event = AuditEvent.objects.get(verb="action.proposed", object_id=str(third.pk))
    assert event.data["decision"] == "review"
    assert event.data["reasons"] == third.reasons
    first = AuditEvent.objects.get(verb="action.proposed", object_id=str(actions[0].pk))
    assert first.data["decision"] == "allow" and first.data["reasons"] == []


def test_a_stale_policy_version_on_the_counted_path_is_judged_again(live_agent):
    agent = services.agent_update(actor=None, agent=live_agent, max_writes_per_hour=100)
    token = _token(agent)
    gate.propose(token=token, proposal=dict(PROPOSAL))
    services.agent_pause(actor=None, agent=agent, reason="Wrong deals")

    action = gate.propose(token=token, proposal=dict(PROPOSAL)).action

    assert action.decision == "block" and action.reasons[0]["code"] == "paused"
    assert ActionRequest.objects.filter(agent=agent).count() == 2


def test_a_stale_policy_version_is_judged_again_under_the_lock(live_agent):
    token = _token(live_agent)
    assert gate.propose(token=token, proposal=dict(PROPOSAL)).action.decision == "allow"
    paused = services.agent_pause(actor=None, agent=live_agent, reason="Wrong deals")
    # `token` still carries the version from before the pause, like a request authenticated
    # a moment before it committed, and the process still caches that version's snapshot.
    assert token.agent.policy_version < paused.policy_version

    action = gate.propose(token=token, proposal=dict(PROPOSAL)).action

    assert action.decision == "block" and action.reasons[0]["code"] == "paused"
    assert action.policy_version == paused.policy_version
    assert ActionRequest.objects.filter(agent=live_agent).count() == 2  # nothing else stored
    assert AuditEvent.objects.filter(verb="action.proposed").count() == 2


def test_a_repeated_idempotency_key_stores_nothing_on_the_unlocked_path(live_agent):
    token = _token(live_agent)
    first = gate.propose(token=token, proposal={**PROPOSAL, "idempotency_key": "k-1"})
    again = gate.propose(token=token, proposal={**PROPOSAL, "idempotency_key": "k-1"})
    assert first.created and not again.created and again.action.pk == first.action.pk
    assert ActionRequest.objects.filter(agent=live_agent).count() == 1
