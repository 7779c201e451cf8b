"""The demo agents behave as configured when they call the gate."""

from io import StringIO

import pytest
from django.core.management import call_command

from agents import services
from agents.models import Agent
from tests.reviews.conftest import AgentClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(client):
    call_command("seed_demo", "--force", stdout=StringIO())

    def api_for(slug: str) -> AgentClient:
        agent = Agent.objects.get(slug=slug)
        return AgentClient(client, services.agent_token_create(actor=None, agent=agent,
                                                               name="demo")[1])
    return api_for


def test_crm_hygiene_changing_stage_goes_to_review(demo):
    body = demo("crm-hygiene").post("/actions", {
        "system": "crm", "operation": "update_opportunity", "kind": "execute",
        "target": "opportunity 9001", "changes": {"stage": "Closed Won"},
        "confidence": 0.95, "sources": ["crm-accounts"]}).json()
    assert body["decision"] == "review", body
    assert [r["code"] for r in body["reasons"]] == ["guardrail"]
    assert "changes.stage changed" in body["reasons"][0]["message"]


def test_crm_hygiene_fixing_a_phone_number_is_allowed(demo):
    body = demo("crm-hygiene").post("/actions", {
        "system": "crm", "operation": "update_contact", "kind": "execute",
        "changes": {"phone": "+44 20 7946 0000"}, "confidence": 0.95,
        "sources": ["crm-accounts"]}).json()
    assert body["decision"] == "allow", body


def test_refund_over_500_goes_to_the_managers(demo):
    api = demo("refund-replies")
    body = api.post("/actions", {
        "system": "helpdesk", "operation": "refund_reply", "kind": "draft",
        "target": "ticket 5521", "amount": 650, "currency": "USD",
        "changes": {"currency": "USD"}, "content": "Dear customer, …", "confidence": 0.9,
        "sources": ["ticket-history", "refund-policy"]}).json()
    assert body["decision"] == "review", body
    guardrail = [r for r in body["reasons"] if r["code"] == "guardrail"]
    assert "amount 650 > 500 → review by Managers" in guardrail[0]["message"]
    assert api.get(f"/actions/{body['id']}").json()["route_to_group"] == "Managers"


def test_paused_kpi_reporter_is_blocked(demo):
    body = demo("kpi-reporter").post("/actions", {
        "system": "knowledge-base", "operation": "draft_commentary", "kind": "draft",
        "summary": "Weekly revenue commentary"}).json()
    assert body["decision"] == "block"
    assert body["reasons"][0]["code"] == "paused"
