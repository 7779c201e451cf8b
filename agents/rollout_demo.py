"""The demo's rollout plans (seed_demo): live agents got there through a complete plan.

The 30-day plan gates pilot → live, so a new agent the demo file has live (or paused from
live) is first applied in pilot; its plan is then completed the way owners would (the demo's
targets and human baselines, its past scorecard reviews, every manual task ticked), and the
real file moves it on. The pilot agents are part-way through their plans.
"""

from __future__ import annotations

import copy
from datetime import datetime

from agents import rollout
from agents.models import Agent
from agents.registry_yaml import Registry

Status = Agent.Status

# Manual tasks the demo's pilot agents have ticked; the live ones have ticked them all.
PILOT_PROGRESS = {
    "refund-replies": ("workflow", "map", "tests", "mistakes", "launch"),
    "campaign-segments": ("workflow", "map", "tests"),
}


def goes_live(spec: dict) -> bool:
    return spec["status"] == Status.LIVE or (spec["status"] == Status.PAUSED
                                             and spec["paused_from"] == Status.LIVE)


def staged(registry: Registry) -> Registry | None:
    """The file with its new agents that go live held in pilot; None when there are none."""
    existing = set(Agent.objects.filter(slug__in=[a["slug"] for a in registry.agents])
                   .values_list("slug", flat=True))
    held = [spec["slug"] for spec in registry.agents
            if spec["slug"] not in existing and goes_live(spec)]
    if not held:
        return None
    staged = copy.deepcopy(registry)
    for spec in staged.agents:
        if spec["slug"] in held:
            spec.update(status=Status.PILOT, paused_from=None, pause_reason="")
    return staged


def seed_plans(registry: Registry, *, now: datetime | None = None) -> None:
    """Bring the plans of the file's agents to where the demo has them (idempotent)."""
    from metrics import demo as demo_metrics  # metrics builds on the registry

    live = [spec["slug"] for spec in registry.agents if goes_live(spec)]
    demo_metrics.seed_targets_and_reviews(live, now=now)
    agents = {agent.slug: agent for agent in Agent.objects.filter(
        slug__in=[spec["slug"] for spec in registry.agents])}
    for slug, agent in agents.items():
        ticked = None if slug in live else PILOT_PROGRESS.get(slug, ())
        for task in rollout.plan_for(agent):
            if task.auto_check or task.done_at is not None:
                continue
            if ticked is None or task.key in ticked:
                task.agent = agent
                rollout.task_tick(actor=None, task=task, done=True)
