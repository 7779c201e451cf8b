"""The rollout plan page and ticking its tasks (htmx: the plan comes back in place)."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agents import readiness, rollout, selectors
from agents.models import Agent, RolloutTask


def _plan_agent(request, slug) -> Agent:
    return selectors.agent_for_plan(user=request.user, slug=slug)


def _context(request, agent: Agent, **extra) -> dict:
    plan = rollout.plan_status(agent)
    return {"agent": agent, "plan": plan, "readiness": readiness.readiness(agent, plan.facts),
            **selectors.agent_abilities(user=request.user, agent=agent), **extra}


def plan(request, slug):
    agent = _plan_agent(request, slug)
    return render(request, "agents/plan.html", _context(request, agent))


@require_POST
def task_tick(request, slug, pk):
    agent = _plan_agent(request, slug)
    task = get_object_or_404(RolloutTask, pk=pk, agent=agent)
    task.agent = agent
    error = ""
    was_complete = rollout.plan_status(agent).complete
    try:
        rollout.task_tick(actor=request.user, task=task, done=request.POST.get("done") == "1")
    except ValidationError as exc:
        error = " ".join(exc.messages)
    if request.htmx:
        context = _context(request, agent, tick_error=error)
        response = render(request, "agents/plan.html#weeks", context)
        if context["plan"].complete != was_complete:
            response["HX-Refresh"] = "true"  # the move to live opens or closes: show it
        return response
    if error:
        messages.error(request, error)
    return redirect("agents:plan", slug=agent.slug)
