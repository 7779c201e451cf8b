"""Scorecard pages: the fleet, its CSV export, one agent, and its targets and reviews.

Views parse, check, call one service or selector, and render. Agents the user may not see
answer 404; a write the user may not make answers 403. The target and review forms work with
htmx (the row or the review section is swapped) and without JavaScript (redirect with a
flash message, or the page again with the errors and status 400).
"""

import csv

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from agents.forms import add_service_errors
from agents.models import Agent
from metrics import selectors, services
from metrics.forms import ReviewForm, TargetForm
from metrics.models import Target
from portal import audit
from portal.permissions import (
    CHANGE_AGENT,
    agent_permissions,
    get_visible_agent_or_404,
    has_agent_perm,
)

FLEET = "metrics/fleet.html"
AGENT = "metrics/agent_scorecard.html"


def fleet(request):
    grain, complaint = selectors.parse_grain(request.GET.get("grain"))
    if complaint:
        messages.warning(request, complaint)
    scorecard = selectors.fleet_scorecard(user=request.user, grain=grain)
    return render(request, FLEET, {"scorecard": scorecard, "grains": selectors.GRAINS})


def fleet_export(request):
    grain, complaint = selectors.parse_grain(request.GET.get("grain"))
    if complaint:
        return HttpResponseBadRequest(complaint, content_type="text/plain; charset=utf-8")
    scorecard = selectors.fleet_scorecard(user=request.user, grain=grain)
    audit.record_read(request=request, verb="export.downloaded",
                      data={"export": "scorecards", "grain": grain,
                            "period": scorecard.current.isoformat()})
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="scorecards-{grain}-{scorecard.current:%Y-%m-%d}.csv"')
    csv.writer(response).writerows(selectors.fleet_csv_rows(scorecard))
    return response


def agent_scorecard(request, slug):
    agent = get_visible_agent_or_404(request.user, slug)
    grain, complaint = selectors.parse_grain(request.GET.get("grain"))
    if complaint:
        messages.warning(request, complaint)
    return render(request, AGENT, _agent_context(request, agent, grain))


def _agent_context(request, agent: Agent, grain: str, *, target_form=None,
                   review_form=None) -> dict:
    card = selectors.agent_scorecard(agent=agent, grain=grain)
    held = agent_permissions(request.user, agent)  # once: each check costs queries
    can_set_targets = CHANGE_AGENT in held and agent.status != Agent.Status.RETIRED
    bound_key = target_form.data.get("metric") if target_form is not None else None
    target_rows = [(line, target_form if line.metric.key == bound_key
                    else _target_form(line.metric, line.target)) for line in card.targets]
    return {
        "agent": agent, "card": card, "grain": grain, "grains": selectors.GRAINS,
        "history": selectors.HISTORY_PERIODS,
        "can_set_targets": can_set_targets,
        "can_review": services.may_review(request.user, agent, held=held),
        "target_rows": target_rows,
        "review_form": review_form or ReviewForm(
            initial={"grain": grain, "period_start": card.current}),
    }


def _target_form(metric, target: Target | None) -> TargetForm:
    line = selectors.TargetLine(metric, target)
    return TargetForm(initial={"metric": metric.key, "target": line.target_text,
                               "human_baseline": line.baseline_text})


def _scorecard_url(agent: Agent, grain: str, anchor: str = "") -> str:
    url = reverse("metrics:agent", args=[agent.slug])
    return (url + ("?grain=month" if grain == selectors.MONTH else "")
            + (f"#{anchor}" if anchor else ""))


@require_POST
def target_save(request, slug):
    agent = get_visible_agent_or_404(request.user, slug)
    if not has_agent_perm(request.user, CHANGE_AGENT, agent):
        raise PermissionDenied("Only the agent's owners and admins set its targets.")
    form = TargetForm(request.POST)
    saved = False
    if form.is_valid():
        try:
            services.target_set(actor=request.user, agent=agent,
                                metric=form.cleaned_data["metric"],
                                target=form.cleaned_data["target"],
                                human_baseline=form.cleaned_data["human_baseline"])
            saved = True
        except ValidationError as exc:
            add_service_errors(form, exc)
    grain, _ = selectors.parse_grain(request.GET.get("grain"))
    metric = form.cleaned_data.get("metric") if hasattr(form, "cleaned_data") else None
    if request.htmx:
        if metric is None:  # only a hand-made request lacks the page's hidden metric
            return HttpResponseBadRequest("metric: there is no such metric.")
        line = selectors.TargetLine(metric, Target.objects.filter(agent=agent,
                                                                  metric=metric).first())
        return render(request, f"{AGENT}#target-row", {
            "agent": agent, "grain": grain, "can_set_targets": True, "saved": saved,
            "row": (line, _target_form(metric, line.target) if saved else form)})
    if saved:
        messages.success(request, f"Saved the target of {metric.name}.")
        return redirect(_scorecard_url(agent, grain, "targets"))
    messages.error(request, f"The target was not saved: {_problems(form)}")
    return render(request, AGENT, _agent_context(request, agent, grain, target_form=form),
                  status=400)


def _problems(form) -> str:
    """The form's errors in one line, each named by its field's label."""
    return " ".join(
        " ".join(errors) if name == "__all__" else f"{form.fields[name].label}: {' '.join(errors)}"
        for name, errors in form.errors.items())


@require_POST
def review_record(request, slug):
    agent = get_visible_agent_or_404(request.user, slug)
    if not services.may_review(request.user, agent):
        raise PermissionDenied("Only the agent's owners, RevOps and admins record scorecard "
                               "reviews.")
    form = ReviewForm(request.POST)
    review = None
    if form.is_valid():
        try:
            review = services.scorecard_review_record(actor=request.user, agent=agent,
                                                      **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
    grain = form.cleaned_data.get("grain") if hasattr(form, "cleaned_data") else None
    grain = grain or selectors.WEEK
    if review is not None and not request.htmx:
        messages.success(request, f"Recorded: {review.get_decision_display()} for "
                         f"{agent.name}.")
        return redirect(_scorecard_url(agent, grain, "review"))
    context = _agent_context(request, agent, grain, review_form=None if review else form)
    if request.htmx:  # the review section, and the overdue banner out of band
        context["recorded"] = review
        body = (render_to_string(f"{AGENT}#review", context, request=request)
                + render_to_string(f"{AGENT}#review-due", {**context, "oob": True},
                                   request=request))
        return HttpResponse(body)
    return render(request, AGENT, context, status=400)
