"""When the gate cannot reach what it needs, the answer is never `allow`: 503, do not act."""

import pytest
from django.db import connection

from tests.reviews.conftest import AgentClient

PROPOSAL = {"system": "crm", "operation": "update_deal", "kind": "execute"}


@pytest.fixture
def database_down():
    """Point this process's connection at a closed port: every query fails for real."""
    original = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", "1"
    connection.settings_dict["ENGINE"] = original["ENGINE"]
    yield
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(original)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gate_answers_503_when_the_database_is_down(client, agent_api, database_down):
    response = AgentClient(client, agent_api.headers["Authorization"].split()[1]).post(
        "/actions", PROPOSAL)
    assert response.status_code == 503
    body = response.json()
    assert "Do not act" in body["detail"] and body["decision"] is None
