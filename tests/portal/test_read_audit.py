"""Reads that matter are audited: opening an action's page (its prompt and content), the
scorecard CSV export, an import's rejected rows as CSV, and the audit trail's own download."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from metrics.import_services import batch_upload
from portal import audit
from portal.models import AuditEvent
from tests.reviews.test_inbox import pending_action

pytestmark = pytest.mark.django_db


def reads(verb: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(verb=verb).order_by("id"))


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def action(roles):
    return pending_action(roles.agent, summary="Refund 40 EUR to Ann",
                          prompt="You are a careful support agent.",
                          content="Dear Ann, we refund 40 EUR.")


def test_each_view_of_an_action_is_recorded_with_the_viewer(client, roles, action):
    client.force_login(roles.reviewer)
    url = reverse("reviews:item", args=[action.public_id])
    page = client.get(url).content.decode()
    assert "You are a careful support agent." in page
    client.get(url)
    client.force_login(roles.revops)
    client.get(url)
    events = reads("action.viewed")
    assert [e.actor_user for e in events] == [roles.reviewer, roles.reviewer, roles.revops]
    assert {(e.object_type, e.object_id, e.agent_id) for e in events} == {
        ("reviews.actionrequest", str(action.pk), roles.agent.pk)}
    assert events[0].data == {"path": url}


def test_the_items_history_does_not_fill_up_with_views(client, roles, action):
    audit.record(actor=roles.agent, verb="action.proposed", obj=action, agent=roles.agent)
    client.force_login(roles.reviewer)
    url = reverse("reviews:item", args=[action.public_id])
    client.get(url)
    page = client.get(url).content.decode()
    history = page.split('id="history"')[1]
    assert "action.proposed" in history and "action.viewed" not in history


def test_a_hidden_action_is_neither_shown_nor_recorded(client, roles, action):
    client.force_login(roles.other_reviewer)
    assert client.get(reverse("reviews:item", args=[action.public_id])).status_code == 404
    assert reads("action.viewed") == []


def test_the_scorecard_export_is_recorded(client, roles):
    client.force_login(roles.owner)
    response = client.get(reverse("metrics:export"), {"grain": "month"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    [event] = reads("export.downloaded")
    assert event.actor_user == roles.owner
    assert event.data["export"] == "scorecards" and event.data["grain"] == "month"
    assert event.data["path"] == reverse("metrics:export") + "?grain=month"
    # A refused export (bad grain) serves nothing and records nothing.
    assert client.get(reverse("metrics:export"), {"grain": "year"}).status_code == 400
    assert len(reads("export.downloaded")) == 1


def test_an_imports_rejected_rows_download_is_recorded(client, roles):
    batch = batch_upload(actor=roles.owner, upload=SimpleUploadedFile(
        "m.csv", b"agent,metric,observed_at,value,source\n"))
    client.force_login(roles.owner)
    response = client.get(reverse("imports:errors", args=[batch.public_id]))
    assert response.status_code == 200
    b"".join(response.streaming_content)
    [event] = reads("export.downloaded")
    assert (event.actor_user, event.object_type, event.object_id) == (
        roles.owner, "metrics.importbatch", str(batch.pk))
    assert event.data["export"] == "import_errors" and event.data["file"] == "m.csv"
    client.force_login(roles.reviewer)  # not theirs: 404 and nothing recorded
    assert client.get(reverse("imports:errors", args=[batch.public_id])).status_code == 404
    assert len(reads("export.downloaded")) == 1


def download(client, **params) -> tuple:
    response = client.get(reverse("audit-export"), params)
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("role", ["revops", "admin"])
def test_the_audit_download_has_the_trail_and_is_itself_recorded(client, roles, role):
    audit.record(actor=roles.owner, verb="agent.note", obj=roles.agent,
                 data={"note": "=HYPERLINK(\"http://evil\")"})
    client.force_login(getattr(roles, role))
    rows = download(client)
    verbs = [row["verb"] for row in rows]
    assert verbs[0] == "audit.downloaded"  # newest first, its own record included
    assert "agent.created" in verbs and "agent.note" in verbs
    note = next(row for row in rows if row["verb"] == "agent.note")
    assert note["actor"] == "olga-owner" and note["agent"] == "refund-replies"
    assert note["data"] == '{"note": "=HYPERLINK(\\"http://evil\\")"}'  # JSON: starts with {
    [event] = reads("audit.downloaded")
    assert event.actor_user == getattr(roles, role)
    assert event.data == {"path": reverse("audit-export"), "filters": {}}


def test_the_audit_download_follows_the_filters(client, roles):
    audit.record(actor=roles.owner, verb="=cmd", obj=roles.other)
    client.force_login(roles.revops)
    rows = download(client, agent="crm-hygiene", verb="=cmd")
    assert [row["verb"] for row in rows] == ["'=cmd"]  # a spreadsheet reads it as text
    event = reads("audit.downloaded")[-1]
    assert event.data["filters"] == {"agent": "crm-hygiene", "verb": "=cmd"}


def test_a_bad_filter_or_no_right_downloads_nothing_and_records_nothing(client, roles):
    client.force_login(roles.revops)
    response = client.get(reverse("audit-export"), {"since": "2026-02-01",
                                                    "until": "2026-01-01"})
    assert response.status_code == 400
    assert "until: The end date is before the start date." in response.content.decode()
    for role in ("owner", "reviewer", "viewer"):
        client.force_login(getattr(roles, role))
        assert client.get(reverse("audit-export")).status_code == 403
    assert reads("audit.downloaded") == []


def test_the_audit_page_links_to_the_download_with_its_filters(client, roles):
    client.force_login(roles.revops)
    page = client.get(reverse("audit"), {"verb": "agent.created"}).content.decode()
    assert f'href="{reverse("audit-export")}?verb=agent.created"' in page
