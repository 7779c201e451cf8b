import pytest

from agents import services
from agents.models import SystemAccess
from tests.factories import DataSourceFactory, SystemFactory, make_agent


class AgentClient:
    """The test client, speaking as an agent with a bearer token."""

    def __init__(self, client, token: str):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def get(self, path, **kw):
        return self.client.get(f"/api/v1{path}", headers=self.headers, **kw)

    def post(self, path, data=None, **kw):
        return self.client.post(f"/api/v1{path}", data=data if data is not None else {},
                                content_type="application/json", headers=self.headers, **kw)


@pytest.fixture
def live_agent(db):
    """A live L2 agent: draft in the helpdesk, execute in the CRM, one declared source."""
    agent = make_agent(slug="crm-hygiene", ready=True, autonomy_level=2,
                       review_sample_rate=0.0)
    crm = SystemFactory(slug="crm", name="CRM")
    SystemAccess.objects.create(agent=agent, system=crm, max_kind="execute")
    agent.sources.add(DataSourceFactory(slug="crm-records", name="CRM records"))
    services.guardrail_create(actor=None, agent=agent, name="Stage changes need approval",
                              field="changes.stage", operator="changed", effect="review")
    services.agent_move(actor=None, agent=agent, to_status="pilot")
    return services.agent_move(actor=None, agent=agent, to_status="live")


@pytest.fixture
def agent_api(client, live_agent):
    _token, secret = services.agent_token_create(actor=None, agent=live_agent, name="test")
    return AgentClient(client, secret)
