"""POST /api/v1/simulate: the decision an action would get, for the agent's token or an
owner's or Admin's session; nothing is stored."""

import pytest

from agents import services
from portal.models import AuditEvent
from portal.roles import ADMINS
from reviews.models import ActionRequest
from tests.factories import UserFactory, make_agent

pytestmark = pytest.mark.django_db

STAGE_CHANGE = {"system": "crm", "operation": "update_deal", "kind": "execute",
                "changes": {"stage": "won"}, "idempotency_key": "same-key"}


def counts():
    return ActionRequest.objects.count(), AuditEvent.objects.count()


def test_the_agents_token_gets_the_decision_and_nothing_is_stored(agent_api, live_agent):
    before = counts()
    response = agent_api.post("/simulate", STAGE_CHANGE)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["agent"] == live_agent.slug and body["decision"] == "review"
    assert body["sampled"] is False
    assert [r["code"] for r in body["reasons"]] == ["guardrail"]
    assert agent_api.post("/simulate", {**STAGE_CHANGE, "kind": "read",
                                        "changes": {}}).json()["decision"] == "allow"
    assert counts() == before
    # the same idempotency key later proposes for real: the simulation did not take it
    assert agent_api.post("/actions", STAGE_CHANGE).status_code == 201


def test_a_token_may_not_simulate_another_agent(agent_api):
    other = make_agent(slug="someone-else")
    response = agent_api.post("/simulate", {**STAGE_CHANGE, "agent": other.slug})
    assert response.status_code == 403
    assert "crm-hygiene" in response.json()["detail"]


def test_an_owners_session_names_the_agent(client, live_agent):
    client.force_login(live_agent.business_owner)
    before = counts()
    response = client.post("/api/v1/simulate", {**STAGE_CHANGE, "agent": live_agent.slug},
                           content_type="application/json")
    assert response.status_code == 200 and response.json()["decision"] == "review"
    response = client.post("/api/v1/simulate", STAGE_CHANGE, content_type="application/json")
    assert response.status_code == 400 and "Name the agent" in response.json()["detail"]
    assert counts() == before


def test_sessions_without_change_rights_are_refused(client, live_agent):
    client.force_login(UserFactory(username="ada-admin", groups=[ADMINS]))
    assert client.post("/api/v1/simulate", {**STAGE_CHANGE, "agent": live_agent.slug},
                       content_type="application/json").status_code == 200
    pauser = UserFactory(username="only-pauses")
    services.agent_update(actor=None, agent=live_agent, pausers=[pauser])
    client.force_login(pauser)  # may see and pause it, not change it
    assert client.post("/api/v1/simulate", {**STAGE_CHANGE, "agent": live_agent.slug},
                       content_type="application/json").status_code == 403
    client.force_login(UserFactory(username="vic-viewer"))  # may not see it
    assert client.post("/api/v1/simulate", {**STAGE_CHANGE, "agent": live_agent.slug},
                       content_type="application/json").status_code == 404
    client.logout()
    assert client.post("/api/v1/simulate", {**STAGE_CHANGE, "agent": live_agent.slug},
                       content_type="application/json").status_code == 401


def test_bad_input_is_a_4xx_with_a_message(agent_api):
    response = agent_api.post("/simulate", {**STAGE_CHANGE, "confidence": 3})
    assert response.status_code == 422
    response = agent_api.post("/simulate", {**STAGE_CHANGE, "system": "nowhere"})
    assert response.status_code == 400 and "Unknown system 'nowhere'" in response.json()["detail"]
