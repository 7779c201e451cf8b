from django import forms

from agents.models import Agent


class AuditFilterForm(forms.Form):
    agent = forms.ChoiceField(required=False)
    actor = forms.CharField(required=False, widget=forms.TextInput(
        attrs={"placeholder": "username, agent:slug or system"}))
    verb = forms.ChoiceField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, verbs=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [("", "Any agent"), *Agent.objects.order_by("name")
                                        .values_list("slug", "name")]
        self.fields["verb"].choices = [("", "Any verb"), *[(v, v) for v in sorted(verbs)]]

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end date is before the start date.")
        return data
