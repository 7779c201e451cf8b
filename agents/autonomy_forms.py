from django import forms

from agents.models import Agent


class AutonomyRequestForm(forms.Form):
    to_level = forms.TypedChoiceField(
        coerce=int, label="Move to",
        error_messages={"required": "Choose the level the agent should move to.",
                        "invalid_choice": "Choose one of the other levels, L1 to L4."})
    reason = forms.CharField(
        label="Why", max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What the figures show. Steward attaches the last four weeks' quality and "
                  "trust figures; raising needs them and the business owner's approval.",
        error_messages={"required": "Say why the level should change (what the figures show)."})

    def __init__(self, *args, agent: Agent, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["to_level"].choices = [
            (value, f"{label}{' (lower)' if value < agent.autonomy_level else ''}")
            for value, label in Agent.Autonomy.choices if value != agent.autonomy_level]


class AutonomyDecisionForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000, label="Note",
                           widget=forms.TextInput(attrs={"placeholder": "Why (needed to reject)"}))
