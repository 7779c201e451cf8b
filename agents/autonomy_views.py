"""Autonomy changes on the agent's page: request one, read the figures it carries, approve or
reject it.

The section lives on the agent's page (`agent_autonomy_context` feeds it). With htmx each form
swaps the section; without JavaScript a success redirects to the agent's page with a flash
message and bad input answers 400 with the section on a page of its own. An agent the user may
not see answers 404; a step they may not take answers 403 (the autonomy services say why).
"""

from dataclasses import dataclass

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agents import autonomy, selectors
from agents.autonomy_forms import AutonomyDecisionForm, AutonomyRequestForm
from agents.forms import add_service_errors
from agents.models import Agent, AutonomyChange
from metrics.alert_display import EvidenceRow, evidence_rows, format_value
from portal.permissions import get_visible_agent_or_404

SECTION = "agents/autonomy_section.html"
PAGE = "agents/autonomy_page.html"
CHANGES_SHOWN = 10  # the newest; older ones are in the audit trail


@dataclass(frozen=True)
class FigureRow:
    name: str
    unit: str
    values: list[str]  # one per period, oldest first ("—" when missing)
    target: str


@dataclass(frozen=True)
class ChangeView:
    """One change as its row shows it: the figures as a table and who may decide."""

    change: AutonomyChange
    periods: list[str]
    figures: list[FigureRow]
    attached: list[EvidenceRow]
    may_approve: bool
    may_reject: bool


def _figures(evidence: dict) -> tuple[list[str], list[FigureRow]]:
    periods = [p for p in evidence.get("periods", []) if isinstance(p, str)]
    rows = []
    for figure in evidence.get("figures", []):
        if not isinstance(figure, dict):
            continue
        values = figure.get("values") or {}
        rows.append(FigureRow(
            name=str(figure.get("name") or figure.get("metric") or "?"),
            unit=str(figure.get("unit") or ""),
            values=[format_value(values.get(p)) for p in periods],
            target=format_value(figure.get("target"))))
    return periods, rows


def change_view(change: AutonomyChange, *, user, can_change: bool) -> ChangeView:
    evidence = change.evidence if isinstance(change.evidence, dict) else {}
    periods, figures = _figures(evidence)
    extra = {key: evidence[key] for key in ("attached", "alert") if evidence.get(key)}
    pending = change.status == AutonomyChange.Status.PENDING
    # autonomy.can_approve's rule without its queries: the business owner (who holds
    # change_agent) and not the requester for a raise; anyone who may change it to lower.
    if change.is_raise:
        may_approve = (can_change and user.pk == change.agent.business_owner_id
                       and user.pk != change.requested_by_id)
    else:
        may_approve = can_change
    return ChangeView(change=change, periods=periods, figures=figures,
                      attached=evidence_rows(extra), may_approve=pending and may_approve,
                      may_reject=pending and can_change)


def agent_autonomy_context(request, agent: Agent, *, can_change: bool, form=None) -> dict:
    """What the agent page's autonomy section needs: the newest changes, one query."""
    changes = selectors.autonomy_changes(agent=agent, limit=CHANGES_SHOWN)
    return {
        "autonomy_changes": [change_view(c, user=request.user, can_change=can_change)
                             for c in changes],
        "autonomy_form": form or AutonomyRequestForm(agent=agent),
        "autonomy_pending": any(c.status == AutonomyChange.Status.PENDING for c in changes),
    }


def _section(request, agent: Agent, *, status: int = 200, form=None, done: str = "",
             error: str = "", error_for: int | None = None):
    abilities = selectors.agent_abilities(user=request.user, agent=agent)
    context = {"agent": agent, "done": done, "decision_error": error,
               "decision_error_for": error_for, **abilities,
               **agent_autonomy_context(request, agent, can_change=abilities["can_change"],
                                        form=form)}
    return render(request, SECTION if request.htmx else PAGE, context, status=status)


def _finish(request, agent: Agent, text: str):
    if request.htmx:
        agent.refresh_from_db()
        return _section(request, agent, done=text)
    messages.success(request, text)
    return redirect(f"{agent.get_absolute_url()}#autonomy")


@require_POST
def autonomy_request(request, slug):
    agent = get_visible_agent_or_404(request.user, slug)
    form = AutonomyRequestForm(request.POST, agent=agent)
    if form.is_valid():
        try:
            change = autonomy.autonomy_change_request(
                actor=request.user, agent=agent, to_level=form.cleaned_data["to_level"],
                reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            who = ("its business owner decides" if change.is_raise
                   else "an owner or an admin decides")
            return _finish(request, agent, f"Requested L{change.from_level} → "
                           f"L{change.to_level}; {who}.")
    return _section(request, agent, status=400, form=form)


def _change(request, slug, pk) -> tuple[Agent, AutonomyChange]:
    agent = get_visible_agent_or_404(request.user, slug)
    change = get_object_or_404(AutonomyChange.objects.select_related("agent"), pk=pk,
                               agent=agent)
    return agent, change


def _decide(request, slug, pk, service, verb: str):
    agent, change = _change(request, slug, pk)
    form = AutonomyDecisionForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            change = service(actor=request.user, change=change, note=form.cleaned_data["note"])
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            return _finish(request, agent, f"{verb} L{change.from_level} → L{change.to_level}.")
    else:
        error = " ".join(e for errors in form.errors.values() for e in errors)
    return _section(request, agent, status=400, error=error, error_for=change.pk)


@require_POST
def autonomy_approve(request, slug, pk):
    return _decide(request, slug, pk, autonomy.autonomy_change_approve, "Approved")


@require_POST
def autonomy_reject(request, slug, pk):
    return _decide(request, slug, pk, autonomy.autonomy_change_reject, "Rejected")
