"""The agent API: the gate's answers, its records, and clear errors for bad input."""

import pytest

from agents import services
from portal.models import AuditEvent
from reviews.models import ActionRequest
from tests.factories import make_agent
from tests.reviews.conftest import AgentClient

pytestmark = pytest.mark.django_db

UPDATE = {"system": "crm", "operation": "update_deal", "kind": "execute", "target": "deal 4411",
          "summary": "Fix the deal's close date", "changes": {"close_date": "2026-12-01"},
          "confidence": 0.9, "sources": ["crm-records"], "prompt": "Tidy deal 4411",
          "cost_usd": 0.012, "tokens": 812}


def test_allowed_action_is_approved_and_recorded(agent_api, live_agent):
    response = agent_api.post("/actions", UPDATE)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["decision"], body["status"], body["reasons"]) == ("allow", "approved", [])
    assert body["review_url"].endswith(f"/reviews/{body['id']}/")
    stored = ActionRequest.objects.get(public_id=body["id"])
    assert stored.policy_version == live_agent.__class__.objects.get(pk=live_agent.pk
                                                                      ).policy_version
    assert len(stored.proposal_sha256) == 64 and stored.fired_guardrail_ids == []
    event = AuditEvent.objects.get(verb="action.proposed", object_id=str(stored.pk))
    assert event.actor_label == "agent:crm-hygiene"
    assert event.data["prompt"] == "Tidy deal 4411"
    assert event.data["decision"] == "allow"
    assert event.data["proposal"]["changes"] == {"close_date": "2026-12-01"}


def test_guardrail_sends_a_stage_change_to_review_with_its_reason(agent_api, live_agent):
    body = agent_api.post("/actions", {**UPDATE, "changes": {"stage": "won"}}).json()
    assert (body["decision"], body["status"]) == ("review", "pending")
    assert [r["code"] for r in body["reasons"]] == ["guardrail"]
    assert "Stage changes need approval" in body["reasons"][0]["message"]
    stored = ActionRequest.objects.get(public_id=body["id"])
    assert stored.fired_guardrail_ids == [live_agent.guardrails.get(
        name="Stage changes need approval").pk]
    assert stored.due_at is not None


def test_no_access_is_blocked(agent_api):
    body = agent_api.post("/actions", {**UPDATE, "system": "helpdesk",
                                       "kind": "execute"}).json()
    assert (body["decision"], body["status"]) == ("block", "blocked")
    assert "access_exceeded" in [r["code"] for r in body["reasons"]]


def test_repeated_idempotency_key_returns_the_first_answer(agent_api):
    first = agent_api.post("/actions", {**UPDATE, "idempotency_key": "run-7"})
    again = agent_api.post("/actions", {**UPDATE, "idempotency_key": "run-7",
                                        "changes": {"stage": "lost"}})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert ActionRequest.objects.count() == 1


def test_poll_shows_final_state_and_reviewer_edit(agent_api, live_agent):
    body = agent_api.post("/actions", {**UPDATE, "changes": {"stage": "won"}}).json()
    ActionRequest.objects.filter(public_id=body["id"]).update(
        edited_changes={"stage": "negotiation"}, review_note="Not won yet")
    detail = agent_api.get(f"/actions/{body['id']}").json()
    assert detail["edited"] is True
    assert detail["changes"] == {"stage": "negotiation"}
    assert detail["review_note"] == "Not won yet"


def test_an_agent_cannot_read_or_report_on_another_agents_request(client, agent_api):
    body = agent_api.post("/actions", UPDATE).json()
    other = make_agent(slug="other-agent")
    _t, secret = services.agent_token_create(actor=None, agent=other, name="x")
    stranger = AgentClient(client, secret)
    assert stranger.get(f"/actions/{body['id']}").status_code == 404
    assert stranger.post(f"/actions/{body['id']}/outcome",
                         {"outcome": "executed"}).status_code == 404


def test_outcome_only_after_approval(agent_api):
    pending = agent_api.post("/actions", {**UPDATE, "changes": {"stage": "won"}}).json()
    refused = agent_api.post(f"/actions/{pending['id']}/outcome", {"outcome": "executed"})
    assert refused.status_code == 409
    assert "only after approved" in refused.json()["detail"]

    allowed = agent_api.post("/actions", UPDATE).json()
    done = agent_api.post(f"/actions/{allowed['id']}/outcome",
                          {"outcome": "executed", "detail": "Saved in the CRM"})
    assert done.status_code == 200 and done.json()["status"] == "executed"
    undone = agent_api.post(f"/actions/{allowed['id']}/outcome", {"outcome": "rolled_back"})
    assert undone.json()["status"] == "rolled_back"
    assert AuditEvent.objects.filter(verb="action.executed").exists()
    assert AuditEvent.objects.filter(verb="action.rolled_back").exists()


