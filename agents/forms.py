from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from agents.models import AccessKind, Agent, DataSource, Guardrail, System
from portal.url_safety import check_outgoing_url

User = get_user_model()


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Show a service's ValidationError next to the fields it names (or above the form)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def _outgoing_url(url: str) -> str:
    """Refuse a URL Steward must not call (portal.url_safety); a host that does not resolve
    yet is accepted here: the check before each send refuses it if it points inside."""
    if url:
        check_outgoing_url(url, require_resolution=False)
    return url


class AgentFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search",
                        widget=forms.TextInput(attrs={"placeholder": "Name or slug",
                                                      "type": "search"}))
    status = forms.ChoiceField(required=False,
                               choices=[("", "Any status"), *Agent.Status.choices])
    autonomy_level = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label="Autonomy",
        choices=[("", "Any level"), *[(v, f"L{v}") for v in Agent.Autonomy.values]])
    owner = forms.ChoiceField(required=False, choices=[("", "Any owner")])

    def __init__(self, *args, owners=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = [("", "Any owner"),
                                        *[(u.username, str(u)) for u in owners]]


class AgentForm(forms.ModelForm):
    callback_url = forms.URLField(
        required=False, assume_scheme="https", label="Decision callback URL",
        help_text=Agent._meta.get_field("callback_url").help_text)
    alert_webhook_url = forms.URLField(
        required=False, assume_scheme="https", label="Alert webhook URL (Slack-compatible)",
        help_text=Agent._meta.get_field("alert_webhook_url").help_text)

    class Meta:
        model = Agent
        fields = [
            "name", "slug", "description", "business_outcome", "definition_of_done",
            "workflow", "autonomy_level", "business_owner", "process_owner",
            "technical_owner", "pausers", "sources", "review_sample_rate",
            "confidence_review_below", "confidence_block_below", "max_writes_per_hour",
            "monthly_cost_budget", "review_cadence", "review_sla_hours", "callback_url",
            "alert_webhook_url", "auto_pause_on_critical", "auto_step_down",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "definition_of_done": forms.Textarea(attrs={"rows": 2}),
            "pausers": forms.CheckboxSelectMultiple,
            "sources": forms.CheckboxSelectMultiple,
        }
        labels = {"business_outcome": "Business outcome (one sentence)",
                  "review_sample_rate": "Review sample rate (L2)",
                  "confidence_review_below": "Review when confidence is below",
                  "confidence_block_below": "Block when confidence is below",
                  "monthly_cost_budget": "Monthly cost budget (USD)",
                  "review_sla_hours": "Review SLA (hours)",
                  "auto_pause_on_critical": "Pause by itself on a critical alert",
                  "auto_step_down": "Step down one autonomy level by itself"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        people = User.objects.filter(is_active=True).order_by("username")
        for name in ("business_owner", "process_owner", "technical_owner"):
            self.fields[name].queryset = people
        self.fields["pausers"].queryset = people
        self.fields["sources"].queryset = DataSource.objects.order_by("name")
        if self.instance.pk:  # the slug is the agent's identity in URLs, tokens and YAML
            del self.fields["slug"]
        self.fields["review_sla_hours"].required = False  # left out: keep the agent's SLA

    def clean_review_sla_hours(self) -> int:
        hours = self.cleaned_data["review_sla_hours"]
        if hours is None:
            return self.instance.review_sla_hours
        expire = settings.STEWARD_REVIEW_EXPIRE_HOURS
        if not 1 <= hours < expire:
            raise ValidationError(f"Between 1 and {expire - 1} hours: after {expire} hours an "
                                  "item nobody decided expires.")
        return hours

    def clean_callback_url(self) -> str:
        return _outgoing_url(self.cleaned_data["callback_url"])

    def clean_alert_webhook_url(self) -> str:
        return _outgoing_url(self.cleaned_data["alert_webhook_url"])

    def clean_business_outcome(self) -> str:
        outcome = self.cleaned_data["business_outcome"].strip()
        if outcome.count(". ") > 0:
            raise ValidationError("Keep the outcome to one sentence.")
        return outcome

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        data["pausers"] = list(data.get("pausers") or [])
        data["sources"] = list(data.get("sources") or [])
        return data


class ServiceForm(forms.Form):
    """A form whose cleaned data are a service's keyword arguments."""

    def service_kwargs(self) -> dict:
        return dict(self.cleaned_data)


class AccessForm(ServiceForm):
    system = forms.ModelChoiceField(queryset=System.objects.order_by("name"))
    max_kind = forms.ChoiceField(choices=AccessKind.choices, label="Up to",
                                 initial=AccessKind.READ)


def parse_value(text: str):
    """'500' → 500, '0.7' → 0.7, anything else stays text."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


class GuardrailForm(ServiceForm):
    name = forms.CharField(max_length=160,
                           widget=forms.TextInput(
                               attrs={"placeholder": "Refunds over 500 need a manager"}))
    system = forms.ModelChoiceField(queryset=System.objects.order_by("name"), required=False,
                                    empty_label="Any system")
    operation = forms.CharField(max_length=80, required=False,
                                widget=forms.TextInput(attrs={"placeholder": "any"}))
    field = forms.CharField(max_length=80, help_text=Guardrail._meta.get_field("field").help_text,
                            widget=forms.TextInput(attrs={"placeholder": "amount"}))
    operator = forms.ChoiceField(choices=Guardrail.Operator.choices)
    value = forms.CharField(required=False, help_text="For 'is one of', separate with commas.",
                            widget=forms.TextInput(attrs={"placeholder": "500"}))
    effect = forms.ChoiceField(choices=Guardrail.Effect.choices)
    route_to_group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"),
                                            required=False, empty_label="Reviewers of the agent")

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        raw = data.pop("value")
        if data["operator"] == Guardrail.Operator.IN:
            data["value"] = [parse_value(v) for v in raw.split(",") if v.strip()]
        elif data["operator"] == Guardrail.Operator.CHANGED:
            data["value"] = None
        else:
            data["value"] = parse_value(raw) if raw.strip() else None
        data["field"] = data["field"].strip()
        data["operation"] = data["operation"].strip()
        return data


class RollbackStepForm(ServiceForm):
    title = forms.CharField(max_length=160,
                            widget=forms.TextInput(attrs={"placeholder": "Discard the draft"}))
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class PauseForm(forms.Form):
    reason = forms.CharField(
        max_length=500, widget=forms.TextInput(attrs={"placeholder": "Why pause it now?"}),
        error_messages={"required": "Say why you are pausing the agent."})


class RetireForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)
    confirm = forms.BooleanField(label="I understand that retiring is final.",
                                 error_messages={"required": "Tick the box to confirm."})


class TokenForm(forms.Form):
    name = forms.CharField(max_length=80, initial="default",
                           widget=forms.TextInput(attrs={"placeholder": "production"}))
