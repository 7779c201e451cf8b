"""The 30-day rollout plan of an agent: four weeks of tasks, each with an owner role.

Every agent gets the plan from `TEMPLATE` when it is registered (`plan_create`); agents that
predate the plan get it the first time it is asked for (`plan_for`, and migration 0007).
Some tasks Steward checks itself (`CHECKS`): they are done exactly while their check holds,
and cannot be ticked by hand while it does not. The plan must be complete before the agent
may move from pilot to live (agents.lifecycle, agents.services.agent_move).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, RolloutTask
from portal import audit
from portal.permissions import CHANGE_AGENT, require_agent_perm

Role = RolloutTask.OwnerRole
GUARDRAILS_OR_CHECKS_NEEDED = 3


@dataclass(frozen=True)
class TemplateTask:
    week: int
    key: str
    title: str
    owner_role: str
    auto_check: str = ""


WEEKS = {
    1: "Choose the workflow and the outcome",
    2: "Map the work, set autonomy and approval rules",
    3: "Test against a human benchmark",
    4: "Launch to a small group, then decide",
}

TEMPLATE: tuple[TemplateTask, ...] = (
    TemplateTask(1, "owners", "Name the business, process and technical owners",
                 Role.BUSINESS, "three_owners"),
    TemplateTask(1, "outcome", "Write the business outcome in one sentence",
                 Role.BUSINESS, "outcome_written"),
    TemplateTask(1, "workflow", "Choose the workflow and agree when one piece of work is done",
                 Role.PROCESS),
    TemplateTask(2, "map", "Map the inputs, decisions, tools, handoffs and exceptions",
                 Role.PROCESS),
    TemplateTask(2, "autonomy", "Set the autonomy level and the approval rules",
                 Role.PROCESS, "autonomy_set"),
    TemplateTask(2, "guardrails", "Define at least three guardrails or quality checks",
                 Role.TECHNICAL, "guardrails_defined"),
    TemplateTask(2, "rollback", "Write the rollback steps", Role.TECHNICAL, "rollback_written"),
    TemplateTask(2, "pauser", "Name a person besides the owners who may pause it",
                 Role.BUSINESS, "pauser_named"),
    TemplateTask(3, "baseline", "Set targets and measure the human baseline",
                 Role.BUSINESS, "targets_and_baseline"),
    TemplateTask(3, "tests", "Run controlled tests against the human benchmark",
                 Role.PROCESS),
    TemplateTask(3, "mistakes", "Capture the mistakes found, in categories", Role.PROCESS),
    TemplateTask(4, "launch", "Launch to a small group of users", Role.PROCESS),
    TemplateTask(4, "track", "Track business, quality, trust and cost on the scorecard",
                 Role.BUSINESS),
    TemplateTask(4, "first-review", "Record the first scorecard review", Role.BUSINESS,
                 "first_review"),
    TemplateTask(4, "decide", "Decide: expand, revise or stop", Role.BUSINESS),
)


# --- the automatic checks ---------------------------------------------------------------------

@dataclass(frozen=True)
class PlanFacts:
    """What the automatic checks (and the readiness questions) read, gathered once."""

    owners_missing: tuple[str, ...]  # roles without a person: business, process, technical
    outcome: str
    autonomy_level: int | None
    accesses: int
    guardrails: int
    review_guardrails: int  # guardrails that send an action to a person
    quality_targets: int  # targets on quality metrics: the "quality checks"
    target_layers: frozenset[str]  # metric layers with a target set
    targets_with_baseline: int
    rollback_steps: int
    pausers: int
    scorecard_reviews: bool
    monthly_cost_budget: Decimal | None = None


def plan_facts(agent: Agent) -> PlanFacts:
    """Read the facts; uses the agent's prefetched relations when it has them (the agent page),
    else a query each. Targets and reviews always cost one query each."""
    from metrics.models import ScorecardReview, Target  # metrics builds on the registry

    guardrails = list(agent.guardrails.all())
    targets = list(Target.objects.filter(agent=agent, target__isnull=False)
                   .values_list("metric__layer", "human_baseline"))
    return PlanFacts(
        owners_missing=tuple(role for role, user in
                             (("business", agent.business_owner_id),
                              ("process", agent.process_owner_id),
                              ("technical", agent.technical_owner_id)) if user is None),
        outcome=agent.business_outcome.strip(),
        autonomy_level=agent.autonomy_level,
        accesses=len(agent.accesses.all()),
        guardrails=len(guardrails),
        review_guardrails=sum(1 for g in guardrails if g.effect == "review"),
        quality_targets=sum(1 for layer, _ in targets if layer == "quality"),
        target_layers=frozenset(layer for layer, _ in targets),
        targets_with_baseline=sum(1 for _, baseline in targets if baseline is not None),
        rollback_steps=sum(1 for s in agent.rollback_steps.all() if s.instructions.strip()),
        pausers=len(agent.pausers.all()),
        scorecard_reviews=ScorecardReview.objects.filter(agent=agent).exists(),
        monthly_cost_budget=agent.monthly_cost_budget,
    )


@dataclass(frozen=True)
class Check:
    holds: Callable[[PlanFacts], bool]
    missing: Callable[[PlanFacts], str]  # what is still lacking, in words, when it fails


def _owners_missing(facts: PlanFacts) -> str:
    roles = list(facts.owners_missing)
    named = roles[0] if len(roles) == 1 else ", ".join(roles[:-1]) + " and " + roles[-1]
    return f"no {named} owner is named"


def _guardrails_missing(facts: PlanFacts) -> str:
    have = facts.guardrails + facts.quality_targets
    return (f"{have} of {GUARDRAILS_OR_CHECKS_NEEDED} guardrails or quality checks "
            "(targets on quality metrics) are defined")


CHECKS: dict[str, Check] = {
    "three_owners": Check(lambda f: not f.owners_missing, _owners_missing),
    "outcome_written": Check(lambda f: bool(f.outcome),
                             lambda f: "no business outcome is written"),
    "autonomy_set": Check(lambda f: f.autonomy_level in Agent.Autonomy.values,
                          lambda f: "no autonomy level (L1–L4) is set"),
    "guardrails_defined": Check(
        lambda f: f.guardrails + f.quality_targets >= GUARDRAILS_OR_CHECKS_NEEDED,
        _guardrails_missing),
    "rollback_written": Check(lambda f: f.rollback_steps > 0,
                              lambda f: "no rollback step is written"),
    "pauser_named": Check(lambda f: f.pausers > 0,
                          lambda f: "nobody besides the owners may pause it"),
    "targets_and_baseline": Check(
        lambda f: f.targets_with_baseline > 0,
        lambda f: ("no target is set" if not f.target_layers
                   else "no target has a human baseline")),
    "first_review": Check(lambda f: f.scorecard_reviews,
                          lambda f: "no scorecard review is recorded yet"),
}


# --- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskState:
    task: RolloutTask
    done: bool
    missing: str = ""  # an automatic task that is not done: what its check lacks

    @property
    def auto(self) -> bool:
        return bool(self.task.auto_check)


@dataclass(frozen=True)
class Week:
    number: int
    title: str
    tasks: tuple[TaskState, ...]

    @property
    def done(self) -> int:
        return sum(1 for state in self.tasks if state.done)


@dataclass(frozen=True)
class PlanStatus:
    weeks: tuple[Week, ...]
    facts: PlanFacts

    @property
    def tasks(self) -> list[TaskState]:
        return [state for week in self.weeks for state in week.tasks]

    @property
    def total(self) -> int:
        return len(self.tasks)

    @property
    def done(self) -> int:
        return sum(1 for state in self.tasks if state.done)

    @property
    def missing(self) -> list[str]:
        """The titles of the tasks still open, in plan order."""
        return [state.task.title for state in self.tasks if not state.done]

    @property
    def complete(self) -> bool:
        return not self.missing


def task_state(task: RolloutTask, facts: PlanFacts) -> TaskState:
    check = CHECKS.get(task.auto_check) if task.auto_check else None
    if check is None:
        return TaskState(task, task.done_at is not None)
    if check.holds(facts):
        return TaskState(task, True)
    return TaskState(task, False, check.missing(facts))


def plan_status(agent: Agent, tasks: list[RolloutTask] | None = None) -> PlanStatus:
    """The plan with every task's state (three queries: tasks, targets, reviews)."""
    tasks = plan_for(agent) if tasks is None else tasks
    facts = plan_facts(agent)
    weeks = tuple(
        Week(number, title, tuple(task_state(task, facts) for task in tasks
                                  if task.week == number))
        for number, title in WEEKS.items())
    return PlanStatus(weeks, facts)


