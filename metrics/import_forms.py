from django import forms

from metrics.import_services import import_max_bytes
from metrics.models import ImportBatch


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
