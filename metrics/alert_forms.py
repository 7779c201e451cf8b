from django import forms
from django.contrib.auth import get_user_model

from metrics.alert_selectors import STATUS_ALL
from metrics.models import Alert

User = get_user_model()


class AlertFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[
        ("", "open or acknowledged"), *Alert.Status.choices, (STATUS_ALL, "any status")])
    severity = forms.ChoiceField(required=False,
                                 choices=[("", "Any severity"), *Alert.Severity.choices])
    kind = forms.ChoiceField(required=False, choices=[("", "Any kind"), *Alert.Kind.choices])
    agent = forms.ChoiceField(required=False)

    def __init__(self, *args, agents=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = [("", "Any agent"), *agents]


class AlertNoteForm(forms.Form):
    """Acknowledge or resolve: a note for the others (what is being done, or what was done)."""

    note = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
        label="Note")


class MaintainerForm(forms.Form):
    maintainer = forms.ModelChoiceField(
        queryset=User.objects.none(), label="Maintainer", empty_label="Choose a person",
        help_text="Keeps the source approved and fresh, and answers for it.",
        error_messages={"required": "Choose who maintains the source.",
                        "invalid_choice": "Choose an active user from the list."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["maintainer"].queryset = User.objects.filter(is_active=True).order_by(
            "username")