def plan_missing(agent: Agent) -> list[str]:
    """The titles of the plan's open tasks ([] when the plan is complete)."""
    return plan_status(agent).missing


def _template_rows(agent: Agent, only_keys=None) -> list[RolloutTask]:
    return [RolloutTask(agent=agent, week=t.week, position=position, key=t.key, title=t.title,
                        owner_role=t.owner_role, auto_check=t.auto_check)
            for position, t in enumerate(TEMPLATE, start=1)
            if only_keys is None or t.key in only_keys]


def plan_create(*, actor, agent: Agent) -> list[RolloutTask]:
    """Give a newly registered agent its plan (called by agents.services.agent_create)."""
    tasks = RolloutTask.objects.bulk_create(_template_rows(agent))
    audit.record(actor=actor, verb="rollout.plan_created", obj=agent,
                 data={"tasks": len(tasks)})
    return tasks


def plan_for(agent: Agent) -> list[RolloutTask]:
    """The agent's tasks in plan order; the template's missing ones are created first (agents
    registered before the plan existed). One query when the plan is whole."""
    tasks = list(RolloutTask.objects.filter(agent=agent).select_related("done_by")
                 .order_by("week", "position"))
    missing = {t.key for t in TEMPLATE} - {task.key for task in tasks}
    if not missing:
        return tasks
    RolloutTask.objects.bulk_create(_template_rows(agent, missing), ignore_conflicts=True)
    return list(RolloutTask.objects.filter(agent=agent).select_related("done_by")
                .order_by("week", "position"))


