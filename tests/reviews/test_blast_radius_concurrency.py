"""The blast-radius limit under real concurrency (PostgreSQL, threads).

Threads propose counted writes at once; exactly `max_writes_per_hour` of them may be allowed,
the rest go to review. Near the limit the locked path counts under an exclusive per-agent
lock; far under it (or at it) the counted path counts under the same lock in shared mode and
relies on the bound of writes in flight (reviews.gate). Each check is shown to fail when its
safeguard is taken away.
"""

import threading

import pytest
from django.db import connection

from agents import services
from agents.models import AgentToken
from reviews import gate
from reviews.models import ActionRequest

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PROPOSAL = {"system": "crm", "operation": "update_deal", "kind": "execute",
            "changes": {"close_date": "2026-12-01"}, "confidence": 0.9}
LIMIT, THREADS, CALLS_EACH = 5, 6, 4


def _propose_many(token_pk: int, start: threading.Barrier, decisions: list,
                  errors: list, calls: int) -> None:
    try:
        token = AgentToken.objects.select_related("agent").get(pk=token_pk)
        start.wait()
        for _ in range(calls):
            decisions.append(gate.propose(token=token, proposal=dict(PROPOSAL)).action.decision)
    except Exception as exc:  # surfaced by the test
        errors.append(exc)
    finally:
        connection.close()


def _race(agent, limit: int = LIMIT, calls_each: int = CALLS_EACH) -> list[str]:
    services.agent_update(actor=None, agent=agent, max_writes_per_hour=limit)
    token, _secret = services.agent_token_create(actor=None, agent=agent, name="t")
    start, decisions, errors = threading.Barrier(THREADS), [], []
    threads = [threading.Thread(target=_propose_many,
                                args=(token.pk, start, decisions, errors, calls_each))
               for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(decisions) == THREADS * calls_each
    return decisions


def test_exactly_the_limit_is_allowed_when_writes_race(live_agent):
    decisions = _race(live_agent)

    assert decisions.count("allow") == LIMIT
    assert decisions.count("review") == THREADS * CALLS_EACH - LIMIT
    stored = ActionRequest.objects.filter(agent=live_agent)
    assert stored.filter(decision="allow").count() == LIMIT
    over = stored.filter(decision="review")
    assert all(r.reasons[-1]["code"] == "blast_radius" for r in over)


def _slow_guard(monkeypatch) -> None:
    """A slow guard, so counts overlap even on a loaded machine: each call counts first and
    inserts after the sleep."""
    monkeypatch.setattr(gate, "AGENT_GUARD_SQL",
                        gate.AGENT_GUARD_SQL.replace(" FOR SHARE",
                                                     " AND pg_sleep(0.05) IS NOT NULL FOR SHARE"))


def test_the_check_catches_a_count_without_the_exclusive_lock(live_agent, monkeypatch):
    monkeypatch.setattr(gate, "EXCLUSIVE_BLAST_RADIUS_LOCK_SQL", "SELECT %s::int + %s::int")
    _slow_guard(monkeypatch)
    decisions = _race(live_agent)

    assert decisions.count("allow") > LIMIT


def _in_flight_bound() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {gate.IN_FLIGHT_BOUND_SQL}")
        return cursor.fetchone()[0]


def test_exactly_the_limit_is_allowed_when_most_writes_skip_the_exclusive_lock(live_agent):
    # The first writes are far enough under the limit to go lock-free (shared lock only);
    # the last ones near it take the exclusive lock; the ones over it go lock-free again.
    limit = _in_flight_bound() + 3 * THREADS
    calls_each = (limit + 2 * THREADS) // THREADS + 1
    decisions = _race(live_agent, limit=limit, calls_each=calls_each)

    assert decisions.count("allow") == limit
    assert ActionRequest.objects.filter(agent=live_agent, decision="allow").count() == limit


def test_the_check_catches_a_lock_free_count_that_ignores_writes_in_flight(live_agent,
                                                                         monkeypatch):
    monkeypatch.setattr(gate, "IN_FLIGHT_BOUND_SQL", "0")  # as if nothing could be in flight
    _slow_guard(monkeypatch)
    decisions = _race(live_agent)

    assert decisions.count("allow") > LIMIT
