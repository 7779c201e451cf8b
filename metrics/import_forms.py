import codecs

from django import forms
from django.core.exceptions import ValidationError

from metrics.import_services import import_format, import_max_bytes
from metrics.models import ImportBatch

SNIFF_BYTES = 8192
# The first bytes of files people upload by mistake (or on purpose): never imported.
SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"), (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx file is one too)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls or .doc)"),
    (b"MZ", "a Windows program"), (b"\x7fELF", "a Linux program"),
    (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"),
]
FIX = "Export the observations as CSV (UTF-8) or JSON and upload that file."


def upload_problem(head: bytes, fmt: str) -> str | None:
    """Why the first bytes of an upload are not a CSV or JSON text file, or None.

    Content decides, not the name: an .exe renamed .csv is still refused. Uploads are only
    ever read as text by the importer and stored under a random name, never run or served.
    """
    for signature, what in SIGNATURES:
        if head.startswith(signature):
            return f"This file is {what}, not a CSV or JSON file. {FIX}"
    if b"\x00" in head:
        return f"This file is not text (it contains binary data). {FIX}"
    try:  # a character cut off at the end of the sample is fine
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return (f"This file is not UTF-8 text (byte {exc.start + 1} cannot be read). Save it "
                "as CSV UTF-8 or JSON and upload it again.")
    stripped = text.lstrip()
    if fmt == ImportBatch.Format.JSON and stripped and stripped[0] not in "{[":
        return ("This file is not JSON: JSON starts with { or [. Choose CSV as the format if "
                "it is a CSV file.")
    if not stripped:
        return "This file is empty: it needs a header row and at least one observation."
    return None


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="File", widget=forms.ClearableFileInput(attrs={"accept": ".csv,.json"}))
    format = forms.ChoiceField(
        required=False, label="Format",
        choices=[("", "From the file name (.csv or .json)"), *ImportBatch.Format.choices])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = (
            "Columns (CSV) or keys (JSON): agent, metric, observed_at, value, and optionally "
            f"source. Up to {import_max_bytes() / 1e6:,.0f} MB.")

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is None:
            return data
        try:
            fmt = import_format(upload.name, data.get("format") or "")
        except ValidationError:
            return data  # the service names the missing format
        upload.seek(0)
        head = upload.read(SNIFF_BYTES)
        upload.seek(0)
        problem = upload_problem(head, fmt)
        if problem:
            self.add_error("file", problem)
        return data
