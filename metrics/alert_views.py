"""Alert pages: the list (`/metrics/alerts/`), one alert with its evidence and the recommended
action, and the steps people take on it (acknowledge, resolve, start the action).

Views parse, check, call one service or selector, and render. An alert of an agent the user
may not see answers 404; a step the user may not take answers 403 (the services say so). The
acknowledge and resolve forms work with htmx (the state section is swapped) and without
JavaScript (redirect with a flash message, or the page again with the errors and status 400).
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agents.forms import add_service_errors
from metrics import alert_actions, alert_display
from metrics import alert_selectors as selectors
from metrics import alerts as services
from metrics.alert_forms import AlertFilterForm, AlertNoteForm, MaintainerForm
from metrics.models import Alert
from portal.permissions import CHANGE_AGENT, PAUSE_AGENT, agent_permissions
from portal.roles import ADMINS, REVOPS, user_in_group

PAGE_SIZE = 50
LIST = "metrics/alerts/alert_list.html"
DETAIL = "metrics/alerts/alert_detail.html"


def alert_list(request):
    form = AlertFilterForm(request.GET or None,
                           agents=selectors.agent_choices(user=request.user))
    filters = selectors.AlertFilters()
    if form.is_bound:
        form.is_valid()  # the valid filters apply; an invalid one is shown next to its field
        filters = selectors.AlertFilters(**form.cleaned_data)
    page = Paginator(selectors.alert_list(user=request.user, filters=filters),
                     PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter_form": form, "page": page, "query": query.urlencode()}
    return render(request, f"{LIST}#results" if request.htmx else LIST, context)


def alert_detail(request, pk):
    alert = selectors.alert_for_user(user=request.user, pk=pk)
    return render(request, DETAIL, _detail_context(request, alert))


def _abilities(user, alert: Alert) -> dict:
    """What the user may do here, in two or three queries (the services check again)."""
    # Group names only when the answer depends on them: agentless alerts, source maintainers.
    groups = (set(user.groups.values_list("name", flat=True))
              if alert.agent_id is None or alert.action == "assign_maintainer" else set())
    is_admin = user.is_superuser or ADMINS in groups
    held = agent_permissions(user, alert.agent) if alert.agent_id else set()
    if alert.agent_id:  # the rule of metrics.alerts.can_act_on_alert, from `held`
        can_act = bool(held & {CHANGE_AGENT, PAUSE_AGENT})
    else:
        can_act = is_admin or REVOPS in groups
    retired = alert.agent_id is not None and alert.agent.status == "retired"
    return {"can_act": can_act, "is_admin": is_admin,
            "can_change": CHANGE_AGENT in held and not retired}


def _detail_context(request, alert: Alert, *, ack_form=None, resolve_form=None,
                    maintainer_form=None, done: str = "") -> dict:
    abilities = _abilities(request.user, alert)
    source = (alert_actions.alert_source(alert)
              if alert.action == "assign_maintainer" else None)
    return {
        "alert": alert,
        "evidence": alert_display.evidence_rows(alert.evidence),
        "links": alert_display.related_links(alert),
        "action": alert_display.recommended_action(
            alert, can_change=abilities["can_change"], is_admin=abilities["is_admin"]),
        "source": source,
        "ack_form": ack_form or AlertNoteForm(auto_id="ack-%s"),
        "resolve_form": resolve_form or AlertNoteForm(auto_id="resolve-%s"),
        "maintainer_form": maintainer_form or MaintainerForm(
            initial={"maintainer": source.maintainer_id if source else None}),
        "history": list(selectors.alert_history(alert)),
        "done": done,
        **abilities,
    }


def _note_step(request, pk, service, done: str, step: str):
    """Acknowledge or resolve with a note: the state section (htmx) or the page again."""
    alert = selectors.alert_for_user(user=request.user, pk=pk)
    form = AlertNoteForm(request.POST, auto_id=f"{step}-%s")
    if form.is_valid():
        try:
            service(actor=request.user, alert=alert, note=form.cleaned_data["note"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            if not request.htmx:
                messages.success(request, f"The alert is {done}.")
                return redirect("alerts:detail", pk=pk)
            alert = selectors.alert_for_user(user=request.user, pk=pk)
            return render(request, f"{DETAIL}#state",
                          _detail_context(request, alert, done=done))
    context = _detail_context(request, alert, **{f"{step}_form": form})
    return render(request, f"{DETAIL}#state" if request.htmx else DETAIL, context, status=400)


@require_POST
def alert_acknowledge(request, pk):
    return _note_step(request, pk, services.alert_acknowledge, "acknowledged", "ack")


@require_POST
def alert_resolve(request, pk):
    return _note_step(request, pk, services.alert_resolve, "resolved", "resolve")


@require_POST
def alert_lower_autonomy(request, pk):
    """Open (or find) the autonomy change one level down and go to it on the agent's page."""
    alert = selectors.alert_for_user(user=request.user, pk=pk)
    try:
        change = alert_actions.alert_lower_autonomy(actor=request.user, alert=alert)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("alerts:detail", pk=pk)
    messages.success(request, f"Requested L{change.from_level} → L{change.to_level} for "
                     f"{alert.agent.name}; its business owner decides.")
    return redirect(f"{alert.agent.get_absolute_url()}#autonomy-change-{change.pk}")


@require_POST
def alert_assign_maintainer(request, pk):
    alert = selectors.alert_for_user(user=request.user, pk=pk)
    if not (request.user.is_superuser or user_in_group(request.user, ADMINS)):
        raise PermissionDenied("Only admins name a data source's maintainer.")
    form = MaintainerForm(request.POST)
    if form.is_valid():
        try:
            source = alert_actions.alert_assign_maintainer(
                actor=request.user, alert=alert, maintainer=form.cleaned_data["maintainer"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"{source.maintainer} now maintains {source.name}.")
            return redirect("alerts:detail", pk=pk)
    return render(request, DETAIL, _detail_context(request, alert, maintainer_form=form),
                  status=400)
