"""The gate's raw-SQL inserts (reviews.gate, PostgreSQL) store exactly what the ORM path does:
the same ActionRequest row and the same `action.proposed` audit event, field by field."""

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from agents import services
from agents.models import SystemAccess
from portal.models import AuditEvent
from reviews import gate
from reviews.models import ActionRequest
from tests.factories import DataSourceFactory, SystemFactory, complete_plan, make_agent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

BASE = {"system": "crm", "operation": "update_deal", "kind": "execute", "target": "deal 4411",
        "summary": "Fix the close date", "changes": {"close_date": "2026-12-01"},
        "confidence": 0.93, "sources": ["crm-records"], "prompt": "Tidy deal 4411",
        "cost_usd": 0.012345, "tokens": 812}
PROPOSALS = {
    "allow": BASE,
    "review routed to a group": {**BASE, "system": "helpdesk", "operation": "refund_reply",
                                 "kind": "draft", "amount": 650.123456, "currency": "EUR",
                                 "content": "Dear Ann, we refund 650 € — sorry.", "changes": {}},
    "review, no group": {**BASE, "changes": {"stage": "won", "nested": {"a": [1, 2.5, None]}}},
    "block": {**BASE, "system": "billing", "kind": "execute", "amount": -1},
    "sampled": {**BASE, "confidence": None, "sources": [], "amount": 9999999999999.9999},
    "minimal": {"system": "crm", "operation": "read_deal", "kind": "read"},
}


@pytest.fixture
def token(db):
    agent = make_agent(slug="rows", ready=True, autonomy_level=2, review_sample_rate=0.5,
                       max_writes_per_hour=1000, monthly_cost_budget=Decimal("1000"))
    SystemAccess.objects.create(agent=agent, system=SystemFactory(slug="crm"),
                                max_kind="execute")
    SystemFactory(slug="billing")
    agent.sources.add(DataSourceFactory(slug="crm-records"))
    managers = Group.objects.create(name="Managers")
    services.guardrail_create(actor=None, agent=agent, name="Refunds", field="amount",
                              operator="gt", value=500, effect="review",
                              route_to_group=managers)
    services.guardrail_create(actor=None, agent=agent, name="Stage", field="changes.stage",
                              operator="changed", effect="review")
    services.agent_move(actor=None, agent=agent, to_status="pilot")
    complete_plan(agent)
    agent = services.agent_move(actor=None, agent=agent, to_status="live")
    token, _secret = services.agent_token_create(actor=None, agent=agent, name="t")
    return token


def _store(token, proposal: dict, public_id: uuid.UUID, monkeypatch) -> tuple[dict, dict]:
    # The same public id, so the same L2 sampling draw, on both paths (Field caches its
    # default callable as `_get_default`).
    monkeypatch.setattr(ActionRequest._meta.get_field("public_id"), "_get_default",
                        lambda: public_id)
    action = gate.propose(token=token, proposal=dict(proposal)).action
    assert action.pk is not None and not action._state.adding
    row = ActionRequest.objects.filter(pk=action.pk).values().get()
    event = (AuditEvent.objects.filter(verb="action.proposed", object_id=str(action.pk))
             .values().get())
    assert (action.route_to_group.name if action.route_to_group_id else None) == (
        Group.objects.get(pk=row["route_to_group_id"]).name if row["route_to_group_id"] else None)
    due = row["due_at"] - row["created_at"] if row["due_at"] else None
    for name in ("id", "created_at", "due_at"):
        row.pop(name)
    for name in ("id", "created_at", "object_id"):
        event.pop(name)
    return {**row, "due_in": due}, event


@pytest.mark.parametrize("case", PROPOSALS)
def test_raw_sql_rows_equal_the_orm_rows(token, case, monkeypatch):
    assert gate._raw_sql()
    public_id = uuid.uuid4()
    raw_row, raw_event = _store(token, PROPOSALS[case], public_id, monkeypatch)
    ActionRequest.objects.filter(public_id=public_id).update(public_id=uuid.uuid4())
    monkeypatch.setattr(gate, "_raw_sql", lambda: False)
    orm_row, orm_event = _store(token, PROPOSALS[case], public_id, monkeypatch)
    assert raw_row == orm_row
    assert raw_event == orm_event


def test_the_cases_cover_every_outcome(token, monkeypatch):
    decisions = {case: gate.propose(token=token, proposal=dict(proposal)).action
                 for case, proposal in PROPOSALS.items()}
    assert {a.decision for a in decisions.values()} == {"allow", "review", "block"}
    assert decisions["review routed to a group"].route_to_group.name == "Managers"
