"""Registry pages. Views parse, check, call one service or selector, and render."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agents import readiness, rollout, selectors, services, versions
from agents.forms import (
    AccessForm,
    AgentFilterForm,
    AgentForm,
    GuardrailForm,
    PauseForm,
    RetireForm,
    RollbackStepForm,
    TokenForm,
    add_service_errors,
)
from agents.models import Agent, AgentToken, Guardrail, RollbackStep, SystemAccess
from portal.permissions import ADD_AGENT, CHANGE_AGENT, has_agent_perm, require_agent_perm

PAGE_SIZE = 50


def agent_list(request):
    owners = selectors.owner_choices(user=request.user)
    form = AgentFilterForm(request.GET or None, owners=owners)
    filters = selectors.AgentFilters(**form.cleaned_data) if form.is_valid() else (
        selectors.AgentFilters())
    page = Paginator(selectors.agent_list(user=request.user, filters=filters),
                     PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"filter_form": form, "page": page,
               "can_add": has_agent_perm(request.user, ADD_AGENT),
               "query": _query_without_page(request)}
    template = "agents/agent_list.html#results" if request.htmx else "agents/agent_list.html"
    return render(request, template, context)


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def agent_detail(request, slug):
    agent = selectors.agent_detail(user=request.user, slug=slug)
    return render(request, "agents/agent_detail.html", _detail_context(request, agent))


def _detail_context(request, agent: Agent, **extra) -> dict:
    from agents.autonomy_views import agent_autonomy_context
    from metrics.alert_selectors import agent_alerts  # alerts build on the registry too
    from reviews.callbacks import failed_callbacks  # the reviews app builds on the registry

    plan = rollout.plan_status(agent)
    abilities = selectors.agent_abilities(user=request.user, agent=agent)
    return {
        "agent": agent,
        "callback_failures": failed_callbacks(agent=agent) if agent.callback_secret else [],
        "moves": rollout.with_plan_gaps(selectors.lifecycle_moves(agent), plan),
        "plan": plan,
        "readiness": readiness.readiness(agent, plan.facts),
        "pause_form": PauseForm(),
        "retire_form": RetireForm(),
        "token_form": TokenForm(),
        **abilities,
        "open_alerts": agent_alerts(agent=agent),
        "policy_versions": versions.history(agent=agent),
        **agent_autonomy_context(request, agent, can_change=abilities["can_change"]),
        **extra,
    }


def agent_create(request):
    require_agent_perm(request.user, ADD_AGENT)
    form = AgentForm(request.POST or None,
                     initial={"business_owner": request.user, "autonomy_level": 1})
    if request.method == "POST" and form.is_valid():
        try:
            agent = services.agent_create(actor=request.user, **form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"{agent.name} is registered as proposed. Add its "
                             "system access, guardrails and rollback steps below.")
            return redirect("agents:edit", slug=agent.slug)
    return render(request, "agents/agent_form.html", {"form": form, "creating": True})


def _agent_for_change(request, slug) -> Agent:
    """The agent if the user may see it (else 404) and change it (else 403)."""
    agent = selectors.agent_detail(user=request.user, slug=slug)
    require_agent_perm(request.user, CHANGE_AGENT, agent)
    if agent.status == Agent.Status.RETIRED:
        raise PermissionDenied("A retired agent cannot be changed.")
    return agent


def agent_edit(request, slug):
    agent = _agent_for_change(request, slug)
    form = AgentForm(request.POST or None, instance=agent)
    if request.method == "POST" and form.is_valid():
        try:
            agent = services.agent_update(actor=request.user, agent=agent,
                                          **form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved the changes to {agent.name}.")
            return redirect(agent)
    return render(request, "agents/agent_form.html",
                  {"form": form, "agent": agent, **_inline_forms()})


def _inline_forms(**bound) -> dict:
    forms = {"access_form": AccessForm(), "guardrail_form": GuardrailForm(),
             "step_form": RollbackStepForm()}
    forms.update(bound)
    return forms


def _inline_response(request, agent_slug: str, section: str, **bound):
    """Re-render one inline section (htmx) or go back to the edit page (plain POST)."""
    if not request.htmx:
        return redirect("agents:edit", slug=agent_slug)
    agent = selectors.agent_detail(user=request.user, slug=agent_slug)
    return render(request, f"agents/agent_form.html#{section}",
                  {"agent": agent, **_inline_forms(**bound)})


def _inline_add(request, slug, *, form_class, section: str, form_key: str, create):
    """Validate the form, call `create(agent, **cleaned)`, re-render the section.

    On success the section comes back with an empty form; on a refusal, with the errors next
    to the fields they concern (or as flash messages after a plain POST).
    """
    agent = _agent_for_change(request, slug)
    form = form_class(request.POST)
    if form.is_valid():
        try:
            create(actor=request.user, agent=agent, **form.service_kwargs())
            form = form_class()
        except ValidationError as exc:
            add_service_errors(form, exc)
    _flash_errors(request, form)
    return _inline_response(request, slug, section, **{form_key: form})


@require_POST
def access_add(request, slug):
    return _inline_add(request, slug, form_class=AccessForm, section="accesses",
                       form_key="access_form", create=services.system_access_set)


@require_POST
def access_remove(request, slug, pk):
    agent = _agent_for_change(request, slug)
    services.system_access_remove(actor=request.user,
                                  access=get_object_or_404(SystemAccess, pk=pk, agent=agent))
    return _inline_response(request, slug, "accesses")


@require_POST
def guardrail_add(request, slug):
    return _inline_add(request, slug, form_class=GuardrailForm, section="guardrails",
                       form_key="guardrail_form", create=services.guardrail_create)


@require_POST
def guardrail_remove(request, slug, pk):
    agent = _agent_for_change(request, slug)
    services.guardrail_delete(actor=request.user,
                              guardrail=get_object_or_404(Guardrail, pk=pk, agent=agent))
    return _inline_response(request, slug, "guardrails")


@require_POST
def step_add(request, slug):
    return _inline_add(request, slug, form_class=RollbackStepForm, section="steps",
                       form_key="step_form", create=services.rollback_step_add)


@require_POST
def step_remove(request, slug, pk):
    agent = _agent_for_change(request, slug)
    services.rollback_step_remove(actor=request.user,
                                  step=get_object_or_404(RollbackStep, pk=pk, agent=agent))
    return _inline_response(request, slug, "steps")


def _flash_errors(request, form) -> None:
    """A plain (non-htmx) POST redirects, so its errors travel as flash messages."""
    if request.htmx or not form.errors:
        return
    for field, errors in form.errors.items():
        label = form.fields[field].label or field if field in form.fields else ""
        for error in errors:
            messages.error(request, f"{str(label).capitalize()}: {error}" if label else error)


# --- lifecycle -------------------------------------------------------------------------------

def _run(request, agent: Agent, action, success: str):
    """Call a lifecycle service; its refusal becomes a message that says why."""
    try:
        agent = action()
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    else:
        messages.success(request, success.format(agent=agent))
    return redirect("agents:detail", slug=agent.slug)


@require_POST
def agent_move(request, slug):
    agent = selectors.agent_detail(user=request.user, slug=slug)
    to_status = request.POST.get("to_status", "")
    return _run(request, agent,
                lambda: services.agent_move(actor=request.user, agent=agent,
                                            to_status=to_status),
                "{agent.name} is now " + to_status + ".")


@require_POST
def agent_pause(request, slug):
    agent = selectors.agent_detail(user=request.user, slug=slug)
    form = PauseForm(request.POST)
    if not form.is_valid():
        return render(request, "agents/agent_detail.html",
                      _detail_context(request, agent, pause_form=form), status=400)
    return _run(request, agent,
                lambda: services.agent_pause(actor=request.user, agent=agent,
                                             reason=form.cleaned_data["reason"]),
                "{agent.name} is paused. From now on no action of it is allowed.")


@require_POST
def agent_resume(request, slug):
    agent = selectors.agent_detail(user=request.user, slug=slug)
    return _run(request, agent,
                lambda: services.agent_resume(actor=request.user, agent=agent),
                "{agent.name} is running again ({agent.status}).")


@require_POST
def agent_retire(request, slug):
    agent = selectors.agent_detail(user=request.user, slug=slug)
    form = RetireForm(request.POST)
    if not form.is_valid():
        return render(request, "agents/agent_detail.html",
                      _detail_context(request, agent, retire_form=form), status=400)
    return _run(request, agent,
                lambda: services.agent_retire(actor=request.user, agent=agent,
                                              reason=form.cleaned_data["reason"]),
                "{agent.name} is retired. Its tokens no longer work.")


# --- tokens ----------------------------------------------------------------------------------

@require_POST
def token_create(request, slug):
    agent = _agent_for_change(request, slug)
    form = TokenForm(request.POST)
    new_secret = None
    if form.is_valid():
        _token, new_secret = services.agent_token_create(actor=request.user, agent=agent,
                                                         name=form.cleaned_data["name"])
        form = TokenForm()
    agent = selectors.agent_detail(user=request.user, slug=slug)
    template = "agents/agent_detail.html#tokens" if request.htmx else "agents/agent_detail.html"
    # The secret is rendered in this response only; it is never stored or shown again.
    return render(request, template,
                  _detail_context(request, agent, token_form=form, new_secret=new_secret))


@require_POST
def token_revoke(request, slug, pk):
    agent = _agent_for_change(request, slug)
    token = get_object_or_404(AgentToken, pk=pk, agent=agent)
    services.agent_token_revoke(actor=request.user, token=token)
    if not request.htmx:
        messages.success(request, f"Token {token.prefix}… is revoked.")
        return redirect(agent)
    agent = selectors.agent_detail(user=request.user, slug=slug)
    return render(request, "agents/agent_detail.html#tokens", _detail_context(request, agent))
