"""The kill switch under real concurrency (PostgreSQL, threads).

The guarantee: once the pause transaction has committed, no gate call returns `allow` and no
approval of the agent's items succeeds. Threads hammer the gate (or approve items) while the
main thread pauses the agent. A delay between reading the policy and storing the decision
widens the race window; `test_the_check_catches_a_gate_without_the_lock` shows the same check
fails when the gate's share lock is taken away. Both of the gate's paths are raced: the
unlocked one (judge, then one guarded insert) and the counted one (a write against the hourly
limit: the blast-radius lock and a guarded, counting insert).
"""

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from agents import services
from agents.models import Agent, AgentToken
from reviews import gate
from reviews import services as review_services
from reviews.models import ActionRequest
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PROPOSAL = {"system": "crm", "operation": "update_deal", "kind": "execute",
            "changes": {"close_date": "2026-12-01"}, "confidence": 0.9}
HAMMERS = 6


def _hammer(token_pk: int, stop: threading.Event, calls: list, errors: list) -> None:
    try:
        token = AgentToken.objects.select_related("agent").get(pk=token_pk)
        while not stop.is_set():
            started = time.monotonic()
            decision = gate.propose(token=token, proposal=dict(PROPOSAL)).action.decision
            calls.append((started, decision))
    except Exception as exc:  # surfaced by the test
        errors.append(exc)
    finally:
        connection.close()


def _pause_while_hammering(agent: Agent, token: AgentToken) -> tuple[float, list]:
    stop, calls, errors = threading.Event(), [], []
    threads = [threading.Thread(target=_hammer, args=(token.pk, stop, calls, errors))
               for _ in range(HAMMERS)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)
    asked = time.monotonic()
    services.agent_pause(actor=None, agent=agent, reason="Kill switch test")
    committed = time.monotonic()
    # Liveness, not speed: the pause gets through the stream of calls instead of waiting
    # behind it for minutes (row share locks alone let it starve: agents.locking). It takes
    # milliseconds; 10 s only rules out the starvation.
    assert committed - asked < 10
    time.sleep(0.4)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return committed, calls


def _violations(agent: Agent, committed: float, calls: list) -> tuple[list, int]:
    paused_at = Agent.objects.get(pk=agent.pk).paused_at
    late_allows = [c for c in calls if c[0] > committed and c[1] == "allow"]
    stored_after = ActionRequest.objects.filter(
        agent=agent, decision="allow", created_at__gt=paused_at).count()
    return late_allows, stored_after


@pytest.fixture
def slow_gate(monkeypatch):
    """Hold the gate between reading the policy and storing the decision."""
    monkeypatch.setattr(gate, "after_policy_read", lambda: time.sleep(0.02))


# The gate's paths (reviews.gate): without a write limit an `execute` takes the unlocked path;
# with one it is counted.
PATHS = {"unlocked": None, "counted": 100_000}


@pytest.mark.parametrize("write_limit", PATHS.values(), ids=PATHS.keys())
def test_no_gate_call_allows_after_the_pause_commits(live_agent, slow_gate, write_limit):
    # the live agent is L2 without sampling: its execute actions are allowed, as at L3
    services.agent_update(actor=None, agent=live_agent, max_writes_per_hour=write_limit)
    token, _secret = services.agent_token_create(actor=None, agent=live_agent, name="t")
    committed, calls = _pause_while_hammering(live_agent, token)

    late_allows, stored_after = _violations(live_agent, committed, calls)
    assert late_allows == [] and stored_after == 0
    # the test really raced: allows before the pause, blocks after it
    assert any(d == "allow" for started, d in calls if started < committed)
    assert any(d == "block" for started, d in calls if started > committed)


@pytest.mark.parametrize("write_limit", PATHS.values(), ids=PATHS.keys())
def test_the_check_catches_a_gate_without_the_lock(live_agent, monkeypatch, write_limit):
    def read_without_lock(agent_id: int) -> int:
        return Agent.objects.values_list("policy_version", flat=True).get(pk=agent_id)

    monkeypatch.setattr(gate, "lock_agent_for_share", read_without_lock)
    # ...and the insert neither locks the row nor checks the version
    monkeypatch.setattr(gate, "AGENT_GUARD_SQL",
                        "SELECT id FROM agents_agent WHERE id = %s AND %s::int IS NOT NULL")
    # A long hold, so some call is surely between its read and its insert when the pause
    # commits, even on a loaded machine.
    monkeypatch.setattr(gate, "after_policy_read", lambda: time.sleep(0.15))
    services.agent_update(actor=None, agent=live_agent, max_writes_per_hour=write_limit)
    token, _secret = services.agent_token_create(actor=None, agent=live_agent, name="t")
    committed, calls = _pause_while_hammering(live_agent, token)

    _late_allows, stored_after = _violations(live_agent, committed, calls)
    assert stored_after > 0  # without the share lock, allows land after the pause


def test_no_approval_succeeds_after_the_pause_commits(live_agent, slow_gate):
    services.agent_update(actor=None, agent=live_agent, autonomy_level=1)  # all wait for a person
    token, _secret = services.agent_token_create(actor=None, agent=live_agent, name="t")
    items = [gate.propose(token=token, proposal=dict(PROPOSAL)).action for _ in range(60)]
    assert {item.status for item in items} == {"pending"}
    reviewer = UserFactory(username="rex", is_superuser=True)
    queue, outcomes, errors = list(items), [], []
    lock = threading.Lock()

    def approve_until_empty():
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                started = time.monotonic()
                try:
                    review_services.action_approve(actor=reviewer, action=item)
                    outcomes.append((started, "approved"))
                except ValidationError:
                    outcomes.append((started, "refused"))
                time.sleep(0.01)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve_until_empty) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    services.agent_pause(actor=None, agent=live_agent, reason="Stop approvals")
    committed = time.monotonic()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors

    paused_at = Agent.objects.get(pk=live_agent.pk).paused_at
    assert not ActionRequest.objects.filter(agent=live_agent, status="approved",
                                            reviewed_at__gt=paused_at).exists()
    assert all(result == "refused" for started, result in outcomes if started > committed)
    assert any(result == "refused" for _, result in outcomes)
    # what was pending stays visible, waiting: nothing is cancelled silently
    assert ActionRequest.objects.filter(agent=live_agent, status="pending").count() == len(
        [o for o in outcomes if o[1] == "refused"])
    assert timezone.now() > paused_at
