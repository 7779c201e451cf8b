from django import forms

from reviews.models import Incident


class IncidentFilterForm(forms.Form):
    agent = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False, choices=[
        ("", "Any status"), ("unresolved", "not resolved"), *Incident.Status.choices])
    category = forms.ChoiceField(required=False,
                                 choices=[("", "Any category"), *Incident.Category.choices])
    severity = forms.ChoiceField(required=False,
                                 choices=[("", "Any severity"), *Incident.Severity.choices])
    mine = forms.BooleanField(required=False, label="Only those I can resolve")

    def __init__(self, *args, agents=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [("", "Any agent"), *agents]


class IncidentReportForm(forms.Form):
    """Report a problem. With the agent (and action) known from the link, they ride along
    as hidden fields; otherwise the reporter picks one of the agents they can see."""

    agent = forms.ChoiceField(label="Agent",
                              error_messages={"required": "Choose the agent that did it."})
    action = forms.UUIDField(required=False, widget=forms.HiddenInput)
    category = forms.ChoiceField(label="What kind of problem?", choices=Incident.Category.choices)
    severity = forms.ChoiceField(label="How bad is it?", choices=Incident.Severity.choices,
                                 initial=Incident.Severity.MEDIUM)
    description = forms.CharField(
        label="What went wrong?", max_length=5000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="What the agent did, what it should have done, and anything already done "
                  "about it. Its owners read this.",
        error_messages={"required": "Describe what went wrong, so the owners can act on it."})

    def __init__(self, *args, agents=(), agent_fixed: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [("", "Choose an agent"), *agents]
        if agent_fixed:  # the view found it (from ?agent= or from the action)
            self.fields["agent"].widget = forms.HiddenInput()
            self.fields["agent"].required = False

    def service_kwargs(self) -> dict:
        return {name: self.cleaned_data[name] for name in ("category", "severity", "description")}


class IncidentUpdateForm(forms.Form):
    status = forms.ChoiceField(choices=Incident.Status.choices)
    resolution_note = forms.CharField(
        required=False, label="Resolution note", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Needed to resolve: what was wrong and what was done about it.")
    rollback_steps_done = forms.TypedMultipleChoiceField(
        required=False, coerce=int, label="Rollback steps run",
        widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, steps=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rollback_steps_done"].choices = [(step.pk, str(step)) for step in steps]

    def service_kwargs(self) -> dict:
        return dict(self.cleaned_data)
