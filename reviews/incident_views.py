"""Incident pages: the list, one incident (with the owners' status form), the report form.

Views parse, check, call one service or selector, and render. Incidents of agents the user may
not see answer 404, like the agents themselves.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agents.forms import add_service_errors
from portal.permissions import CHANGE_AGENT, has_agent_perm, visible_agents
from reviews import incident_selectors as selectors
from reviews import incidents as services
from reviews.incident_forms import IncidentFilterForm, IncidentReportForm, IncidentUpdateForm
from reviews.models import Incident

PAGE_SIZE = 50


def _agent_choices(user) -> list[tuple[str, str]]:
    return list(visible_agents(user).order_by("name").values_list("slug", "name"))


def incident_list(request):
    form = IncidentFilterForm(request.GET or None, agents=_agent_choices(request.user))
    filters = selectors.IncidentFilters()
    if form.is_bound:
        form.is_valid()  # the valid filters apply; an invalid one is shown next to its field
        filters = selectors.IncidentFilters(**form.cleaned_data)
    page = Paginator(selectors.incident_list(user=request.user, filters=filters),
                     PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter_form": form, "page": page, "query": query.urlencode()}
    template = ("incidents/incident_list.html#results" if request.htmx
                else "incidents/incident_list.html")
    return render(request, template, context)


def incident_detail(request, pk):
    incident = selectors.incident_for_user(user=request.user, pk=pk)
    return render(request, "incidents/incident_detail.html", _detail_context(request, incident))


def _detail_context(request, incident: Incident, form: IncidentUpdateForm | None = None) -> dict:
    steps = list(incident.agent.rollback_steps.all())
    if form is None:
        form = IncidentUpdateForm(steps=steps, initial={
            "status": incident.status, "resolution_note": incident.resolution_note,
            "rollback_steps_done": incident.rollback_steps_done})
    done = set(incident.rollback_steps_done)
    return {
        "incident": incident,
        "steps": [(step, step.pk in done) for step in steps],
        "can_update": has_agent_perm(request.user, CHANGE_AGENT, incident.agent),
        "form": form,
        "history": list(selectors.incident_history(incident)),
    }


@require_POST
def incident_update(request, pk):
    incident = selectors.incident_for_user(user=request.user, pk=pk)
    if not has_agent_perm(request.user, CHANGE_AGENT, incident.agent):
        raise PermissionDenied("Only the agent's owners and admins may update its incidents.")
    form = IncidentUpdateForm(request.POST, steps=incident.agent.rollback_steps.all())
    if form.is_valid():
        try:
            incident = services.incident_update(actor=request.user, incident=incident,
                                                **form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"The incident is {incident.get_status_display()}.")
            return redirect("incidents:detail", pk=incident.pk)
    return render(request, "incidents/incident_detail.html",
                  _detail_context(request, incident, form), status=400)


def incident_create(request):
    """`/incidents/new/?agent=<slug>&action=<uuid>`: both optional, both must be visible."""
    source = request.POST if request.method == "POST" else request.GET
    agent, action = selectors.report_target(user=request.user,
                                            agent_slug=source.get("agent", ""),
                                            action_id=source.get("action", ""))
    choices = [(agent.slug, agent.name)] if agent else _agent_choices(request.user)
    form = IncidentReportForm(
        request.POST or None, agents=choices, agent_fixed=agent is not None,
        initial={"agent": agent.slug if agent else "",
                 "action": action.public_id if action else None})
    if request.method == "POST" and form.is_valid():
        try:
            incident = services.incident_report(actor=request.user, agent=agent,
                                                action_request=action, **form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Thank you: the problem is reported and {agent.name}'s "
                             "owners are told by e-mail.")
            return redirect("incidents:detail", pk=incident.pk)
    return render(request, "incidents/incident_form.html",
                  {"form": form, "agent": agent, "action": action},
                  status=400 if form.errors else 200)
