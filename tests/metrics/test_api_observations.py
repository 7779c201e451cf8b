"""`POST /api/v1/observations`: an agent pushes its metrics; bad items are answered one by
one and the good ones are written."""

from datetime import UTC, datetime

import pytest

from agents import services
from metrics.models import ImportBatch, ImportRowError, Observation
from portal.models import AuditEvent
from tests.factories import make_agent
from tests.reviews.conftest import AgentClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent():
    return make_agent(slug="refund-replies")


@pytest.fixture
def token(agent):
    return services.agent_token_create(actor=None, agent=agent, name="metrics")


@pytest.fixture
def api(client, token):
    return AgentClient(client, token[1])


def test_an_agent_pushes_observations_for_itself(api, agent, token):
    response = api.post("/observations", {"observations": [
        {"metric": "accuracy", "observed_at": "2026-01-05", "value": 93.5},
        {"metric": "cycle_time", "observed_at": "2026-01-05T10:00:00Z", "value": "4.5",
         "source": "tickets", "agent": "refund-replies"},
    ]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["received"], body["imported"], body["updated"], body["rejected"],
            body["errors"]) == (2, 2, 0, 0, [])
    batch = ImportBatch.objects.get(public_id=body["batch"])
    assert (batch.origin, batch.status, batch.agent, batch.rows_imported) == (
        "api", "done", agent, 2)
    assert set(Observation.objects.values_list("metric__key", "observed_at", "value",
                                               "source", "batch")) == {
        ("accuracy", datetime(2026, 1, 5, tzinfo=UTC), 93.5, "api", batch.pk),
        ("cycle_time", datetime(2026, 1, 5, 10, tzinfo=UTC), 4.5, "tickets", batch.pk)}
    event = AuditEvent.objects.get(verb="metrics.observations_pushed")
    assert event.actor_label == "agent:refund-replies"
    assert (event.data["imported"], event.data["token"]) == (2, token[0].prefix)


def test_a_repeated_push_updates_rather_than_duplicates(api):
    body = {"observations": [{"metric": "accuracy", "observed_at": "2026-01-05",
                              "value": 90}]}
    assert api.post("/observations", body).json()["imported"] == 1
    again = api.post("/observations", body)
    assert again.status_code == 200
    assert (again.json()["imported"], again.json()["updated"]) == (0, 1)
    assert Observation.objects.count() == 1
    assert ImportBatch.objects.filter(origin="api").count() == 2  # both pushes recorded


def test_each_bad_item_is_answered_and_the_good_ones_are_kept(api):
    response = api.post("/observations", {"observations": [
        {"metric": "accuracy", "observed_at": "2026-01-05", "value": 90},
        {"metric": "accuracy", "observed_at": "yesterday", "value": 90},
        {"metric": "accuracy", "observed_at": "2026-01-05T01:00:00", "value": 120},
        {"metric": "override_rate", "observed_at": "2026-01-05", "value": 5},
        {"metric": "nope", "observed_at": "2026-01-05", "value": 5},
        {"observed_at": "2026-01-05", "value": 5},
        {"metric": "accuracy", "observed_at": "2026-01-06", "value": "many"},
    ]})
    assert response.status_code == 200
    body = response.json()
    assert (body["imported"], body["rejected"]) == (1, 6)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "observed_at"), (2, "value"), (3, "metric"), (4, "metric"), (5, "metric"),
        (6, "value")]
    assert body["errors"][1]["message"] == ("120 is out of range: Accuracy must be between 0 "
                                            "and 100.")
    assert "computed by Steward" in body["errors"][2]["message"]
    batch = ImportBatch.objects.get(public_id=body["batch"])
    assert ImportRowError.objects.filter(batch=batch).count() == 6
    assert Observation.objects.count() == 1


def test_another_agent_is_refused_for_that_item(api):
    make_agent(slug="crm-hygiene")
    body = api.post("/observations", {"observations": [
        {"agent": "crm-hygiene", "metric": "accuracy", "observed_at": "2026-01-05",
         "value": 1},
        {"agent": "no-such-agent", "metric": "accuracy", "observed_at": "2026-01-05",
         "value": 1},
    ]}).json()
    assert body["imported"] == 0
    messages = [(e["index"], e["field"], e["message"]) for e in body["errors"]]
    assert messages[0][:2] == (0, "agent")
    assert "may report only for refund-replies" in messages[0][2]
    # whether the other slug exists is not told
    assert messages[0][2].replace("crm-hygiene", "x") == messages[1][2].replace(
        "no-such-agent", "x")
    assert not Observation.objects.exists()


def test_a_malformed_body_answers_422(api):
    response = api.post("/observations", {"observations": {"metric": "accuracy"}})
    assert response.status_code == 422
    assert api.post("/observations", {}).status_code == 422


def test_a_revoked_token_answers_401(client, token):
    services.agent_token_revoke(actor=None, token=token[0])
    response = AgentClient(client, token[1]).post("/observations", {"observations": []})
    assert response.status_code == 401
    assert not ImportBatch.objects.exists()


def test_the_push_is_documented_in_the_schema(client):
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/observations"]["post"]
    assert operation["summary"].startswith("Report metric observations")
    assert "ObservationIn" in str(schema["components"]["schemas"])
