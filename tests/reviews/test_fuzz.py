"""Fuzzing the agent API with schemathesis: no input makes it answer 5xx, and every answer is
one the OpenAPI schema documents (status code, content type and body).

Schemathesis reads `/api/v1/openapi.json` from the Django WSGI app itself and calls it in
process (no server), as a real agent would: with a bearer token of a live agent whose policy
has every kind of guardrail, a stale and an unapproved source, a budget and a write limit.
It generates valid and invalid input (positive and negative modes) for every operation.

Bounded and repeatable: a fixed number of examples per operation and `derandomize=True`, so
CI sees the same cases on every run. Runs on PostgreSQL (NUL characters, JSON and locking
only behave there as in production); CI fails instead of skipping without it.
"""

from datetime import timedelta
from uuid import UUID

import pytest
import schemathesis
from django.contrib.auth.models import Group
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agents import services
from agents.models import SystemAccess
from portal.wsgi import application
from reviews import gate
from reviews.models import ActionRequest
from tests.factories import DataSourceFactory, SystemFactory, complete_plan, make_agent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

EXAMPLES_PER_OPERATION = 200
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

# Requests that exist, so polling and reporting reach past the 404 now and then.
APPROVED_ID = UUID("00000000-0000-4000-8000-00000000a110")
PENDING_ID = UUID("00000000-0000-4000-8000-0000000000e1")
SYSTEMS = ("crm", "helpdesk", "billing")
OPERATIONS = ("update_deal", "refund_reply", "delete_record")
SOURCES = ("crm-records", "ticket-history", "old-export", "unvetted-scrape")

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@schema.hook
def flatmap_body(context, body):
    """Half of the proposals name a system, operation and sources the agent knows, so they
    reach the policy engine (and its guardrails) instead of stopping at "unknown system"."""
    if not context.operation.path.endswith("/actions") or not isinstance(body, dict):
        return st.just(body)
    known = st.fixed_dictionaries({
        "system": st.sampled_from(SYSTEMS),
        "operation": st.sampled_from(OPERATIONS),
        "sources": st.lists(st.sampled_from(SOURCES), max_size=3),
    }).map(lambda names: {**body, **names})
    return st.one_of(known, st.just(body))


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Some polls and reports name a request of this agent instead of a random id."""
    if not isinstance(path_parameters, dict) or "action_id" not in path_parameters:
        return st.just(path_parameters)
    return st.one_of(st.just(path_parameters),
                     st.sampled_from([APPROVED_ID, PENDING_ID]).map(
                         lambda known: {**path_parameters, "action_id": str(known)}))


@pytest.fixture
def fuzz_token(transactional_db, settings) -> str:
    """A live L2 agent with a policy that exercises every check of the engine, and its token."""
    settings.STEWARD_API_RATE_LIMIT = 0  # a thousand calls a minute: judge them all, not 429
    agent = make_agent(slug="fuzz-agent", ready=True, autonomy_level=2, review_sample_rate=0.5,
                       max_writes_per_hour=5, monthly_cost_budget=100_000)
    managers, _ = Group.objects.get_or_create(name="Managers")
    crm, billing = SystemFactory(slug="crm", name="CRM"), SystemFactory(slug="billing")
    SystemAccess.objects.create(agent=agent, system=crm, max_kind="execute")
    SystemAccess.objects.create(agent=agent, system=billing, max_kind="read")
    now = timezone.now()
    agent.sources.add(
        DataSourceFactory(slug="crm-records", refreshed_at=now, max_age=timedelta(days=1)),
        DataSourceFactory(slug="ticket-history"),
        DataSourceFactory(slug="old-export", refreshed_at=now - timedelta(days=9),
                          max_age=timedelta(days=7)),
        DataSourceFactory(slug="unvetted-scrape", approved=False))
    for name, field, operator, value, effect in (
            ("Stage changes", "changes.stage", "changed", None, "review"),
            ("Refunds over 500", "amount", "gt", 500, "review"),
            ("Negative amounts", "amount", "lt", 0, "block"),
            ("Unsure", "confidence", "lte", 0.5, "review"),
            ("No deletes", "operation", "eq", "delete_record", "block"),
            ("Only tidy ops", "operation", "ne", "update_deal", "review"),
            ("VIP targets", "target", "in", ["deal 1", "account 7"], "review"),
            ("Legal targets", "target", "contains", "lawsuit", "review"),
            ("Legal tags", "changes.tag", "contains", "legal", "review"),
            ("Big discount", "changes.discount", "gte", 30, "review")):
        services.guardrail_create(actor=None, agent=agent, name=name, field=field,
                                  operator=operator, value=value, effect=effect,
                                  route_to_group=managers if name == "Refunds over 500" else None)
    services.agent_move(actor=None, agent=agent, to_status="pilot")
    complete_plan(agent)
    agent = services.agent_move(actor=None, agent=agent, to_status="live")
    token, secret = services.agent_token_create(actor=None, agent=agent, name="fuzz")
    for public_id, changes in ((APPROVED_ID, {"close_date": "2026-12-01"}),
                               (PENDING_ID, {"stage": "won"})):
        action = gate.propose(token=token, proposal={
            "system": "crm", "operation": "update_deal", "kind": "draft",
            "changes": changes, "sources": []}).action
        ActionRequest.objects.filter(pk=action.pk).update(public_id=public_id)
    assert ActionRequest.objects.get(public_id=APPROVED_ID).status == "approved"
    assert ActionRequest.objects.get(public_id=PENDING_ID).status == "pending"
    return secret


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_every_input_as_documented(case, fuzz_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_token}"}, checks=CHECKS)
