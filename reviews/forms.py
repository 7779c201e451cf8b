"""Forms of the review pages: the inbox filters and the decisions."""

import json

from django import forms

from reviews.models import Incident
from reviews.selectors import AGES, TABS, InboxFilters

# The gate's reasons that send an item to review (agents/policy.py).
REASON_CODES = [
    ("guardrail", "guardrail"),
    ("autonomy", "autonomy level"),
    ("confidence_review", "low confidence"),
    ("source_stale", "stale source"),
    ("blast_radius", "blast radius"),
    ("budget", "budget"),
]
AGE_LABELS = {"1h": "older than 1 hour", "24h": "older than 24 hours", "7d": "older than 7 days"}
AGE_CHOICES = [(key, AGE_LABELS[key]) for key in AGES]


def inbox_filters(query) -> InboxFilters:
    """The filters in a query string. An unknown tab, reason or age counts as none; agent and
    system slugs pass as they are (the user's scope still bounds what they can match)."""
    tab = query.get("tab", "")
    reason = query.get("reason", "")
    age = query.get("age", "")
    return InboxFilters(
        tab=tab if tab in TABS else InboxFilters.tab,
        agent=query.get("agent", "")[:50], system=query.get("system", "")[:50],
        reason=reason if reason in dict(REASON_CODES) else "",
        age=age if age in AGES else "")


class NoInputForm(forms.Form):
    """Claims and sample checks: a POST and the CSRF token, nothing else."""


class ApproveForm(forms.Form):
    note = forms.CharField(max_length=2000, required=False, label="Note (optional)")


class RejectForm(forms.Form):
    note = forms.CharField(
        max_length=2000, label="Why reject it?", widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say why you reject it: the agent's owners read this."})


def _as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class EditApproveForm(forms.Form):
    """The proposal's changes as editable fields (one per changed field) and its draft.

    A field whose proposed value was text stays text; any other value (a number, true/false,
    null, a list or an object) is edited as JSON and must parse again.
    """

    content = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8}),
                              label="Draft", strip=False)
    note = forms.CharField(max_length=2000, required=False, label="Note (optional)")

    def __init__(self, *args, action, **kwargs):
        super().__init__(*args, **kwargs)
        self.action = action
        self.change_fields = []  # (form field name, changed field, original value)
        for key, value in (action.changes or {}).items():
            name = f"change.{key}"
            self.fields[name] = forms.CharField(
                label=key, required=False, initial=_as_text(value), strip=False,
                help_text="" if isinstance(value, str) else "JSON")
            self.change_fields.append((name, key, value))
        self.fields["content"].initial = action.content
        if not action.content:
            del self.fields["content"]
        self.order_fields([name for name, _k, _v in self.change_fields] + ["content", "note"])

    def clean(self):
        cleaned = super().clean()
        changes = {}
        for name, key, original in self.change_fields:
            raw = cleaned.get(name, "")
            if isinstance(original, str):
                changes[key] = raw
                continue
            try:
                changes[key] = json.loads(raw)
            except (TypeError, ValueError):
                self.add_error(name, "Enter a JSON value: a number, true, false, null, "
                               "a \"quoted text\", a list or an object.")
        cleaned["changes"] = changes
        return cleaned

    def service_kwargs(self) -> dict:
        """Only what the reviewer changed; the rest stays as the agent proposed it."""
        data = self.cleaned_data
        changes = data["changes"] if data["changes"] != (self.action.changes or {}) else None
        content = data.get("content")
        if "content" not in self.fields or content == self.action.content:
            content = None
        return {"changes": changes, "content": content, "note": data.get("note", "")}

    def change_rows(self):
        """(bound field, original value) for the field table."""
        return [(self[name], _as_text(original)) for name, _key, original in self.change_fields]


class SampleFlagForm(forms.Form):
    category = forms.ChoiceField(choices=Incident.Category.choices)
    severity = forms.ChoiceField(choices=Incident.Severity.choices,
                                 initial=Incident.Severity.MEDIUM)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "Describe what went wrong, so the owners can act on it."})
