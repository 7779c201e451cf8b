"""The simulator's pages: "preview effect" on the edit forms, and "try an action".

Both read only: a draft is the agent's current snapshot with the form's changes applied, and
nothing is saved, audited or queued.
"""

import json

from django import forms
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.views.decorators.http import require_POST
from pydantic import ValidationError as SchemaError

from agents import selectors, simulate, snapshots
from agents.forms import AccessForm, AgentForm, GuardrailForm, add_service_errors
from agents.models import Agent, DataSource, Guardrail, System
from agents.policy import KINDS, GuardrailRule, PolicySnapshot
from portal.permissions import CHANGE_AGENT, require_agent_perm
from reviews.schemas import ProposalIn


def _agent_for_simulation(request, slug) -> Agent:
    """Visible (else 404) and changeable (else 403): owners and Admins simulate."""
    agent = selectors.agent_detail(user=request.user, slug=slug)
    require_agent_perm(request.user, CHANGE_AGENT, agent)
    return agent


def _current(agent: Agent) -> PolicySnapshot:
    return snapshots.policy_snapshot(agent.pk, agent.policy_version)


# --- preview on the edit forms -----------------------------------------------------------------

def _draft_from_agent_form(request, agent: Agent, policy: PolicySnapshot):
    # The form validates against (and writes onto) a throwaway copy: nothing is saved.
    form = AgentForm(request.POST, instance=Agent.objects.get(pk=agent.pk))
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    budget = data.get("monthly_cost_budget")
    return form, simulate.draft_with(
        policy, autonomy_level=data["autonomy_level"],
        review_sample_rate=data["review_sample_rate"],
        confidence_review_below=data["confidence_review_below"],
        confidence_block_below=data["confidence_block_below"],
        max_writes_per_hour=data.get("max_writes_per_hour"),
        monthly_cost_budget=float(budget) if budget is not None else None,
        sources={source.slug: simulate.source_info(source)
                 for source in data.get("sources") or []})


def _draft_from_access_form(request, agent: Agent, policy: PolicySnapshot):
    form = AccessForm(request.POST)
    if not form.is_valid():
        return form, None
    system = form.cleaned_data["system"]
    return form, simulate.draft_with_access(policy, system_slug=system.slug,
                                            system_id=system.pk,
                                            max_kind=form.cleaned_data["max_kind"])


def _draft_from_guardrail_form(request, agent: Agent, policy: PolicySnapshot):
    form = GuardrailForm(request.POST)
    if not form.is_valid():
        return form, None
    guardrail = Guardrail(agent=agent, **form.service_kwargs())
    try:
        guardrail.full_clean(exclude=["agent"], validate_unique=False)
    except ValidationError as exc:
        add_service_errors(form, exc)
        return form, None
    return form, simulate.draft_with_guardrail(policy, GuardrailRule(
        id=0, name=guardrail.name, field=guardrail.field, operator=guardrail.operator,
        value=guardrail.value, effect=guardrail.effect,
        system=guardrail.system.slug if guardrail.system_id else None,
        operation=guardrail.operation,
        route_to_group=guardrail.route_to_group.name if guardrail.route_to_group_id else None))


DRAFTS = {"agent": _draft_from_agent_form, "access": _draft_from_access_form,
          "guardrail": _draft_from_guardrail_form}


@require_POST
def preview(request, slug):
    """The transition matrix of the draft in the POSTed form (`draft` says which form)."""
    agent = _agent_for_simulation(request, slug)
    which = request.POST.get("draft", "")
    if which not in DRAFTS:
        return render(request, "agents/simulate.html#matrix", {
            "agent": agent, "draft_errors": [f"'draft' must be one of {', '.join(DRAFTS)}."]},
            status=400)
    form, draft = DRAFTS[which](request, agent, _current(agent))
    if draft is None:
        return render(request, "agents/simulate.html#matrix", {
            "agent": agent, "which": which, "draft_errors": _error_lines(form)})
    return render(request, "agents/simulate.html#matrix", {
        "agent": agent, "which": which, "try_form": TryActionForm(prefix=TRY_PREFIX),
        "replay": simulate.replay(agent_id=agent.pk, draft=draft)})


