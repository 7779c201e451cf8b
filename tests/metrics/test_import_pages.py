"""The import pages: upload (with its limits), the list, one batch with live progress and its
rejected rows, and the rejected rows as CSV."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from metrics import importing
from metrics.import_services import batch_upload
from metrics.models import ImportBatch
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

HEADER = "agent,metric,observed_at,value,source\n"
GOOD = HEADER + "refund-replies,accuracy,2026-01-05,93.5,\n"
LIST = reverse("imports:list")


def post_file(client, content: str, name="metrics.csv", fmt=""):
    return client.post(LIST, {"file": SimpleUploadedFile(name, content.encode()),
                              "format": fmt})


def make_batch(user, content=GOOD, name="m.csv") -> ImportBatch:
    return batch_upload(actor=user, upload=SimpleUploadedFile(name, content.encode()))


def test_an_owner_uploads_a_file_and_it_is_queued(client, roles,
                                                  django_capture_on_commit_callbacks):
    client.force_login(roles.owner)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_file(client, GOOD)
    batch = ImportBatch.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("imports:detail", args=[batch.public_id])
    assert len(callbacks) == 1  # the task is sent once the upload commits
    assert (batch.status, batch.format, batch.original_name, batch.created_by) == (
        "queued", "csv", "metrics.csv", roles.owner)
    assert batch.size_bytes == len(GOOD.encode()) and len(batch.sha256) == 64
    with batch.file.open("rb") as stored:
        assert stored.read() == GOOD.encode()
    event = AuditEvent.objects.get(verb="metrics.import_created")
    assert event.actor_user == roles.owner and event.data["sha256"] == batch.sha256


def test_the_same_file_again_says_it_was_imported_already(client, roles):
    client.force_login(roles.owner)
    post_file(client, GOOD)
    response = client.get(post_file(client, GOOD, name="again.csv").url)
    assert "This file was imported already" in response.text
    first, again = ImportBatch.objects.order_by("id")
    assert (again.status, again.duplicate_of) == ("duplicate", first)
    assert first.original_name in response.text


def test_a_file_over_the_limit_is_refused_before_it_is_stored(client, roles, settings):
    settings.STEWARD_IMPORT_MAX_BYTES = 1_000_000
    client.force_login(roles.owner)
    response = post_file(client, GOOD + "x" * 1_200_000)
    assert response.status_code == 400
    assert "Files may be up to 1 MB; this one is larger than that." in response.text
    assert not ImportBatch.objects.exists()
    assert not (settings.MEDIA_ROOT / "imports").exists()


def test_a_file_that_is_neither_csv_nor_json_needs_a_format(client, roles):
    client.force_login(roles.owner)
    response = post_file(client, GOOD, name="export.txt")
    assert response.status_code == 400
    assert "Choose the format" in response.text
    assert post_file(client, GOOD, name="export.txt", fmt="csv").status_code == 302


@pytest.mark.parametrize("role", ["viewer", "reviewer", "pauser"])
def test_who_may_not_change_any_agent_may_not_upload(client, roles, role):
    client.force_login(getattr(roles, role))
    page = client.get(LIST)
    assert page.status_code == 200 and "You may not import metrics" in page.text
    assert 'enctype="multipart/form-data"' not in page.text
    assert post_file(client, GOOD).status_code == 403
    assert not ImportBatch.objects.exists()


def test_the_list_shows_your_own_imports_and_revops_sees_all(client, roles):
    mine = make_batch(roles.owner, name="mine.csv")
    theirs = make_batch(roles.admin, content=GOOD + "\n", name="theirs.csv")
    client.force_login(roles.owner)
    page = client.get(LIST).text
    assert mine.original_name in page and theirs.original_name not in page
    client.force_login(roles.revops)
    page = client.get(LIST).text
    assert mine.original_name in page and theirs.original_name in page
    assert page.index("theirs.csv") < page.index("mine.csv")  # newest first


def test_the_list_costs_the_same_queries_for_many_imports(client, roles,
                                                          django_assert_num_queries):
    client.force_login(roles.revops)
    for n in range(3):
        make_batch(roles.owner, content=GOOD + "\n" * n, name=f"f{n}.csv")
    client.get(LIST)
    with django_assert_num_queries(10) as first:  # 9 + the navigation's alert badge
        client.get(LIST)
    for n in range(3, 9):
        make_batch(roles.admin, content=GOOD + "\n" * n, name=f"f{n}.csv")
    with django_assert_num_queries(len(first.captured_queries)):
        client.get(LIST)


def test_a_batch_page_shows_counts_and_each_rejected_row(client, roles):
    batch = make_batch(roles.owner, GOOD + "refund-replies,accuracy,2026-01-06,250,\n"
                       + "ghost,accuracy,2026-01-06,1,\n")
    importing.run(batch.pk)
    client.force_login(roles.owner)
    page = client.get(reverse("imports:detail", args=[batch.public_id])).text
    assert "Done" in page and 'value="100"' in page
    assert "250 is out of range: Accuracy must be between 0 and 100." in page
    assert "Unknown agent &#x27;ghost&#x27;" in page
    assert reverse("imports:errors", args=[batch.public_id]) in page
    assert "hx-trigger" not in page  # finished: nothing polls


def test_the_progress_polls_while_the_import_runs_and_stops_when_done(client, roles):
    batch = make_batch(roles.owner)
    ImportBatch.objects.filter(pk=batch.pk).update(status="running", bytes_read=10)
    url = reverse("imports:detail", args=[batch.public_id])
    client.force_login(roles.owner)
    page = client.get(url).text
    assert f'hx-get="{url}"' in page and "hx-trigger" in page
    poll = client.get(url, headers={"HX-Request": "true"})
    assert "<html" not in poll.text and "hx-trigger" in poll.text
    assert f'value="{batch.size_bytes and 10 * 100 // batch.size_bytes}"' in poll.text
    assert "HX-Refresh" not in poll
    ImportBatch.objects.filter(pk=batch.pk).update(status="queued")
    importing.run(batch.pk)
    poll = client.get(url, headers={"HX-Request": "true"})
    assert "hx-trigger" not in poll.text and poll["HX-Refresh"] == "true"


def test_another_users_batch_is_not_found(client, roles):
    batch = make_batch(roles.owner)
    for name in ("imports:detail", "imports:errors"):
        url = reverse(name, args=[batch.public_id])
        client.force_login(roles.viewer)
        assert client.get(url).status_code == 404
        client.force_login(roles.admin)
        assert client.get(url).status_code == 200


def test_rejected_rows_download_as_csv(client, roles):
    batch = make_batch(roles.owner, HEADER + "=cmd(),accuracy,2026-01-05,1,\n"
                       + "refund-replies,accuracy,soon,1,\n")
    importing.run(batch.pk)
    client.force_login(roles.owner)
    response = client.get(reverse("imports:errors", args=[batch.public_id]))
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["row", "column", "message"]
    assert [r[:2] for r in rows[1:]] == [["1", "agent"], ["2", "observed_at"]]
    assert rows[1][2].startswith("Unknown agent '=cmd()'")
