"""Forms of the scorecard pages. They parse; the services judge (metrics.services)."""

from django import forms

from metrics import selectors
from metrics.models import Metric, ScorecardReview


class TargetForm(forms.Form):
    metric = forms.ModelChoiceField(queryset=Metric.objects.all(), to_field_name="key",
                                    widget=forms.HiddenInput,
                                    error_messages={"invalid_choice": "There is no such metric."})
    target = forms.FloatField(required=False, label="Target",
                              error_messages={"invalid": "Enter a number, e.g. 95 or 1.5."},
                              widget=forms.NumberInput(attrs={"step": "any"}))
    human_baseline = forms.FloatField(required=False, label="Human baseline",
                                      error_messages={"invalid": "Enter a number, e.g. 95 or 1.5."},
                                      widget=forms.NumberInput(attrs={"step": "any"}))


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(
        choices=ScorecardReview.Decision.choices, widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Choose expand, keep, revise or stop.",
                        "required": "Choose expand, keep, revise or stop."})
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                            help_text="What you saw and why you decided so. Required to revise "
                                      "or stop.")
    grain = forms.ChoiceField(choices=[(g, g) for g in selectors.GRAINS],
                              widget=forms.HiddenInput)
    period_start = forms.DateField(widget=forms.HiddenInput)
