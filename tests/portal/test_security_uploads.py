"""Uploaded metric files: size-limited, checked by content (not by name), never executed."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from metrics.models import ImportBatch

pytestmark = pytest.mark.django_db

LIST = reverse("imports:list")
GOOD = b"agent,metric,observed_at,value,source\nrefund-replies,accuracy,2026-01-05,93.5,\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _post(client, content: bytes, name: str, fmt: str = ""):
    return client.post(LIST, {"file": SimpleUploadedFile(name, content), "format": fmt})


@pytest.mark.parametrize("name, content, message", [
    ("chart.csv", PNG, "This file is a PNG image, not a CSV or JSON file."),
    ("setup.csv", EXE, "This file is a Windows program, not a CSV or JSON file. Export the "
                       "observations as CSV (UTF-8) or JSON and upload that file."),
    ("report.json", b"PK\x03\x04\x14\x00\x06\x00", "This file is a ZIP archive (an Excel .xlsx"),
    ("dump.csv", b"agent,metric\x00\x01\x02,value\n", "This file is not text (it contains "
                                                      "binary data)."),
    ("latin1.csv", "agent,metric,observed_at,value\ncaf\xe9,a,2026-01-05,1\n".encode("latin-1"),
     "This file is not UTF-8 text (byte 35 cannot be read)."),
    ("data.json", GOOD, "This file is not JSON: JSON starts with { or [."),
])
def test_a_file_of_the_wrong_type_is_refused_with_a_clear_message(client, roles, name, content,
                                                                   message):
    client.force_login(roles.owner)
    response = _post(client, content, name)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ImportBatch.objects.exists()


def test_a_chosen_format_does_not_let_a_program_through(client, roles):
    client.force_login(roles.owner)
    response = _post(client, EXE, "tool.exe", fmt="csv")
    assert response.status_code == 400
    assert "This file is a Windows program" in response.content.decode()
    assert not ImportBatch.objects.exists()


def test_a_too_large_file_is_refused_before_it_is_stored(client, roles, settings):
    settings.STEWARD_IMPORT_MAX_BYTES = 1_000_000
    client.force_login(roles.owner)
    response = _post(client, GOOD + b"x" * 1_200_000, "big.csv")
    assert response.status_code == 400
    assert "Files may be up to 1 MB; this one is larger than that." in response.content.decode()
    assert not ImportBatch.objects.exists()
    assert not (settings.MEDIA_ROOT / "imports").exists()


def test_utf8_with_a_bom_and_json_pass_and_are_stored_under_a_random_name(client, roles):
    client.force_login(roles.owner)
    assert _post(client, "\ufeff".encode() + GOOD, "evil.html.csv").status_code == 302
    json_body = (b'{"observations": [{"agent": "refund-replies", "metric": "accuracy", '
                 b'"observed_at": "2026-01-06", "value": 90}]}')
    assert _post(client, json_body, "obs.json").status_code == 302
    for batch in ImportBatch.objects.all():
        stored = batch.file.name.rsplit("/", 1)[-1]
        assert stored.endswith((".csv", ".json")) and "evil" not in stored and "obs" not in stored
        assert len(stored.split(".")[0]) == 32  # a random hex name: nothing of the upload's


def test_stored_uploads_are_not_served(client, roles, settings):
    client.force_login(roles.owner)
    _post(client, GOOD, "m.csv")
    stored = ImportBatch.objects.get().file.name
    for url in (f"/media/{stored}", f"/{stored}", f"/static/{stored}"):
        assert client.get(url).status_code == 404
