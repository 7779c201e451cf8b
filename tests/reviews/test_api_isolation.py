"""A token speaks for one agent only: no endpoint lets it read or act on another agent's data.

`test_every_api_operation_is_covered` lists the API's operations from its own schema, so a
new endpoint fails here until its isolation test is added to COVERED.
"""

import pytest

from agents import services
from metrics.models import Observation
from portal.api import api
from reviews.models import ActionRequest
from tests.factories import make_agent
from tests.reviews.conftest import AgentClient

pytestmark = pytest.mark.django_db

READ = {"system": "helpdesk", "operation": "lookup_ticket", "kind": "read",
        "target": "ticket 7", "summary": "Read ticket 7", "idempotency_key": "run-1"}
DRAFT = {"system": "helpdesk", "operation": "refund_reply", "kind": "draft",
         "target": "ticket 8", "summary": "Reply to ticket 8", "content": "Dear customer",
         "prompt": "secret prompt of agent A"}

# (method, path in the schema) -> the test that proves a token cannot cross agents there.
COVERED = {
    ("get", "/api/v1/agent"): "test_whoami_answers_only_for_the_tokens_agent",
    ("post", "/api/v1/actions"): "test_an_idempotency_key_never_returns_another_agents_answer",
    ("get", "/api/v1/actions/{action_id}"): "test_another_agents_request_cannot_be_read",
    ("post", "/api/v1/actions/{action_id}/outcome"):
        "test_another_agents_request_cannot_get_an_outcome",
    ("post", "/api/v1/observations"): "test_observations_cannot_be_pushed_for_another_agent",
    ("post", "/api/v1/simulate"): "test_simulate_judges_only_the_tokens_agent",
}


def _pilot_agent(slug: str):
    agent = make_agent(slug=slug, ready=True)  # L1, draft access to the helpdesk
    return services.agent_move(actor=None, agent=agent, to_status="pilot")


@pytest.fixture
def agents(client):
    """Agent A with an approved read and a pending draft; agent B, a stranger to them."""
    a, b = _pilot_agent("agent-a"), _pilot_agent("agent-b")
    api_a = AgentClient(client, services.agent_token_create(actor=None, agent=a, name="a")[1])
    api_b = AgentClient(client, services.agent_token_create(actor=None, agent=b, name="b")[1])
    approved = api_a.post("/actions", READ).json()
    pending = api_a.post("/actions", DRAFT).json()
    assert (approved["status"], pending["status"]) == ("approved", "pending")
    return a, b, api_a, api_b, approved["id"], pending["id"]


def test_every_api_operation_is_covered():
    schema = api.get_openapi_schema()
    operations = {(method, path) for path, methods in schema["paths"].items()
                  for method in methods}
    assert operations == set(COVERED), "add an isolation test for each new API operation"


def test_whoami_answers_only_for_the_tokens_agent(agents):
    _a, _b, api_a, api_b, _approved, _pending = agents
    assert api_a.get("/agent").json()["slug"] == "agent-a"
    assert api_b.get("/agent").json()["slug"] == "agent-b"


def test_another_agents_request_cannot_be_read(agents):
    _a, _b, api_a, api_b, approved, pending = agents
    for public_id in (approved, pending):
        assert api_a.get(f"/actions/{public_id}").status_code == 200
        answer = api_b.get(f"/actions/{public_id}")
        assert answer.status_code == 404
        assert "ticket" not in answer.content.decode()  # nothing of A's request leaks
        assert "secret prompt" not in answer.content.decode()


def test_another_agents_request_cannot_get_an_outcome(agents):
    _a, _b, _api_a, api_b, approved, pending = agents
    for public_id in (approved, pending):
        answer = api_b.post(f"/actions/{public_id}/outcome",
                            {"outcome": "executed", "detail": "done by B"})
        assert answer.status_code == 404
    stored = ActionRequest.objects.get(public_id=approved)
    assert (stored.status, stored.outcome_at, stored.outcome_detail) == ("approved", None, "")


def test_an_idempotency_key_never_returns_another_agents_answer(agents):
    a, b, _api_a, api_b, approved, _pending = agents
    answer = api_b.post("/actions", READ)  # the same idempotency_key as A's first call
    assert answer.status_code == 201
    assert answer.json()["id"] != approved
    assert ActionRequest.objects.get(public_id=answer.json()["id"]).agent == b
    assert ActionRequest.objects.filter(agent=a).count() == 2


def test_observations_cannot_be_pushed_for_another_agent(agents):
    a, b, _api_a, api_b, _approved, _pending = agents
    answer = api_b.post("/observations", {"observations": [
        {"agent": "agent-a", "metric": "accuracy", "observed_at": "2026-01-05", "value": 1},
        {"metric": "accuracy", "observed_at": "2026-01-05", "value": 99},
    ]})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["imported"], body["rejected"]) == (1, 1)
    assert body["errors"][0]["index"] == 0 and body["errors"][0]["field"] == "agent"
    assert not Observation.objects.filter(agent=a).exists()
    assert Observation.objects.filter(agent=b).count() == 1


def test_simulate_judges_only_the_tokens_agent(agents):
    _a, _b, _api_a, api_b, _approved, _pending = agents
    answer = api_b.post("/simulate", {**DRAFT, "agent": "agent-a"})
    assert answer.status_code == 403
    assert "only simulate that agent's own actions" in answer.json()["detail"]
    assert "reasons" not in answer.json()
    own = api_b.post("/simulate", DRAFT)
    assert own.status_code == 200 and own.json()["agent"] == "agent-b"


@pytest.mark.parametrize("method, path", sorted(COVERED))
def test_a_revoked_token_is_refused_everywhere(agents, client, method, path):
    a, _b, _api_a, _api_b, approved, _pending = agents
    token, secret = services.agent_token_create(actor=None, agent=a, name="old")
    services.agent_token_revoke(actor=None, token=token)
    url = path.replace("{action_id}", approved)
    headers = {"Authorization": f"Bearer {secret}"}
    if method == "get":
        answer = client.get(url, headers=headers)
    else:
        answer = client.post(url, data={}, content_type="application/json", headers=headers)
    assert answer.status_code == 401
