import pytest

from agents import services
from tests.factories import make_live_agent


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
    return make_live_agent()


@pytest.fixture
def agent_api(client, live_agent):
    _token, secret = services.agent_token_create(actor=None, agent=live_agent, name="test")
    return AgentClient(client, secret)