def test_whoami_shows_a_pause_at_once(agent_api, live_agent):
    assert agent_api.get("/agent").json()["paused"] is False
    services.agent_pause(actor=None, agent=live_agent, reason="Bad stage changes")
    me = agent_api.get("/agent").json()
    assert (me["status"], me["paused"], me["pause_reason"]) == (
        "paused", True, "Bad stage changes")
    body = agent_api.post("/actions", UPDATE).json()
    assert body["decision"] == "block" and body["reasons"][0]["code"] == "paused"


@pytest.mark.parametrize("make_headers", [
    lambda secret: {},
    lambda secret: {"Authorization": "Bearer stw_nope_nope"},
    lambda secret: {"Authorization": f"Token {secret}"},
], ids=["no token", "unknown token", "wrong scheme"])
def test_requests_without_a_valid_token_get_401(client, agent_api, make_headers):
    secret = agent_api.headers["Authorization"].split()[1]
    response = client.get("/api/v1/agent", headers=make_headers(secret))
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_revoked_token_and_retired_agent_get_401(client, live_agent):
    token, secret = services.agent_token_create(actor=None, agent=live_agent, name="x")
    api = AgentClient(client, secret)
    assert api.get("/agent").status_code == 200
    services.agent_token_revoke(actor=None, token=token)
    assert api.get("/agent").status_code == 401
    _t, secret2 = services.agent_token_create(actor=None, agent=live_agent, name="y")
    services.agent_retire(actor=None, agent=live_agent)
    assert AgentClient(client, secret2).post("/actions", UPDATE).status_code == 401


@pytest.mark.parametrize(("change", "field"), [
    ({"kind": "delete"}, "kind"),
    ({"confidence": 1.5}, "confidence"),
    ({"amount": "lots"}, "amount"),
    ({"operation": ""}, "operation"),
    ({"changes": ["not", "an", "object"]}, "changes"),
    ({"summary": "nul \u0000 byte"}, "summary"),
    ({"changes": {"note": "nul \u0000"}}, "changes"),
    ({"currency": "euro"}, "currency"),
    ({"sources": [""]}, "sources"),
], ids=lambda v: str(v)[:30])
def test_invalid_fields_get_422_naming_the_field(agent_api, change, field):
    response = agent_api.post("/actions", {**UPDATE, **change})
    assert response.status_code == 422, response.content
    assert field in {str(loc) for error in response.json()["detail"] for loc in error["loc"]}
    assert not ActionRequest.objects.exists()


def test_missing_fields_get_422(agent_api):
    response = agent_api.post("/actions", {"system": "crm"})
    assert response.status_code == 422
    missing = {error["loc"][-1] for error in response.json()["detail"]}
    assert {"operation", "kind"} <= missing


def test_unknown_system_or_source_gets_400_naming_it(agent_api):
    unknown_system = agent_api.post("/actions", {**UPDATE, "system": "erp"})
    assert unknown_system.status_code == 400
    assert unknown_system.json() == {"detail": unknown_system.json()["detail"],
                                     "field": "system"}
    assert "'erp'" in unknown_system.json()["detail"]
    unknown_source = agent_api.post("/actions", {**UPDATE, "sources": ["gossip"]})
    assert unknown_source.status_code == 400 and "'gossip'" in unknown_source.json()["detail"]
    assert not ActionRequest.objects.exists()


def test_body_over_256_kib_gets_413(agent_api):
    response = agent_api.post("/actions", {**UPDATE, "prompt": "x" * (257 * 1024)})
    assert response.status_code == 413
    assert "256 KiB" in response.json()["detail"]


def test_malformed_json_is_a_client_error(agent_api):
    response = agent_api.client.post("/api/v1/actions", data="{not json",
                                     content_type="application/json",
                                     headers=agent_api.headers)
    assert 400 <= response.status_code < 500


def test_openapi_schema_and_docs_are_published(client):
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/actions" in schema.json()["paths"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and b"cdn" not in docs.content.lower()
