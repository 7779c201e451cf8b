"""The blast-radius limit under real concurrency (PostgreSQL, threads).

Threads propose counted writes at once; exactly `max_writes_per_hour` of them may be allowed,
the rest go to review. The count and the insert are one statement taken after a per-agent lock
(reviews.gate); `test_the_check_catches_a_count_without_the_lock` shows the same check fails
when that lock is taken away.
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
                  errors: list) -> None:
    try:
        token = AgentToken.objects.select_related("agent").get(pk=token_pk)
        start.wait()
        for _ in range(CALLS_EACH):
            decisions.append(gate.propose(token=token, proposal=dict(PROPOSAL)).action.decision)
    except Exception as exc:  # surfaced by the test
        errors.append(exc)
    finally:
        connection.close()


def _race(agent) -> list[str]:
    services.agent_update(actor=None, agent=agent, max_writes_per_hour=LIMIT)
    token, _secret = services.agent_token_create(actor=None, agent=agent, name="t")
    start, decisions, errors = threading.Barrier(THREADS), [], []
    threads = [threading.Thread(target=_propose_many, args=(token.pk, start, decisions, errors))
               for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(decisions) == THREADS * CALLS_EACH
    return decisions


def test_exactly_the_limit_is_allowed_when_writes_race(live_agent):
    decisions = _race(live_agent)

    assert decisions.count("allow") == LIMIT
    assert decisions.count("review") == THREADS * CALLS_EACH - LIMIT
    stored = ActionRequest.objects.filter(agent=live_agent)
    assert stored.filter(decision="allow").count() == LIMIT
    over = stored.filter(decision="review")
    assert all(r.reasons[-1]["code"] == "blast_radius" for r in over)


def test_the_check_catches_a_count_without_the_lock(live_agent, monkeypatch):
    monkeypatch.setattr(gate, "BLAST_RADIUS_LOCK_SQL", "SELECT %s::int")
    # ...and a slow guard, so counts overlap even on a loaded machine: each statement counts
    # from its snapshot, taken before the sleep, and inserts after it.
    monkeypatch.setattr(gate, "AGENT_GUARD_SQL",
                        gate.AGENT_GUARD_SQL.replace(" FOR SHARE",
                                                     " AND pg_sleep(0.05) IS NOT NULL FOR SHARE"))
    decisions = _race(live_agent)

    assert decisions.count("allow") > LIMIT
