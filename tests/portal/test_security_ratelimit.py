"""The agent API's per-token rate limit: a runaway token gets 429, the others go on."""

import logging
import secrets
import threading
import types

import pytest

from agents import services
from portal import ratelimit
from tests.factories import make_agent
from tests.reviews.conftest import AgentClient

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

PROPOSAL = {"system": "helpdesk", "operation": "refund_reply", "kind": "draft",
            "summary": "Reply to ticket 8", "content": "Dear customer"}
NOW = 1_800_000_010.0  # 10 s into a minute: the frozen clock of these tests


@pytest.fixture(autouse=True)
def limiter(settings, monkeypatch):
    settings.STEWARD_API_RATE_LIMIT = 5
    ratelimit.reset_for_tests()
    clock = types.SimpleNamespace(time=lambda: NOW, monotonic=ratelimit.time.monotonic)
    monkeypatch.setattr(ratelimit, "time", clock)  # one window for the whole test
    yield
    ratelimit.reset_for_tests()


def _agent_api(client, slug: str) -> AgentClient:
    agent = services.agent_move(actor=None, agent=make_agent(slug=slug, ready=True),
                                to_status="pilot")
    return AgentClient(client, services.agent_token_create(actor=None, agent=agent,
                                                           name="t")[1])


def test_a_runaway_token_gets_429_while_another_agent_goes_on(client):
    runaway, calm = _agent_api(client, "runaway"), _agent_api(client, "calm")
    for _ in range(5):
        assert runaway.post("/actions", PROPOSAL).status_code == 201
    throttled = runaway.post("/actions", PROPOSAL)
    assert throttled.status_code == 429
    assert throttled["Retry-After"] == "50"  # the rest of the minute
    body = throttled.json()
    assert (body["limit"], body["retry_after"]) == (5, 50)
    assert "Too many requests for this token" in body["detail"]
    assert "other agents are not affected" in body["detail"]
    assert runaway.get("/agent").status_code == 429  # every endpoint counts
    assert calm.post("/actions", PROPOSAL).status_code == 201


def test_a_throttled_call_costs_no_database_query(client, django_assert_num_queries):
    runaway = _agent_api(client, "runaway")
    for _ in range(5):
        runaway.get("/agent")
    with django_assert_num_queries(0):
        assert runaway.get("/agent").status_code == 429


def test_the_limiter_adds_no_database_query(client, settings, django_assert_num_queries):
    agent_api = _agent_api(client, "counted")
    agent_api.get("/agent")  # last_used_at is written on the first call
    settings.STEWARD_API_RATE_LIMIT = 0
    with django_assert_num_queries(2):  # the token with its agent, and the agent
        agent_api.get("/agent")
    settings.STEWARD_API_RATE_LIMIT = 100
    with django_assert_num_queries(2):
        agent_api.get("/agent")


def test_the_next_window_lets_the_token_in_again(client, monkeypatch):
    agent_api = _agent_api(client, "runaway")
    for _ in range(6):
        agent_api.get("/agent")
    assert agent_api.get("/agent").status_code == 429
    monkeypatch.setattr(ratelimit.time, "time", lambda: NOW + 60)
    assert agent_api.get("/agent").status_code == 200


def test_zero_turns_the_limit_off(client, settings):
    settings.STEWARD_API_RATE_LIMIT = 0
    agent_api = _agent_api(client, "unlimited")
    assert all(agent_api.get("/agent").status_code == 200 for _ in range(12))


def test_concurrent_calls_are_counted_exactly():
    """INCR in one MULTI/EXEC: of 40 simultaneous calls exactly the limit pass."""
    key, passed, barrier = secrets.token_hex(16), [], threading.Barrier(8)

    def hammer():
        barrier.wait()
        for _ in range(5):
            try:
                ratelimit.check(key, now=NOW)
                passed.append(1)
            except ratelimit.Throttled:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(passed) == 5
    window = int(NOW // 60)
    ttl = ratelimit._redis().ttl(f"{ratelimit.KEY_PREFIX}{key}:{window}")
    assert 0 < ttl <= 61  # the window's counter goes away on its own


def test_without_redis_the_gate_still_answers(client, settings, caplog):
    agent_api = _agent_api(client, "no-redis")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    ratelimit.reset_for_tests()
    with caplog.at_level(logging.ERROR, logger="portal.ratelimit"):
        answers = [agent_api.post("/actions", PROPOSAL).status_code for _ in range(8)]
    assert answers == [201] * 8  # over the limit of 5, but the limiter failed open
    errors = [r for r in caplog.records if r.name == "portal.ratelimit"]
    assert len(errors) == 1 and "Redis did not answer" in errors[0].getMessage()


def test_429_is_documented_for_every_operation():
    from portal.api import api

    for path, methods in api.get_openapi_schema()["paths"].items():
        for method, operation in methods.items():
            assert 429 in operation["responses"], (method, path)
