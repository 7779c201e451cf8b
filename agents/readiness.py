"""Is the agent ready? The five questions of the operating model, answered from its configuration.

1. What business outcome is it for?
2. Which decisions may it make alone?
3. When must a person approve?
4. How are quality, safety and cost measured?
5. Who owns its performance after launch?

An answer is either words built from the configuration, or what is missing to give one. The
agent page shows "ready" when all five are answered, "not ready" with the missing answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.models import Agent
from agents.rollout import PlanFacts

KIND_WORDS = {"read": "look things up", "draft": "draft", "recommend": "recommend",
              "execute": "act"}


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str  # "" when unanswered
    missing: str = ""  # what would answer it

    @property
    def answered(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Readiness:
    answers: tuple[Answer, ...]

    @property
    def ready(self) -> bool:
        return all(answer.answered for answer in self.answers)

    @property
    def missing(self) -> list[str]:
        return [answer.missing for answer in self.answers if not answer.answered]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _outcome(agent: Agent, facts: PlanFacts) -> Answer:
    question = "What business outcome is it for?"
    if not facts.outcome:
        return Answer(question, "", "Write the business outcome in one sentence.")
    return Answer(question, facts.outcome)


def _alone(agent: Agent, facts: PlanFacts) -> Answer:
    question = "Which decisions may it make alone?"
    if not facts.accesses:
        return Answer(question, "", "Give it access to at least one system: with none it may "
                                    "decide nothing.")
    access = _join([f"{KIND_WORDS[a.max_kind]} in {a.system.name}"
                    for a in agent.accesses.all()])
    level = agent.autonomy_level
    if level == 1:
        answer = ("None that change anything: a person approves every action; it may look "
                  f"things up alone. At most it may {access}.")
    elif level == 2:
        answer = (f"Low-risk actions within its access ({access}) run alone; "
                  f"{agent.review_sample_rate:.0%} of what it executes is reviewed afterwards.")
    else:
        answer = (f"Whatever its access allows ({access}) that no guardrail, threshold or "
                  "limit stops.")
    return Answer(question, answer)


def _approve(agent: Agent, facts: PlanFacts) -> Answer:
    question = "When must a person approve?"
    if agent.autonomy_level == 1:
        return Answer(question, "Before every action that changes anything (L1).")
    if not facts.review_guardrails:
        return Answer(question, "", "Add a guardrail that sends risky actions to a person "
                                    "(effect: review): above L1 nothing else says when.")
    which = ("its review guardrail" if facts.review_guardrails == 1
             else f"one of its {facts.review_guardrails} review guardrails")
    return Answer(question, (
        f"When {which} sends an action to a person, "
        f"when it is less than {agent.confidence_review_below:g} sure, and when a limit is "
        "reached."))


def _measured(agent: Agent, facts: PlanFacts) -> Answer:
    question = "How are quality, safety and cost measured?"
    gaps = []
    if "quality" not in facts.target_layers:
        gaps.append("a target on a quality metric (e.g. accuracy)")
    if "trust" not in facts.target_layers:
        gaps.append("a target on a trust metric for safety (e.g. acceptance or override rate)")
    if "cost" not in facts.target_layers and facts.monthly_cost_budget is None:
        gaps.append("a monthly cost budget or a target on a cost metric")
    if gaps:
        return Answer(question, "", f"Set {_join(gaps)}.")
    cost = (f"a monthly budget of ${facts.monthly_cost_budget:,.0f}"
            if facts.monthly_cost_budget is not None else "a cost target")
    return Answer(question, "Against targets on its scorecard: quality and trust metrics, and "
                            f"{cost}; the gate's own figures (overrides, blocks) are added.")


def _owner(agent: Agent, facts: PlanFacts) -> Answer:
    question = "Who owns its performance after launch?"
    if "business" in facts.owners_missing or "process" in facts.owners_missing:
        roles = [r for r in ("business", "process") if r in facts.owners_missing]
        return Answer(question, "", f"Name the {_join(roles)} owner"
                                    f"{'s' if len(roles) > 1 else ''}.")
    return Answer(question, (
        f"{agent.business_owner} (outcome) with {agent.process_owner} (workflow and adoption); "
        f"the scorecard is reviewed {agent.review_cadence} once live."))


QUESTIONS = (_outcome, _alone, _approve, _measured, _owner)


def readiness(agent: Agent, facts: PlanFacts) -> Readiness:
    """The five answers; `facts` from agents.rollout.plan_facts (the agent page has them)."""
    return Readiness(tuple(question(agent, facts) for question in QUESTIONS))