@transaction.atomic
def task_tick(*, actor, task: RolloutTask, done: bool) -> RolloutTask:
    """Mark a task done (or open again). Owners only. A task Steward checks itself cannot be
    ticked while its check fails, nor opened again while it holds."""
    agent = task.agent
    require_agent_perm(actor, CHANGE_AGENT, agent)
    if Agent.objects.filter(pk=agent.pk, status=Agent.Status.RETIRED).exists():
        raise ValidationError("A retired agent's rollout plan cannot be changed.")
    task = RolloutTask.objects.select_for_update().get(pk=task.pk)
    if task.auto_check:
        state = task_state(task, plan_facts(agent))
        if done and not state.done:
            raise ValidationError(
                f"“{task.title}” is checked by Steward and cannot be ticked by hand: "
                f"{state.missing}. It is ticked by itself once that is put right.")
        if not done and state.done:
            raise ValidationError(
                f"“{task.title}” is checked by Steward and holds; it stays done while it does.")
    if (task.done_at is not None) == done:
        return task
    task.done_at, task.done_by = (timezone.now(), actor) if done else (None, None)
    task.save(update_fields=["done_at", "done_by"])
    audit.record(actor=actor, verb="rollout.task_done" if done else "rollout.task_reopened",
                 obj=task, agent=agent,
                 data={"key": task.key, "title": task.title, "week": task.week})
    return task


def with_plan_gaps(moves: list, plan: PlanStatus) -> list:
    """The agent page's lifecycle moves, with the open plan added to what `live` lacks."""
    from agents import lifecycle
    from agents.selectors import LifecycleMove  # selectors read reviews: import late

    if plan.complete:
        return moves
    return [LifecycleMove(move.to_status, [*move.missing, lifecycle.plan_gap(plan.missing)])
            if move.to_status == Agent.Status.LIVE else move for move in moves]
