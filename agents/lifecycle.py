"""Lifecycle rules of an agent: which moves exist and what each one needs.

Pure functions over an agent already loaded with its accesses, steps and guardrails, so the
agent page can explain a blocked move with the same words the service raises.
"""

from agents.models import Agent

Status = Agent.Status

# Moves made with the lifecycle buttons; pause, resume and retire have their own services.
MOVES = {
    Status.PROPOSED: [Status.PILOT],
    Status.PILOT: [Status.LIVE, Status.PROPOSED],
    Status.LIVE: [Status.PILOT],
    Status.PAUSED: [],
    Status.RETIRED: [],
}


def _ownership_gaps(agent: Agent) -> list[str]:
    gaps = [f"a {role} owner" for role, user in agent.owners.items() if user is None]
    if not agent.business_outcome.strip():
        gaps.append("a one-sentence business outcome")
    if not agent.definition_of_done.strip():
        gaps.append("a definition of done")
    return gaps


def missing_for(agent: Agent, target: str, *, accesses: int, steps: int,
                guardrails: int, plan_missing: list[str] = ()) -> list[str]:
    """What the agent lacks before it may move to `target` ([] when nothing is missing).

    `plan_missing`: the open tasks of its rollout plan (agents.rollout), which gate `live`.
    """
    if target not in (Status.PILOT, Status.LIVE):
        return []
    gaps = _ownership_gaps(agent)
    if accesses == 0:
        gaps.append("at least one system access")
    if steps == 0:
        gaps.append("at least one rollback step")
    if target == Status.LIVE and guardrails == 0:
        gaps.append("at least one guardrail")
    if target == Status.LIVE and plan_missing:
        gaps.append(plan_gap(plan_missing))
    return gaps


def plan_gap(plan_missing: list[str]) -> str:
    return f"its rollout plan complete (still open: {'; '.join(plan_missing)})"


def describe_gaps(gaps: list[str]) -> str:
    if len(gaps) == 1:
        return gaps[0]
    return ", ".join(gaps[:-1]) + " and " + gaps[-1]