@require_POST
def try_draft(request, slug):
    """The decision one hand-written action would get under the draft in the POSTed form
    (the draft's fields as the preview reads them, the action's with the `try` prefix)."""
    agent = _agent_for_simulation(request, slug)
    which = request.POST.get("draft", "")
    form = TryActionForm(request.POST, prefix=TRY_PREFIX)
    context = {"agent": agent, "form": form, "decision": None,
               "result_id": f"try-result-{which}"}
    if which not in DRAFTS:
        form.add_error(None, f"'draft' must be one of {', '.join(DRAFTS)}.")
        return render(request, "agents/simulate.html#result", context, status=400)
    draft_form, draft = DRAFTS[which](request, agent, _current(agent))
    if draft is None:
        for line in _error_lines(draft_form):
            form.add_error(None, f"The draft: {line}")
    elif form.is_valid():
        context["decision"] = _judge(form, draft)
    return render(request, "agents/simulate.html#result", context)


def _judge(form, policy: PolicySnapshot):
    """The decision `policy` gives the form's action; None with the problems on the form."""
    proposal = form.proposal()
    if proposal is None:
        return None
    try:
        return simulate.judge(policy=policy, proposal=proposal)
    except simulate.DraftInputError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return None


def _error_lines(form) -> list[str]:
    lines = []
    for name, errors in form.errors.items():
        label = str(form.fields[name].label or name) if name in form.fields else ""
        lines.extend(f"{label.capitalize()}: {error}" if label else error for error in errors)
    return lines


# --- try an action -------------------------------------------------------------------------------

TRY_PREFIX = "try"  # under a draft, the action's fields travel with the draft form's

class TryActionForm(forms.Form):
    system = forms.ChoiceField(help_text="The system the action touches.")
    operation = forms.CharField(max_length=80,
                                widget=forms.TextInput(attrs={"placeholder": "update_deal"}))
    kind = forms.ChoiceField(choices=[(k, k) for k in KINDS], initial="draft")
    target = forms.CharField(max_length=300, required=False,
                             widget=forms.TextInput(attrs={"placeholder": "deal 4411"}))
    amount = forms.FloatField(required=False)
    confidence = forms.FloatField(required=False, help_text="Between 0 and 1.")
    changes = forms.CharField(
        required=False, label="Changes (JSON)",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"stage": "won"}'}),
        help_text='A JSON object of the fields it would change, e.g. {"stage": "won"}.')
    sources = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                        help_text="The data sources it cites.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["system"].choices = list(System.objects.order_by("name")
                                             .values_list("slug", "name"))
        self.fields["sources"].choices = list(DataSource.objects.order_by("name")
                                              .values_list("slug", "name"))

    def clean_changes(self) -> dict:
        text = self.cleaned_data["changes"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON ({exc.msg} at character {exc.pos}); "
                                  'write an object such as {"stage": "won"}.') from exc
        if not isinstance(value, dict):
            raise ValidationError('Write a JSON object such as {"stage": "won"}, not a list '
                                  "or a single value.")
        return value

    def proposal(self) -> dict | None:
        """The action as the gate's schema (reviews.schemas.ProposalIn) reads it, or None
        with the schema's complaints added to the fields they name."""
        data = {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
        try:
            return ProposalIn(**data).dict()
        except SchemaError as exc:
            for problem in exc.errors():
                name = str(problem["loc"][0]) if problem["loc"] else None
                self.add_error(name if name in self.fields else None, problem["msg"])
            return None


def simulate_page(request, slug):
    """GET: the "try an action" form; POST: the decision the current policy would give."""
    agent = _agent_for_simulation(request, slug)
    form = TryActionForm(request.POST or None)
    decision = None
    if request.method == "POST" and form.is_valid():
        decision = _judge(form, _current(agent))
    template = "agents/simulate.html#result" if request.htmx else "agents/simulate.html"
    return render(request, template, {"agent": agent, "form": form, "decision": decision})
